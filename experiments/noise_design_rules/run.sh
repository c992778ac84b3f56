#!/usr/bin/env bash
# Noise sweep over the offline real models (seed 004) and the timm attribute table. CPU, in-process.
set -euo pipefail
export ROBUSTLAB_DATA=${ROBUSTLAB_DATA:-/work/shared/data}
robustlab study noise --models cifar:resnet20,cifar:resnet32,cifar:resnet44,cifar:resnet56,cifar:resnet2b,cifar:resnet4b \
  --data cifar10_exact --sigmas 0,0.02,0.04,0.08,0.12 --db sweep.db --device cpu --batch-size 256
robustlab study noise --models efficientnet_lite0 --data imagenet_sample --sigmas 0,0.02,0.04,0.08,0.12 --n 200 \
  --db sweep.db --device cpu --batch-size 50
robustlab study attributes --out attributes.csv
