"""``robustlab results``: tables with the stored numbers, pivot shape, exports, runs, friendly errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import Result
from typer.testing import CliRunner

import robustlab.cli.results  # noqa: F401  (registers the command)
from robustlab.cli._app import app
from robustlab.store import Cell, ResultKey, Store

runner = CliRunner()
WIDE = {"COLUMNS": "200"}  # a wide virtual terminal, so no name is folded across lines


def _invoke(*args: str) -> Result:
    return runner.invoke(app, ["results", *args], env=WIDE)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """Two models × (clean + gaussian_noise at severities 1..3) × (accuracy, error), plus a failed run."""
    path = tmp_path / "robustlab.db"
    with Store(path) as store:
        with store.run("robustlab eval --model cifar:resnet20 --model cifar:vit_tiny", {}) as run_id:
            cells = []
            for model, clean in (("cifar:resnet20", 0.8125), ("cifar:vit_tiny", 0.1 + 0.2)):
                for severity in range(4):
                    perturbation = "clean" if severity == 0 else "gaussian_noise"
                    accuracy = clean - severity / 16
                    for metric, value in (("accuracy", accuracy), ("error", 1 - accuracy)):
                        key = ResultKey.create(model, "cifar10", metric, perturbation=perturbation, severity=severity)
                        cells.append(Cell(key, value, n=512))
            store.add(run_id, cells)
        with pytest.raises(RuntimeError), store.run("robustlab attack pgd", {}) as run_id:
            store.add_result(run_id, "cifar:resnet20", "cifar10", "accuracy", 0.0625, perturbation="pgd")
            raise RuntimeError("out of memory")
    return path


def test_long_table_shows_the_stored_numbers(db: Path) -> None:
    result = _invoke("--db", str(db))
    assert result.exit_code == 0, result.output
    assert "17 result(s)" in result.output
    for text in ("cifar:resnet20", "cifar:vit_tiny", "gaussian_noise", "0.8125", "0.6875", "0.0625", "512"):
        assert text in result.output
    assert "0.3" in result.output  # 0.1 + 0.2 shown to 6 significant digits
    assert "dataset=cifar10" in result.output  # constant columns move to the caption


def test_filters_narrow_the_table(db: Path) -> None:
    result = _invoke("--db", str(db), "--model", "cifar:vit_tiny", "--metric", "accuracy")
    assert result.exit_code == 0, result.output
    assert "4 result(s)" in result.output
    assert "cifar:resnet20" not in result.output
    both = _invoke("--db", str(db), "--model", "cifar:vit_tiny", "--model", "cifar:resnet20", "--perturbation", "clean")
    assert "4 result(s)" in both.output  # repeated options are alternatives


def test_wide_has_one_row_per_condition_and_metric_columns(db: Path, tmp_path: Path) -> None:
    result = _invoke("--db", str(db), "--wide")
    assert result.exit_code == 0, result.output
    # 2 models × 4 (clean + 3 severities) + the pgd row = 9 conditions, accuracy and error columns
    assert "9 condition(s) × 2 metric(s)" in result.output
    header = next(line for line in result.output.splitlines() if "accuracy" in line)
    assert "error" in header and "metric" not in header
    out = tmp_path / "wide.csv"
    exported = _invoke("--db", str(db), "--wide", "--export", str(out))
    assert exported.exit_code == 0, exported.output
    wide = pd.read_csv(out)
    assert wide.shape == (9, 5)
    assert list(wide.columns) == ["model", "perturbation", "severity", "accuracy", "error"]
    row = wide[(wide["model"] == "cifar:resnet20") & (wide["severity"] == 2)].iloc[0]
    assert (row["accuracy"], row["error"]) == (0.8125 - 2 / 16, 1 - (0.8125 - 2 / 16))


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_export_writes_the_filtered_results_exactly(db: Path, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"out{suffix}"
    result = _invoke("--db", str(db), "--model", "cifar:vit_tiny", "--export", str(out))
    assert result.exit_code == 0, result.output
    assert "Wrote 8 row(s)" in result.output
    frame = pd.read_csv(out) if suffix == ".csv" else pd.DataFrame(json.loads(out.read_text()))
    assert len(frame) == 8 and set(frame["model"]) == {"cifar:vit_tiny"}
    clean = frame[(frame["perturbation"] == "clean") & (frame["metric"] == "accuracy")]
    assert clean["value"].iloc[0] == 0.1 + 0.2  # every digit, not the 6 shown on screen


def test_export_to_an_unknown_format_fails_cleanly(db: Path, tmp_path: Path) -> None:
    result = _invoke("--db", str(db), "--export", str(tmp_path / "out.xlsx"))
    assert result.exit_code == 1
    assert ".csv" in result.output and "Traceback" not in result.output


def test_runs_lists_status_duration_and_command(db: Path) -> None:
    result = _invoke("--db", str(db), "--runs")
    assert result.exit_code == 0, result.output
    assert "2 run(s)" in result.output
    for text in ("finished", "failed", "robustlab attack pgd", "16", "duration"):
        assert text in result.output


def test_run_filter_accepts_an_id_prefix(db: Path) -> None:
    with Store(db) as store:
        runs = store.runs()
    failed = runs.loc[runs["status"] == "failed", "run_id"].iloc[0]
    result = _invoke("--db", str(db), "--run", failed[:8])
    assert result.exit_code == 0, result.output
    assert "1 result(s)" in result.output and "0.0625" in result.output
    unknown = _invoke("--db", str(db), "--run", "zzzz")
    assert unknown.exit_code == 1 and "no run id starts with" in unknown.output


def test_missing_store_explains_how_to_create_one(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.db"
    result = _invoke("--db", str(missing))
    assert result.exit_code == 1
    assert "robustlab demo" in result.output and "Traceback" not in result.output
    assert not missing.exists()  # looking must not create an empty store


def test_foreign_file_is_a_clean_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("not a database")
    result = _invoke("--db", str(path))
    assert result.exit_code == 1
    assert "not a SQLite database" in result.output
    assert path.read_text() == "not a database"


def test_empty_selection_is_friendly_not_an_error(db: Path, tmp_path: Path) -> None:
    result = _invoke("--db", str(db), "--model", "no-such-model")
    assert result.exit_code == 0
    assert "No results match" in result.output
    empty = tmp_path / "empty.db"
    Store(empty).close()
    for args in ([], ["--pivot"], ["--wide"], ["--runs"]):
        result = _invoke("--db", str(empty), *args)
        assert result.exit_code == 0, result.output
        assert "robustlab demo" in result.output


def test_pivot_is_a_model_by_corruption_table_that_fits_80_columns(tmp_path: Path) -> None:
    """Every corruption of the benchmark, severity-averaged per model, readable in an 80-column terminal."""
    from robustlab.report.tables import ABBREVIATIONS, CORRUPTIONS

    path = tmp_path / "c.db"
    models = {"cifar:resnet20": 0.9, "timm:vit_base_patch16_224.augreg_in21k": 0.8}
    with Store(path) as store, store.run("robustlab eval", {}) as run_id:
        cells = []
        for model, clean in models.items():
            cells.append(Cell(ResultKey.create(model, "cifar10", "accuracy"), clean, n=100))
            for i, corruption in enumerate(CORRUPTIONS):
                for severity in range(1, 6):  # mean over severities: clean - i/100 - 0.03
                    accuracy = clean - i / 100 - severity / 100
                    key = ResultKey.create(model, "cifar10", "accuracy", perturbation=corruption, severity=severity)
                    cells.append(Cell(key, accuracy, n=100))
        store.add(run_id, cells)
    result = runner.invoke(app, ["results", "--db", str(path), "--pivot"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(map(len, lines)) <= 80, "\n".join(line for line in lines if len(line) > 80)
    assert sum("Accuracy (%) under each corruption" in line for line in lines) >= 2  # split into several tables
    assert "(1/" in result.output
    cells_shown = " ".join(lines)
    for short in ABBREVIATIONS.values():
        assert f" {short} " in cells_shown
    assert "90.0" in cells_shown and "80.0" in cells_shown  # clean
    for clean in models.values():
        for i in (0, 7, 18):
            assert f"{100 * (clean - i / 100 - 0.03):.1f}" in cells_shown
    out = tmp_path / "pivot.csv"
    exported = runner.invoke(app, ["results", "--db", str(path), "--pivot", "--export", str(out)])
    assert exported.exit_code == 0, exported.output
    table = pd.read_csv(out)
    assert list(table.columns) == ["model", "clean", *CORRUPTIONS] and len(table) == 2
    row = table[table["model"] == "cifar:resnet20"].iloc[0]
    assert row["fog"] == pytest.approx(0.9 - CORRUPTIONS.index("fog") / 100 - 0.03)  # exact, not rounded
    both = runner.invoke(app, ["results", "--db", str(path), "--pivot", "--wide"])
    assert both.exit_code == 1 and "pass one of them" in both.output
