"""One timed command for a lent GPU: CUDA tests, corruption throughput, ImageNet-C end to end, attack speed.

A task that is lent a device gets about 15 minutes of it, start-up included, so everything a GPU should confirm runs
here in one call of at most ~8 minutes on one H100, without network access, each part under its own time budget
(a part that runs out stops early, says ``"truncated": true`` and reports what it measured):

1. ``tests``: the CUDA-marked tests (every test file under ``tests/`` that mentions CUDA, ``-k cuda``), in pytest in
   a subprocess.
2. ``corruptions``: every corruption's throughput at 224 px, batch 256, severity 3, per-sample generators, and its
   CPU == device agreement on 4 images (max and mean absolute difference); also which JPEG path the device takes.
   Goal (issue 23): >= 2,000 corrupted images/s per corruption on one H100.
3. ``imagenet_c``: an ImageNet-C-style evaluation generated on the fly: the 1,000-image ImageNet sample x the
   75 cells (15 test corruptions x 5 severities), each batch corrupted on the device and classified by a
   ResNet-50 (timm ``resnet50``, random weights: no pretrained ResNet-50 weights are available offline, and the
   speed does not depend on them). Severity 3 of every corruption runs first, so a truncated run still covers all 15.
   Goal: >= 4,000 corrupted images/s end to end (full ImageNet-C, 3.75 M images, in <= 15 minutes).
4. ``attacks``: PGD-20 and AutoAttack (standard cascade) against torchattacks on the same device, on the exact
   CIFAR-10 test images with the published ResNet-20 (random weights without the shared data).

Writes one JSON file (``--out``) and prints a short table. ``--device cpu --quick`` dry-runs every part on the CPU
in a minute or two (small batches and sizes, few steps).

    ROBUSTLAB_DATA=/path/to/shared/data python benchmarks/device_check.py [--device cuda] [--quick] [--out F]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import robustlab  # noqa: F401  (torchvision workaround before torchattacks imports it)
from robustlab import rng
from robustlab.perturb import ALL_CORRUPTIONS, TEST_CORRUPTIONS, perturb

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("tests", "corruptions", "imagenet_c", "attacks")
# seconds per part: full (one H100, <= 8 minutes in all with start-up) and --quick (CPU dry run)
BUDGETS = {
    "full": {"tests": 90, "corruptions": 100, "imagenet_c": 140, "attacks": 110},
    "quick": {"tests": 60, "corruptions": 30, "imagenet_c": 20, "attacks": 25},
}
# what each part runs, full and --quick
SETTINGS = {
    "full": {"size": 224, "batch": 256, "ic_images": 1000, "ic_batch": 250, "atk_n": 256, "steps": 20, "aa_steps": 100,
             "queries": 5000, "rounds": 3},
    "quick": {"size": 32, "batch": 2, "ic_images": 2, "ic_batch": 2, "atk_n": 4, "steps": 2, "aa_steps": 2,
              "queries": 10, "rounds": 1},
}  # fmt: skip


class Budget:
    """A deadline in seconds from now."""

    def __init__(self, seconds: float) -> None:
        self.start = time.perf_counter()
        self.seconds = seconds

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _images(data_dir: str | None, n: int, size: int) -> tuple[np.ndarray, str]:
    """``n`` uint8 NHWC crops of the ImageNet sample (resized to ``size``), or fixed noise without the data."""
    if data_dir and (Path(data_dir) / "imagenet_sample").is_dir():
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from imagecorruptions_ref import imagenet_crops

        crops = imagenet_crops(data_dir, n=n)
        if size != crops.shape[1]:
            t = torch.from_numpy(crops).permute(0, 3, 1, 2).float()
            t = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", antialias=True)
            crops = t.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        return crops, "imagenet_sample"
    return np.random.default_rng(0).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8), "uniform noise"


def _to_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float().div(255).contiguous()


def part_tests(args: argparse.Namespace, budget: Budget, cfg: dict[str, Any]) -> dict[str, Any]:
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py") if "cuda" in p.read_text())
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "cuda", *files]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=max(5.0, budget.left()))
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return {"truncated": True, "files": files, "output_tail": out[-2000:]}
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|error|errors|deselected)", summary)}
    failed = [line for line in proc.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    return {"returncode": proc.returncode, "files": files, "summary": summary, "counts": counts, "failed": failed,
            "output_tail": proc.stdout[-2000:] if proc.returncode else ""}  # fmt: skip


def part_corruptions(args: argparse.Namespace, budget: Budget, cfg: dict[str, Any]) -> dict[str, Any]:
    from robustlab.perturb import _jpeg_codec
    from robustlab.perturb.jpeg import _roundtrip_validated

    device = torch.device(args.device)
    size, batch = cfg["size"], cfg["batch"]
    raw, source = _images(args.data_dir, min(batch, 1000), size)
    x = _to_tensor(raw, device)
    if x.shape[0] < batch:  # the sample has 1,000 images; larger batches repeat them
        x = x.repeat((batch + x.shape[0] - 1) // x.shape[0], 1, 1, 1)[:batch].contiguous()
    names = args.corruptions.split(",") if args.corruptions else list(ALL_CORRUPTIONS)
    profile = "imagenet" if size >= 224 else None  # small dry-run images take their own size's profile
    rows: dict[str, Any] = {}
    result: dict[str, Any] = {"size": size, "batch": batch, "severity": 3, "images": source, "rows": rows}
    result["jpeg_codec_exact"] = _jpeg_codec.codec_status(device, _roundtrip_validated)
    for i, name in enumerate(names):
        if budget.left() < 1.0:
            result["truncated"] = True
            rows[name] = {"skipped": "budget"}
            continue
        small = x[:4]
        k = range(small.shape[0])
        # fresh generators for each call: a generator's state moves on as the corruption draws from it
        cpu = perturb(small.cpu(), name, 3, generator=rng.sample_generators(0, k, name, 3), profile=profile)
        dev = perturb(small, name, 3, generator=rng.sample_generators(0, k, name, 3), profile=profile).cpu()
        diff = (cpu - dev).abs()
        times = []
        for _ in range(cfg["rounds"]):
            gens = rng.sample_generators(0, range(batch), name, 3)
            _sync(device)
            t0 = time.perf_counter()
            perturb(x, name, 3, generator=gens, profile=profile)
            _sync(device)
            times.append(time.perf_counter() - t0)
            # repeats only while every remaining corruption keeps at least this one's time
            if budget.left() < (len(names) - i) * min(times):
                break
        rows[name] = {"images_per_s": batch / min(times), "max_abs_diff": float(diff.max()),
                      "mean_abs_diff": float(diff.mean()), "exact": bool(diff.max() == 0)}  # fmt: skip
    measured = [r["images_per_s"] for n, r in rows.items() if "images_per_s" in r and n in TEST_CORRUPTIONS]
    if measured:
        # images/s of the 15-suite as a whole: total time per image is the sum over corruptions
        result["test_suite_images_per_s"] = len(measured) / sum(1 / v for v in measured)
        result["slowest"] = min(
            ((n, r["images_per_s"]) for n, r in rows.items() if "images_per_s" in r), key=lambda t: t[1]
        )
    return result


def part_imagenet_c(args: argparse.Namespace, budget: Budget, cfg: dict[str, Any]) -> dict[str, Any]:
    from robustlab.models import create_model

    device = torch.device(args.device)
    t0 = time.perf_counter()
    raw, source = _images(args.data_dir, cfg["ic_images"], cfg["size"])
    images = torch.from_numpy(raw).to(device).permute(0, 3, 1, 2).contiguous()  # uint8 on the device
    load_s = time.perf_counter() - t0
    model = create_model("timm:resnet50", pretrained=False, device=device).eval()
    model = model.to(memory_format=torch.channels_last)
    amp = device.type == "cuda"
    n, bs = images.shape[0], cfg["ic_batch"]
    cells = [(c, s) for s in (3, 1, 2, 4, 5) for c in TEST_CORRUPTIONS]
    profile = "imagenet" if cfg["size"] >= 224 else None
    per_corruption: dict[str, float] = {}
    done, seen, correct, perturb_s = 0, 0, 0, 0.0
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        # warm-up: kernels, cudnn autotuning, lazily built tables
        model(images[:bs].float().div(255).contiguous(memory_format=torch.channels_last))
        _sync(device)
        start = time.perf_counter()
        for name, severity in cells:
            if budget.left() < 1.0:
                break
            cell_start = time.perf_counter()
            for lo in range(0, n, bs):
                x = images[lo : lo + bs].float().div_(255)
                gens = rng.sample_generators(0, range(lo, lo + x.shape[0]), name, severity)
                t = time.perf_counter()
                c = perturb(x, name, severity, generator=gens, profile=profile)
                if args.split_timing:
                    _sync(device)
                    perturb_s += time.perf_counter() - t
                logits = model(c.contiguous(memory_format=torch.channels_last))
                correct += int((logits.argmax(1) == 0).sum())  # random weights: only the work counts
                seen += x.shape[0]
            _sync(device)
            per_corruption[name] = per_corruption.get(name, 0.0) + time.perf_counter() - cell_start
            done += 1
        _sync(device)
        total = time.perf_counter() - start
    rate = seen / total if total else 0.0
    return {
        "model": "timm resnet50, random weights (no pretrained weights offline)",
        "images": f"{n} x {source} at {cfg['size']} px",
        "cells_done": done, "cells": len(cells), "truncated": done < len(cells),
        "corrupted_images": seen, "seconds": total, "images_per_s": rate, "load_s": load_s,
        "amp": "bfloat16" if amp else "off", "batch": bs,
        "perturb_share": (perturb_s / total) if args.split_timing and total else None,
        "full_imagenet_c_minutes": 50_000 * 75 / rate / 60 if rate else None,
        "per_corruption_images_per_s": {k: n * sum(1 for c, _ in cells[:done] if c == k) / v
                                        for k, v in per_corruption.items()},
    }  # fmt: skip


def part_attacks(args: argparse.Namespace, budget: Budget, cfg: dict[str, Any]) -> dict[str, Any]:
    import torchattacks

    from robustlab.attacks import autoattack, pgd
    from robustlab.models import create_model

    device = torch.device(args.device)
    have_data = bool(args.data_dir) and (Path(args.data_dir) / "cifar10").is_dir()
    torch.manual_seed(0)
    model = create_model("cifar:resnet20", pretrained=have_data, data_dir=args.data_dir, device=device).eval()
    if have_data:
        from robustlab.data import load_dataset

        data = load_dataset("cifar10_exact", data_dir=args.data_dir)
        x, y = data.get_batch(list(range(min(cfg["atk_n"], len(data)))))
    else:
        x = torch.rand(cfg["atk_n"], 3, 32, 32, generator=torch.Generator().manual_seed(1))
        y = torch.zeros(cfg["atk_n"], dtype=torch.long)
    x, y = x.to(device).contiguous(), y.to(device)
    eps, steps = 8 / 255, cfg["steps"]
    alpha = 2.5 * eps / steps

    def acc(adv: torch.Tensor) -> float:
        with torch.no_grad():
            return 100 * float((model(adv).argmax(1) == y).float().mean())

    def timed(fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float]:
        _sync(device)
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        return out, time.perf_counter() - t0

    out: dict[str, Any] = {"model": "cifar:resnet20" + ("" if have_data else " (random weights)"), "n": len(y),
                           "eps": "8/255", "clean_accuracy": acc(x)}  # fmt: skip
    ours_fn = lambda: pgd(model, x, y, eps=eps, steps=steps, step_size=alpha)  # noqa: E731
    ref = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps)
    timed(ours_fn)  # warm-up for both (kernels, autotuning)
    timed(lambda: ref(x, y))
    ours_t, ref_t = [], []
    for _ in range(cfg["rounds"]):
        adv_ours, t_o = timed(ours_fn)
        adv_ref, t_r = timed(lambda: ref(x, y))
        ours_t.append(t_o)
        ref_t.append(t_r)
        if budget.left() < 0.6 * budget.seconds:
            break
    out[f"pgd{steps}"] = {"robustlab_s": statistics.median(ours_t), "torchattacks_s": statistics.median(ref_t),
                          "speedup": statistics.median(ref_t) / statistics.median(ours_t),
                          "robustlab_acc": acc(adv_ours), "torchattacks_acc": acc(adv_ref)}  # fmt: skip
    aa_steps, queries = cfg["aa_steps"], cfg["queries"]
    # AutoAttack is one uninterruptible call: bound it by PGD's time per gradient step. Its cascade takes at most
    # about 28 gradient steps per iteration (APGD-CE 1, APGD-T 9, FAB-T 9 targets of ~2 passes), run twice (both
    # libraries) within what is left; fewer iterations when that would not fit
    per_step = statistics.median(ours_t) / steps
    fit = int(0.4 * budget.left() / (28 * per_step)) if per_step > 0 else aa_steps
    if fit < aa_steps:
        aa_steps, out["truncated"] = max(1, fit), True
    gens = rng.sample_generators(0, range(len(y)), "autoattack")
    adv, t_ours = timed(lambda: autoattack(model, x, y, eps=eps, steps=aa_steps, queries=queries, generator=gens))
    res = {"steps": aa_steps, "queries": queries, "robustlab_s": t_ours, "robustlab_acc": acc(adv)}
    if budget.left() < 1.3 * t_ours:
        res["torchattacks"] = "skipped: budget"
        out["truncated"] = True
    else:
        same = torchattacks.MultiAttack([
            torchattacks.APGD(model, norm="Linf", eps=eps, steps=aa_steps, n_restarts=1, loss="ce", seed=0),
            torchattacks.APGDT(model, norm="Linf", eps=eps, steps=aa_steps, n_restarts=1, n_classes=10, seed=0),
            torchattacks.FAB(model, norm="Linf", eps=eps, steps=aa_steps, n_restarts=1, multi_targeted=True,
                             n_classes=10, seed=0),
            torchattacks.Square(model, norm="Linf", eps=eps, n_queries=queries, n_restarts=1, seed=0),
        ])  # fmt: skip
        adv_ref, t_ref = timed(lambda: same(x, y))
        res.update(torchattacks_s=t_ref, torchattacks_acc=acc(adv_ref), speedup=t_ref / t_ours)
    out["autoattack"] = res
    return out


def _watchdog_stop() -> None:
    print("device check: watchdog stop (a part overran its budget); the JSON holds the parts that finished", flush=True)
    os._exit(3)


RUNNERS = {"tests": part_tests, "corruptions": part_corruptions, "imagenet_c": part_imagenet_c, "attacks": part_attacks}


def _meta(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    meta = {"date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "device": args.device, "quick": args.quick, "torch": torch.__version__, "commit": commit,
            "python": platform.python_version(), "cpu_threads": torch.get_num_threads(),
            "host": platform.node()}  # fmt: skip
    if device.type == "cuda":
        meta["gpu"] = torch.cuda.get_device_name(device)
        meta["cuda"] = torch.version.cuda
    return meta


def _table(report: dict[str, Any]) -> str:
    lines = [f"device check on {report['meta'].get('gpu', report['meta']['device'])}, torch {report['meta']['torch']}"]
    for name, res in report["parts"].items():
        head = f"{name:<12} {res.get('status', '?'):<10} {res.get('seconds', 0):6.1f} s"
        if name == "tests" and "summary" in res:
            head += f"  {res['summary']}"
        elif name == "corruptions" and "test_suite_images_per_s" in res:
            worst = max((r.get("max_abs_diff", 0.0) for r in res["rows"].values()), default=0.0)
            head += (f"  15-suite {res['test_suite_images_per_s']:.0f} img/s, slowest {res['slowest'][0]} "
                     f"{res['slowest'][1]:.0f} img/s, max |cpu-dev| {worst:.3g}, "
                     f"jpeg codec {res['jpeg_codec_exact']}")  # fmt: skip
        elif name == "imagenet_c" and res.get("images_per_s"):
            head += (f"  {res['images_per_s']:.0f} img/s end to end, {res['cells_done']}/{res['cells']} cells, "
                     f"full ImageNet-C ~{res['full_imagenet_c_minutes']:.1f} min")  # fmt: skip
        elif name == "attacks" and "autoattack" in res:
            p = next(v for k, v in res.items() if k.startswith("pgd"))
            aa = res["autoattack"]
            head += f"  PGD {p['speedup']:.2f}x torchattacks, AutoAttack {aa.get('speedup', float('nan')):.2f}x"
        if res.get("error"):
            head += f"  ERROR {res['error'].strip().splitlines()[-1]}"
        lines.append(head)
        if name == "corruptions":
            for cname, row in res.get("rows", {}).items():
                if "images_per_s" in row:
                    rate, diff = row["images_per_s"], row["max_abs_diff"]
                    lines.append(f"    {cname:<18} {rate:9.0f} img/s  max |cpu-dev| {diff:.3g}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="small sizes and steps: a dry run of every part")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma list of {', '.join(PARTS)}")
    parser.add_argument("--corruptions", default="", help="comma list (default: all registered corruptions)")
    parser.add_argument("--budget-scale", type=float, default=1.0, help="multiply every part's time budget")
    parser.add_argument("--split-timing", action="store_true", help="imagenet_c: also time perturb() alone (syncs)")
    parser.add_argument("--data-dir", default=os.environ.get("ROBUSTLAB_DATA"))
    parser.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "device_check.json"))
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    cfg = SETTINGS[mode]
    parts = [p for p in args.parts.split(",") if p]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {unknown}; choose from {', '.join(PARTS)}")
    report: dict[str, Any] = {"meta": _meta(args), "parts": {}}
    # a last resort against a part that overruns its budget inside one call: the results so far are on disk already
    total = sum(BUDGETS[mode][p] for p in parts) * args.budget_scale
    watchdog = threading.Timer(1.2 * total + 60, _watchdog_stop)
    watchdog.daemon = True
    watchdog.start()
    for part in parts:
        budget = Budget(BUDGETS[mode][part] * args.budget_scale)
        try:
            res = RUNNERS[part](args, budget, cfg)
            res["status"] = "truncated" if res.get("truncated") else "ok"
            if part == "tests" and res.get("returncode"):
                res["status"] = "failed"
        except Exception:  # one failing part must not cost the others their (scarce) device time
            res = {"status": "error", "error": traceback.format_exc()[-3000:]}
        res["seconds"] = budget.elapsed()
        res["budget_s"] = budget.seconds
        report["parts"][part] = res
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2, default=str))  # after every part: a kill keeps them
        print(_table({"meta": report["meta"], "parts": {part: res}}).splitlines()[1], flush=True)
    watchdog.cancel()
    print(_table(report))
    return report


if __name__ == "__main__":
    main()
