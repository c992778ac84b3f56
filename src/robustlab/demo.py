"""The main job on a fresh machine: train (or load) a model, measure it clean and under noise, store, report.

Offline and with no data it trains ``cifar:small_cnn`` on scikit-learn's bundled digits; with ``ROBUSTLAB_DATA``
(or ``data_dir``) holding CIFAR-10 it evaluates the pretrained ``cifar:resnet20`` on the CIFAR-10 test set
instead. Every number goes through the results store, and the report is built from the store alone.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from robustlab import rng
from robustlab.data import Subset, load_dataset
from robustlab.engine.accuracy import evaluate_accuracy
from robustlab.models import create_model, save_checkpoint
from robustlab.perturb import additive_gaussian_noise
from robustlab.report import write_report
from robustlab.store import Cell, ResultKey, Store
from robustlab.train import fit

log = logging.getLogger(__name__)

Callback = Callable[[dict[str, Any]], None]

# pixel-space σ levels; digits are high-contrast strokes and tolerate far more noise than CIFAR photos
DIGITS_SIGMAS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
CIFAR_SIGMAS = (0.02, 0.04, 0.06, 0.08, 0.1, 0.15)


@dataclass
class DemoResult:
    """What the demo did and where it put things."""

    mode: str
    """``"digits"`` (offline, trained here) or ``"cifar10"`` (pretrained ResNet-20)."""
    model: str
    dataset: str
    clean_accuracy: float
    noise_accuracy: dict[float, float] = field(default_factory=dict)
    """Accuracy at each pixel-space noise σ."""
    db: Path = Path("robustlab.db")
    report: Path = Path("robustlab-report.html")
    checkpoint: Path | None = None
    new_rows: int = 0
    seconds: float = 0.0


def _cifar_available(data_dir: str | os.PathLike[str] | None) -> Path | None:
    root = data_dir or os.environ.get("ROBUSTLAB_DATA")
    if not root:
        return None
    root = Path(root)
    if (root / "cifar10" / "cifar10_test.npz").is_file() and any(
        (root / "weights" / "akamaster_resnet_cifar10").glob("resnet20-*.th")
    ):
        return root
    log.warning(
        "ROBUSTLAB_DATA=%s has no CIFAR-10 test set and ResNet-20 weights; using the embedded digits", root
    )
    return None


def run_demo(
    *,
    db: str | os.PathLike[str] = "robustlab.db",
    out: str | os.PathLike[str] = "robustlab-report.html",
    workdir: str | os.PathLike[str] = "runs/demo",
    data_dir: str | os.PathLike[str] | None = None,
    n: int | None = None,
    max_seconds: float = 150.0,
    seed: int = 0,
    device: str | torch.device | None = None,
    callback: Callback | None = None,
) -> DemoResult:
    """Run the demo end to end.

    Args:
        db: results store; re-running skips cells already measured.
        out: the HTML report to write.
        workdir: where the digits model's checkpoint is kept (training resumes from it).
        data_dir: shared data folder; defaults to ``$ROBUSTLAB_DATA``. Without CIFAR-10 there, digits are used.
        n: evaluate only the first ``n`` test images (default: 2,000 for CIFAR-10, all 360 digits).
        max_seconds: training time budget for the digits model.
        seed: seed of training and of the noise generators.
        device: None picks CUDA when available.
        callback: progress events: ``{"kind": "stage", "description"}``, then the trainer's and evaluator's events.

    Returns:
        A :class:`DemoResult`.
    """
    started = time.monotonic()
    emit = callback or (lambda event: None)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    root = _cifar_available(data_dir)
    ckpt: Path | None = None
    if root is not None:
        mode, spec, sigmas = "cifar10", "cifar:resnet20", CIFAR_SIGMAS
        test = load_dataset("cifar10", data_dir=root)
        model = create_model(spec, data_dir=root, device=device)
        n = 2000 if n is None else n
    else:
        mode, spec, sigmas = "digits", "cifar:small_cnn", DIGITS_SIGMAS
        train = load_dataset("digits", split="train")
        test = load_dataset("digits", split="test")
        model = create_model(spec, pretrained=False, class_names=train.class_names, device=device)
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        emit({"kind": "stage", "description": "training cifar:small_cnn on digits"})
        result = fit(
            model, train, val_data=test, epochs=12, lr=0.05, batch_size=64, warmup_epochs=1, augment=None,
            checkpoint=workdir / "train_state.pt", resume=(workdir / "train_state.pt").is_file(), seed=seed,
            device=device, callback=callback, max_time=max_seconds,
        )  # fmt: skip
        log.info("trained %d epochs, %d steps", result.epochs, result.steps)
        ckpt = workdir / "small_cnn_digits.safetensors"
        save_checkpoint(model, ckpt)
        # the stored name of the model is the checkpoint, so the numbers say which weights made them
        spec = f"file:{ckpt}"
    if n is not None and n < len(test):
        test = Subset(test, range(n))
        # a subset is a different dataset: its cells must not be mistaken for the full set's
        test.name = f"{test.name}[:{n}]"

    config = {
        "mode": mode,
        "model": spec,
        "dataset": test.name,
        "n": len(test),
        "sigmas": list(sigmas),
        "seed": seed,
        "dataset_info": test.info,
    }
    accs: dict[float, float] = {}
    new = 0
    with Store(db) as store, store.run("robustlab demo", config, device=str(device)) as run_id:
        done = store.done_keys(model=spec, dataset=test.name)
        for severity, sigma in enumerate((0.0, *sigmas)):
            key = ResultKey.create(
                spec, test.name, "accuracy", split=test.split,
                perturbation="clean" if sigma == 0 else "gaussian_noise_sigma", severity=severity,
                params={} if sigma == 0 else {"sigma": sigma}, seed=0 if sigma == 0 else seed,
            )  # fmt: skip
            if key in done:
                row = store.results(model=spec, dataset=test.name, perturbation=key.perturbation)
                accs[sigma] = float(row[row["severity"] == severity]["value"].iloc[0])
                continue
            emit({"kind": "stage", "description": f"evaluating σ={sigma:g}" if sigma else "evaluating clean"})

            def perturb(images: torch.Tensor, indices: torch.Tensor, sigma: float = sigma) -> torch.Tensor:
                gens = rng.sample_generators(seed, indices, "gaussian_noise_sigma", sigma)
                return additive_gaussian_noise(images, sigma, generator=gens)

            correct, count = evaluate_accuracy(
                model,
                test,
                batch_size=256,
                device=device,
                perturb=perturb if sigma else None,
                callback=callback,
            )
            accs[sigma] = correct / count
            new += store.add(run_id, [Cell(key, correct / count, count)])
    emit({"kind": "stage", "description": "writing report"})
    report = write_report(db, out, title=f"robustlab demo — {spec} on {test.name}")
    return DemoResult(
        mode=mode, model=spec, dataset=test.name, clean_accuracy=accs[0.0],
        noise_accuracy={s: accs[s] for s in sigmas}, db=Path(db), report=report, checkpoint=ckpt, new_rows=new,
        seconds=time.monotonic() - started,
    )  # fmt: skip
