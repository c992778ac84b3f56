"""`robustlab train afat` on the embedded digits: a loadable checkpoint, the corruption model, store records."""

from __future__ import annotations

from typer.testing import CliRunner

from robustlab.cli import app
from robustlab.methods.afat import load_corruptor
from robustlab.models import create_model
from robustlab.store import Store

runner = CliRunner()
FAST = ["--data", "digits", "--scratch", "--n-train", "32", "--epochs", "1", "--batch-size", "16", "--no-augment"]


def test_train_afat_saves_model_and_corruptor_and_records_results(tmp_path) -> None:
    out, db = tmp_path / "vit.safetensors", tmp_path / "r.db"
    result = runner.invoke(app, ["train", "afat", "--model", "cifar:vit_tiny_patch4", "--out", str(out), "--db",
                                 str(db), "--n-eval", "16", *FAST])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "C took 2 ascent steps" in result.output
    model = create_model(f"file:{out}")
    assert model.family == "vit"
    corruptor = load_corruptor(tmp_path / "vit.safetensors.corruptor.pt")
    assert corruptor.grid == (8, 8) and corruptor.patch_size == 4
    with Store(db) as store:
        runs = store.runs()
        rows = store.results(model=f"file:{out}")
    assert len(runs) == 1 and runs["status"].iloc[0] == "finished"
    assert {"accuracy", "train_loss", "align_loss_last10pct"} <= set(rows["metric"])
    assert {"clean", "patch_occlusion", "patch_occlusion_attention", "afat_patch"} <= set(rows["perturbation"])
    assert "attention_cosine" in set(rows["metric"])
    # the same --out again is refused rather than overwritten
    again = runner.invoke(app, ["train", "afat", "--model", "cifar:vit_tiny_patch4", "--out", str(out), "--db",
                                str(db), "--eval-suite", "none", *FAST])  # fmt: skip
    assert again.exit_code == 1 and "--overwrite" in again.output


def test_train_afat_bad_inputs_exit_with_one_line(tmp_path) -> None:
    out = str(tmp_path / "x.safetensors")
    bad = runner.invoke(app, ["train", "afat", "--model", "cifar:vit_tiny_patch4", "--out", out, "--rho", "1.5",
                              "--eval-suite", "none", *FAST])  # fmt: skip
    assert bad.exit_code == 1 and "--rho" in bad.output and "Traceback" not in bad.output
    bad = runner.invoke(app, ["train", "afat", "--model", "cifar:small_cnn", "--out", out, "--eval-suite", "none",
                              *FAST])  # fmt: skip
    assert bad.exit_code == 1 and "vision transformers" in bad.output
