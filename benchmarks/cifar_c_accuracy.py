"""cifar:resnet56 on CIFAR-10 corrupted on the fly by robustlab (cifar profile), beside published CIFAR-10-C numbers.

The published column is RobustBench's "Standard" model (WideResNet-28-10, standard training, 94.78 % clean) on the
released CIFAR-10-C files — the closest standard-trained ResNet with per-corruption numbers in public code. Our model
is smaller (ResNet-56, 93.4 % clean), so expect the same pattern (noise and glass blur worst; brightness, fog, contrast
mildest) rather than equal numbers. By default the 932 bit-exact CIFAR-10 test images are used, because the full
10,000-image set in shared/data is JPEG-q75 re-encoded (see shared/data/README.md); pass --data cifar10 for it.

    python benchmarks/cifar_c_accuracy.py --data-dir ../shared/data [--data cifar10_exact] [--model cifar:resnet56]
"""

from __future__ import annotations

import argparse
import os

import torch

import robustlab  # noqa: F401
from robustlab import rng
from robustlab.data import load_dataset
from robustlab.engine.accuracy import evaluate_accuracy
from robustlab.models import create_model
from robustlab.perturb import PERTURBATIONS, TEST_CORRUPTIONS, perturb

# RobustBench model_info/cifar10/corruptions/unaggregated_results.csv, row "Standard" (WRN-28-10), accuracy at
# severities 1..5 on the released CIFAR-10-C.
ROBUSTBENCH_STANDARD_WRN28 = {
    "gaussian_noise": (0.7778, 0.5788, 0.3919, 0.3261, 0.2767),
    "shot_noise": (0.8504, 0.7573, 0.5349, 0.4535, 0.3429),
    "impulse_noise": (0.8289, 0.6905, 0.5737, 0.4011, 0.2708),
    "defocus_blur": (0.9458, 0.9338, 0.8898, 0.7744, 0.5306),
    "glass_blur": (0.5343, 0.5575, 0.5695, 0.4319, 0.4568),
    "motion_blur": (0.9029, 0.8385, 0.7440, 0.7483, 0.6525),
    "zoom_blur": (0.8771, 0.8455, 0.7748, 0.7029, 0.5798),
    "snow": (0.8991, 0.8043, 0.8365, 0.8051, 0.7493),
    "frost": (0.8955, 0.8350, 0.7261, 0.7086, 0.5870),
    "fog": (0.9451, 0.9356, 0.9229, 0.8959, 0.7399),
    "brightness": (0.9475, 0.9438, 0.9378, 0.9281, 0.9070),
    "contrast": (0.9427, 0.9216, 0.8972, 0.8359, 0.5331),
    "elastic_transform": (0.9047, 0.9022, 0.8586, 0.7894, 0.7341),
    "pixelate": (0.9195, 0.8604, 0.8002, 0.6035, 0.4155),
    "jpeg_compression": (0.8636, 0.7965, 0.7796, 0.7415, 0.6970),
}
ROBUSTBENCH_STANDARD_CLEAN = 0.9478


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("ROBUSTLAB_DATA"))
    parser.add_argument("--data", default="cifar10_exact")
    parser.add_argument("--model", default="cifar:resnet56")
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    data = load_dataset(args.data, data_dir=args.data_dir)
    if args.n:
        from robustlab.data import Subset

        data = Subset(data, range(min(args.n, len(data))))
    model = create_model(args.model, data_dir=args.data_dir, device=args.device)
    correct, count = evaluate_accuracy(model, data, device=args.device)
    print(
        f"{args.model} on {data.name} ({count} images), clean accuracy {100 * correct / count:.2f} % "
        f"(RobustBench Standard WRN-28-10 clean: {100 * ROBUSTBENCH_STANDARD_CLEAN:.2f} %)"
    )
    print(
        f"{'corruption':<18} " + " ".join(f"{'s' + str(s):>6}" for s in range(1, 6)) + f" {'mean':>7} {'published':>10}"
    )
    means, published = [], []
    for name in TEST_CORRUPTIONS:
        if name not in PERTURBATIONS:
            print(f"{name:<18} (not registered)")
            continue
        accs = []
        for severity in range(1, 6):

            def corrupt(images: torch.Tensor, indices: torch.Tensor, name: str = name, s: int = severity):
                gens = rng.sample_generators(args.seed, indices, name, s)
                return perturb(images, name, s, generator=gens, profile="cifar")

            c, n = evaluate_accuracy(model, data, device=args.device, perturb=corrupt)
            accs.append(c / n)
        mean = sum(accs) / 5
        ref = sum(ROBUSTBENCH_STANDARD_WRN28[name]) / 5
        means.append(mean)
        published.append(ref)
        print(
            f"{name:<18} " + " ".join(f"{100 * a:6.1f}" for a in accs) + f" {100 * mean:7.1f} {100 * ref:10.1f}",
            flush=True,
        )
    if means:
        print(
            f"{'mean (corruption acc.)':<18} {'':>34} {100 * sum(means) / len(means):7.1f} "
            f"{100 * sum(published) / len(published):10.1f}"
        )


if __name__ == "__main__":
    main()
