"""AR2 against its baselines on CIFAR-10 (issue 18): none / BN-adapt / fine-tune / refine / AR2 / AugMix, seeds.

Every gradient method gets the same optimiser steps (``--iterations`` x two stages x ``--steps``); BN-adapt takes
none. AugMix never sees the target corruption, so it is trained once per seed (selected on held-out images
corrupted by the whole pool of ``--corruptions``) and tested on each corruption, as in the paper.
Repairs use the training data (``--train``; 10 % held out for the model selection, never the test set);
tests use the 932 bit-exact CIFAR-10 test images at severities 1-5 of each corruption, corrupted once with fixed
per-image generators so every model sees the same test noise (``--jpeg-test N`` adds the first N JPEG test
images as a second reading). Seeds change the held-out split, the shuffling, the augmentation and every training
corruption draw.

Results are appended to ``OUT/results.jsonl`` one line per (seed, corruption, method) as they finish; a rerun
skips the lines already there (resume), and ``OUT/summary.md`` is rewritten after every line (mean +- std over
seeds, paired differences, AR2's held-out L_CAM per iteration). ``--summarize`` only rewrites the summary.

CPU (the 2-core machine): ``bash experiments/ar2_cifar10/cpu_run.sh OUT`` runs the held-out learning-rate sweep
and then this script with the rates it picks (the settings of RESULTS.md).

GPU, paper scale (the 50,000 JPEG-q75 training images: no bit-exact copy of that size exists here):

    python experiments/ar2_cifar10/run.py --train cifar10 --corruptions all --seeds 0 --iterations 3 \\
        --steps 100 --batch-size 128 --bn-batches 40 --device cuda --amp --jpeg-test 10000 --out runs/ar2_gpu

(15 corruptions x 4 repairs + one AugMix model, 600 steps each: an estimate of ~8 min on an H100, not measured;
the CPU dry run of one corruption is in RESULTS.md.)
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
import warnings
from pathlib import Path

import torch

from robustlab.data import load_dataset
from robustlab.methods import AR2Config, repair
from robustlab.models import create_model
from robustlab.perturb import TEST_CORRUPTIONS, perturb
from robustlab.rng import sample_generators

METHODS = ("none", "bn_adapt", "finetune", "refine", "ar2", "augmix")
PAIRS = (("ar2", "finetune"), ("ar2", "bn_adapt"), ("ar2", "refine"), ("ar2", "augmix"), ("finetune", "bn_adapt"),
         ("augmix", "bn_adapt"), ("refine", "none"))  # fmt: skip


def test_sets(data, corruptions: list[str], n: int, device: torch.device) -> dict:
    """Clean and corrupted test tensors, corrupted once with per-image generators (the same noise for every model)."""
    images, labels = data.get_batch(list(range(min(n, len(data)))))
    images = images.to(device)  # corrupt where the model runs: on a GPU this is the fast path
    sets = {("clean", 0): images}
    for corruption in corruptions:
        for severity in range(1, 6):
            gens = sample_generators(0, range(len(images)), "ar2-exp-test", corruption, severity)
            sets[(corruption, severity)] = perturb(images, corruption, severity, generator=gens)
    return sets, labels.to(device)


@torch.no_grad()
def accuracy(model, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 500) -> float:
    model.eval()
    correct = sum(int((model(images[i : i + batch_size]).argmax(1) == labels[i : i + batch_size]).sum())
                  for i in range(0, len(images), batch_size))  # fmt: skip
    return correct / len(labels)


def evaluate(model, tests: dict, corruption: str) -> dict:
    out = {}
    for name, (sets, labels) in tests.items():
        clean = accuracy(model, sets[("clean", 0)], labels)
        per_sev = [accuracy(model, sets[(corruption, s)], labels) for s in range(1, 6)]
        out[name] = {"clean": clean, "severities": per_sev, "corrupted": sum(per_sev) / 5}
    return out


def mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else math.nan
    return f"{100 * statistics.mean(values):.1f} ± {100 * sd:.1f}" if len(values) > 1 else f"{100 * values[0]:.1f}"


def pick(history: list[dict], stage: str, iteration: int, key: str) -> float:
    return next(e[key] for e in history if e["stage"] == stage and e["iteration"] == iteration)


def summarize(rows: list[dict], out: Path, test: str = "exact932") -> str:
    """Markdown tables from the result lines: per corruption and method, mean +- std over seeds."""
    none = {r["corruption"]: r for r in rows if r["method"] == "none"}
    seeds = sorted({r["seed"] for r in rows if r["method"] != "none"})
    corruptions = list(dict.fromkeys(r["corruption"] for r in rows))
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]

    def value(method: str, corruption: str, seed: int, key: str) -> float | None:
        if method == "none":
            row = none.get(corruption)
        else:
            row = next((r for r in rows if (r["method"], r["corruption"], r["seed"]) == (method, corruption, seed)),
                       None)  # fmt: skip
        return None if row is None or test not in row["test"] else row["test"][test][key]

    lines = [f"Test set: {test}. Seeds: {seeds}. Cells: mean ± std over seeds (%), corrupted = mean of severities 1-5.",
             "", "| corruption | " + " | ".join(methods) + " |", "|---|" + "---:|" * len(methods)]  # fmt: skip
    per_seed_mean: dict[str, dict[int, float]] = {m: {} for m in methods}
    for corruption in corruptions:
        cells = []
        for m in methods:
            vals = [v for s in seeds if (v := value(m, corruption, s, "corrupted")) is not None]
            cells.append(mean_std(vals))
        lines.append(f"| {corruption} | " + " | ".join(cells) + " |")
    for m in methods:
        for s in seeds:
            vals = [value(m, c, s, "corrupted") for c in corruptions]
            if all(v is not None for v in vals):
                per_seed_mean[m][s] = sum(vals) / len(vals)
    lines.append(f"| **mean of {len(corruptions)}** | " + " | ".join(
        mean_std(list(per_seed_mean[m].values())) for m in methods) + " |")  # fmt: skip
    clean = []
    for m in methods:
        vals = [statistics.mean(vs) for s in seeds if (vs := [v for c in corruptions
                if (v := value(m, c, s, "clean")) is not None])]  # fmt: skip
        clean.append(mean_std(vals))
    lines.append("| clean (mean over the per-corruption models) | " + " | ".join(clean) + " |")
    lines += ["", "Paired differences of the mean-of-corruptions accuracy (same seed), in points. *Beyond seed "
              "noise* when every seed has the same sign and |mean difference| exceeds both methods' seed std.", "",
              "| comparison | per seed | mean ± std | beyond seed noise |", "|---|---|---:|---|"]  # fmt: skip
    for a, b in PAIRS:
        common = [s for s in seeds if s in per_seed_mean.get(a, {}) and s in per_seed_mean.get(b, {})]
        if not common:
            continue
        diffs = [100 * (per_seed_mean[a][s] - per_seed_mean[b][s]) for s in common]
        sd_a = statistics.stdev([100 * per_seed_mean[a][s] for s in common]) if len(common) > 1 else math.nan
        sd_b = statistics.stdev([100 * per_seed_mean[b][s] for s in common]) if len(common) > 1 else math.nan
        mean = statistics.mean(diffs)
        sd = statistics.stdev(diffs) if len(diffs) > 1 else math.nan
        same_sign = all(d > 0 for d in diffs) or all(d < 0 for d in diffs)
        beyond = len(common) > 1 and same_sign and abs(mean) > max(sd_a, sd_b)
        lines.append(f"| {a} − {b} | {', '.join(f'{d:+.1f}' for d in diffs)} | {mean:+.1f} ± {sd:.1f} | "
                     f"{'yes' if beyond else 'no'} |")  # fmt: skip
    lines += ["", "AR2's held-out L_CAM (eval mode, severity 3): before each refinement stage -> after it -> after "
              "the fine-tuning stage, mean over seeds.", "", "| corruption | iteration | before refine | after refine |"
              " after fine-tune | refine weight change |", "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for corruption in corruptions:
        hist = [r["history"] for r in rows if r["method"] == "ar2" and r["corruption"] == corruption]
        if not hist:
            continue
        iters = max(h["iteration"] for h in hist[0])
        for it in range(1, iters + 1):
            before = statistics.mean(pick(h, "select", it - 1, "val_cam_loss") for h in hist)
            after = statistics.mean(pick(h, "refine", it, "val_cam_loss") for h in hist)
            tuned = statistics.mean(pick(h, "select", it, "val_cam_loss") for h in hist)
            change = statistics.mean(pick(h, "refine", it, "weight_change") for h in hist)
            lines.append(f"| {corruption} | {it} | {before:.4f} | {after:.4f} | {tuned:.4f} | {change:.2e} |")
    text = "\n".join(lines) + "\n"
    (out / f"summary_{test}.md").write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cifar:resnet20")
    parser.add_argument("--train", default="cifar10_exact", help="training data (cifar10: the 50,000 JPEG images)")
    parser.add_argument("--corruptions", default="gaussian_noise,motion_blur,fog,pixelate", help="or 'all'")
    parser.add_argument("--methods", default="none,bn_adapt,finetune,ar2;refine,augmix",
                        help="methods, in passes separated by ';' (a pass may start with 'CORRUPTIONS:' to cover "
                             "only those): every seed and corruption of one pass runs before the next pass "
                             "starts, so a cut-short run still has whole comparisons")  # fmt: skip
    parser.add_argument("--bn-batches", type=int, default=16, help="batches BN-adapt averages statistics over")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20, help="optimiser steps per stage")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--refine-lr", type=float, default=None, help="default: AR2Config's")
    parser.add_argument("--finetune-lr", type=float, default=None, help="default: AR2Config's")
    parser.add_argument("--n-train", type=int, default=None, help="first N training images (default: all)")
    parser.add_argument("--jpeg-test", type=int, default=0, help="also test on the first N JPEG test images")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true", help="mixed precision in training (CUDA)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--summarize", action="store_true", help="only rewrite the summaries from results.jsonl")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "results.jsonl"
    rows = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    tests_names = ["exact932"] + (["jpeg"] if args.jpeg_test else [])
    if args.summarize:
        for name in tests_names:
            print(summarize(rows, args.out, name))
        return
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    corruptions = list(TEST_CORRUPTIONS) if args.corruptions == "all" else args.corruptions.split(",")
    train = load_dataset(args.train, split="train")
    if args.n_train:
        from robustlab.data import head

        train = head(train, args.n_train)
    started = time.monotonic()
    tests = {"exact932": test_sets(load_dataset("cifar10_exact", split="test"), corruptions, 932, device)}
    if args.jpeg_test:
        tests["jpeg"] = test_sets(load_dataset("cifar10", split="test"), corruptions, args.jpeg_test, device)
    print(f"test sets ready in {time.monotonic() - started:.0f} s", flush=True)
    source = create_model(args.model).to(device)
    lrs = {k: v for k, v in (("refine_lr", args.refine_lr), ("finetune_lr", args.finetune_lr)) if v is not None}
    done = {(r["seed"], r["corruption"], r["method"]) for r in rows}
    meta = {"args": {k: str(v) for k, v in vars(args).items()}, "torch": torch.__version__,
            "machine": platform.machine(), "threads": torch.get_num_threads(), "n_train": len(train)}  # fmt: skip
    (args.out / "meta.json").write_text(json.dumps(meta, indent=1))
    augmix_models: dict = {}
    passes = [(p.split(":")[0].split(","), p.split(":")[1].split(",")) if ":" in p else (corruptions, p.split(","))
              for p in args.methods.split(";")]  # fmt: skip
    jobs = [(seed, corruption, method) for pass_corruptions, methods in passes
            for seed in [int(s) for s in args.seeds.split(",")] for corruption in pass_corruptions
            for method in methods]  # fmt: skip
    for seed, corruption, method in jobs:
        key = (None if method == "none" else seed, corruption, method)
        if key in done:
            continue
        config = AR2Config(iterations=args.iterations, refine_steps=args.steps, finetune_steps=args.steps,
                           batch_size=args.batch_size, seed=seed, amp=args.amp or None, **lrs,
                           track_cam_loss=method in ("ar2", "refine"),
                           bn_adapt_batches=args.bn_batches)  # fmt: skip
        t0 = time.monotonic()
        row = {"seed": key[0], "corruption": corruption, "method": method, "config": config.to_dict()}
        if method == "none":
            model = source
        elif method == "augmix" and seed in augmix_models:
            # AugMix never sees the target corruption: trained once per seed
            model, first = augmix_models[seed]
            row |= {"trained_for": first}
        else:
            target = "unified" if method == "augmix" else corruption
            if method == "augmix":  # selected on held-out images corrupted by the whole pool
                config.unified_corruptions = tuple(corruptions)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = repair(source, train, corruption=target, method=method, config=config,
                                device=device)  # fmt: skip
            model = result.model
            if method == "augmix":
                augmix_models[seed] = (model, corruption)
            row |= {"steps": result.steps, "selected_iteration": result.selected_iteration,
                    "heldout_before": [result.initial_val_corrupted_acc, result.initial_val_clean_acc],
                    "heldout_after": [result.val_corrupted_acc, result.val_clean_acc],
                    "history": result.history, "warnings": [str(w.message) for w in caught]}  # fmt: skip
        row["repair_seconds"] = time.monotonic() - t0
        row["test"] = evaluate(model, tests, corruption)
        row["seconds"] = time.monotonic() - t0
        rows.append(row)
        done.add(key)
        with results.open("a") as f:
            f.write(json.dumps(row) + "\n")
        t = row["test"]["exact932"]
        print(f"[{time.monotonic() - started:6.0f} s] seed {key[0]} {corruption} {method}: clean "
              f"{100 * t['clean']:.1f} corrupted {100 * t['corrupted']:.1f} "
              f"({row['seconds']:.0f} s)", flush=True)  # fmt: skip
        for name in tests_names:
            summarize(rows, args.out, name)


if __name__ == "__main__":
    main()
