"""`robustlab eval`: stores every cell, prints the headline numbers, resumes with nothing added."""

from __future__ import annotations

import sqlite3

import pytest
from typer.testing import CliRunner

from robustlab.cli import app

runner = CliRunner()


def _rows(db) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]


def test_eval_digits_resumes_without_duplicates(tmp_path) -> None:
    db = tmp_path / "e.db"
    args = ["eval", "--model", "cifar:small_cnn", "--random-init", "--data", "digits", "--n", "64",
            "--suite", "clean,noise:sigmas=0.1+0.3", "--db", str(db)]  # fmt: skip
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "clean accuracy" in first.output and "3 new" in first.output
    assert _rows(db) == 3
    second = runner.invoke(app, args)
    assert second.exit_code == 0 and "0 new" in second.output
    assert _rows(db) == 3
    with sqlite3.connect(db) as conn:
        datasets = {r[0] for r in conn.execute("SELECT dataset FROM results")}
    assert datasets == {"digits[:64]"}


def test_eval_bad_suite_and_model_give_one_line_errors(tmp_path) -> None:
    base = ["eval", "--data", "digits", "--db", str(tmp_path / "x.db")]
    bad_suite = runner.invoke(app, [*base, "--model", "cifar:small_cnn", "--suite", "noize"])
    assert bad_suite.exit_code == 1 and "noise" in bad_suite.output and "Traceback" not in bad_suite.output
    bad_model = runner.invoke(app, [*base, "--model", "cifar:resnet21"])
    assert bad_model.exit_code == 1 and "Did you mean" in bad_model.output


@pytest.mark.realdata
def test_eval_resnet20_exact_cifar(tmp_path, data_root) -> None:
    db = tmp_path / "r.db"
    args = ["eval", "--model", "cifar:resnet20", "--data", "cifar10_exact", "--suite", "clean,noise:sigmas=0.05",
            "--db", str(db), "--data-dir", str(data_root)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    with sqlite3.connect(db) as conn:
        clean = conn.execute("SELECT value, n FROM results WHERE perturbation='clean'").fetchone()
        noisy = conn.execute("SELECT value FROM results WHERE perturbation='gaussian_noise_sigma'").fetchone()
    assert clean == (pytest.approx(0.9163, abs=0.002), 932)
    assert noisy[0] < clean[0]
