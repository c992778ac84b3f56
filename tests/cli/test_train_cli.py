"""`robustlab train`: trains on a dataset, saves a checkpoint that file: reloads, resumes, and fails clearly."""

from __future__ import annotations

import torch
from typer.testing import CliRunner

from robustlab.cli import app
from robustlab.data import load_dataset
from robustlab.engine.accuracy import evaluate_accuracy
from robustlab.models import create_model

runner = CliRunner()


def test_train_digits_checkpoint_reloads_and_learns(tmp_path) -> None:
    out = tmp_path / "cnn.safetensors"
    args = ["train", "--model", "cifar:small_cnn", "--data", "digits", "--out", str(out), "--epochs", "2",
            "--lr", "0.05", "--batch-size", "64", "--no-augment"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "epoch 2" in result.output
    model = create_model(f"file:{out}")
    assert not model.training
    correct, count = evaluate_accuracy(model, load_dataset("digits"))
    assert count == 360 and correct / count > 0.5  # two epochs lift it far above chance (0.1)

    # resuming a finished run trains no further: the weights stay identical
    before = {k: v.clone() for k, v in model.state_dict().items()}
    again = runner.invoke(app, [*args, "--resume"])
    assert again.exit_code == 0, again.output
    after = create_model(f"file:{out}").state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_train_bad_inputs_exit_with_one_line(tmp_path) -> None:
    out = str(tmp_path / "x.pt")
    bad_model = runner.invoke(app, ["train", "--model", "cifar:resnet2", "--data", "digits", "--out", out])
    assert bad_model.exit_code == 1
    assert "Did you mean" in bad_model.output and "Traceback" not in bad_model.output
    bad_data = runner.invoke(app, ["train", "--model", "cifar:small_cnn", "--data", "digitz", "--out", out])
    assert bad_data.exit_code == 1 and "digits" in bad_data.output
    bad_lr = runner.invoke(app, ["train", "--model", "cifar:small_cnn", "--data", "digits", "--out", out,
                                 "--lr", "-1"])  # fmt: skip
    assert bad_lr.exit_code == 1 and "lr" in bad_lr.output


def test_train_refuses_to_replace_an_existing_checkpoint(tmp_path) -> None:
    out = tmp_path / "mine.safetensors"
    out.write_bytes(b"the user's earlier checkpoint")
    args = ["train", "--model", "cifar:small_cnn", "--data", "digits", "--out", str(out), "--epochs", "1",
            "--batch-size", "64", "--no-augment"]  # fmt: skip
    refused = runner.invoke(app, args)
    assert refused.exit_code == 1 and "--overwrite" in refused.output and "Traceback" not in refused.output
    assert out.read_bytes() == b"the user's earlier checkpoint"
    replaced = runner.invoke(app, [*args, "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    create_model(f"file:{out}")


def test_train_without_model_or_method_names_what_is_missing() -> None:
    result = runner.invoke(app, ["train", "--data", "digits"])
    assert result.exit_code == 2 and "--model" in result.output and "--out" in result.output
    assert "Traceback" not in result.output
