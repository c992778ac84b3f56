#!/usr/bin/env bash
# The issue-18 CPU run: a held-out learning-rate sweep (mechanism.py), the rates it picks, then run.py with them.
# Usage (repository root, venv active, ROBUSTLAB_DATA set): bash experiments/ar2_cifar10/cpu_run.sh OUT_DIR
set -euo pipefail
out=${1:?output folder}
mkdir -p "$out"
here=$(dirname "$0")
echo "sweep start $(date -u)"
python "$here/mechanism.py" --corruptions gaussian_noise --refine-lrs 0.3,3 --finetune-lrs 0.0003,0.001,0.003 \
    --steps 10 --batch-size 64 --grad-batches 2 --out "$out/mechanism.json"
# finetune_lr: best held-out corrupted accuracy; refine_lr: lowest held-out L_CAM unless it costs held-out accuracy
read -r refine_lr finetune_lr < <(python - "$out/mechanism.json" <<'PY'
import json, sys
sweep = json.load(open(sys.argv[1]))["sweep"]
ft = max((r for r in sweep if r["method"] == "finetune"), key=lambda r: (r["val_corrupted_acc"][1], -r["lr"]))
ok = [r for r in sweep if r["method"] == "refine" and r["val_corrupted_acc"][1] >= r["val_corrupted_acc"][0] - 0.01]
rf = min(ok or [r for r in sweep if r["method"] == "refine"], key=lambda r: (r["val_cam_after"], r["lr"]))
print(rf["lr"], ft["lr"])
PY
)
echo "picked refine_lr=$refine_lr finetune_lr=$finetune_lr $(date -u)"
python "$here/run.py" --refine-lr "$refine_lr" --finetune-lr "$finetune_lr" --iterations 2 --steps 10 \
    --batch-size 64 --seeds 0,1,2 --corruptions gaussian_noise,motion_blur,fog,pixelate --out "$out/run"
echo "done $(date -u)"
