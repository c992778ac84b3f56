"""Noise-study analysis from stored cells: per-model rows, attributes of robustlab specs, report section, CSV."""

from __future__ import annotations

import csv

import pytest
from typer.testing import CliRunner

from robustlab.cli import app
from robustlab.metrics.noise_study import analysis_tables, noise_rows, with_attributes
from robustlab.report import write_report
from robustlab.store import Store
from robustlab.study.attributes import spec_attributes

runner = CliRunner()
# two models: "fragile" is better clean but collapses under noise, so it loses rank
ACC = {"fragile": {0.0: 0.9, 0.1: 0.3, 0.2: 0.1}, "sturdy": {0.0: 0.8, 0.1: 0.7, 0.2: 0.6}}


@pytest.fixture()
def store_path(tmp_path):
    path = tmp_path / "study.db"
    with Store(path) as store, store.run("test") as run_id:
        for model, acc in ACC.items():
            name = {"fragile": "cifar:resnet20", "sturdy": "cifar:resnet4b"}[model]
            store.add_result(run_id, name, "cifar10", "accuracy", acc[0.0], n=10)
            for sigma in (0.1, 0.2):
                store.add_result(run_id, name, "cifar10", "accuracy", acc[sigma], n=10,
                                 perturbation="gaussian_noise_sigma", params={"sigma": sigma}, seed=0)  # fmt: skip
            # a pixel-space sweep of one model only is its own group: no RankDiff
            store.add_result(run_id, name, "other", "accuracy", acc[0.0], perturbation="gaussian_noise_pixels",
                             params={"sigma": 0.0})  # fmt: skip
            store.add_result(run_id, name, "other", "accuracy", acc[0.2], perturbation="gaussian_noise_pixels",
                             params={"sigma": 0.2})  # fmt: skip
    return path


def test_noise_rows_slope_drop_and_rank_difference(store_path) -> None:
    with Store(store_path) as store:
        rows = noise_rows(store.results())
    by = {(r["model"], r["dataset"]): r for r in rows}
    fragile = by[("cifar:resnet20", "cifar10")]
    assert fragile["noise_at"] == "input" and fragile["sigmas"] == [0.0, 0.1, 0.2]
    assert fragile["drop"] == pytest.approx(0.8) and fragile["slope"] == pytest.approx(-4.0)
    assert fragile["rank_difference"] == -1 and by[("cifar:resnet4b", "cifar10")]["rank_difference"] == 1
    assert by[("cifar:resnet20", "other")]["noise_at"] == "pixels"
    assert by[("cifar:resnet20", "other")]["rank_difference"] == -1  # two models in the pixel group too


def test_spec_attributes_read_robustlab_models() -> None:
    resnet = spec_attributes("cifar:resnet20")
    assert (resnet.stem_kernel, resnet.stem_stride, resnet.global_pool, resnet.input_size) == (3, 1, "avg", 32)
    assert spec_attributes("cifar:resnet4b").global_pool == "none"  # flatten + MLP head, found by probing
    vit = spec_attributes("cifar:vit_tiny_patch4")
    assert (vit.family, vit.stem_kernel, vit.global_pool) == ("vit", 4, "token")
    with pytest.raises(ValueError):
        spec_attributes("cifar:resnet2O")


def test_spec_attributes_of_an_open_clip_tower() -> None:
    clip = spec_attributes("openclip:ViT-B-16/openai")  # random init: no weights needed
    assert (clip.family, clip.pretraining, clip.stem_kernel, clip.stem_stride) == ("vit", "clip", 16, 16)
    assert clip.global_pool == "token" and clip.input_size == 224
    assert clip.min_std == pytest.approx(0.26130258)


def test_analysis_tables_and_report_section(store_path, tmp_path) -> None:
    with Store(store_path) as store:
        rows = noise_rows(store.results())
    joined = with_attributes(rows, {"cifar:resnet20": spec_attributes("cifar:resnet20"),
                                    "cifar:resnet4b": spec_attributes("cifar:resnet4b")})  # fmt: skip
    grouped, verdicts = analysis_tables(joined)
    pool = {g["group"]: g["mean"] for g in grouped if g["attribute"] == "global_pool" and g["value"] == "drop"}
    assert pool["avg"] == pytest.approx((0.8 + 0.8) / 2) and pool["none"] == pytest.approx((0.2 + 0.2) / 2)
    assert verdicts["larger stem kernel"] == "untestable"  # both stems are 3x3
    page = write_report(store_path, tmp_path / "r.html").read_text()
    assert "Noise study" in page and "RankDiff by attribute" in page and "noise-rules" in page


def test_study_analyze_writes_csv_and_refuses_overwrite(store_path, tmp_path) -> None:
    out = tmp_path / "a.csv"
    result = runner.invoke(app, ["study", "analyze", "--db", str(store_path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "larger stem kernel" in result.output
    with out.open() as f:
        lines = list(csv.DictReader(f))
    assert len(lines) == 4 and {"acc@0", "acc@0.1", "acc@0.2", "stem_kernel", "rank_difference"} <= set(lines[0])
    again = runner.invoke(app, ["study", "analyze", "--db", str(store_path), "--out", str(out)])
    assert again.exit_code == 1 and "--overwrite" in again.output
    empty = runner.invoke(app, ["study", "analyze", "--db", str(tmp_path / "none.db"), "--out", str(tmp_path / "b")])
    assert empty.exit_code == 1 and "does not" in empty.output and "Traceback" not in empty.output
