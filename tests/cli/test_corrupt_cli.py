"""``robustlab corrupt``: CIFAR-10-C and ImageNet-C layouts read back by load_dataset, per-sample seeding, resume,
no silent overwrite, the preview grid, friendly errors."""

from __future__ import annotations

import inspect
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import Result
from PIL import Image
from typer.testing import CliRunner

import robustlab.cli.corrupt  # noqa: F401  (registers the command)
import robustlab.perturb.occlusion  # noqa: F401  (registers random_patch_occlusion)
import robustlab.perturb.sequences  # noqa: F401  (registers the sequences, which corrupt must refuse)
from robustlab.cli._app import app
from robustlab.cli.corrupt import parse_corruptions, parse_severities
from robustlab.data import ArrayDataset, load_dataset
from robustlab.data.writers import to_uint8, write_corrupted_dataset
from robustlab.perturb import PERTURBATIONS
from robustlab.rng import sample_generators

runner = CliRunner()
WIDE = {"COLUMNS": "200"}


def _severity_corruptions() -> list[str]:
    return [n for n in PERTURBATIONS.names() if "severity" in inspect.signature(PERTURBATIONS.get(n)).parameters]


def _pick(k: int = 2) -> list[str]:
    """Cheap corruptions that exist now (random_patch_occlusion is always there), a random one first."""
    preferred = ["random_patch_occlusion", "contrast", "gaussian_noise", "brightness", "pixelate"]
    names = [n for n in preferred if n in _severity_corruptions()]
    return (names + [n for n in _severity_corruptions() if n not in names])[:k]


def _invoke(*args: str) -> Result:
    return runner.invoke(app, ["corrupt", *args], env=WIDE)


@pytest.fixture
def cifar_npz(tmp_path: Path) -> Path:
    """Seven 32-px images of three classes as a CIFAR-style .npz."""
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.npz"
    np.savez(
        path,
        images=rng.integers(0, 256, (7, 32, 32, 3), dtype=np.uint8),
        labels=np.array([2, 0, 1, 1, 0, 2, 2]),
        class_names=np.array(["cat", "dog", "fox"]),
    )
    return path


@pytest.fixture
def folder_tree(tmp_path: Path) -> Path:
    """A class-per-folder tree: 3 classes x 2 smooth images of 40 x 48 px (not yet the ImageNet-C size)."""
    rng = np.random.default_rng(1)
    root = tmp_path / "tree"
    for c in ("n001", "n002", "n003"):
        (root / c).mkdir(parents=True)
        for k in range(2):
            # smooth content, so JPEG quality 85 stays close to the pixels it was given
            coarse = Image.fromarray(rng.integers(0, 256, (5, 6, 3), dtype=np.uint8))
            coarse.resize((48, 40), Image.Resampling.BILINEAR).save(root / c / f"img_{c}_{k}.png")
    return root


def _expected(images: torch.Tensor, name: str, severity: int, seed: int, indices: list[int]) -> np.ndarray:
    out = PERTURBATIONS.get(name)(images, severity, generator=sample_generators(seed, indices, name, severity))
    return to_uint8(out)


def _jpeg85(pixels: np.ndarray) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=85)
    return np.asarray(Image.open(buffer).convert("RGB"))


# ------------------------------------------------------------------------------------------ parsing and pixels
def test_parse_severities_and_corruptions() -> None:
    assert parse_severities("1-5") == [1, 2, 3, 4, 5]
    assert parse_severities("3") == [3]
    assert parse_severities("5,1,3-4") == [1, 3, 4, 5]
    for bad in ("0-5", "6", "a", "4-2", ""):
        with pytest.raises(ValueError, match="severities"):
            parse_severities(bad)
    names = _pick(2)
    assert parse_corruptions(",".join(names)) == names
    with pytest.raises(ValueError, match="Did you mean"):
        parse_corruptions("gausian_noise")
    with pytest.raises(ValueError, match="takes no severity"):
        parse_corruptions("patch_occlusion")
    with pytest.raises(ValueError, match="no corruption"):
        parse_corruptions(" , ")


# ------------------------------------------------------------------------------------------ CIFAR-10-C layout
def test_cifar_layout_round_trip(tmp_path: Path, cifar_npz: Path) -> None:
    names = _pick(2)
    out = tmp_path / "c10c"
    result = _invoke("--data", str(cifar_npz), "--out", str(out), "--corruptions", ",".join(names), "--seed", "3",
                     "--batch-size", "3")  # fmt: skip
    assert result.exit_code == 0, result.output
    clean = load_dataset(cifar_npz)
    images, labels = clean.get_batch(range(7))
    assert np.array_equal(np.load(out / "labels.npy"), np.tile(labels.numpy(), 5))
    for name in names:
        stored = np.load(out / f"{name}.npy")
        assert stored.shape == (35, 32, 32, 3) and stored.dtype == np.uint8
        for severity in (1, 5):
            back = load_dataset(out, corruption=name, severity=severity)
            x, y = back.get_batch(range(len(back)))
            assert len(back) == 7 and torch.equal(y, labels)
            expected = _expected(images, name, severity, 3, list(range(7)))
            assert np.array_equal((x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy(), expected)


def test_cifar_layout_does_not_depend_on_batch_size_and_resumes(tmp_path: Path, cifar_npz: Path) -> None:
    name = _pick(1)[0]
    a, b = tmp_path / "a", tmp_path / "b"
    assert _invoke("--data", str(cifar_npz), "--out", str(a), "--corruptions", name, "--batch-size", "2").exit_code == 0
    assert _invoke("--data", str(cifar_npz), "--out", str(b), "--corruptions", name, "--batch-size", "7").exit_code == 0
    assert np.array_equal(np.load(a / f"{name}.npy"), np.load(b / f"{name}.npy"))
    # a second run skips the complete file; --overwrite rewrites it
    before = (a / f"{name}.npy").stat().st_mtime_ns
    again = _invoke("--data", str(cifar_npz), "--out", str(a), "--corruptions", name)
    assert again.exit_code == 0 and "already complete" in again.output
    assert (a / f"{name}.npy").stat().st_mtime_ns == before
    forced = _invoke("--data", str(cifar_npz), "--out", str(a), "--corruptions", name, "--overwrite")
    assert forced.exit_code == 0 and (a / f"{name}.npy").stat().st_mtime_ns != before
    assert not list(a.glob(".*.partial"))
    # another --n would have to overwrite: refused
    other = _invoke("--data", str(cifar_npz), "--out", str(a), "--corruptions", name, "--n", "3")
    assert other.exit_code == 1 and "--overwrite" in other.output


def test_cifar_layout_needs_all_severities(tmp_path: Path, cifar_npz: Path) -> None:
    result = _invoke("--data", str(cifar_npz), "--out", str(tmp_path / "o"), "--corruptions", _pick(1)[0],
                     "--severities", "2")  # fmt: skip
    assert result.exit_code == 1 and "1-5" in result.output


# ------------------------------------------------------------------------------------------ ImageNet-C layout
def test_imagenet_layout_round_trip(tmp_path: Path, folder_tree: Path) -> None:
    names = _pick(2)
    out = tmp_path / "inc"
    result = _invoke("--data", str(folder_tree), "--out", str(out), "--corruptions", ",".join(names),
                     "--severities", "2,4", "--format", "imagenet", "--size", "32", "--seed", "1")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / names[0]).iterdir()) == ["2", "4"]
    files = sorted((out / names[0] / "2").rglob("*.JPEG"))
    assert len(files) == 6 and files[0].relative_to(out / names[0] / "2").as_posix() == "n001/img_n001_0.JPEG"
    # the ImageNet-C preprocessing: shorter side 32 * 256 / 224 = 37, centre crop 32
    from robustlab.data import Preprocess

    source = load_dataset(folder_tree).with_preprocess(Preprocess(resize=37, crop=32))
    images, labels = source.get_batch(range(6))
    for name in names:
        back = load_dataset(out, corruption=name, severity=4)
        x, y = back.get_batch(range(len(back)))
        assert x.shape == (6, 3, 32, 32) and torch.equal(y, labels) and back.pre_cropped
        # exactly the expected uint8 pixels after a Pillow JPEG round trip at quality 85
        expected = np.stack([_jpeg85(a) for a in _expected(images, name, 4, 1, list(range(6)))])
        assert np.array_equal((x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy(), expected)


def test_imagenet_layout_keeps_class_indices_for_a_subset_and_resumes(tmp_path: Path, folder_tree: Path) -> None:
    name = _pick(1)[0]
    out = tmp_path / "inc"
    args = ("--data", str(folder_tree), "--out", str(out), "--corruptions", name, "--severities", "1",
            "--format", "imagenet", "--size", "32")  # fmt: skip
    assert _invoke(*args, "--n", "3").exit_code == 0
    back = load_dataset(out, corruption=name, severity=1)
    assert back.num_classes == 3 and back.get_batch(range(3))[1].tolist() == [0, 0, 1]
    # the full run adds the missing files and leaves the existing ones alone
    first = out / name / "1" / "n001" / "img_n001_0.JPEG"
    before = first.stat().st_mtime_ns
    assert _invoke(*args).exit_code == 0
    assert len(list((out / name / "1").rglob("*.JPEG"))) == 6 and first.stat().st_mtime_ns == before


def test_class_folders_sort_in_class_order(tmp_path: Path) -> None:
    dataset = ArrayDataset(np.zeros((2, 16, 16, 3), dtype=np.uint8), [0, 1], class_names=["zebra", "apple"], name="toy")
    write_corrupted_dataset(dataset, tmp_path, [_pick(1)[0]], [1], fmt="imagenet", size=16, profile="cifar")
    folders = sorted(p.name for p in (tmp_path / _pick(1)[0] / "1").iterdir())
    assert folders == ["0_zebra", "1_apple"]
    assert load_dataset(tmp_path, corruption=_pick(1)[0], severity=1).get_batch([0, 1])[1].tolist() == [0, 1]


# ------------------------------------------------------------------------------------------ preview and errors
def test_preview_grid(tmp_path: Path, folder_tree: Path) -> None:
    names = _pick(2)
    out = tmp_path / "grid.png"
    image = next(folder_tree.rglob("*.png"))
    result = _invoke("--preview", str(image), "--out", str(out), "--corruptions", ",".join(names), "--size", "32")
    assert result.exit_code == 0, result.output
    grid = Image.open(out)
    cell, pad, header = 96, 4, 28  # 32-px images are shown enlarged to 96 px
    label = grid.size[0] - 6 * (cell + pad) - pad  # the label column fits the longest name
    assert 100 < label < 300
    assert grid.size[1] == header + len(names) * (cell + pad) + pad
    pixels = np.asarray(grid.convert("RGB")).astype(np.float64)
    for row in range(len(names)):
        top = header + row * (cell + pad) + pad
        tiles = [pixels[top : top + cell, label + c * (cell + pad) + pad :][:, :cell] for c in range(6)]
        assert tiles[0].std() > 10  # an image, not blank
        assert all(np.abs(t - tiles[0]).mean() > 0.5 for t in tiles[1:])  # every severity changes it


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--out", "x"), "--data"),
        (("--data", "digits", "--preview", "a.png", "--out", "g.png"), "not both"),
        (("--preview", "missing.png", "--out", "g.png"), "no such image"),
        (("--preview", "a.png", "--out", "grid.jpg"), ".png"),
        (("--data", "digits", "--out", "o", "--corruptions", "gausian_noise"), "Did you mean"),
        (("--data", "digits", "--out", "o", "--corruptions", "rotate_sequence"), "takes no severity"),
        (("--data", "no_such_dataset", "--out", "o", "--corruptions", "random_patch_occlusion"), "Unknown dataset"),
        (("--data", "digits", "--out", "o", "--corruptions", "random_patch_occlusion", "--format", "png"), "cifar"),
    ],
)
def test_errors_are_one_line(tmp_path: Path, args: tuple[str, ...], message: str, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = _invoke(*args)
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output
