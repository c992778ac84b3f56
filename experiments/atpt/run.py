"""A-TPT (seed 003) against TPT, R-TPT and zero-shot CLIP, clean and under three attacks, plus A-TPT's ablations.

With real CLIP weights (the paper: ViT-B/16 OpenAI, 64 views, PGD eps 4/255 x 100 steps):

    nice -n 10 .venv/bin/python experiments/atpt/run.py --model openclip:ViT-B-16/openai \\
        --weights /path/to/ViT-B-16-openai.bin --data /path/to/oxford_pets/test --n 500 --out results_pets.json

Without weights (these machines) the same pipeline runs on random weights as a check and a timing, never as a
result: ``--random-init`` (any open_clip architecture) or ``--tiny`` (a two-block ViT registered here).

Each variant is a ``TTAConfig``; every variant sees the same images, the same per-sample views and the same attack
starts. Writes a JSON file with per-variant accuracies, mean fusion-weight entropies and seconds per image.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parents[1] / "src"))  # run from a checkout without installing

from robustlab.data import Subset, fit_to_model, load_dataset  # noqa: E402
from robustlab.methods.atpt import TestTimeTuner, tta_config  # noqa: E402
from robustlab.methods.atpt_attacks import TTAAttackConfig, evaluate_tta  # noqa: E402
from robustlab.models import create_model  # noqa: E402

# variant -> (method, overrides); the four methods, then A-TPT's ablations (paper section 4.4) and its code's fusion
VARIANTS: dict[str, tuple[str, dict]] = {
    "zeroshot": ("zeroshot", {}),
    "tpt": ("tpt", {}),
    "rtpt": ("rtpt", {}),
    "atpt": ("atpt", {}),
    "atpt_plain_gradient_rollout": ("atpt", {"attention": "gradient"}),
    "atpt_full_augmix": ("atpt", {"mixing": "full"}),
    "atpt_uniform_fusion": ("atpt", {"fusion": "uniform"}),
    "atpt_all_layers": ("atpt", {"attention": "token_gradient_all_layers"}),
    "atpt_rtpt_fusion": ("atpt", {"fusion": "rtpt"}),
}
TINY = "robustlab-experiment-tiny-clip"
TINY_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="openclip:ViT-B-16/openai")
    p.add_argument("--weights", type=Path, help="local open_clip checkpoint (offline)")
    p.add_argument("--random-init", action="store_true", help="random weights: a pipeline check, not a result")
    p.add_argument("--tiny", action="store_true", help="a two-block random ViT CLIP (fast pipeline check)")
    p.add_argument("--data", default="digits", help="dataset name or image-folder path (class names = folders)")
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--split-file", type=Path, help="CoOp/TPT split JSON; --data is then its image root")
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--views", type=int, default=64)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--attacks", default="pgd,adaptive", help="comma list of pgd, pgd_stale, adaptive (or none)")
    p.add_argument("--eps", type=float, default=4 / 255)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--adaptive-steps", type=int, default=10)
    p.add_argument("--eot", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path, default=HERE / "results.json")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    if not (args.weights or args.random_init or args.tiny):
        sys.exit("no CLIP weights can be downloaded here: pass --weights PATH, or --random-init / --tiny for a "
                 "pipeline check")  # fmt: skip
    model_name = args.model
    if args.tiny:
        import open_clip

        folder = Path(tempfile.mkdtemp())
        (folder / f"{TINY}.json").write_text(json.dumps(TINY_CONFIG))
        open_clip.add_model_config(folder / f"{TINY}.json")
        model_name = f"openclip:{TINY}"
    if args.split_file is not None:
        from robustlab.cli.tta import load_coop_split

        dataset = load_coop_split(Path(args.data), args.split_file)
    else:
        dataset = load_dataset(args.data, data_dir=args.data_dir)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)  # random-init weights only; every TTA draw has its own generator
    model = create_model(model_name, pretrained=not (args.random_init or args.tiny), weights=args.weights,
                         class_names=dataset.class_names, device=device)  # fmt: skip
    dataset = fit_to_model(dataset, model.data_config)
    if args.n < len(dataset):
        dataset = Subset(dataset, range(args.n))
    images, labels = dataset.get_batch(list(range(len(dataset))))
    images, labels = images.float().to(device), labels.to(device)
    attacks = tuple(a for a in args.attacks.split(",") if a and a != "none")
    attack = TTAAttackConfig(eps=args.eps, steps=args.steps, adaptive_steps=args.adaptive_steps, eot=args.eot)
    random_weights = args.weights is None
    report = {
        "model": model_name, "weights": str(args.weights) if args.weights else None, "random_weights": random_weights,
        "data": args.data, "n": len(labels), "views": args.views, "attacks": list(attacks),
        "attack": {"eps": attack.eps, "steps": attack.steps, "step_size": attack.pgd_step,
                   "adaptive_steps": attack.adaptive_steps, "eot": attack.eot},
        "seed": args.seed, "device": str(device), "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(), "torch": torch.__version__, "variants": {},
    }  # fmt: skip
    print(f"{model_name}: {len(labels)} images of {args.data}, {args.views} views, device {device}"
          + ("  [random weights: pipeline check, not results]" if random_weights else ""))  # fmt: skip
    for name in args.variants.split(","):
        method, overrides = VARIANTS[name]
        tuner = TestTimeTuner(model, tta_config(method, n_views=args.views, **overrides))
        started = time.perf_counter()
        outcome = evaluate_tta(tuner, images, labels, attacks=attacks, attack_config=attack, seed=args.seed)
        row = {
            "config": tuner.config.changed(),
            "accuracy": {c: outcome.accuracy(c) for c in outcome.predictions},
            "weight_entropy": {c: float(v.mean()) for c, v in outcome.weight_entropy.items()},
            "seconds_per_image": {c: s / len(labels) for c, s in outcome.seconds.items()},
            "seconds": time.perf_counter() - started,
        }
        report["variants"][name] = row
        shown = "  ".join(f"{c} {100 * a:5.1f}% ({row['seconds_per_image'][c]:.2f} s/img)"
                          for c, a in row["accuracy"].items())  # fmt: skip
        print(f"{name:28s} {shown}", flush=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
