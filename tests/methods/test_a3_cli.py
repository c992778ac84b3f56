"""`robustlab train a3` on the embedded digits with a tiny budget: checkpoints that reload with A3, store records."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from robustlab.cli import app
from robustlab.methods.a3 import get_attachment
from robustlab.models import create_model
from robustlab.store import Store

runner = CliRunner()
FAST = ["--model", "cifar:small_cnn", "--data", "digits", "--scratch", "--epochs", "1", "--batch-size", "32",
        "--n-train", "32", "--n-val", "16", "--n-eval", "16", "--attack-steps", "1", "--no-augment"]  # fmt: skip


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_train_a3_writes_best_and_last_checkpoints_and_records_results(tmp_path) -> None:
    out, db = tmp_path / "a3.safetensors", tmp_path / "r.db"
    suite = "clean,pgd:eps=8/255,steps=2,loss=cw"
    result = runner.invoke(app, ["train", "a3", *FAST, "--at", "trades", "--out", str(out), "--db", str(db),
                                 "--eval-suite", suite])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "A3 (reconstructed)" in result.output and "+64 parameters" in result.output
    for path in (out, tmp_path / "a3.last.safetensors"):
        model = create_model(f"file:{path}")
        assert get_attachment(model).layers == ["net.features.2"]
    with Store(db) as store:
        runs = store.runs()
        rows = store.results(model=f"file:{out}")
    assert len(runs) == 1 and runs["status"].iloc[0] == "finished"
    assert {"heldout_clean_acc", "heldout_pgd20_acc"} <= set(rows["metric"])
    assert {"clean", "pgd"} <= set(rows["perturbation"])
    # an A3 checkpoint continues training with its own modules
    more = tmp_path / "more.pt"
    cont = runner.invoke(app, ["train", "a3", *FAST[2:], "--model", f"file:{out}", "--out", str(more), "--db", str(db),
                               "--eval-suite", "none"])  # fmt: skip
    assert cont.exit_code == 0, cont.output
    assert get_attachment(create_model(f"file:{more}")).layers == ["net.features.2"]
    # a second run refuses to overwrite
    again = runner.invoke(app, ["train", "a3", *FAST, "--out", str(out), "--db", str(db), "--eval-suite", "none"])
    assert again.exit_code == 1 and "already exist" in again.output


def test_train_a3_bad_settings_exit_with_one_line(tmp_path) -> None:
    out = str(tmp_path / "x.pt")
    bad = runner.invoke(app, ["train", "a3", *FAST, "--out", out, "--at", "trade", "--eval-suite", "none"])
    assert bad.exit_code == 1 and "trades" in bad.output and "Traceback" not in bad.output
    bad = runner.invoke(app, ["train", "a3", *FAST, "--out", out, "--layers", "net.featurez", "--eval-suite", "none"])
    assert bad.exit_code == 1 and "net.features" in bad.output
