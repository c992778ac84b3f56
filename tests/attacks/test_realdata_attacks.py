"""Published robust accuracies reproduced with robustlab PGD on the exact 932 CIFAR-10 test images (data README 3-4)."""

from __future__ import annotations

import pytest

from robustlab import rng
from robustlab.attacks import worst_case
from robustlab.data import load_dataset
from robustlab.models import create_model

pytestmark = pytest.mark.realdata

BATCH = 256  # bounds activation memory; per-sample generators make the result independent of it


def _robust_accuracy(data_root, spec: str, **params) -> tuple[float, float]:
    data = load_dataset("cifar10_exact", data_dir=data_root)
    assert len(data) == 932
    model = create_model(spec, data_dir=data_root)
    clean = robust = 0
    for start in range(0, len(data), BATCH):
        index = list(range(start, min(start + BATCH, len(data))))
        images, labels = data.get_batch(index)
        result = worst_case(model, images, labels, [("pgd", params)], generator=rng.sample_generators(0, index, "pgd"))
        clean += round(result.accuracies[0] * len(index))
        robust += int(result.robust.sum())
    return 100 * clean / len(data), 100 * robust / len(data)


def test_standard_resnet20_breaks_under_pgd20(data_root) -> None:
    # early stopping drops an image once fooled: the same PGD-20, a fraction of the time on a non-robust model
    clean, robust = _robust_accuracy(data_root, "cifar:resnet20", eps=8 / 255, steps=20, early_stop=True)
    assert abs(clean - 91.63) <= 0.2
    assert robust <= 1.0


def test_adversarially_trained_resnet4b_matches_its_published_robust_accuracy(data_root) -> None:
    # alpha-beta-CROWN's README: 61.41 % under PGD at eps 2/255; plain PGD-20, step 2.5 * eps / steps
    clean, robust = _robust_accuracy(data_root, "cifar:resnet4b", eps=2 / 255, steps=20)
    assert abs(clean - 76.82) <= 0.2
    assert abs(robust - 61.41) <= 2.0


def test_autoattack_stages_on_resnet4b_end_below_pgd20(data_root) -> None:
    # 128 images, a short budget: the cascade must end at or below PGD-20 and each stage can only lower accuracy
    data = load_dataset("cifar10_exact", data_dir=data_root)
    model = create_model("cifar:resnet4b", data_dir=data_root)
    index = list(range(128))
    images, labels = data.get_batch(index)
    gens = rng.sample_generators(0, index, "aa")
    stages = [("apgd", {"eps": 8 / 255, "steps": 25}), ("apgd_t", {"eps": 8 / 255, "steps": 25, "n_targets": 3}),
              ("square", {"eps": 8 / 255, "queries": 200})]  # fmt: skip
    result = worst_case(model, images, labels, stages, generator=gens)
    pgd20 = worst_case(model, images, labels, [("pgd", {"eps": 8 / 255, "steps": 20})], generator=gens)
    assert list(result.accuracies) == sorted(result.accuracies, reverse=True)
    assert result.robust_accuracy <= pgd20.robust_accuracy
    assert 0.05 <= result.robust_accuracy <= 0.25  # about 14 % under APGD on the first 256 images
