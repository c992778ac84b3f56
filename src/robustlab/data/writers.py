"""Dataset writers: corrupted copies of a dataset in the released layouts, a preview grid, adversarial examples.

Two layouts, both readable back with ``load_dataset(out_dir, corruption=..., severity=...)``:

* ``cifar`` (CIFAR-10-C): ``<corruption>.npy`` uint8 ``(5·N, H, W, 3)``, severities 1..5 stacked in blocks of N in
  dataset order, and ``labels.npy`` ``(5·N,)``. All five severities are required, because the layout has no room
  for fewer.
* ``imagenet`` (ImageNet-C): ``<corruption>/<severity>/<class>/<file>.JPEG``, JPEG quality 85 (Pillow), as the
  released files. Images that are not already ``SIZE × SIZE`` get the ImageNet-C preprocessing first: shorter
  side resized to ``SIZE · 256 / 224``, centre crop ``SIZE``. Every class gets a folder in every severity (empty if
  it has no image), so class indices survive a subset (``--n``); class folders are the dataset's class ids (WordNet
  ids for ImageNet), prefixed with their index when those names would not sort in class order.

Choices: sample ``i`` is corrupted with ``sample_generators(seed, [i], corruption, severity)``, so a file does not
depend on the batch size, the device or which other corruptions were written. Pixels become ``uint8`` by
truncation, ``floor(255 · clip(x, 0, 1))``, like the original's ``np.uint8(...)``; a tolerance of 1e-3 absorbs the
float32 error of values that are whole numbers in exact arithmetic (e.g. an untouched 128/255 must stay 128).
Files are written under a temporary name and renamed when complete, so an interrupted run leaves no truncated
file; a re-run skips complete files (``--overwrite`` rewrites them) and refuses to touch an existing file that does
not match what it would write.

:func:`write_adversarial_examples` writes what ``robustlab attack`` produced (see its docstring). These are the
only functions that turn the library's ``[0, 1]`` float images into files: ``uint8`` pixels exist only here and in
the readers.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from robustlab._checks import check_choice

log = logging.getLogger(__name__)

__all__ = [
    "FORMATS",
    "JPEG_QUALITY",
    "NUM_SEVERITIES",
    "preview_grid",
    "to_uint8",
    "write_adversarial_examples",
    "write_corrupted_dataset",
]

FORMATS = ("cifar", "imagenet")
JPEG_QUALITY = 85  # the released ImageNet-C files
NUM_SEVERITIES = 5
# the tolerance of the uint8 truncation (see the module docstring)
_TRUNCATION_EPS = 1e-3


# ------------------------------------------------------------------------------------------ pixels
def to_uint8(images: Tensor) -> np.ndarray:
    """``(N, 3, H, W)`` float -> ``(N, H, W, 3)`` uint8 by truncation, like the original ``np.uint8(255 · x)``."""
    scaled = images.detach().float().clamp(0.0, 1.0).mul(255.0).add_(_TRUNCATION_EPS).floor_().clamp_(0, 255)
    return scaled.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def _atomic_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial")


def _save_jpeg(pixels: np.ndarray, path: Path) -> None:
    from PIL import Image

    tmp = _atomic_path(path)
    Image.fromarray(pixels).save(tmp, format="JPEG", quality=JPEG_QUALITY)
    os.replace(tmp, path)


def _save_npy(array: np.ndarray, path: Path) -> None:
    tmp = _atomic_path(path)
    with tmp.open("wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------ writing
@dataclass(frozen=True)
class _Job:
    """What to write: the dataset, the sample indices, the corruptions and severities, and how."""

    dataset: Any
    indices: list[int]
    corruptions: list[str]
    severities: list[int]
    fmt: str
    out: Path
    seed: int
    batch_size: int
    device: torch.device
    profile: str | None
    overwrite: bool


def _chunks(job: _Job) -> list[list[int]]:
    """Dataset positions per batch, in order."""
    return [job.indices[i : i + job.batch_size] for i in range(0, len(job.indices), job.batch_size)]


def _load(job: _Job, positions: list[int]) -> tuple[list[int], Tensor]:
    """``(sample indices for the generators, images)`` of a batch of dataset positions."""
    images, _ = job.dataset.get_batch(positions)
    return job.dataset.original_indices(positions), images


def _corrupt(job: _Job, name: str, severity: int, indices: list[int], images: Tensor) -> np.ndarray:
    from robustlab.perturb import PERTURBATIONS
    from robustlab.rng import sample_generators

    fn = PERTURBATIONS.get(name)
    generators = sample_generators(job.seed, indices, name, severity)
    with torch.no_grad():
        out = fn(images.to(job.device), severity, generator=generators, profile=job.profile)
    return to_uint8(out)


def _labels(job: _Job) -> np.ndarray:
    """The labels of the job's samples, without decoding images where the dataset holds them."""
    for attr in ("targets", "labels"):
        stored = getattr(job.dataset, attr, None)
        if stored is not None and len(stored) == len(job.dataset):
            return np.asarray([int(stored[i]) for i in job.indices], dtype=np.int64)
    from robustlab.data import iter_batches

    parts = [b.labels.numpy() for b in iter_batches(job.dataset, job.batch_size, indices=job.indices)]
    return np.concatenate(parts).astype(np.int64)


def _write_cifar(job: _Job, advance: Callable[[str, int], None]) -> list[str]:
    """CIFAR-10-C layout; returns the corruptions written (skipped complete files excluded)."""
    if job.severities != list(range(1, NUM_SEVERITIES + 1)):
        raise ValueError(
            "the cifar layout stacks all five severities in one <corruption>.npy, so it needs --severities 1-5; "
            "use --format imagenet for a subset of severities"
        )
    n = len(job.indices)
    labels = np.tile(_labels(job), NUM_SEVERITIES)
    labels_path = job.out / "labels.npy"
    if labels_path.exists() and labels_path.stat().st_size and not job.overwrite:
        existing = np.load(labels_path, allow_pickle=False)
        if existing.shape != labels.shape or not np.array_equal(existing, labels):
            raise ValueError(
                f"{labels_path} exists with other labels (shape {existing.shape}); it belongs to another dataset or "
                "--n. Choose another --out or pass --overwrite"
            )
    else:
        _save_npy(labels, labels_path)
    written = []
    for name in job.corruptions:
        path = job.out / f"{name}.npy"
        steps = NUM_SEVERITIES * len(range(0, n, job.batch_size))
        if path.exists() and path.stat().st_size and not job.overwrite:
            try:
                existing = np.load(path, mmap_mode="r", allow_pickle=False)
                shape, dtype = existing.shape, existing.dtype
            except (OSError, ValueError, EOFError):
                shape, dtype = None, None
            if dtype == np.uint8 and shape is not None and len(shape) == 4 and shape[0] == NUM_SEVERITIES * n:
                log.info("%s is complete; skipped", path)
                advance(f"{name} (exists)", steps)
                continue
            raise ValueError(
                f"{path} exists but is not a uint8 array of {NUM_SEVERITIES * n} images (shape {shape}); choose "
                "another --out or pass --overwrite"
            )
        # each batch is read once and corrupted at every severity; rows go straight into a memory-mapped
        # temporary file that becomes <corruption>.npy only when complete
        tmp = _atomic_path(path)
        array: np.memmap | None = None
        start = 0
        for positions in _chunks(job):
            indices, images = _load(job, positions)
            for severity in job.severities:
                pixels = _corrupt(job, name, severity, indices, images)
                if array is None:
                    array = np.lib.format.open_memmap(
                        tmp, mode="w+", dtype=np.uint8, shape=(NUM_SEVERITIES * n, *pixels.shape[1:])
                    )
                if pixels.shape[1:] != array.shape[1:]:
                    raise ValueError(
                        f"the cifar layout needs images of one size, got {pixels.shape[1:3]} and {array.shape[1:3]}"
                    )
                row = (severity - 1) * n + start
                array[row : row + len(indices)] = pixels
                advance(f"{name} s{severity}", 1)
            start += len(indices)
        if array is not None:
            array.flush()
            del array
            os.replace(tmp, path)
        written.append(name)
    return written


def _class_folders(dataset: Any) -> list[str]:
    """One folder name per class whose sorted order is the class order (what the ImageNet-C reader assumes)."""
    ids = list(getattr(dataset, "class_ids", None) or [])
    names = ids if ids and all(ids) else list(dataset.class_names)
    clean = [str(n).replace(os.sep, "_").replace("/", "_").strip() or f"class_{i}" for i, n in enumerate(names)]
    if len(set(clean)) != len(clean) or sorted(clean) != clean:
        width = len(str(len(clean) - 1))
        clean = [f"{i:0{width}d}_{c}" for i, c in enumerate(clean)]
    return clean


def _file_stems(job: _Job, labels: np.ndarray) -> dict[int, str]:
    """A file name stem per sample: the source file's stem where there is one, unique within its class."""
    files = getattr(job.dataset, "files", None)
    stems: dict[int, str] = {}
    used: set[tuple[int, str]] = set()
    for index, label in zip(job.indices, labels.tolist(), strict=True):
        stem = Path(files[index]).stem if files is not None else f"{index:06d}"
        if (label, stem) in used:
            stem = f"{stem}_{index}"
        used.add((label, stem))
        stems[index] = stem
    return stems


def _write_imagenet(job: _Job, advance: Callable[[str, int], None]) -> list[str]:
    """ImageNet-C tree; returns the corruptions with at least one file written."""
    folders = _class_folders(job.dataset)
    labels = _labels(job)
    label_of = dict(zip(job.indices, labels.tolist(), strict=True))
    stems = _file_stems(job, labels)
    written = []
    for name in job.corruptions:
        wrote_any = False
        for severity in job.severities:
            for folder in folders:
                (job.out / name / str(severity) / folder).mkdir(parents=True, exist_ok=True)
        for positions in _chunks(job):  # each batch is read once (if at all) and written at every severity
            paths = {
                severity: [
                    job.out / name / str(severity) / folders[label_of[i]] / f"{stems[i]}.JPEG" for i in positions
                ]
                for severity in job.severities
            }
            todo = {
                severity: [k for k, p in enumerate(ps) if job.overwrite or not (p.exists() and p.stat().st_size)]
                for severity, ps in paths.items()
            }
            if any(todo.values()):
                indices, images = _load(job, positions)
            for severity in job.severities:
                if todo[severity]:
                    ks = todo[severity]
                    pixels = _corrupt(job, name, severity, [indices[k] for k in ks], images[ks])
                    for k, array in zip(ks, pixels, strict=True):
                        _save_jpeg(array, paths[severity][k])
                    wrote_any = True
                advance(f"{name} s{severity}", 1)
        if wrote_any:
            written.append(name)
    return written


def _imagenet_view(dataset: Any, size: int) -> Any:
    """The dataset as ``size × size`` images: untouched if already so, else the ImageNet-C resize + crop."""
    from robustlab.data import Preprocess

    if dataset.pre_cropped or len(dataset) == 0:
        return dataset
    first, _ = dataset.get_batch([0])
    if tuple(first.shape[-2:]) == (size, size):
        return dataset
    return dataset.with_preprocess(Preprocess(resize=round(size * 256 / 224), crop=size))


def write_corrupted_dataset(
    dataset: Any,
    out: Path,
    corruptions: Sequence[str],
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    *,
    fmt: str | None = None,
    n: int | None = None,
    seed: int = 0,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    profile: str | None = None,
    size: int = 224,
    overwrite: bool = False,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> list[str]:
    """Corrupt ``dataset`` and write it in the CIFAR-10-C or ImageNet-C layout (see the module docstring).

    Args:
        dataset: an :class:`~robustlab.data.ImageDataset`.
        out: output folder (created).
        corruptions: registered severity corruptions.
        severities: severities to write (the cifar layout needs all five).
        fmt: ``"cifar"`` or ``"imagenet"``; default ``"cifar"`` for 32 × 32 images, else ``"imagenet"``.
        n: write only the first ``n`` samples.
        seed: seed of the per-sample generators.
        batch_size: images per corruption call.
        device: where the corruptions run.
        profile: severity-parameter profile (default: from the image size).
        size: ImageNet layout image size.
        overwrite: rewrite complete files instead of skipping them.
        callback: progress events ``{"description", "completed", "total"}``.

    Returns:
        The corruptions for which files were written.

    Raises:
        ValueError: bad format, sizes, severities for the cifar layout, or existing files that do not match.
    """
    if fmt is None:
        first, _ = dataset.get_batch([0]) if len(dataset) else (torch.empty(0, 3, 0, 0), None)
        fmt = "cifar" if tuple(first.shape[-2:]) == (32, 32) else "imagenet"
    check_choice(fmt, FORMATS, "--format")
    if fmt == "imagenet":
        dataset = _imagenet_view(dataset, size)
    count = len(dataset) if n is None else min(int(n), len(dataset))
    if count == 0:
        raise ValueError(f"{dataset.name} has no images to corrupt")
    out.mkdir(parents=True, exist_ok=True)
    job = _Job(
        dataset=dataset,
        indices=list(range(count)),
        corruptions=list(corruptions),
        severities=sorted(set(int(s) for s in severities)),
        fmt=fmt,
        out=out,
        seed=seed,
        batch_size=batch_size,
        device=torch.device(device),
        profile=profile,
        overwrite=overwrite,
    )
    total = len(job.corruptions) * len(job.severities) * len(range(0, count, batch_size))
    done = 0

    def advance(description: str, steps: int) -> None:
        nonlocal done
        done += steps
        if callback is not None:
            callback({"description": description, "completed": done, "total": total})

    return _write_cifar(job, advance) if fmt == "cifar" else _write_imagenet(job, advance)


# ------------------------------------------------------------------------------------------ preview
def preview_grid(
    image: Tensor,
    corruptions: Sequence[str],
    out: Path,
    *,
    seed: int = 0,
    profile: str | None = None,
    device: torch.device | str = "cpu",
) -> Path:
    """Write one PNG: a row per corruption (labelled), columns clean and severities 1..5.

    Args:
        image: one image ``(1, 3, S, S)`` in [0, 1].
        corruptions: registered severity corruptions.
        out: the PNG to write.
        seed: generator seed (each cell gets ``make_generator(seed, corruption, severity)``).
        profile: severity-parameter profile (default: from the image size).
        device: where the corruptions run.

    Returns:
        ``out``.
    """
    from PIL import Image, ImageDraw, ImageFont

    from robustlab.perturb import PERTURBATIONS
    from robustlab.rng import make_generator

    size = image.shape[-1]
    cell = max(size, 96)  # small images are shown enlarged (nearest), so 32-px corruptions stay visible
    pad, header_h = 4, 28
    font = ImageFont.load_default(size=16)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = int(max(measure.textlength(name, font=font) for name in corruptions)) + 4 * pad
    cols = 1 + NUM_SEVERITIES
    grid = Image.new(
        "RGB", (label_w + cols * (cell + pad) + pad, header_h + len(corruptions) * (cell + pad) + pad), "white"
    )
    draw = ImageDraw.Draw(grid)
    for c, title in enumerate(["clean"] + [f"severity {s}" for s in range(1, NUM_SEVERITIES + 1)]):
        draw.text((label_w + c * (cell + pad) + pad, 4), title, fill="black", font=font)
    clean = to_uint8(image)[0]
    for r, name in enumerate(corruptions):
        fn = PERTURBATIONS.get(name)
        y = header_h + r * (cell + pad) + pad
        draw.text((pad, y + cell // 2 - 8), name, fill="black", font=font)
        tiles = [clean]
        for severity in range(1, NUM_SEVERITIES + 1):
            with torch.no_grad():
                corrupted = fn(
                    image.to(device), severity, generator=make_generator(seed, name, severity), profile=profile
                )
            tiles.append(to_uint8(corrupted)[0])
        for c, tile in enumerate(tiles):
            picture = Image.fromarray(tile)
            if cell != size:
                picture = picture.resize((cell, cell), Image.Resampling.NEAREST)
            grid.paste(picture, (label_w + c * (cell + pad) + pad, y))
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out, format="PNG")
    return out


# ------------------------------------------------------------------------------------------ adversarial examples
class AttackResult(Protocol):
    """What :func:`write_adversarial_examples` reads from an attack's outcome (``engine.AttackOutcome`` has it)."""

    # read-only, so frozen dataclasses (engine.AttackOutcome) match
    @property
    def adversarial(self) -> Tensor: ...

    @property
    def indices(self) -> Tensor: ...

    @property
    def labels(self) -> Tensor: ...

    @property
    def clean_pred(self) -> Tensor: ...

    @property
    def adv_pred(self) -> Tensor: ...

    @property
    def success(self) -> Tensor: ...


def write_adversarial_examples(out: Path, outcome: AttackResult, clean: Tensor, png: bool) -> list[Path]:
    """Write an attack's adversarial examples and per-sample outcomes into ``out``.

    Files (each written under a temporary name and renamed when complete):

    * ``adversarial.npz``: ``images`` float32 ``(N, C, H, W)`` in [0, 1] (full precision: an 8-bit file would round
      a 2/255 perturbation away), ``indices``, ``labels``, ``clean_pred``, ``adv_pred``, ``success``;
    * ``outcome.csv``: one row per sample (index, label, clean prediction, adversarial prediction, success,
      l-inf and l2 size of the perturbation);
    * with ``png``: ``png/<index>_<label>_to_<adv_pred>.png`` (8-bit, for looking at).

    Args:
        out: the output folder (created).
        outcome: the attack's outcome (``adversarial``, ``indices``, ``labels``, ``clean_pred``, ``adv_pred``,
            ``success`` tensors).
        clean: the clean images ``(N, C, H, W)`` the adversarial ones are compared with.
        png: also write every adversarial example as an 8-bit PNG.

    Returns:
        The files (and the ``png`` folder) written.
    """
    files = [out / "adversarial.npz", out / "outcome.csv"]
    out.mkdir(parents=True, exist_ok=True)
    adv = outcome.adversarial.float()
    delta = (adv - clean).flatten(1)
    linf, l2 = delta.abs().amax(dim=1), delta.norm(dim=1)
    arrays: dict[str, Any] = {
        "images": adv.numpy(),
        "indices": outcome.indices.numpy(),
        "labels": outcome.labels.numpy(),
        "clean_pred": outcome.clean_pred.numpy(),
        "adv_pred": outcome.adv_pred.numpy(),
        "success": outcome.success.numpy(),
    }
    tmp = out / ".adversarial.npz.partial"
    with tmp.open("wb") as f:
        np.savez_compressed(f, **arrays)
    os.replace(tmp, files[0])
    tmp = out / ".outcome.csv.partial"
    with tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "label", "clean_pred", "adv_pred", "success", "linf", "l2"])
        for i in range(len(adv)):
            writer.writerow([int(arrays["indices"][i]), int(arrays["labels"][i]), int(arrays["clean_pred"][i]),
                             int(arrays["adv_pred"][i]), bool(arrays["success"][i]), f"{float(linf[i]):.6g}",
                             f"{float(l2[i]):.6g}"])  # fmt: skip
    os.replace(tmp, files[1])
    if png:
        from PIL import Image

        folder = out / "png"
        folder.mkdir(exist_ok=True)
        pixels = to_uint8(adv if adv.shape[1] == 3 else adv.expand(-1, 3, -1, -1))
        for i, image in enumerate(pixels):
            name = f"{int(arrays['indices'][i]):05d}_{int(arrays['labels'][i])}_to_{int(arrays['adv_pred'][i])}.png"
            Image.fromarray(image).save(folder / name)
        files.append(folder)
    return files
