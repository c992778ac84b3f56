"""Gaussian-noise sweeps over many models (seed 004): accuracy per σ, robustness slope, rank difference.

Every cell goes through :func:`robustlab.engine.evaluate` and the results store, so a re-run resumes and adds
nothing. Backend: in-process only (Ray is not implemented yet).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from robustlab.metrics import rank_difference, robustness_slope


@dataclass
class NoiseStudy:
    """Result of :func:`noise_study`.

    Args:
        sigmas: the noise levels (pixel-space σ), 0 first when clean is included.
        accuracy: model -> accuracy per σ (same order as ``sigmas``).
        slope: model -> least-squares slope of accuracy against σ.
        rank_difference: sigma -> model -> clean rank minus noisy rank (positive: moved up under noise).
        new_cells: cells computed in this call (0 when everything was resumed from the store).
    """

    sigmas: list[float]
    accuracy: dict[str, list[float]] = field(default_factory=dict)
    slope: dict[str, float] = field(default_factory=dict)
    rank_difference: dict[float, dict[str, int]] = field(default_factory=dict)
    new_cells: int = 0


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


def noise_study(
    models: Sequence[str],
    data: str,
    sigmas: str | Sequence[float],
    *,
    store: Any,
    n: int | None = None,
    split: str = "test",
    data_dir: Any = None,
    noise_at: str = "input",
    seed: int = 0,
    batch_size: int = 128,
    device: Any = None,
    pretrained: bool = True,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> NoiseStudy:
    """Evaluate clean accuracy and accuracy under additive Gaussian noise for each model; store every cell.

    Args:
        models: robustlab model specs (``cifar:resnet20``, ``timm:resnet50``, ...).
        data: dataset name or path (``load_dataset``).
        sigmas: σ levels; 0 (clean) is always included.
        store: an open :class:`robustlab.store.Store`; finished cells are skipped (resume).
        n: only the first ``n`` samples.
        noise_at: ``"input"`` adds noise after the model's resize/crop. ``"pixels"`` (noise on native pixels
            before the resize) is accepted only where the preprocessing keeps the image size, where both coincide.
        callback: engine events plus ``{"kind": "model", "done", "total", "description"}``.

    Raises:
        ValueError: bad σ, unknown ``noise_at``, an empty model list, unknown models (from ``create_model``).
        NotImplementedError: ``noise_at="pixels"`` with a model that resizes the data.
    """
    from robustlab.engine import evaluate
    from robustlab.engine.loading import load_model_and_data

    levels = parse_sigmas(sigmas)
    if noise_at not in ("input", "pixels"):
        raise ValueError(f"noise_at must be 'input' or 'pixels', got {noise_at!r}")
    if not models:
        raise ValueError("no models given; pass e.g. 'cifar:resnet20,cifar:resnet32'")
    suite = "clean,noise:sigmas=" + "+".join(repr(s) for s in levels[1:])
    result = NoiseStudy(sigmas=levels)
    config = {"models": list(models), "data": data, "sigmas": levels, "n": n, "noise_at": noise_at, "seed": seed}
    with store.run(f"robustlab study noise --models {','.join(models)} --data {data}", config) as run_id:
        for i, spec in enumerate(models, 1):
            clf, dataset = load_model_and_data(
                spec, data, split=split, n=n, data_dir=data_dir, pretrained=pretrained, device=device
            )
            if noise_at == "pixels":
                from robustlab.data import load_dataset

                native = load_dataset(data, split=split, data_dir=data_dir).get_batch([0])[0].shape
                if tuple(native) != tuple(dataset.get_batch([0])[0].shape):
                    raise NotImplementedError(
                        f"noise_at='pixels' before a resize ({tuple(native[-2:])} -> model input "
                        f"{tuple(dataset.get_batch([0])[0].shape[-2:])}) is not implemented yet; use noise_at='input'"
                    )
            cells = evaluate(clf, dataset, suite, store=store, run_id=run_id, model_name=spec, seed=seed,
                             batch_size=batch_size, device=device, callback=callback)  # fmt: skip
            result.new_cells += sum(not c.resumed for c in cells)
            by_sigma = {0.0: None}
            for c in cells:
                if c.key.metric != "accuracy":
                    continue
                sigma = 0.0 if c.key.perturbation == "clean" else float(json.loads(c.key.params_json)["sigma"])
                by_sigma[sigma] = c.value
            result.accuracy[spec] = [by_sigma[s] for s in levels]
            result.slope[spec] = robustness_slope(levels, result.accuracy[spec])
            if callback is not None:
                callback({"kind": "model", "done": i, "total": len(models), "description": spec})
    if len(models) > 1:
        clean = {m: acc[0] for m, acc in result.accuracy.items()}
        for j, s in enumerate(levels[1:], 1):
            result.rank_difference[s] = rank_difference(clean, {m: acc[j] for m, acc in result.accuracy.items()})
    return result
