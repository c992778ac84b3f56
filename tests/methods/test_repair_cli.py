"""`robustlab repair ar2`: repairs on the embedded digits, saves loadable checkpoints, records run and evaluations."""

from __future__ import annotations

from typer.testing import CliRunner

from robustlab.cli import app
from robustlab.models import create_model
from robustlab.store import Store

runner = CliRunner()
FAST = ["--iterations", "1", "--steps", "1", "--batch-size", "16", "--n-train", "48", "--n-eval", "16"]


def test_repair_ar2_saves_checkpoint_and_records_results(tmp_path) -> None:
    base = tmp_path / "base.safetensors"
    trained = runner.invoke(app, ["train", "--model", "cifar:small_cnn", "--data", "digits", "--out", str(base),
                                  "--epochs", "1", "--batch-size", "64", "--no-augment"])  # fmt: skip
    assert trained.exit_code == 0, trained.output
    out, db = tmp_path / "fog.safetensors", tmp_path / "r.db"
    result = runner.invoke(app, ["repair", "ar2", "--model", f"file:{base}", "--data", "digits", "--corruption",
                                 "fog", "--out", str(out), "--db", str(db), *FAST])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "selected iteration" in result.output
    create_model(f"file:{out}")
    with Store(db) as store:
        runs = store.runs()
        rows = store.results(model=f"file:{out}")
    assert len(runs) == 1 and runs["status"].iloc[0] == "finished"
    assert set(rows["metric"]) >= {"accuracy", "heldout_corrupted_acc", "heldout_clean_acc"}
    assert {"clean", "fog"} <= set(rows["perturbation"])


def test_repair_ar2_bad_inputs_exit_with_one_line(tmp_path) -> None:
    out = str(tmp_path / "x.safetensors")
    bad = runner.invoke(app, ["repair", "ar2", "--model", "cifar:small_cnn", "--data", "digits", "--corruption",
                              "fogg", "--out", out, *FAST])  # fmt: skip
    assert bad.exit_code == 1 and "fog" in bad.output and "Traceback" not in bad.output
    bad = runner.invoke(app, ["repair", "ar2", "--model", "cifar:small_cnn", "--data", "digits", "--corruption",
                              "fog", "--out", out, "--baseline", "mixup", *FAST])  # fmt: skip
    assert bad.exit_code == 1 and "method" in bad.output


def test_repair_unified_baseline_without_evaluation(tmp_path) -> None:
    out, db = tmp_path / "unified.pt", tmp_path / "r.db"
    result = runner.invoke(app, ["repair", "ar2", "--model", "cifar:small_cnn", "--data", "digits", "--corruption",
                                 "unified", "--baseline", "finetune", "--eval-suite", "none", "--out", str(out),
                                 "--db", str(db), *FAST])  # fmt: skip
    assert result.exit_code == 0, result.output
    create_model(f"file:{out}")
    with Store(db) as store:
        rows = store.results(model=f"file:{out}")
    assert set(rows["perturbation"]) == {"unified"} and set(rows["split"]) == {"train_heldout"}


def test_repair_all_writes_one_model_per_test_corruption_and_keeps_existing_files(tmp_path) -> None:
    from robustlab.perturb import TEST_CORRUPTIONS

    out, db = tmp_path / "repaired", tmp_path / "r.db"
    out.mkdir()
    (out / "fog.safetensors").write_bytes(b"earlier")
    args = ["repair", "ar2", "--model", "cifar:small_cnn", "--data", "digits", "--corruption", "all",
            "--out", str(out), "--db", str(db), "--eval-suite", "clean", *FAST]  # fmt: skip
    refused = runner.invoke(app, args)
    assert refused.exit_code == 1 and "fog.safetensors" in refused.output.replace("\n", "")
    assert "Traceback" not in refused.output
    assert (out / "fog.safetensors").read_bytes() == b"earlier"
    result = runner.invoke(app, [*args, "--overwrite"])
    assert result.exit_code == 0, result.output
    assert sorted(p.stem for p in out.glob("*.safetensors")) == sorted(TEST_CORRUPTIONS)
    create_model(f"file:{out / 'jpeg_compression.safetensors'}")
    with Store(db) as store:
        held_out = store.results(metric="heldout_corrupted_acc")
    assert set(held_out["perturbation"]) == set(TEST_CORRUPTIONS)
