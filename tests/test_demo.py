"""`robustlab demo`: offline on digits, and on CIFAR-10 with the shared data; re-running adds nothing."""

from __future__ import annotations

import sqlite3

import pytest
import torch
from typer.testing import CliRunner

from robustlab.cli import app

runner = CliRunner()


def _rows(db) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]


@pytest.mark.slow
def test_demo_offline_digits(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("ROBUSTLAB_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    # bounded by its 12 epochs, not by the clock: a loaded machine must not turn this into an untrained model
    result = runner.invoke(app, ["demo", "--max-seconds", "600"])
    assert result.exit_code == 0, result.output
    db, report = tmp_path / "robustlab.db", tmp_path / "robustlab-report.html"
    assert db.is_file() and report.is_file()
    assert _rows(db) == 1 + 15 * 5 + 6  # clean, 15 corruptions x 5 severities, 6 noise levels
    with sqlite3.connect(db) as conn:
        clean = conn.execute("SELECT value, n FROM results WHERE perturbation='clean'").fetchone()
        noisy = conn.execute(
            "SELECT value FROM results WHERE perturbation='gaussian_noise_sigma' ORDER BY params_json DESC"
        ).fetchone()
        # all 15 corruptions at severity 5 (one alone, e.g. CIFAR-profile noise, may not hurt a well-trained model)
        corrupted = conn.execute("SELECT AVG(value) FROM results WHERE severity=5").fetchone()[0]
    assert clean[1] == 360
    assert clean[0] > 0.8  # a trained model, not chance (0.1)
    assert noisy[0] < clean[0]  # the strongest noise hurts
    assert corrupted < clean[0]
    assert "mean corruption error" in result.output
    html = report.read_text()
    assert "data:image/png;base64," in html and f"{clean[0]:.4f}" in html
    # a second run resumes training from its checkpoint and adds no rows
    again = runner.invoke(app, ["demo", "--max-seconds", "600"])
    assert again.exit_code == 0, again.output
    assert _rows(db) == 82
    assert "0 new results" in again.output
    # the demo is a pure function of its seed: a fresh directory, with torch's global generator elsewhere, trains the
    # same weights and measures the same numbers
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)
    torch.manual_seed(12345)
    fresh = runner.invoke(app, ["demo", "--max-seconds", "600"])
    assert fresh.exit_code == 0, fresh.output
    weights = "runs/demo/small_cnn_digits.safetensors"
    assert (tmp_path / weights).read_bytes() == (other / weights).read_bytes()
    query = "SELECT perturbation, severity, params_json, value FROM results ORDER BY 1, 2, 3"
    with sqlite3.connect(db) as first, sqlite3.connect(other / "robustlab.db") as second:
        assert first.execute(query).fetchall() == second.execute(query).fetchall()


@pytest.mark.realdata
def test_demo_cifar10_pretrained(tmp_path, monkeypatch, data_root) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["demo", "--data-dir", str(data_root), "--n", "300"])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(tmp_path / "robustlab.db") as conn:
        model, dataset, acc, n = conn.execute(
            "SELECT model, dataset, value, n FROM results WHERE perturbation='clean'"
        ).fetchone()
    assert (model, dataset, n) == ("cifar:resnet20", "cifar10[:300]", 300)
    assert 0.7 < acc < 0.95  # ResNet-20 on JPEG-q75 CIFAR-10 scores about 81 %
