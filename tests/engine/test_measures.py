"""Suite entries that measure for themselves: attacks (exact values on a linear model) and explanation stability."""

from __future__ import annotations

import json

import pytest
import torch

from robustlab.data._base import ArrayDataset
from robustlab.engine import build_suite, evaluate
from robustlab.engine.measures import attack_conditions, attack_dataset
from robustlab.models import create_model
from robustlab.store import Store

TEN = [str(k) for k in range(10)]


def _expected_robust(values, eps: float) -> tuple[float, float]:
    """Clean and robust accuracy of the red-vs-blue model under an ℓ∞ attack of size eps.

    The logit margin is mean(R) - mean(B); the worst ℓ∞ perturbation lowers R and raises B by eps everywhere, so a
    correct sample stays correct exactly when |R - B| > 2 eps.
    """
    reds, blues, labels = values
    correct = [(r > b) == (y == 0) for r, b, y in zip(reds, blues, labels, strict=True)]
    robust = [c and abs(r - b) > 2 * eps for c, r, b in zip(correct, reds, blues, strict=True)]
    assert all(abs(abs(r - b) - 2 * eps) > 1e-4 for r, b in zip(reds, blues, strict=True))  # no ties
    return sum(correct) / len(correct), sum(robust) / len(robust)


def _cells(cells) -> dict[tuple[str, str, str], float]:
    return {(c.key.perturbation, c.key.metric, c.key.params_json): c.value for c in cells}


def test_attack_suite_values_are_exact_on_a_linear_model(red_vs_blue_model, colour_dataset, colour_values) -> None:
    cells = evaluate(red_vs_blue_model, colour_dataset, "clean,fgsm:eps=0.03,pgd:eps=0.01+0.03,steps=5", batch_size=8)
    clean = cells[0].value
    for eps in (0.01, 0.03):
        clean_acc, robust_acc = _expected_robust(colour_values, eps)
        assert clean == pytest.approx(clean_acc)
        pgd = [c for c in cells if c.key.perturbation == "pgd" and json.loads(c.key.params_json)["eps"] == eps]
        values = {c.key.metric: c.value for c in pgd}
        assert values["clean_accuracy"] == pytest.approx(clean_acc)
        assert values["robust_accuracy"] == pytest.approx(robust_acc)
        assert values["attack_success_rate"] == pytest.approx((clean_acc - robust_acc) / clean_acc)
    fgsm = {c.key.metric: c.value for c in cells if c.key.perturbation == "fgsm"}
    assert fgsm["robust_accuracy"] == pytest.approx(_expected_robust(colour_values, 0.03)[1])


def test_attack_params_record_defaults_and_reject_bad_options() -> None:
    (condition,) = attack_conditions("pgd", {"eps": "8/255", "steps": "20"})
    params = dict(condition.params)
    assert params["eps"] == pytest.approx(8 / 255) and params["steps"] == 20
    assert "norm" in params  # defaults are part of the key
    assert len(attack_conditions("pgd", {"eps": "1/255+2/255", "norm": "linf"})) == 2
    with pytest.raises(ValueError, match="unknown option"):
        attack_conditions("pgd", {"epsilon": "0.1"})
    with pytest.raises(ValueError, match="integer"):
        attack_conditions("pgd", {"steps": "2.5"})
    with pytest.raises(ValueError, match="untargeted"):
        attack_conditions("pgd", {"targeted": "true"})
    with pytest.raises(ValueError, match="pgd"):
        build_suite("pdg:eps=8/255")
    groups = build_suite("attacks:eps=4/255")
    assert [c.perturbation for g in groups for c in g.conditions] == ["fgsm", "pgd"]


def test_attack_cells_resume_and_match_attack_dataset(tmp_path) -> None:
    torch.manual_seed(0)
    model = create_model("cifar:small_cnn", pretrained=False).eval()
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(24, 3, 32, 32, generator=generator)
    with torch.no_grad():
        labels = model(images).argmax(1)  # every sample starts correct
    labels[:4] = (labels[:4] + 1) % 10  # ... except four
    dataset = ArrayDataset(images, labels, class_names=TEN, name="random")
    suite = "pgd:eps=2/255,steps=3"
    with Store(tmp_path / "a.db") as store, store.run("eval", {}) as run_id:
        first = evaluate(model, dataset, suite, store=store, run_id=run_id, batch_size=5, seed=7)
        again = evaluate(model, dataset, suite, store=store, run_id=run_id, batch_size=24, seed=7)
        assert len(store.results()) == 3
    assert all(c.resumed for c in again)
    values = {c.key.metric: c.value for c in first}
    assert values["clean_accuracy"] == pytest.approx(20 / 24)
    (condition,) = build_suite(suite)[0].conditions
    outcome = attack_dataset(model, dataset, "pgd", condition.params, seed=7, batch_size=24)
    assert outcome.values() == pytest.approx([values[m] for m in condition.metrics])
    assert (outcome.adversarial - images).abs().max() <= 2 / 255 + 1e-6
    assert torch.equal(outcome.adversarial[:4], images[:4])  # misclassified samples are not attacked
    assert not outcome.success[:4].any()


def test_cam_stability_suite_stores_cosines_per_severity() -> None:
    torch.manual_seed(0)
    model = create_model("cifar:resnet20", pretrained=False).eval()
    images = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    dataset = ArrayDataset(images, torch.zeros(6, dtype=torch.long), class_names=TEN, name="random")
    cells = evaluate(model, dataset, "cam_stability:corruptions=brightness+gaussian_noise,severities=1+5", batch_size=4)
    assert [(c.key.perturbation, c.key.severity) for c in cells] == [
        ("brightness", 1), ("brightness", 5), ("gaussian_noise", 1), ("gaussian_noise", 5)
    ]  # fmt: skip
    assert all(c.key.metric == "cam_cosine" and -1 <= c.value <= 1 + 1e-6 for c in cells)
    with pytest.raises(ValueError, match="grad_cam"):
        build_suite("cam_stability:method=gradcam")


def test_attention_stability_suite_on_a_small_vit() -> None:
    torch.manual_seed(0)
    model = create_model("cifar:vit_tiny_patch4", pretrained=False).eval()
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    dataset = ArrayDataset(images, torch.zeros(4, dtype=torch.long), class_names=TEN, name="random")
    cells = evaluate(model, dataset, "attention_stability:corruptions=contrast,severities=1+5", batch_size=4)
    assert [c.key.metric for c in cells] == ["attention_cosine"] * 2
    assert all(0 < c.value <= 1 + 1e-6 for c in cells)  # attention maps are non-negative


@pytest.mark.realdata
def test_cam_stability_of_resnet56_falls_with_severity(data_root) -> None:
    from robustlab.data import Subset, load_dataset

    model = create_model("cifar:resnet56", data_dir=data_root)
    dataset = Subset(load_dataset("cifar10_exact", data_dir=data_root), range(64))
    suite = "cam_stability:corruptions=gaussian_noise+fog+motion_blur,severities=1+3+5"
    cells = evaluate(model, dataset, suite, batch_size=64)
    by_corruption: dict[str, list[float]] = {}
    for cell in cells:
        by_corruption.setdefault(cell.key.perturbation, []).append(cell.value)
    for corruption, (s1, s3, s5) in by_corruption.items():
        assert s1 > s3 > s5, (corruption, s1, s3, s5)
    mean = [sum(v[i] for v in by_corruption.values()) / len(by_corruption) for i in range(3)]
    assert 0.9 < mean[0] and mean[2] < mean[0] - 0.05, mean


def test_a_setting_that_cannot_run_fails_before_anything_is_stored(tmp_path) -> None:
    model = create_model("cifar:small_cnn", pretrained=False, num_classes=10, seed=0)
    data = ArrayDataset(torch.rand(8, 3, 32, 32), torch.arange(8) % 10, class_names=TEN, name="r")
    with Store(tmp_path / "s.db") as store, store.run("t", {}) as run_id:
        with pytest.raises(ValueError, match="eps must be"):
            evaluate(model, data, "clean,pgd:eps=-1", store=store, run_id=run_id)
        assert store.cells() == []  # the clean cells were not measured first
