"""The evaluation engine: exact values, seeded perturbations independent of batching, resume without duplicates."""

from __future__ import annotations

import pytest
import torch

from robustlab.engine import build_suite, evaluate, parse_suite, summarize
from robustlab.store import Store

SUITE = "clean,noise:sigmas=0.1+0.4,occlusion:ratios=0.25+0.5,patch=4"


def _values(cells) -> dict[tuple, float]:
    return {(c.key.perturbation, c.key.params_json): c.value for c in cells}


def test_clean_cell_is_exact_and_suite_order_kept(red_vs_blue_model, colour_dataset, expected_predictions) -> None:
    labels = colour_dataset.labels.tolist()
    expected = sum(p == y for p, y in zip(expected_predictions, labels, strict=True)) / len(labels)
    cells = evaluate(red_vs_blue_model, colour_dataset, SUITE, batch_size=8)
    assert [c.key.perturbation for c in cells] == ["clean"] + ["gaussian_noise_sigma"] * 2 + ["patch_occlusion"] * 2
    assert cells[0].value == pytest.approx(expected) and cells[0].n == 37
    assert cells[0].key.seed == 0  # clean data does not depend on the seed
    assert all(c.key.seed == 0 and not c.resumed for c in cells)


def test_perturbed_cells_do_not_depend_on_batch_size(red_vs_blue_model, colour_dataset) -> None:
    a = _values(evaluate(red_vs_blue_model, colour_dataset, SUITE, batch_size=5, seed=3))
    b = _values(evaluate(red_vs_blue_model, colour_dataset, SUITE, batch_size=37, seed=3))
    c = _values(evaluate(red_vs_blue_model, colour_dataset, SUITE, batch_size=37, seed=4))
    assert a == b
    assert a != c  # another seed draws other noise: some noisy cell changes


def test_resume_skips_finished_cells_and_writes_nothing_twice(red_vs_blue_model, colour_dataset, tmp_path) -> None:
    db = tmp_path / "r.db"
    with Store(db) as store, pytest.raises(KeyboardInterrupt):
        with store.run("eval", {}) as run_id:

            def stop_after_first_cells(event: dict) -> None:
                if event["kind"] == "group" and event["description"] == "occlusion":
                    raise KeyboardInterrupt  # killed after clean and noise were written

            evaluate(red_vs_blue_model, colour_dataset, SUITE, store=store, run_id=run_id,
                     callback=stop_after_first_cells)  # fmt: skip
    with Store(db) as store:
        assert len(store.results()) == 3
        with store.run("eval", {}) as run_id:
            cells = evaluate(red_vs_blue_model, colour_dataset, SUITE, store=store, run_id=run_id)
        assert [c.resumed for c in cells] == [True, True, True, False, False]
        assert len(store.results()) == 5
        with store.run("eval", {}) as run_id:
            again = evaluate(red_vs_blue_model, colour_dataset, SUITE, store=store, run_id=run_id)
        assert all(c.resumed for c in again) and len(store.results()) == 5
        assert _values(again) == _values(cells)


def test_suite_parsing_and_errors() -> None:
    assert parse_suite("pgd:eps=8/255,steps=20,clean") == [("pgd", {"eps": "8/255", "steps": "20"}), ("clean", {})]
    groups = build_suite("clean,fog:severities=1-3,profile=cifar,noise:sigmas=1/10+0.2")
    assert [g.name for g in groups] == ["clean", "fog", "noise"]
    assert [c.severity for c in groups[1].conditions] == [1, 2, 3]
    assert groups[1].conditions[0].params == {"profile": "cifar"}
    assert [c.params["sigma"] for c in groups[2].conditions] == [0.1, 0.2]
    assert len(build_suite("clean,clean")) == 1
    with pytest.raises(ValueError, match="Did you mean 'noise'"):
        build_suite("noize")
    with pytest.raises(ValueError, match="severities"):
        build_suite("fog:severities=0-6")
    with pytest.raises(ValueError, match="unknown option"):
        build_suite("noise:sigma=0.1")
    with pytest.raises(ValueError, match="profile"):
        build_suite("corruptions", profile="imagenette")
    with pytest.raises(ValueError, match="empty"):
        build_suite("")


def test_summary_from_cells(red_vs_blue_model, colour_dataset) -> None:
    cells = evaluate(red_vs_blue_model, colour_dataset, "clean,noise:sigmas=0.1+0.4")
    summary = summarize(cells)
    assert summary["clean_accuracy"] == cells[0].value
    assert "noise_slope" in summary and "mce" not in summary


def test_store_without_run_id_is_an_error(red_vs_blue_model, colour_dataset, tmp_path) -> None:
    with Store(tmp_path / "x.db") as store, pytest.raises(ValueError, match="run_id"):
        evaluate(red_vs_blue_model, colour_dataset, "clean", store=store)


def test_model_mode_untouched(red_vs_blue_model, colour_dataset) -> None:
    evaluate(red_vs_blue_model, colour_dataset, "clean")
    assert not red_vs_blue_model.training
    assert all(p.grad is None for p in red_vs_blue_model.parameters())
    assert torch.is_grad_enabled()


def test_sequences_measure_flips_and_top5_and_resume(red_vs_blue_model, colour_dataset, tmp_path) -> None:
    # constant-colour images: rotating in black corners scales red and blue alike, so no prediction flips
    cells = evaluate(red_vs_blue_model, colour_dataset, "rotate,gaussian_noise_sequence", profile="cifar")
    by = {(c.key.perturbation, c.key.metric): c.value for c in cells}
    assert by[("rotate_sequence", "flip_probability")] == 0.0
    assert 0.0 <= by[("gaussian_noise_sequence", "flip_probability")] <= 1.0
    assert all(c.key.metric in ("flip_probability", "top5_distance") for c in cells)
    assert all(c.value != c.value for c in cells if c.key.metric == "top5_distance")  # 2 classes: undefined (NaN)
    with Store(tmp_path / "s.db") as store, store.run("eval", {}) as run_id:
        evaluate(red_vs_blue_model, colour_dataset, "translate", store=store, run_id=run_id, profile="cifar")
        again = evaluate(red_vs_blue_model, colour_dataset, "translate", store=store, run_id=run_id, profile="cifar")
        assert all(c.resumed for c in again) and len(store.results()) == 2


def test_resume_reads_cells_stored_without_a_sample_count(tmp_path) -> None:
    """A cell written with n=None (AR2's held-out rows, user imports) must not break the engine's resume."""
    from robustlab.data import ArrayDataset

    data = ArrayDataset(torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 0, 1]), class_names=["a", "b"], name="toy")
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 2)).eval()
    with Store(tmp_path / "r.db") as store:
        with store.run("earlier") as run_id:
            store.add_result(run_id, "net", "toy", "accuracy", 0.25)  # no n
        with store.run("now") as run_id:
            cells = evaluate(model, data, "clean", store=store, run_id=run_id, model_name="net")
    assert len(cells) == 1 and cells[0].resumed and cells[0].value == 0.25 and cells[0].n is None
