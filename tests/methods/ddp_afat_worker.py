"""Worker for the two-process AFAT test: ``torchrun --nproc_per_node=2 --standalone ddp_afat_worker.py OUT_DIR``.

Trains timm's ``test_vit`` (64 px, 16 patches) with AFAT under DDP on gloo and writes each rank's ViT weights, C's
weights and step counts to ``OUT_DIR``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

import robustlab  # noqa: F401  (first, before anything imports torchvision)
from robustlab.data import ArrayDataset
from robustlab.methods import AFATConfig, train_afat
from robustlab.models.classifier import Classifier
from robustlab.train.distributed import destroy_distributed, init_distributed, rank

CLASSES = [f"class_{i}" for i in range(10)]


def make_vit() -> Classifier:
    import timm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # test code: the same initial ViT on every rank
        net = timm.create_model("test_vit", pretrained=False, img_size=64, num_classes=10)
    return Classifier(net, mean=(0.5,) * 3, std=(0.5,) * 3, input_size=(3, 64, 64), class_names=CLASSES,
                      name="test_vit@64", family="vit").eval()  # fmt: skip


def main(out: Path) -> None:
    torch.set_num_threads(1)
    device = init_distributed("cpu")
    g = torch.Generator().manual_seed(1)
    data = ArrayDataset(torch.rand(16, 3, 64, 64, generator=g), torch.randint(0, 10, (16,), generator=g),
                        class_names=CLASSES, name="synthetic", split="train")  # fmt: skip
    model = make_vit()
    result = train_afat(model, data, config=AFATConfig(rho=0.25, lam=0.5, adversary_lr=0.05), epochs=2, lr=1e-3,
                        batch_size=4, device=device)  # fmt: skip
    me = rank()
    torch.save({"vit": model.state_dict(), "c": result.corruptor.state_dict()}, out / f"rank{me}.pt")
    (out / f"rank{me}.json").write_text(json.dumps({"steps": result.fit.steps,
                                                    "adversary_steps": result.adversary_steps}))  # fmt: skip
    destroy_distributed()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
