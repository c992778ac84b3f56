"""Controlled test of seed 004's design rules: small CIFAR-10 CNNs that differ in exactly one attribute.

Variants of one network (stem conv k x k -> two conv stages -> global pooling -> linear), trained with the same
budget, data order and seed, then swept with Gaussian noise added to the native 32-px pixels *before* each model's
own resize (robustlab.study.PixelNoiseDataset), as the theory assumes:

- stem kernel 3 / 5 / 7 (rule: larger stem kernels are more robust),
- global average vs max pooling (rule: average pooling),
- input resolution 24 / 32 / 48, the same network on resized images (rule: smaller resolution),
- normalisation std 0.5 vs CLIP's (0.2686, 0.2613, 0.2758) (rule: CLIP's smaller std amplifies noise).

Each rule is judged on the variants that differ only in its attribute, by the accuracy drop from clean to the
largest σ (smaller drop = more robust) and the least-squares slope. Every cell goes to the results store.

    python controlled.py --db controlled.db [--n-train 20000] [--epochs 6] [--seeds 0]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn

from robustlab.data import ArrayDataset, load_dataset
from robustlab.data.preprocess import Preprocess
from robustlab.engine import evaluate_accuracy
from robustlab.metrics import robustness_slope
from robustlab.models.classifier import Classifier
from robustlab.store import Store
from robustlab.study.noise import PIXEL_NOISE, PixelNoiseDataset
from robustlab.train import fit, random_crop_flip

CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
BASE = {"kernel": 3, "pool": "avg", "size": 32, "std": "0.5"}
VARIANTS = {
    "k3-avg-r32-std0.5": BASE,
    "k5": {**BASE, "kernel": 5},
    "k7": {**BASE, "kernel": 7},
    "maxpool": {**BASE, "pool": "max"},
    "r24": {**BASE, "size": 24},
    "r48": {**BASE, "size": 48},
    "clipstd": {**BASE, "std": "clip"},
}
# rule -> (variants compared, the one the rule predicts to be the most robust)
RULES = {
    "larger stem kernel": (["k3-avg-r32-std0.5", "k5", "k7"], "k7"),
    "average pooling over max pooling": (["k3-avg-r32-std0.5", "maxpool"], "k3-avg-r32-std0.5"),
    "smaller input resolution": (["r24", "k3-avg-r32-std0.5", "r48"], "r24"),
    "normalisation std 0.5 over CLIP's": (["k3-avg-r32-std0.5", "clipstd"], "k3-avg-r32-std0.5"),
}


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )  # fmt: skip


class ControlledCNN(nn.Module):
    """Stem k x k conv (3 -> 16) + conv 16 -> 16, stages 32 / 64 (stride 2), global avg or max pooling, linear."""

    def __init__(self, kernel: int, pool: str, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(16),
                                  nn.ReLU(inplace=True))  # fmt: skip
        self.features = nn.Sequential(
            nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
            _block(16, 32, 2), _block(32, 64, 2),
        )  # fmt: skip
        self.pool = pool
        self.fc = nn.Linear(64, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.stem(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        pooled = features.mean(dim=(2, 3)) if self.pool == "avg" else features.amax(dim=(2, 3))
        return self.fc(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def build(name: str, class_names: list[str]) -> Classifier:
    v = VARIANTS[name]
    mean, std = ((0.5,) * 3, (0.5,) * 3) if v["std"] == "0.5" else (CLIP_MEAN, CLIP_STD)
    return Classifier(ControlledCNN(v["kernel"], v["pool"], len(class_names)), mean=mean, std=std,
                      input_size=(3, v["size"], v["size"]), class_names=class_names, name=f"ctrl:{name}")  # fmt: skip


def resized(data: ArrayDataset, size: int) -> ArrayDataset:
    """The whole set resized once, in float with the same antialiased interpolate the noisy evaluation uses."""
    images, labels = data.get_batch(range(len(data)))
    pre = Preprocess(resize=size, crop=size, interpolation="bilinear")
    out = torch.cat([pre.apply_tensor(images[i : i + 2048]) for i in range(0, len(images), 2048)])
    return ArrayDataset(out, labels, class_names=data.class_names, name=f"{data.name}@{size}", split=data.split)


def plot(results: dict, path: Path) -> None:
    """Accuracy against σ per variant (mean over seeds, band = min..max), one panel per rule."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(RULES), figsize=(4 * len(RULES), 3.4), sharey=True)
    for ax, (rule, (names, _)) in zip(axes, RULES.items(), strict=True):
        for name in names:
            runs = [r for r in results.values() if r["variant"] == name]
            if not runs:
                continue
            acc = 100 * np.array([r["accuracy"] for r in runs])
            sigmas = runs[0]["sigmas"]
            ax.plot(sigmas, acc.mean(0), marker="o", ms=3, label=f"{name} (n={len(runs)})")
            ax.fill_between(sigmas, acc.min(0), acc.max(0), alpha=0.2)
        ax.set_title(rule, fontsize=9)
        ax.set_xlabel("σ (native pixels, before resize)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("top-1 accuracy (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", type=Path, default=Path("controlled.db"))
    parser.add_argument("--n-train", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--sigmas", default="0,0.04,0.08,0.12,0.16")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", type=Path, default=Path("controlled.json"))
    args = parser.parse_args()
    sigmas = [float(s) for s in args.sigmas.split(",")]
    full = load_dataset("cifar10", split="train")
    train = ArrayDataset(*full.get_batch(range(args.n_train)), class_names=full.class_names, name="cifar10[:n]",
                         split="train")  # fmt: skip
    test = load_dataset("cifar10_exact", split="test")
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    with Store(args.db) as store, store.run("controlled.py", vars(args) | {"db": str(args.db), "out": str(args.out)}) \
            as run_id:  # fmt: skip
        for seed in (int(s) for s in args.seeds.split(",")):
            for name in args.variants.split(","):
                key = f"{name}/seed{seed}"
                if key in results:
                    continue
                torch.manual_seed(seed)
                clf = build(name, train.class_names)
                size = VARIANTS[name]["size"]
                start = time.perf_counter()
                fit(clf, resized(train, size), epochs=args.epochs, lr=0.05, batch_size=128, weight_decay=5e-4,
                    warmup_epochs=0.5, augment=random_crop_flip, seed=seed, device="cpu")  # fmt: skip
                seconds = time.perf_counter() - start
                pre = Preprocess(resize=size, crop=size, interpolation="bilinear")
                acc = []
                for sigma in sigmas:
                    correct, count = evaluate_accuracy(clf, PixelNoiseDataset(test, pre, sigma, seed), batch_size=256)
                    acc.append(correct / count)
                    store.add_result(run_id, f"ctrl:{name}:seed{seed}", test.name, "accuracy", correct / count,
                                     n=count, perturbation=PIXEL_NOISE, params={"sigma": sigma,
                                     "resize": pre.describe()}, seed=seed)  # fmt: skip
                results[key] = {"variant": name, "seed": seed, **VARIANTS[name], "sigmas": sigmas, "accuracy": acc,
                                "slope": robustness_slope(sigmas, acc), "drop": acc[0] - acc[-1],
                                "train_seconds": seconds}  # fmt: skip
                args.out.write_text(json.dumps(results, indent=1))
                print(f"{key}: clean {100 * acc[0]:.2f} %, σ={sigmas[-1]} {100 * acc[-1]:.2f} %, "
                      f"drop {100 * (acc[0] - acc[-1]):.2f} pp, slope {results[key]['slope']:+.3f} ({seconds:.0f} s)",
                      flush=True)  # fmt: skip
    plot(results, args.out.with_suffix(".png"))
    for rule, (names, predicted) in RULES.items():
        drops = {}
        for n in names:
            runs = [r for r in results.values() if r["variant"] == n]
            if runs:
                drops[n] = sum(r["drop"] for r in runs) / len(runs)
        if len(drops) == len(names):
            best = min(drops, key=drops.get)
            verdict = "held" if best == predicted else "not held"
            shown = ", ".join(f"{n} {100 * d:.2f} pp" for n, d in drops.items())
            print(f"{rule}: {verdict} (mean drop to σ={sigmas[-1]}: {shown})")


if __name__ == "__main__":
    main()
