"""`robustlab attack`: adversarial examples and per-sample outcomes on disk, cells in the store, nothing overwritten."""

from __future__ import annotations

import csv
import sqlite3

import numpy as np
import pytest
from typer.testing import CliRunner

from robustlab.cli import app

runner = CliRunner()


def _args(tmp_path, *extra: str) -> list[str]:
    return ["attack", "--model", "cifar:small_cnn", "--random-init", "--data", "digits", "--n", "24",
            "--attack", "pgd:eps=4/255,steps=3", "--out", str(tmp_path / "adv"), "--db", str(tmp_path / "a.db"),
            *extra]  # fmt: skip


def test_attack_writes_examples_outcomes_and_cells(tmp_path) -> None:
    result = runner.invoke(app, _args(tmp_path, "--png"))
    assert result.exit_code == 0, result.output
    assert "robust accuracy" in result.output
    saved = np.load(tmp_path / "adv" / "adversarial.npz")
    assert saved["images"].shape == (24, 3, 32, 32) and saved["images"].dtype == np.float32
    assert 0 <= saved["images"].min() and saved["images"].max() <= 1
    with open(tmp_path / "adv" / "outcome.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 24
    assert all(float(r["linf"]) <= 4 / 255 + 1e-6 for r in rows)
    success = [r["success"] == "True" for r in rows]
    assert success == saved["success"].tolist()
    assert len(list((tmp_path / "adv" / "png").glob("*.png"))) == 24
    with sqlite3.connect(tmp_path / "a.db") as conn:
        metrics = dict(conn.execute("SELECT metric, value FROM results WHERE perturbation='pgd'").fetchall())
    correct = (saved["clean_pred"] == saved["labels"]).mean()
    assert metrics["clean_accuracy"] == pytest.approx(correct)
    assert metrics["robust_accuracy"] == pytest.approx((saved["adv_pred"] == saved["labels"]).mean())
    # eval's suite entry reads the same cells: nothing new
    again = runner.invoke(app, ["eval", "--model", "cifar:small_cnn", "--random-init", "--data", "digits", "--n", "24",
                                "--suite", "pgd:eps=4/255,steps=3", "--db", str(tmp_path / "a.db")])  # fmt: skip
    assert again.exit_code == 0 and "0 new" in again.output, again.output


def test_attack_refuses_to_overwrite_and_rejects_bad_attacks(tmp_path) -> None:
    assert runner.invoke(app, _args(tmp_path)).exit_code == 0
    before = (tmp_path / "adv" / "outcome.csv").read_text()
    second = runner.invoke(app, _args(tmp_path))
    assert second.exit_code == 1 and "--overwrite" in second.output and "Traceback" not in second.output
    assert (tmp_path / "adv" / "outcome.csv").read_text() == before
    bad = runner.invoke(app, [*_args(tmp_path / "b"), "--attack", "pdg:eps=1"])
    assert bad.exit_code == 1 and "pgd" in bad.output
    many = runner.invoke(app, [*_args(tmp_path / "c"), "--attack", "pgd:eps=1/255+2/255"])
    assert many.exit_code == 1 and "one setting" in many.output
