#!/usr/bin/env bash
# Seed 004 on the offline real models: noise sweeps (noise on native pixels before each model's resize), the same
# sweep on a local Ray instance into a second store (the numbers must match), the analysis CSV, the timm attribute
# table, and the controlled small-CNN experiment. CPU. Run from this folder.
set -euo pipefail
export ROBUSTLAB_DATA=${ROBUSTLAB_DATA:-/work/shared/data}
CIFAR=cifar:resnet20,cifar:resnet32,cifar:resnet44,cifar:resnet56,cifar:resnet2b,cifar:resnet4b
LITE=efficientnet_lite0,efficientnet_lite1,efficientnet_lite2
SIGMAS=0,0.02,0.04,0.08,0.12
for backend in local ray; do
  db=$([ "$backend" = local ] && echo sweep.db || echo sweep_ray.db)
  robustlab study noise --models "$CIFAR" --data cifar10_exact --sigmas "$SIGMAS" --db "$db" --device cpu \
    --batch-size 256 --backend "$backend"
  robustlab study noise --models "$LITE" --data imagenet_sample --sigmas "$SIGMAS" --n 200 --db "$db" --device cpu \
    --batch-size 50 --backend "$backend"
done
robustlab study analyze --db sweep.db --out analysis.csv --overwrite
[ -f attributes.csv ] || robustlab study attributes --out attributes.csv
python controlled.py --db controlled.db
