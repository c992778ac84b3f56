"""Gaussian-noise sweeps over many models (the noise study): accuracy per σ, robustness slope, rank difference.

Every cell goes through :func:`robustlab.engine.evaluate` and the results store, so a re-run resumes and adds
nothing. Backends: in-process, or one Ray task per model with the results written by the driver.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from robustlab.data import ImageDataset
from robustlab.metrics import rank_difference, robustness_slope

# the store's perturbation name for noise added to native pixels before the model's resize and crop
PIXEL_NOISE = "gaussian_noise_pixels"


@dataclass
class NoiseStudy:
    """Result of :func:`noise_study`.

    Args:
        sigmas: the noise levels (pixel-space σ), 0 first when clean is included.
        accuracy: model -> accuracy per σ (same order as ``sigmas``).
        slope: model -> least-squares slope of accuracy against σ.
        rank_difference: sigma -> model -> clean rank minus noisy rank (positive: moved up under noise).
        new_cells: cells computed in this call (0 when everything was resumed from the store).
        failed: model -> why its Ray task failed after its retries (empty when all finished).
    """

    sigmas: list[float]
    accuracy: dict[str, list[float]] = field(default_factory=dict)
    slope: dict[str, float] = field(default_factory=dict)
    rank_difference: dict[float, dict[str, int]] = field(default_factory=dict)
    new_cells: int = 0
    failed: dict[str, str] = field(default_factory=dict)


class PixelNoiseDataset(ImageDataset):
    """Native images with N(0, σ²) pixel noise added *before* the model's resize and centre crop (the study's setup).

    Each image is read at its own size, noised with its per-sample generator (so its noise does not depend on the
    batch or on ``n``), clipped to [0, 1], then resized and cropped in float by :meth:`Preprocess.apply_tensor`
    (antialiased interpolate). σ = 0 goes through the same float path, so clean and noisy accuracies differ only by
    the noise, not by PIL-versus-tensor resampling.

    Args:
        dataset: the dataset at native resolution (no preprocessing).
        preprocess: the model's evaluation resize and crop (``Preprocess.from_config(clf.data_config)``).
        sigma: noise standard deviation in [0, 1] pixel units.
        seed: the seed per-sample generators derive from.
    """

    def __init__(self, dataset: ImageDataset, preprocess: Any, sigma: float, seed: int) -> None:
        self.dataset = dataset
        self.preprocess = preprocess
        self.sigma = float(sigma)
        self.seed = int(seed)
        self.name = dataset.name
        self.split = dataset.split
        self.class_names = dataset.class_names
        self.info = dict(dataset.info, preprocess=preprocess.describe(), noise_at="pixels", sigma=self.sigma)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        images, labels = self.get_batch([index])
        return images[0], int(labels[0])

    def original_indices(self, positions: Any) -> list[int]:
        return self.dataset.original_indices(positions)

    def get_batch(self, indices: Any) -> tuple[Tensor, Tensor]:
        from robustlab import rng
        from robustlab.perturb import additive_gaussian_noise

        positions = [int(i) for i in indices]
        out, labels = [], []
        # one image at a time: native sizes differ across an image folder
        for position, original in zip(positions, self.original_indices(positions), strict=True):
            image, label = self.dataset.get_batch([position])
            if self.sigma > 0:
                gens = rng.sample_generators(self.seed, [original], PIXEL_NOISE, self.sigma)
                image = additive_gaussian_noise(image, self.sigma, generator=gens)
            out.append(self.preprocess.apply_tensor(image))
            labels.append(label)
        return torch.cat(out), torch.cat(labels)


def _needs_resize(native: ImageDataset, fitted: ImageDataset) -> bool:
    return tuple(native.get_batch([0])[0].shape[-2:]) != tuple(fitted.get_batch([0])[0].shape[-2:])


def _pixel_noise_sweep(
    clf: Any,
    native: ImageDataset,
    spec: str,
    levels: list[float],
    *,
    store: Any,
    run_id: str,
    seed: int,
    batch_size: int,
    device: Any,
    callback: Callable[[dict[str, Any]], None] | None,
) -> tuple[dict[float, float], int]:
    """Accuracy per σ with noise before the resize; each σ is one store cell (resumed when present)."""
    from robustlab.data.preprocess import Preprocess
    from robustlab.engine import evaluate_accuracy
    from robustlab.store import ResultKey

    preprocess = Preprocess.from_config(clf.data_config)
    params_of = {s: {"sigma": s, "resize": preprocess.describe()} for s in levels}
    stored = store.results(model=spec, dataset=native.name, split=native.split, perturbation=PIXEL_NOISE,
                           metric="accuracy")  # fmt: skip
    done = {(row.params_json, int(row.seed)): float(row.value) for row in stored.itertuples()}
    by_sigma: dict[float, float] = {}
    new = 0
    for sigma in levels:
        key = ResultKey.create(spec, native.name, "accuracy", split=native.split, perturbation=PIXEL_NOISE,
                               params=params_of[sigma], seed=seed)  # fmt: skip
        if (key.params_json, seed) in done:
            by_sigma[sigma] = done[(key.params_json, seed)]
            continue
        data = PixelNoiseDataset(native, preprocess, sigma, seed)
        correct, count = evaluate_accuracy(clf, data, batch_size=batch_size, device=device, callback=callback)
        by_sigma[sigma] = correct / count
        new += store.add_result(run_id, spec, native.name, "accuracy", correct / count, n=count, split=native.split,
                                perturbation=PIXEL_NOISE, params=params_of[sigma], seed=seed)  # fmt: skip
    return by_sigma, new


def parse_sigmas(sigmas: str | Sequence[float]) -> list[float]:
    """``"0,0.04,0.08"`` or a sequence -> sorted unique σ list with 0 (clean) included.

    Raises:
        ValueError: a non-number, a negative or non-finite σ, or fewer than one positive σ.
    """
    if isinstance(sigmas, str):
        try:
            values = [float(s) for s in sigmas.replace("+", ",").split(",") if s.strip()]
        except ValueError:
            raise ValueError(f"--sigmas must be comma-separated numbers such as 0,0.04,0.08, got {sigmas!r}") from None
    else:
        values = [float(s) for s in sigmas]
    bad = [s for s in values if not math.isfinite(s) or s < 0]
    if bad:
        raise ValueError(f"noise σ must be finite and >= 0 (pixel units, images in [0, 1]), got {bad}")
    positive = sorted({s for s in values if s > 0})
    if not positive:
        raise ValueError(f"need at least one σ > 0 to measure a noise slope, got {values}")
    return [0.0, *positive]


def _study_model(
    spec: str,
    *,
    data: str,
    split: str,
    n: int | None,
    data_dir: Any,
    pretrained: bool,
    device: Any,
    levels: list[float],
    noise_at: str,
    seed: int,
    batch_size: int,
    store: Any,
    run_id: str,
    callback: Callable[[dict[str, Any]], None] | None,
) -> tuple[list[float], int]:
    """One model's accuracy per σ (``levels``) and its architecture attributes, written to ``store`` under
    ``run_id``; returns the accuracies and the number of new cells."""
    from robustlab.data import head, load_dataset
    from robustlab.engine import evaluate
    from robustlab.engine.loading import load_model_and_data
    from robustlab.study.attributes import classifier_attributes, stored_attributes

    clf, dataset = load_model_and_data(
        spec, data, split=split, n=n, data_dir=data_dir, pretrained=pretrained, device=device
    )
    # the architecture goes into the store beside the accuracies, so the report and the analysis read it there
    # instead of building the model again
    store.add_attributes(spec, stored_attributes(classifier_attributes(spec, clf)), run_id=run_id)
    if noise_at == "pixels":
        from robustlab.metrics.noise_study import native_input_attribute

        native = head(load_dataset(data, split=split, data_dir=data_dir), n)
        resized = _needs_resize(native, dataset)
        # without a resize the engine's noise below lands on the native pixels: say so, so the analysis labels the
        # sweep "pixels" (what was asked and done) rather than by the engine condition's name
        store.add_attributes(spec, {native_input_attribute(native.name): not resized}, run_id=run_id)
        if resized:
            by_sigma, new = _pixel_noise_sweep(clf, native, spec, levels, store=store, run_id=run_id, seed=seed,
                                               batch_size=batch_size, device=device, callback=callback)  # fmt: skip
            return [by_sigma[s] for s in levels], new
    # the model sees the native pixels unchanged (or noise_at="input"): the engine's noise condition
    suite = "clean,noise:sigmas=" + "+".join(repr(s) for s in levels[1:])
    cells = evaluate(clf, dataset, suite, store=store, run_id=run_id, model_name=spec, seed=seed,
                     batch_size=batch_size, device=device, callback=callback)  # fmt: skip
    by_sigma = {}
    for c in cells:
        if c.key.metric == "accuracy":
            sigma = 0.0 if c.key.perturbation == "clean" else float(json.loads(c.key.params_json)["sigma"])
            by_sigma[sigma] = c.value
    return [by_sigma[s] for s in levels], sum(not c.resumed for c in cells)


def _ray_study_model(
    spec: str, prior: list[Any], kwargs: dict[str, Any]
) -> tuple[list[float], list[Any], dict[str, Any]]:
    """A Ray task: study one model against a private scratch store seeded with the cells already done, and hand
    the new cells and the model's attributes back; only the driver writes the user's store."""
    import tempfile
    from pathlib import Path

    from robustlab.store import Store

    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "task.db") as scratch:
        with scratch.run("prior cells") as prior_run:
            scratch.add(prior_run, prior)
        with scratch.run(f"study {spec}") as run_id:
            accuracy, _ = _study_model(spec, store=scratch, run_id=run_id, callback=None, **kwargs)
        cells = scratch.cells(run_id=run_id)
        attributes = scratch.attributes(model=spec).get(spec, {})
    return accuracy, cells, attributes


def _run_on_ray(
    models: Sequence[str],
    kwargs: dict[str, Any],
    *,
    store: Any,
    run_id: str,
    address: str | None,
    retries: int,
    callback: Callable[[dict[str, Any]], None] | None,
    result: NoiseStudy,
) -> None:
    try:
        import ray
    except ImportError:
        raise ImportError('the Ray backend needs ray: pip install "robustlab[ray]"') from None

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        task = ray.remote(max_retries=retries, retry_exceptions=True)(_ray_study_model)
        pending = {}
        for spec in models:
            pending[task.remote(spec, store.cells(model=spec), kwargs)] = spec
        finished = 0
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            spec = pending.pop(ready[0])
            finished += 1
            try:
                accuracy, cells, attributes = ray.get(ready[0])
            except Exception as exc:  # noqa: BLE001 - reported per model, the others still land
                result.failed[spec] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1]}"
            else:
                result.accuracy[spec] = accuracy
                result.new_cells += store.add(run_id, cells)
                store.add_attributes(spec, attributes, run_id=run_id)
            if callback is not None:
                callback({"kind": "model", "done": finished, "total": len(models), "description": spec})
    finally:
        if started_here:
            ray.shutdown()


def noise_study(
    models: Sequence[str],
    data: str,
    sigmas: str | Sequence[float],
    *,
    store: Any,
    n: int | None = None,
    split: str = "test",
    data_dir: Any = None,
    noise_at: str = "pixels",
    seed: int = 0,
    batch_size: int = 128,
    device: Any = None,
    pretrained: bool = True,
    backend: str = "local",
    ray_address: str | None = None,
    retries: int = 1,
    callback: Callable[[dict[str, Any]], None] | None = None,
    command: str | None = None,
) -> NoiseStudy:
    """Evaluate clean accuracy and accuracy under additive Gaussian noise for each model; store every cell.

    Args:
        models: robustlab model specs (``cifar:resnet20``, ``timm:resnet50``, ...).
        data: dataset name or path (``load_dataset``).
        sigmas: σ levels; 0 (clean) is always included.
        store: an open :class:`robustlab.store.Store`; finished cells are skipped (resume).
        n: only the first ``n`` samples.
        noise_at: ``"pixels"`` (default, as the theory assumes) adds noise to the native pixels before the model's
            resize and crop (:class:`PixelNoiseDataset`, stored as ``gaussian_noise_pixels`` with σ = 0 as the
            clean level); where the model takes the native size unchanged this is the engine's noise condition.
            ``"input"`` adds it after the resize (the engine's ``noise`` suite).
        backend: ``"local"`` (in-process, one model after another) or ``"ray"``: one task per model on a Ray
            cluster (``ray_address``, or a local instance), retried ``retries`` times; only this process writes
            the store. Models whose task still fails are listed in ``NoiseStudy.failed`` and raise at the end.
        callback: engine events plus ``{"kind": "model", "done", "total", "description"}``.
        command: the command line recorded with the run (``robustlab results --runs``); the CLI passes the one
            typed. By default the equivalent ``robustlab study noise`` command, every argument that changes the
            cells included (the store's path is not known here, so ``--db`` is not).

    Raises:
        ValueError: bad σ, unknown ``noise_at`` or backend, an empty model list, unknown models.
        RuntimeError: Ray tasks that failed after their retries (the other models' cells are stored first).
    """
    levels = parse_sigmas(sigmas)
    if noise_at not in ("input", "pixels"):
        raise ValueError(f"noise_at must be 'pixels' or 'input', got {noise_at!r}")
    if backend not in ("local", "ray"):
        raise ValueError(f"backend must be 'local' or 'ray', got {backend!r}")
    if not models:
        raise ValueError("no models given; pass e.g. 'cifar:resnet20,cifar:resnet32'")
    result = NoiseStudy(sigmas=levels)
    config = {"models": list(models), "data": data, "sigmas": levels, "n": n, "noise_at": noise_at, "seed": seed,
              "backend": backend}  # fmt: skip
    kwargs = {"data": data, "split": split, "n": n, "data_dir": data_dir, "pretrained": pretrained, "device": device,
              "levels": levels, "noise_at": noise_at, "seed": seed, "batch_size": batch_size}  # fmt: skip
    if command is None:
        command = _equivalent_command(models, data, levels, n=n, noise_at=noise_at, seed=seed,
                                      data_dir=data_dir, pretrained=pretrained, backend=backend)  # fmt: skip
    with store.run(command, config) as run_id:
        if backend == "ray":
            _run_on_ray(models, kwargs, store=store, run_id=run_id, address=ray_address, retries=retries,
                        callback=callback, result=result)  # fmt: skip
        else:
            for i, spec in enumerate(models, 1):
                result.accuracy[spec], new = _study_model(spec, store=store, run_id=run_id, callback=callback,
                                                          **kwargs)  # fmt: skip
                result.new_cells += new
                if callback is not None:
                    callback({"kind": "model", "done": i, "total": len(models), "description": spec})
    result.accuracy = {m: result.accuracy[m] for m in models if m in result.accuracy}  # the order asked for
    result.slope = {m: robustness_slope(levels, acc) for m, acc in result.accuracy.items()}
    if len(result.accuracy) > 1:
        clean = {m: acc[0] for m, acc in result.accuracy.items()}
        for j, s in enumerate(levels[1:], 1):
            result.rank_difference[s] = rank_difference(clean, {m: acc[j] for m, acc in result.accuracy.items()})
    if result.failed:
        details = "; ".join(f"{m}: {why}" for m, why in result.failed.items())
        raise StudyFailed(result, f"{len(result.failed)} of {len(models)} models failed after retries: {details}")
    return result


def _equivalent_command(
    models: Sequence[str],
    data: str,
    levels: list[float],
    *,
    n: int | None,
    noise_at: str,
    seed: int,
    data_dir: Any,
    pretrained: bool,
    backend: str,
) -> str:
    """The ``robustlab study noise`` command that measures these cells again (for runs started from Python)."""
    import shlex

    words = ["robustlab", "study", "noise", "--models", ",".join(models), "--data", str(data),
             "--sigmas", ",".join(f"{s:g}" for s in levels), "--noise-at", noise_at, "--seed", str(seed)]  # fmt: skip
    if n is not None:
        words += ["--n", str(n)]
    if data_dir is not None:
        words += ["--data-dir", str(data_dir)]
    if not pretrained:
        words.append("--random-init")
    if backend != "local":
        words += ["--backend", backend]
    return " ".join(shlex.quote(w) for w in words)


class StudyFailed(RuntimeError):
    """Some models' tasks failed; ``.study`` holds the models that finished (their cells are stored)."""

    def __init__(self, study: NoiseStudy, message: str) -> None:
        super().__init__(message)
        self.study = study
