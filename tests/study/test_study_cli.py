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


def test_study_noise_records_the_command_as_typed_and_labels_native_size_sweeps_pixels(tmp_path) -> None:
    import csv

    from robustlab.store import Store

    db = tmp_path / "s.db"
    args = ["study", "noise", "--models", "cifar:small_cnn", "--data", "digits", "--sigmas", "0,0.1",
            "--n", "16", "--db", str(db), "--random-init", "--device", "cpu"]  # fmt: skip
    assert runner.invoke(app, args).exit_code == 0
    with Store(db) as store:
        (command,) = store.runs()["command"]
    # the run can be repeated from `robustlab results --runs`: same sample count, same store
    assert "--n 16" in command and f"--db {db}" in command and "--sigmas 0,0.1" in command, command
    # small_cnn takes digits at their native size: the engine's noise hit the native pixels, as asked
    out = tmp_path / "study.csv"
    analyzed = runner.invoke(app, ["study", "analyze", "--db", str(db), "--out", str(out)])
    assert analyzed.exit_code == 0, analyzed.output
    with out.open() as f:
        assert [row["noise_at"] for row in csv.DictReader(f)] == ["pixels"]
