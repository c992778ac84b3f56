"""`robustlab repair ar2`: repairs on the embedded digits, saves loadable checkpoints, records run and evaluations."""

from __future__ import annotations

import re

import torch
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
    assert re.search(r"fog: held-out \(5 images\) corrupted .* -> .*iteration [01] of 1 selected", " ".join(
        result.output.split()))  # fmt: skip
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


def test_augmix_with_corruption_all_trains_once(tmp_path, monkeypatch) -> None:
    import robustlab.methods.ar2 as ar2
    from robustlab.perturb import TEST_CORRUPTIONS

    calls: list[str] = []
    original = ar2.repair

    def counting(*args, **kwargs):
        calls.append(kwargs["corruption"])
        return original(*args, **kwargs)

    monkeypatch.setattr(ar2, "repair", counting)
    out, db = tmp_path / "augmix", tmp_path / "r.db"
    result = runner.invoke(app, ["repair", "ar2", "--model", "cifar:small_cnn", "--data", "digits", "--corruption",
                                 "all", "--baseline", "augmix", "--eval-suite", "none", "--out", str(out),
                                 "--db", str(db), *FAST])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert calls == ["unified"]  # one model, selected on the whole pool, written for every corruption
    assert sorted(p.stem for p in out.glob("*.safetensors")) == sorted(TEST_CORRUPTIONS)
    a, b = create_model(f"file:{out / 'fog.safetensors'}"), create_model(f"file:{out / 'pixelate.safetensors'}")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_repair_prints_before_and_after_and_warns_when_unmodified(tmp_path) -> None:
    out, db = tmp_path / "ft.safetensors", tmp_path / "r.db"
    result = runner.invoke(app, ["repair", "ar2", "--model", "cifar:small_cnn", "--data", "digits", "--corruption",
                                 "fog", "--baseline", "finetune", "--finetune-lr", "1e-12", "--eval-suite", "none",
                                 "--out", str(out), "--db", str(db), *FAST])  # fmt: skip
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert re.search(r"held-out \(5 images\) corrupted \d+\.\d\d % -> \d+\.\d\d %, clean", text), text
    assert "warning: finetune repair against fog returned the unmodified model" in text
    assert "barely changed the model" in text and "finetune_lr=1e-12" in text


def test_repair_options_and_torchrun_refusal(tmp_path, monkeypatch) -> None:
    from robustlab.methods import AR2Config

    help_text = " ".join(runner.invoke(app, ["repair", "ar2", "--help"], terminal_width=200).output.split())
    defaults = AR2Config()
    for flag in ("--refine-lr", "--finetune-lr", "--schedule", "--k", "--val-fraction", "bn_adapt"):
        assert flag in help_text, flag
    assert f"[default: {defaults.refine_lr:g}]" in help_text and f"[default: {defaults.finetune_lr:g}]" in help_text
    monkeypatch.setenv("WORLD_SIZE", "2")
    refused = runner.invoke(app, ["repair", "ar2", "--model", "cifar:small_cnn", "--data", "digits", "--corruption",
                                  "fog", "--out", str(tmp_path / "x.pt"), *FAST])  # fmt: skip
    assert refused.exit_code == 1 and "torchrun" in refused.output and "Traceback" not in refused.output
