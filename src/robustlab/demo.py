"""The main job on a fresh machine: train (or load) a model, measure it clean, under the 15 common corruptions and
under noise, store every number, and write the report.

Offline and with no data it trains ``cifar:small_cnn`` on scikit-learn's bundled digits; with ``ROBUSTLAB_DATA``
(or ``data_dir``) holding CIFAR-10 it evaluates the pretrained ``cifar:resnet20`` on the CIFAR-10 test set
instead. Every number goes through the results store, and the report is built from the store alone.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from robustlab.data import head, load_dataset
from robustlab.engine import evaluate, summarize
from robustlab.models import create_model, save_checkpoint
from robustlab.report import write_report
from robustlab.store import Store
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
    summary: dict[str, float] = field(default_factory=dict)
    """Headline numbers (clean accuracy, mean corruption error, noise slope) from :func:`robustlab.engine.summarize`."""
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
    log.warning("ROBUSTLAB_DATA=%s has no CIFAR-10 test set and ResNet-20 weights; using the embedded digits", root)
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
        n: evaluate only the first ``n`` test images (default: 1,000 for CIFAR-10, all 360 digits).
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
        n = 1000 if n is None else n
    else:
        mode, spec, sigmas = "digits", "cifar:small_cnn", DIGITS_SIGMAS
        train = load_dataset("digits", split="train")
        test = load_dataset("digits", split="test")
        model = create_model(spec, pretrained=False, class_names=train.class_names, device=device, seed=seed)
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
    # a subset is a different dataset ("name[:n]"): its cells must not be mistaken for the full set's
    test = head(test, n)

    suite = "clean,corruptions,noise:sigmas=" + "+".join(f"{v:g}" for v in sigmas)
    config = {"mode": mode, "model": spec, "dataset": test.name, "n": len(test), "suite": suite, "seed": seed,
              "dataset_info": test.info}  # fmt: skip
    with Store(db) as store, store.run("robustlab demo", config, device=str(device)) as run_id:
        cells = evaluate(
            model, test, suite, store=store, run_id=run_id, model_name=spec, seed=seed, batch_size=256,
            device=device, profile="cifar", callback=callback,
        )  # fmt: skip
    accs = {float(json.loads(c.key.params_json).get("sigma", 0.0)): c.value for c in cells
            if c.key.perturbation in ("clean", "gaussian_noise_sigma")}  # fmt: skip
    summary = summarize(cells)
    new = sum(not c.resumed for c in cells)
    emit({"kind": "stage", "description": "writing report"})
    report = write_report(Path(db), Path(out), title=f"robustlab demo — {spec} on {test.name}")
    return DemoResult(
        mode=mode, model=spec, dataset=test.name, clean_accuracy=accs[0.0],
        noise_accuracy={s: accs[s] for s in sigmas}, summary=summary, db=Path(db), report=report, checkpoint=ckpt,
        new_rows=new, seconds=time.monotonic() - started,
    )  # fmt: skip
