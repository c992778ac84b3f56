"""`robustlab study` verbs end to end on a tiny model: table printed, cells stored, bad input is one line."""

from __future__ import annotations

from typer.testing import CliRunner

from robustlab.cli import app

runner = CliRunner()


def test_study_theory_prints_the_1_91_factor() -> None:
    result = runner.invoke(app, ["study", "theory"])
    assert result.exit_code == 0 and "1.91" in result.output


def test_study_noise_runs_and_resumes(tmp_path) -> None:
    args = ["study", "noise", "--models", "cifar:small_cnn", "--data", "digits", "--sigmas", "0,0.1",
            "--n", "16", "--db", str(tmp_path / "s.db"), "--random-init", "--device", "cpu"]  # fmt: skip
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "2 new cells" in first.output
    assert "0 new cells" in runner.invoke(app, args).output


def test_study_noise_bad_sigmas_is_a_one_line_error(tmp_path) -> None:
    result = runner.invoke(app, ["study", "noise", "--models", "cifar:small_cnn", "--data", "digits",
                                 "--sigmas", "0,-1", "--db", str(tmp_path / "s.db")])  # fmt: skip
    assert result.exit_code == 1 and ">= 0" in result.output
