"""Spot checks of timm architecture attributes (meta device: no weights, no network)."""

from __future__ import annotations

import pytest

from robustlab.study import attributes as A


def test_resnet50_has_7x7_stride2_stem_avg_pool_224px() -> None:
    row = A.model_attributes("resnet50.a1_in1k")
    assert (row.stem_kernel, row.stem_stride, row.global_pool, row.input_size) == (7, 2, "avg", 224)
    assert row.family == "cnn" and row.pretraining == "supervised" and not row.antialiased
    assert row.num_params == 25_557_032 and row.error == ""


def test_clip_vit_patch16_clip_std_clip_source() -> None:
    row = A.model_attributes("timm:vit_base_patch16_clip_224.openai")
    assert (row.stem_kernel, row.stem_stride, row.family, row.global_pool) == (16, 16, "vit", "token")
    assert row.std == pytest.approx((0.26862954, 0.26130258, 0.27577711))
    assert row.min_std == pytest.approx(0.26130258) and row.pretraining == "clip"


def test_antialiased_resnet_is_found() -> None:
    assert A.model_attributes("resnetaa50d.sw_in12k_ft_in1k").antialiased is True


def test_max_pool_model_is_found() -> None:
    import timm
    import torch

    # no default pretrained timm config uses global max pooling, so build one that does and classify it
    with torch.device("meta"):
        net = timm.create_model("resnet18", pretrained=False, global_pool="max")
    assert A.global_pool_type(net) == "max"


def test_pretraining_source_rules() -> None:
    assert A.pretraining_source("vit_base_patch16_224.mae") == "self_supervised"
    assert A.pretraining_source("vit_small_patch14_dinov2.lvd142m") == "self_supervised"
    assert A.pretraining_source("convnext_base.clip_laion2b_augreg_ft_in1k") == "clip"
    assert A.pretraining_source("resnet50.tv_in1k") == "supervised"


def test_unknown_model_raises_with_suggestion() -> None:
    with pytest.raises(ValueError, match="resnet50"):
        A.model_attributes("resnet5O")


def test_table_coverage_and_csv(tmp_path) -> None:
    rows = A.attribute_table(["resnet18.a1_in1k", "vit_tiny_patch16_224.augreg_in21k"])
    cov = A.coverage(rows)
    assert cov["built"] == 1.0 and cov["determined"] == 1.0
    path = tmp_path / "a.csv"
    A.write_attributes_csv(rows, path)
    lines = path.read_text().splitlines()
    assert lines[0].split(",") == list(A.COLUMNS) and len(lines) == 3
    with pytest.raises(ValueError):
        A.coverage([])
