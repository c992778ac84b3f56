#!/usr/bin/env bash
# The issue-18 CPU run as it was run on 2026-12-07 (see RESULTS.md): the mechanism check with one point of the
# refinement-rate sweep (the rest of the sweep did not fit the shared machine), then run.py with refine_lr 0.3
# and finetune_lr 0.001. Usage (repository root, venv active, ROBUSTLAB_DATA set): bash cpu_run.sh OUT_DIR
set -euo pipefail
out=${1:?output folder}
mkdir -p "$out"
here=$(dirname "$0")
python "$here/mechanism.py" --corruptions gaussian_noise --refine-lrs 0.3 --finetune-lrs "" \
    --steps 10 --batch-size 64 --grad-batches 2 --out "$out/mechanism.json"
# passes: the four core methods on two corruptions for every seed, then the other two corruptions, then
# refine-only and AugMix, so a run cut short still holds whole seed-by-seed comparisons
python "$here/run.py" --refine-lr 0.3 --finetune-lr 0.001 --iterations 1 --steps 6 --batch-size 64 --bn-batches 8 \
    --seeds 0,1,2 --corruptions gaussian_noise,fog,motion_blur,pixelate \
    --methods "gaussian_noise,fog:none,bn_adapt,finetune,ar2;motion_blur,pixelate:none,bn_adapt,finetune,ar2;gaussian_noise,fog:refine,augmix" \
    --out "$out/run"
