"""Draw the two robustness curves of ``results.json`` (written by ``run.py``) and print the RESULTS.md tables.

    .venv/bin/python experiments/a3_cifar10/plot.py [results.json]   # the file whose main pair is drawn
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).parent
LABELS = {"pgd_at": "PGD-AT (baseline)", "pgd_at+a3": "PGD-AT + A3 (reconstructed)"}


def main(source: str = "results.json") -> None:
    results = json.loads((HERE / source).read_text())
    setup = results["setup"]
    note = (f"{setup['model']} fine-tuned, {setup['n_train']} train imgs x {setup['epochs']} ep, "
            f"{setup['n_eval']} test imgs")
    for key, xlabel, fname, title in (
        ("vs_eps", "eps (x/255), PGD-20, step eps/4", "robust_vs_eps.png", "Robust accuracy vs eps"),
        ("vs_steps", "PGD iterations (eps 8/255, step 2/255)", "robust_vs_iterations.png",
         "Robust accuracy vs attack iterations"),
    ):  # fmt: skip
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        for name, label in LABELS.items():
            curve = results["variants"].get(name, {}).get(key)
            if not curve:
                continue
            xs = sorted(int(k) for k in curve)
            if key == "vs_eps":
                xs = [x for x in xs if x <= 16]
            ax.plot(xs, [100 * curve[str(x)] for x in xs], marker="o", label=label)
        if key == "vs_steps":
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("robust accuracy (%)")
        ax.set_title(f"{title}\n{note}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(HERE / fname, dpi=120)
        plt.close(fig)


def tables() -> None:
    """Markdown tables of every results*.json (accuracies in %), then the curves and training histories."""
    cols = ("clean", "fgsm", "pgd20", "pgd100", "cw30", "worst_case")
    for path in sorted(HERE.glob("results*.json")):
        data = json.loads(path.read_text())
        s = data["setup"]
        print(f"\n{path.name}: {s['n_train']} train x {s['epochs']} epochs, lr {s['lr']}, n_eval {s['n_eval']}, "
              f"seed {s.get('seed', 0)}")
        print("| variant | " + " | ".join(cols) + " | +params | train CPU s | best epoch |")
        print("|---" * (len(cols) + 4) + "|")
        for name, r in data["variants"].items():
            cells = [f"{100 * r[c]:.1f}" if c in r else "–" for c in cols]
            print(f"| {name} | " + " | ".join(cells) + f" | {r['added_parameters']} | {r['train_cpu_s']:.0f} | "
                  f"{r['best_epoch']} |")
        for name, r in data["variants"].items():
            extra = {k: r[k] for k in ("transfer_from_baseline_pgd20", "transfer_from_a3_off_pgd20", "a3_off_clean",
                                       "mask_on_fraction") if k in r}  # fmt: skip
            if "vs_eps" in r:
                print(name, "vs_eps", {k: round(100 * v, 1) for k, v in r["vs_eps"].items()},
                      "vs_steps", {k: round(100 * v, 1) for k, v in r["vs_steps"].items()}, extra)
            for h in r["history"]:
                print("   ", name, "epoch", h["epoch"], "lr", h["lr"], "loss", round(h["train_loss"], 3),
                      {k: round(v, 3) for k, v in h["parts"].items()}, "held-out clean/PGD-20",
                      round(100 * h["val_clean"], 1), round(100 * h["val_pgd20"], 1))


if __name__ == "__main__":
    main(*sys.argv[1:2])
    tables()
