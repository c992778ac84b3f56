#!/usr/bin/env bash
# The issue-18 CPU run (RESULTS.md, "main run"): mechanism check and held-out learning-rate sweep (mechanism.py),
# the rates the sweep picks, then run.py with them. Usage (repository root, venv active, ROBUSTLAB_DATA set):
#     bash experiments/ar2_cifar10/cpu_run.sh OUT_DIR
set -euo pipefail
out=${1:?output folder}
mkdir -p "$out"
here=$(dirname "$0")
echo "sweep start $(date -u)"
python "$here/mechanism.py" --corruptions gaussian_noise --refine-lrs 0.03,0.3,3 \
    --finetune-lrs 0.0003,0.001,0.003,0.01 --steps 30 --batch-size 64 --grad-batches 3 --out "$out/mechanism.json"
# finetune_lr: best held-out corrupted accuracy; refine_lr: lowest held-out L_CAM among the rates that do not cost
# more than 1 point of held-out corrupted accuracy (ties: the smaller rate). Held-out = 10 % of the training subset.
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
# passes: the four core methods on two corruptions for every seed, then the other two corruptions, then
# refine-only and AugMix, so a run cut short still holds whole seed-by-seed comparisons
python "$here/run.py" --refine-lr "$refine_lr" --finetune-lr "$finetune_lr" --iterations 2 --steps 30 \
    --batch-size 64 --bn-batches 16 --seeds 0,1,2 --corruptions gaussian_noise,fog,motion_blur,pixelate \
    --methods "gaussian_noise,fog:none,bn_adapt,finetune,ar2;motion_blur,pixelate:none,bn_adapt,finetune,ar2;refine,augmix" \
    --out "$out/run"
echo "done $(date -u)"
