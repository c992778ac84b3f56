"""Fidelity of robustlab's corruptions against the `imagecorruptions` reference on ImageNet-sample crops.

Deterministic corruptions: mean absolute pixel difference to the reference (target <= 2/255 at every severity).
Random corruptions: mean PSNR to the clean image, ours vs the reference's (target: gap <= 0.5 dB per severity).
With ``--accuracy``: efficientnet_lite0 top-1 on the sample corrupted by each side (target: within 2 points).
Where robustlab follows the original benchmark code rather than the package (elastic_transform, frost's texture
scale, pixelate's upsampling, parameters at non-224 sizes) the gap reported here is the package's departure,
documented in the corruption's docstring; for frost a second row compares with the original recipe itself.

    python benchmarks/fidelity_corruptions.py --data-dir ../shared/data [--n 64] [--accuracy --acc-n 1000]
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch

import robustlab  # noqa: F401
from robustlab import rng
from robustlab.perturb import ALL_CORRUPTIONS, PERTURBATIONS, perturb

DETERMINISTIC = ("brightness", "contrast", "saturate", "defocus_blur", "gaussian_blur", "pixelate",
                 "jpeg_compression", "zoom_blur")  # fmt: skip


def _psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    mse = ((a.astype(np.float64) - b.astype(np.float64)) / 255.0) ** 2
    mse = mse.reshape(len(a), -1).mean(axis=1)
    return 10 * np.log10(1.0 / np.maximum(mse, 1e-12))


def _ours(images: np.ndarray, name: str, severity: int, batch: int = 32) -> np.ndarray:
    name = "frost" if name == ORIGINAL_FROST else name
    outs = []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(images[i : i + batch]).permute(0, 3, 1, 2).float().div(255)
        gens = rng.sample_generators(0, range(i, i + len(x)), name, severity)
        y = perturb(x, name, severity, generator=gens, profile="imagenet")
        # the released benchmark files are uint8: truncate as the original's np.uint8 does
        outs.append((y.clamp(0, 1) * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy())
    return np.concatenate(outs)


def _reference(images: np.ndarray, name: str, severity: int) -> np.ndarray:
    from imagecorruptions_ref import original_frost, reference_corrupt

    if name == ORIGINAL_FROST:
        return np.stack([original_frost(im, severity, seed=i) for i, im in enumerate(images)])
    return np.stack([reference_corrupt(im, name, severity, seed=i) for i, im in enumerate(images)])


# frost against the original recipe (no 1.1x texture enlargement), beside the package's row
ORIGINAL_FROST = "frost (original)"


def _expand(names: list[str]) -> list[str]:
    return [m for name in names for m in ((name, ORIGINAL_FROST) if name == "frost" else (name,))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("ROBUSTLAB_DATA"), required=False)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--corruptions", default="all")
    parser.add_argument("--accuracy", action="store_true")
    parser.add_argument("--acc-n", type=int, default=1000)
    parser.add_argument("--acc-severity", type=int, default=3)
    parser.add_argument("--accuracy-only", action="store_true", help="skip the pixel / PSNR comparison")
    args = parser.parse_args()
    if not args.data_dir:
        parser.error("--data-dir (or ROBUSTLAB_DATA) must point at the shared data folder")
    from imagecorruptions_ref import imagenet_crops

    names = _expand(list(ALL_CORRUPTIONS) if args.corruptions == "all" else args.corruptions.split(","))
    if args.accuracy_only:
        _accuracy(args, names)
        return
    images = imagenet_crops(args.data_dir, n=args.n)
    print(f"{len(images)} ImageNet-sample crops (224 px)")
    print(f"{'corruption':<18} {'measure':<16} " + " ".join(f"{'s' + str(s):>8}" for s in range(1, 6)))
    for name in names:
        if name not in PERTURBATIONS and name != ORIGINAL_FROST:
            print(f"{name:<18} (not registered)")
            continue
        cells = []
        for severity in range(1, 6):
            ours, ref = _ours(images, name, severity), _reference(images, name, severity)
            if name in DETERMINISTIC:
                cells.append(np.abs(ours.astype(np.float64) - ref.astype(np.float64)).mean())
            else:
                cells.append(_psnr(ours, images).mean() - _psnr(ref, images).mean())
        measure = "mean |Δ| (/255)" if name in DETERMINISTIC else "PSNR gap (dB)"
        print(f"{name:<18} {measure:<16} " + " ".join(f"{c:8.3f}" for c in cells), flush=True)

    if args.accuracy:
        _accuracy(args, names)


def _accuracy(args: argparse.Namespace, names: list[str]) -> None:
    from imagecorruptions_ref import imagenet_crops

    from robustlab.models import create_model

    model = create_model("efficientnet_lite0")
    images, labels = imagenet_crops(args.data_dir, n=args.acc_n, with_labels=True)

    def top1(batch_u8: np.ndarray) -> float:
        correct = 0
        with torch.inference_mode():
            for i in range(0, len(batch_u8), 50):
                x = torch.from_numpy(batch_u8[i : i + 50]).permute(0, 3, 1, 2).float().div(255)
                correct += int((model(x).argmax(1) == torch.as_tensor(labels[i : i + 50])).sum())
        return correct / len(batch_u8)

    s = args.acc_severity
    print(f"\nefficientnet_lite0 top-1 on {len(images)} sample crops at severity {s}: clean {100 * top1(images):.1f} %")
    print(f"{'corruption':<18} {'robustlab':>10} {'reference':>10} {'gap':>7}")
    for name in names:
        if name not in PERTURBATIONS and name != ORIGINAL_FROST:
            continue
        ours, ref = top1(_ours(images, name, s)), top1(_reference(images, name, s))
        print(f"{name:<18} {100 * ours:9.1f}% {100 * ref:9.1f}% {100 * (ours - ref):+6.1f}", flush=True)


if __name__ == "__main__":
    main()
