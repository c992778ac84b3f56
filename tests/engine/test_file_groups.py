"""Pre-made corrupted files (CIFAR-10-C layout) through the engine agree with on-the-fly corruption."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from robustlab.cli import app
from robustlab.data import Subset, load_dataset
from robustlab.engine import evaluate, file_groups
from robustlab.models import create_model
from robustlab.train import fit

runner = CliRunner()


def test_files_match_on_the_fly_and_are_stored_apart(tmp_path) -> None:
    out = tmp_path / "digits-c"
    written = runner.invoke(app, ["corrupt", "--data", "digits", "--out", str(out), "--corruptions", "contrast,fog",
                                  "--format", "cifar", "--n", "120"])  # fmt: skip
    assert written.exit_code == 0, written.output
    test = Subset(load_dataset("digits"), range(120))
    model = create_model("cifar:small_cnn", pretrained=False)
    fit(model, load_dataset("digits", split="train"), epochs=3, lr=0.05, batch_size=64, seed=0)

    groups = file_groups(out, corruptions=["contrast", "fog"], class_names=test.class_names)
    from_files = evaluate(model, test, groups)
    on_the_fly = evaluate(model, test, "contrast,fog", profile="cifar")
    assert [c.key.params_json for c in from_files] == ['{"source":"files"}'] * 10
    for a, b in zip(from_files, on_the_fly, strict=True):
        assert (a.key.perturbation, a.key.severity) == (b.key.perturbation, b.key.severity)
        # same per-sample seeds; the files only add the uint8 truncation
        assert abs(a.value - b.value) <= 0.05


def test_file_groups_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="neither"):
        file_groups(tmp_path)
    (tmp_path / "labels.npy").write_bytes(b"")
    with pytest.raises(ValueError, match="no data for"):
        file_groups(tmp_path, corruptions=["fog"])
