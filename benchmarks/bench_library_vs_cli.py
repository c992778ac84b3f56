"""Per-image speed of ``perturb()`` called from Python against the command line's path, each in a fresh process.

The robustlab command line calls ``robustlab.runtime.tune_allocator()`` at start-up; a library user calls
``perturb()`` directly. For each batch size this runs the 15 test corruptions (severity 3, per-sample generators, as
the evaluation engine does) over the same images in fresh interpreters:

- ``library``: ``perturb()`` as a library user calls it, nothing else;
- ``cli``: ``tune_allocator()`` first, as ``robustlab`` does, then ``perturb()``;
- ``untuned``: ``perturb()`` with ``ROBUSTLAB_MALLOC=system`` (glibc's defaults everywhere).

Each configuration runs ``--rounds`` times, interleaved, and the fastest round counts. The table prints ms per image
and the ratios both ways (library / cli and cli / library); the goal is 1.00 within 10 %.

    python benchmarks/bench_library_vs_cli.py [--batches 4,32] [--n 32] [--rounds 2] [--data-dir D]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

_MODES = ("library", "cli", "untuned")


def _worker(mode: str, batch: int, n: int, data_dir: str | None, passes: int) -> dict[str, float]:
    import numpy as np
    import torch

    if mode == "cli":
        from robustlab.runtime import tune_allocator

        tune_allocator()
    from robustlab import rng
    from robustlab.perturb import TEST_CORRUPTIONS, perturb

    if data_dir:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from imagecorruptions_ref import imagenet_crops

        images = imagenet_crops(data_dir, n=n)
    else:
        images = np.random.default_rng(0).integers(0, 256, size=(n, 224, 224, 3), dtype=np.uint8)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255)

    def one_pass() -> float:
        t0 = time.perf_counter()
        for start in range(0, n, batch):
            xb = x[start : start + batch]
            ids = range(start, start + xb.shape[0])
            for name in TEST_CORRUPTIONS:
                perturb(xb, name, 3, generator=rng.sample_generators(0, ids, name, 3))
        return (time.perf_counter() - t0) / n

    one_pass()  # warm-up: kernels, caches, lazily built tables
    best = min(one_pass() for _ in range(passes))
    import robustlab.runtime as runtime

    return {"ms_per_image": best * 1e3, "tuned": float(runtime._applied is not None)}


def key_of(mode: str, batch: int) -> str:
    return f"{mode}@{batch}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="4,32")
    parser.add_argument("--n", type=int, default=32, help="images per pass (a multiple of every batch size)")
    parser.add_argument("--rounds", type=int, default=2, help="fresh processes per configuration, interleaved")
    parser.add_argument("--passes", type=int, default=2, help="timed passes per process (after one warm-up)")
    parser.add_argument("--data-dir", default=os.environ.get("ROBUSTLAB_DATA"))
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker, args.batch, args.n, args.data_dir, args.passes)))
        return
    batches = [int(b) for b in args.batches.split(",")]
    results: dict[str, dict[str, float]] = {}
    for _ in range(args.rounds):
        for batch in batches:
            for mode in _MODES:
                env = dict(os.environ)
                env.pop("ROBUSTLAB_MALLOC", None)
                if mode == "untuned":
                    env["ROBUSTLAB_MALLOC"] = "system"
                cmd = [sys.executable, __file__, "--worker", mode, "--batch", str(batch), "--n", str(args.n)]
                cmd += ["--passes", str(args.passes)] + (["--data-dir", args.data_dir] if args.data_dir else [])
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
                if proc.returncode:
                    raise SystemExit(f"{key_of(mode, batch)} failed:\n{proc.stderr[-3000:]}")
                out = proc.stdout
                res = json.loads(out.strip().splitlines()[-1])
                key = key_of(mode, batch)
                if key not in results or res["ms_per_image"] < results[key]["ms_per_image"]:
                    results[key] = res
    print(f"15 test corruptions, 224 px, severity 3, {args.n} images, best of {args.rounds} fresh processes each")
    print(f"{'batch':>5} {'library':>9} {'cli':>9} {'untuned':>9} {'lib/cli':>8} {'cli/lib':>8}  allocator tuned")
    for batch in batches:
        lib, cli, raw = (results[key_of(m, batch)] for m in _MODES)
        lm, cm = lib["ms_per_image"], cli["ms_per_image"]
        print(
            f"{batch:>5} {lm:9.2f} {cm:9.2f} {raw['ms_per_image']:9.2f} {lm / cm:8.2f} {cm / lm:8.2f}  "
            f"library {bool(lib['tuned'])}, cli {bool(cli['tuned'])}, untuned {bool(raw['tuned'])}"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
