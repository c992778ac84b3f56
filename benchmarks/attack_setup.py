"""What the attack benchmarks share: their command line and the exact CIFAR-10 test images of a published model."""

from __future__ import annotations

import argparse
import os
import time

import torch

import robustlab  # noqa: F401  (torchvision workaround before torchattacks imports it)
from robustlab.data import load_dataset
from robustlab.models import Classifier, create_model


def parser(doc: str, eps: str = "2,8") -> argparse.ArgumentParser:
    """``--model``, ``--n``, ``--eps`` (L-inf radii in 1/255 units) and ``--data-dir``, described by ``doc``."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--model", default="cifar:resnet4b")
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--eps", default=eps, help="comma list of L-inf radii in 1/255 units")
    p.add_argument("--data-dir", default=os.environ.get("ROBUSTLAB_DATA"))
    return p


def load(args: argparse.Namespace) -> tuple[Classifier, torch.Tensor, torch.Tensor, list[int]]:
    """``(model, images, labels, indices)``: the first ``--n`` exact images, as one contiguous batch (torchattacks'
    FAB cannot take a strided one)."""
    if not args.data_dir:
        raise SystemExit("set ROBUSTLAB_DATA or pass --data-dir (the shared data folder)")
    model = create_model(args.model, data_dir=args.data_dir)
    data = load_dataset("cifar10_exact", data_dir=args.data_dir)
    index = list(range(min(args.n, len(data))))
    x, y = data.get_batch(index)
    return model, x.contiguous(), y, index


def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in %."""
    with torch.no_grad():
        return 100 * float((model(images).argmax(1) == labels).float().mean())


def radii(args: argparse.Namespace) -> list[float]:
    """``--eps`` as ``[e, ...]`` in 1/255 units."""
    return [float(v) for v in args.eps.split(",") if v]


def timed(attack, *args, **kwargs) -> tuple[torch.Tensor, float]:
    """``(attack(*args, **kwargs), wall seconds)``."""
    t0 = time.perf_counter()
    out = attack(*args, **kwargs)
    return out, time.perf_counter() - t0
