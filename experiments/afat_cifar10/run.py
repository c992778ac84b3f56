"""AFAT (seed 001) at CPU scale: the 32-px ViT on a CIFAR-10 subset, with and without AFAT, under one step budget.

    python experiments/afat_cifar10/run.py train baseline      # plain cross-entropy
    python experiments/afat_cifar10/run.py train afat          # AFAT, paper defaults (rho 0.1, lambda 5e-3)
    python experiments/afat_cifar10/run.py train afat_random   # ablation: random patches instead of C
    python experiments/afat_cifar10/run.py train afat_lam1     # AFAT with lambda re-scaled for this width (1.0)
    python experiments/afat_cifar10/run.py evaluate VARIANT    # suite, attacks, attention stability of one
    python experiments/afat_cifar10/run.py c_generated         # accuracy under each trained C's patches
    python experiments/afat_cifar10/run.py collect             # -> results.json + attention_stability.png

The ``train`` and ``evaluate`` commands are independent processes (run them side by side). Every variant starts from the
same initial weights and sees the same batches and augmentations (fit's generators derive from the seed); only
the loss differs. Checkpoints go to ``runs/`` here (git-ignored). Needs ROBUSTLAB_DATA (../shared/data).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
RUNS = HERE / "runs"
DATA_DIR = os.environ.get("ROBUSTLAB_DATA", str(HERE.parents[2] / "shared" / "data"))
MODEL = "cifar:vit_tiny_patch4"
N_TRAIN, N_EVAL, N_ATTACK = 6144, 500, 100
TRAIN = {"epochs": 1, "lr": 1e-3, "batch_size": 64, "optimizer": "adamw", "weight_decay": 0.05,
         "warmup_steps": 10, "seed": 0}  # fmt: skip
VARIANTS = {
    "baseline": None,
    "afat": {"rho": 0.1, "lam": 5e-3},
    "afat_random": {"rho": 0.1, "lam": 5e-3, "selection": "random"},
    "afat_lam1": {"rho": 0.1, "lam": 1.0},
}
CORRUPTIONS = ("gaussian_noise", "defocus_blur", "fog", "contrast", "jpeg_compression")
SUITE = ("clean,occlusion:ratios=0.1,patch_attention_stability:ratios=0.1,patch=4,layers=0-5,"
         + ",".join(f"{c}:severities=3+5" for c in CORRUPTIONS))  # fmt: skip
ATTACKS = "pgd:eps=1/255,steps=5,patch_fool:steps=10"  # Patch-Fool: 10 Adam steps, not the reference 250
SPREAD_IMAGES, SPREAD_MASKS = 4, 50


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def data(split: str, n: int):
    from robustlab.data import Subset, load_dataset

    full = load_dataset("cifar10", split=split, data_dir=DATA_DIR)
    subset = Subset(full, range(n))
    subset.name = f"cifar10[:{n}]"
    return subset


def initial_model():
    from robustlab.models import create_model

    torch.manual_seed(0)  # experiment script: the same initial weights for every variant
    return create_model(MODEL, pretrained=False)


def train(variant: str) -> None:
    from robustlab.methods.afat import AFATConfig, save_corruptor, train_afat
    from robustlab.models import save_checkpoint
    from robustlab.train import fit, random_crop_flip

    RUNS.mkdir(exist_ok=True)
    model, train_set = initial_model(), data("train", N_TRAIN)
    started, cpu0 = time.time(), cpu_seconds()
    settings = dict(TRAIN, augment=random_crop_flip, device="cpu")
    log: dict = {"variant": variant, "model": MODEL, "n_train": N_TRAIN, "train": TRAIN}
    if VARIANTS[variant] is None:
        result = fit(model, train_set, **settings)
        history, steps = result.history, result.steps
    else:
        config = AFATConfig(**VARIANTS[variant])
        result = train_afat(model, train_set, config=config, **settings)
        history, steps = result.fit.history, result.fit.steps
        log.update(afat=config.to_dict(), align_history=result.align_history,
                   adversary_steps=result.adversary_steps)  # fmt: skip
        if result.corruptor is not None and config.selection == "learned":
            save_corruptor(result.corruptor, RUNS / f"{variant}.corruptor.pt")
    save_checkpoint(model, RUNS / f"{variant}.safetensors")
    log.update(history=history, steps=steps, wall_seconds=time.time() - started, cpu_seconds=cpu_seconds() - cpu0)
    (RUNS / f"{variant}.train.json").write_text(json.dumps(log, indent=1))
    print(f"{variant}: {steps} steps, loss {history[-1]['train_loss']:.4f}, "
          f"{log['cpu_seconds']:.0f} s CPU, {log['wall_seconds']:.0f} s wall")  # fmt: skip


def _random_occluded(images: torch.Tensor, indices: torch.Tensor, seed: int, key: object) -> torch.Tensor:
    from robustlab import rng
    from robustlab.perturb import patch_occlusion

    gens = rng.sample_generators(seed, indices, "afat_random_mask", key)
    return patch_occlusion(images, 0.1, patch_size=4, generator=gens)[0]


def _cells(cells: list) -> list[dict]:
    return [{"perturbation": c.key.perturbation, "severity": c.key.severity, "metric": c.key.metric,
             "params": json.loads(c.key.params_json), "value": c.value, "n": c.n} for c in cells]  # fmt: skip


def evaluate_variant(v: str) -> None:
    """Accuracy suite, attacks and attention stability of one trained variant -> runs/VARIANT.eval.json."""
    from robustlab.engine import evaluate
    from robustlab.explain import attention_stability
    from robustlab.models import create_model

    cpu0 = cpu_seconds()
    test, attack_set = data("test", N_EVAL), data("test", N_ATTACK)
    images, _ = test.get_batch(list(range(N_EVAL)))
    model = create_model(f"file:{RUNS / f'{v}.safetensors'}")
    row: dict = {"suite": SUITE, "attacks": ATTACKS}
    row["cells"] = _cells(evaluate(model, test, SUITE, model_name=v, batch_size=100))
    row["attack_cells"] = _cells(evaluate(model, attack_set, ATTACKS, model_name=v, batch_size=100))
    # Fig. 4: per-image Cos-Sim (mean over layers and heads), one random 10 % noise mask per image
    cos = torch.cat([attention_stability(model, images[i : i + 100],
                                         _random_occluded(images[i : i + 100], torch.arange(i, i + 100), 0, "attn"))
                     for i in range(0, N_EVAL, 100)]).detach()  # fmt: skip
    row["attention_cosine_per_layer"] = cos.mean(dim=(0, 2)).tolist()
    row["attention_cosine_per_image"] = cos.mean(dim=(1, 2)).tolist()
    # Fig. 3 (last column): for a few images, the spread over many random masks
    spread = []
    for i in range(SPREAD_IMAGES):
        rep = images[i : i + 1].expand(SPREAD_MASKS, -1, -1, -1)
        masked = _random_occluded(rep, torch.arange(SPREAD_MASKS), i, "spread")
        spread.append(attention_stability(model, rep, masked).mean(dim=(1, 2)).detach().tolist())
    row["attention_cosine_many_masks"] = spread
    row["eval_cpu_seconds"] = cpu_seconds() - cpu0
    (RUNS / f"{v}.eval.json").write_text(json.dumps(row, indent=1))
    print(f"{v}: evaluated in {row['eval_cpu_seconds']:.0f} s CPU")


def c_generated() -> None:
    """Accuracy of every variant under the patches each trained C picks (engine ``afat_patch``), and whether C's
    patches disturb the features more than random ones (L_align on 100 test images)."""
    from robustlab.engine import evaluate
    from robustlab.methods.afat import alignment_loss, block_outputs, corrupt_patches, keep_mask, load_corruptor
    from robustlab.models import create_model

    test = data("test", N_EVAL)
    images, _ = test.get_batch(list(range(100)))
    corruptors = sorted(p.name.removesuffix(".corruptor.pt") for p in RUNS.glob("*.corruptor.pt"))
    out: dict = {}
    for v in VARIANTS:
        if not (RUNS / f"{v}.safetensors").exists():
            continue
        model = create_model(f"file:{RUNS / f'{v}.safetensors'}")
        row: dict = {}
        with torch.no_grad():
            _, clean = block_outputs(model, images)
            _, rand = block_outputs(model, _random_occluded(images, torch.arange(100), 0, "align"))
            row["align_random"] = float(alignment_loss(clean, rand))
            for c in corruptors:
                path = RUNS / f"{c}.corruptor.pt"
                cell = evaluate(model, test, f"afat_patch:corruptor={path},ratio=0.1", model_name=v, batch_size=100)
                row[f"acc_C_from_{c}"] = cell[0].value
                corruptor = load_corruptor(path)
                keep = keep_mask(corruptor(model.normalize(images)), 0.1)
                hit = corrupt_patches(images, keep, 4, generator=torch.Generator().manual_seed(0))
                row[f"align_C_from_{c}"] = float(alignment_loss(clean, block_outputs(model, hit)[1]))
        out[v] = row
    (RUNS / "c_generated.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


def collect() -> None:
    """Merge the per-variant files into results.json and draw the histogram."""
    out: dict = {"n_train": N_TRAIN, "n_eval": N_EVAL, "n_attack": N_ATTACK, "train_settings": TRAIN, "models": {}}
    cgen = json.loads((RUNS / "c_generated.json").read_text()) if (RUNS / "c_generated.json").exists() else {}
    for v in VARIANTS:
        if not (RUNS / f"{v}.eval.json").exists():
            continue
        train_log = json.loads((RUNS / f"{v}.train.json").read_text())
        align = train_log.pop("align_history", None)
        if align:
            k = max(1, len(align) // 10)
            train_log["align_first10pct"] = sum(align[:k]) / k
            train_log["align_last10pct"] = sum(align[-k:]) / k
        row = {"train": train_log, **json.loads((RUNS / f"{v}.eval.json").read_text()), "c_generated": cgen.get(v)}
        out["models"][v] = row
    (HERE / "results.json").write_text(json.dumps(out, indent=1))
    plot(out)
    print(table(out))


def table(out: dict) -> str:
    """The RESULTS.md tables (accuracies in %, cosines as they are) from results.json's content."""

    def pct(x: float | None) -> str:
        return "–" if x is None else f"{100 * x:.1f}"

    corruptors = sorted({k.removeprefix("acc_C_from_") for row in out["models"].values()
                         for k in (row["c_generated"] or {}) if k.startswith("acc_C_from_")})  # fmt: skip
    head = ["variant", "steps", "train CPU s", "clean", "random 10 % patches", *[f"C of {c}" for c in corruptors],
            "corruptions (mean of 10)", *CORRUPTIONS, "PGD-5 ε=1/255", "Patch-Fool (10 steps)"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    attn = ["| variant | Cos-Sim mean | " + " | ".join(f"layer {i}" for i in range(6)) + " | worst 5 % of images |",
            "|" + "---|" * 9]  # fmt: skip
    for v, row in out["models"].items():
        acc = {(c["perturbation"], c["severity"]): c["value"] for c in row["cells"] if c["metric"] == "accuracy"}
        corr = {c: [acc[(c, s)] for s in (3, 5)] for c in CORRUPTIONS}
        attacks = {c["perturbation"]: c["value"] for c in row["attack_cells"] if c["metric"] == "robust_accuracy"}
        cgen = row["c_generated"] or {}
        mean_corr = sum(sum(x) for x in corr.values()) / sum(len(x) for x in corr.values())
        cpu = row["train"].get("cpu_seconds", float("nan"))
        cells = [v, str(row["train"].get("steps")), f"{cpu:.0f}", pct(acc[("clean", 0)]),
                 pct(acc[("patch_occlusion", 0)]), *[pct(cgen.get(f"acc_C_from_{c}")) for c in corruptors],
                 pct(mean_corr), *[pct(sum(x) / 2) for x in corr.values()], pct(attacks.get("pgd")),
                 pct(attacks.get("patch_fool"))]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
        per_image = sorted(row["attention_cosine_per_image"])
        worst = per_image[: max(1, len(per_image) // 20)]
        attn.append(f"| {v} | {sum(per_image) / len(per_image):.4f} | "
                    + " | ".join(f"{x:.4f}" for x in row["attention_cosine_per_layer"])
                    + f" | {sum(worst) / len(worst):.4f} |")  # fmt: skip
    return "\n".join(lines) + "\n\n" + "\n".join(attn)


def plot(out: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = out["models"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    everything = [x for row in models.values() for x in row["attention_cosine_per_image"]]
    lo, hi = min(everything), max(everything)
    bins = [lo + (hi - lo) * i / 40 for i in range(41)]
    for v, row in models.items():
        values = row["attention_cosine_per_image"]
        left.hist(values, bins=bins, histtype="step", linewidth=1.6,
                  label=f"{v} (mean {sum(values) / len(values):.3f})")  # fmt: skip
    left.set_xlabel("per-image attention Cos-Sim, clean vs 10 % noise patches\n(mean over layers and heads)")
    left.set_ylabel("test images")
    left.set_title(f"one random mask per image, {out['n_eval']} CIFAR-10 test images", fontsize=10)
    left.legend(fontsize=8, loc="upper left")
    data, labels = [], []
    for i in range(len(next(iter(models.values()))["attention_cosine_many_masks"])):
        for v, row in models.items():
            data.append(row["attention_cosine_many_masks"][i])
            labels.append(f"img{i}\n{v}")
    boxes = right.boxplot(data, tick_labels=labels, patch_artist=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, box in enumerate(boxes["boxes"]):
        box.set_facecolor(colours[k % len(models)])
        box.set_alpha(0.5)
    right.tick_params(axis="x", labelsize=6, rotation=90)
    right.set_ylabel("attention Cos-Sim")
    right.set_title(f"spread over {SPREAD_MASKS} random masks per image", fontsize=10)
    fig.tight_layout()
    fig.savefig(HERE / "attention_stability.png", dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("train").add_argument("variant", choices=list(VARIANTS))
    sub.add_parser("evaluate").add_argument("variant", choices=list(VARIANTS))
    sub.add_parser("c_generated")
    sub.add_parser("collect")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the shared 2-core machine: one thread per process wastes no time spinning
    import robustlab  # noqa: F401  (torchvision import workaround before timm)

    if args.command == "train":
        train(args.variant)
    elif args.command == "evaluate":
        evaluate_variant(args.variant)
    elif args.command == "c_generated":
        c_generated()
    else:
        collect()


if __name__ == "__main__":
    main()
