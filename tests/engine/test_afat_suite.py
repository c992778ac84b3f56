"""AFAT's suite entries: accuracy under a trained corruption model's patches, attention cosine under noise patches."""

from __future__ import annotations

import pytest
import torch

from robustlab import rng
from robustlab.data import ArrayDataset
from robustlab.engine import evaluate
from robustlab.engine.suite import build_suite
from robustlab.explain import attention_stability
from robustlab.models.classifier import Classifier
from robustlab.models.patch_corruptor import PatchCorruptor, save_corruptor
from robustlab.perturb import patch_occlusion
from robustlab.perturb.occlusion import corrupt_patches, keep_mask

CLASSES = [f"c{i}" for i in range(10)]


def small_vit() -> Classifier:
    import timm

    torch.manual_seed(0)  # test-only
    net = timm.create_model("test_vit", pretrained=False, img_size=64, num_classes=10)
    return Classifier(net, mean=(0.5,) * 3, std=(0.5,) * 3, input_size=(3, 64, 64), class_names=CLASSES,
                      name="test_vit@64", family="vit").eval()  # fmt: skip


def dataset(n: int = 6) -> ArrayDataset:
    g = torch.Generator().manual_seed(0)
    return ArrayDataset(torch.rand(n, 3, 64, 64, generator=g), torch.randint(0, 10, (n,), generator=g),
                        class_names=CLASSES, name="synthetic")  # fmt: skip


def test_afat_patch_accuracy_matches_the_corruption_it_describes(tmp_path) -> None:
    model, data = small_vit(), dataset()
    corruptor = PatchCorruptor(16, (4, 4), generator=torch.Generator().manual_seed(1))
    save_corruptor(corruptor, tmp_path / "c.pt")
    cells = evaluate(model, data, f"afat_patch:corruptor={tmp_path / 'c.pt'},ratio=0.25", seed=3, batch_size=4)
    assert [(c.key.perturbation, c.key.metric) for c in cells] == [("afat_patch", "accuracy")]
    images, labels = data.get_batch(list(range(6)))
    with torch.no_grad():
        keep = keep_mask(corruptor(model.normalize(images)), 0.25)
        gens = rng.sample_generators(3, torch.arange(6), "afat_patch", 0.25)
        expected = (model(corrupt_patches(images, keep, 16, generator=gens)).argmax(1) == labels).float().mean()
    assert cells[0].value == pytest.approx(float(expected))


def test_patch_attention_stability_reports_mean_and_layers_on_the_occlusion_cells_images() -> None:
    model, data = small_vit(), dataset(4)
    cells = evaluate(model, data, "patch_attention_stability:ratios=0.25,patch=16,layers=0+5", seed=1, batch_size=4)
    values = {c.key.metric: c.value for c in cells}
    assert set(values) == {"attention_cosine", "attention_cosine_layer0", "attention_cosine_layer5"}
    images, _ = data.get_batch(list(range(4)))
    gens = rng.sample_generators(1, torch.arange(4), "patch_occlusion", 0.25, 16)
    cosine = attention_stability(model, images, patch_occlusion(images, 0.25, patch_size=16, generator=gens)[0])
    assert values["attention_cosine"] == pytest.approx(float(cosine.mean()), rel=1e-5)
    assert values["attention_cosine_layer5"] == pytest.approx(float(cosine[:, 5].mean()), rel=1e-5)
    assert all(-1 <= v <= 1 for v in values.values())


def test_afat_suite_entries_refuse_bad_options(tmp_path) -> None:
    with pytest.raises(ValueError, match="corruptor=PATH"):
        build_suite("afat_patch")
    with pytest.raises(FileNotFoundError, match="corruptor"):
        build_suite(f"afat_patch:corruptor={tmp_path / 'missing.pt'}")
    with pytest.raises(ValueError, match="layers"):
        build_suite("patch_attention_stability:layers=a+b")
    with pytest.raises(ValueError, match="unknown option"):
        build_suite("patch_attention_stability:ratio=0.1")
    with pytest.raises(ValueError, match="afat_patch"):
        build_suite("afat_pach")
