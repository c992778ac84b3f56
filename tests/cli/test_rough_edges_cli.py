"""A new user's rough edges on the command line: help that is never cut, `robustlab list`, error text that keeps
square brackets and names flags, the full command in the store, --n beyond the dataset, study noise checks first."""

from __future__ import annotations

import sqlite3

import pytest
from typer.testing import CliRunner

from robustlab.cli import app
from robustlab.cli._common import cli_hints, command_line  # noqa: F401  (command_line is exercised via eval)
from robustlab.cli.listing import SUITE_HELP, first_sentence

runner = CliRunner()


@pytest.mark.parametrize("args", [["--help"], ["eval", "--help"], ["study", "--help"], ["study", "noise", "--help"],
                                  ["train", "--help"], ["attack", "--help"], ["corrupt", "--help"]])  # fmt: skip
def test_help_at_80_columns_is_never_cut(args: list[str]) -> None:
    result = runner.invoke(app, args, terminal_width=80, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    # click and rich cut a help cell at its end; only the usage line's "[ARGS]..." may end in dots
    assert not [line for line in result.output.splitlines() if line.rstrip().endswith("...")
                and not line.startswith("Usage:")]  # fmt: skip
    assert max(len(line) for line in result.output.splitlines()) <= 80
    if args == ["eval", "--help"]:
        words = result.output.split()
        assert "attention_stability," in words and "'pgd:eps=8/255,steps=20'." in words
    if args == ["--help"]:  # every command's first sentence whole, wrapped
        text = " ".join(result.output.split())
        assert "Attack a dataset with one attack setting; write adversarial examples and per-sample outcomes." in text


def test_list_corruptions_gives_one_line_per_corruption() -> None:
    from robustlab.perturb import ALL_CORRUPTIONS

    result = runner.invoke(app, ["list", "corruptions"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split()[0] for line in lines] == list(ALL_CORRUPTIONS)
    assert all(len(line.split()) > 2 for line in lines)  # a description on every line
    assert sum("[validation]" in line for line in lines) == 4


def test_list_everything_has_each_section_and_every_name() -> None:
    from robustlab.attacks import ATTACKS
    from robustlab.engine.measures import AFAT_TOKENS
    from robustlab.engine.suite import SUITE_TOKENS
    from robustlab.explain import list_explainers

    assert set(SUITE_HELP) == set(SUITE_TOKENS) | set(AFAT_TOKENS)  # a new suite entry needs its line
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    names = {line.split()[0] for line in result.output.splitlines() if line.startswith("  ")}
    for section in ("suites:", "corruptions:", "attacks:", "explainers:", "models:", "datasets:"):
        assert section in result.output.splitlines()
    assert set(ATTACKS.names()) <= names and set(list_explainers()) <= names and set(SUITE_TOKENS) <= names
    assert {"cifar:resnet20", "file:<path>", "timm:<name>[.<tag>]"} <= names
    singular = runner.invoke(app, ["list", "attack"])
    assert singular.exit_code == 0 and singular.output.split()[0] == "apgd"
    bad = runner.invoke(app, ["list", "weather"])
    assert bad.exit_code == 1 and "suites, corruptions, attacks" in bad.output


def test_first_sentence_keeps_citations_whole() -> None:
    def f() -> None:
        """Fast gradient sign method (Goodfellow et al. 2015): one ``eps`` step, see :func:`pgd`. Second one."""

    assert first_sentence(f) == "Fast gradient sign method (Goodfellow et al. 2015): one eps step, see pgd."


def test_unknown_suite_entry_lists_known_entries_in_english(tmp_path) -> None:
    result = runner.invoke(app, ["eval", "--model", "cifar:small_cnn", "--random-init", "--data", "digits",
                                 "--suite", "fgo", "--db", str(tmp_path / "x.db")])  # fmt: skip
    assert result.exit_code == 1
    assert "Known suite entries:" in result.output and "entrys" not in result.output
    assert "\nError: Unknown suite entry 'fgo'" in result.output


def test_errors_keep_square_brackets_and_use_click_style(tmp_path) -> None:
    result = runner.invoke(app, ["eval", "--model", "file:ckpt[v2].pt", "--data", "digits",
                                 "--db", str(tmp_path / "x.db")])  # fmt: skip
    assert result.exit_code == 1
    assert "ckpt[v2].pt" in result.output and "Traceback" not in result.output
    assert result.output.startswith("Error: ") and "error:" not in result.output
    usage = runner.invoke(app, ["eval"])  # click's own usage errors read the same way
    assert usage.exit_code == 2 and "Error: Missing option '--model'" in usage.output


def test_hints_name_cli_flags_not_python_arguments(tmp_path) -> None:
    empty = tmp_path / "data"
    empty.mkdir()
    result = runner.invoke(app, ["eval", "--model", "cifar:resnet20", "--data", "digits", "--n", "4",
                                 "--data-dir", str(empty), "--db", str(tmp_path / "x.db")])  # fmt: skip
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert "--random-init" in text and "--data-dir" in text
    assert "pretrained=False" not in text and "data_dir=" not in text
    assert cli_hints("load it with create_model('file:<path>') or pass weights=<file>") == (
        "load it with --model file:<path> or pass --weights <file>"
    )


def test_runs_record_the_full_command_and_n_beyond_the_dataset_is_said(tmp_path) -> None:
    db = tmp_path / "full.db"
    args = ["eval", "--model", "cifar:small_cnn", "--random-init", "--data", "digits", "--n", "100000",
            "--suite", "clean", "--batch-size", "512", "--db", str(db)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "--n 100000 exceeds the 360 samples of digits (test split); using all 360" in " ".join(result.output.split())
    with sqlite3.connect(db) as conn:
        (command,) = conn.execute("SELECT command FROM runs").fetchone()
    assert command == ("robustlab eval --model cifar:small_cnn --data digits --suite clean --n 100000 "
                       f"--db {db} --batch-size 512 --random-init")  # fmt: skip


def test_study_noise_checks_every_model_before_running(tmp_path) -> None:
    db = tmp_path / "s.db"
    result = runner.invoke(app, ["study", "noise", "--models", "cifar:small_cnn,cifar:resnet99,timm:no_such_net",
                                 "--data", "digits", "--n", "8", "--random-init", "--db", str(db)])  # fmt: skip
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "2 of 3 models cannot be built, nothing was run" in text
    assert "cifar:resnet99" in text and "timm:no_such_net" in text
    if db.exists():
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 0


def test_a_checkpoint_named_with_brackets_prints_whole(tmp_path) -> None:
    from robustlab.models import create_model, save_checkpoint

    path = save_checkpoint(create_model("cifar:small_cnn", pretrained=False, seed=0), tmp_path / "ckpt[v2].pt")
    db = tmp_path / "b[1].db"
    result = runner.invoke(app, ["eval", "--model", f"file:{path}", "--data", "digits", "--n", "16",
                                 "--suite", "clean", "--db", str(db)], terminal_width=400)  # fmt: skip
    assert result.exit_code == 0, result.output
    text = "".join(result.output.split())
    assert f"file:{path}".replace(" ", "") in text and "b[1].db" in text


def test_the_data_help_and_a_log_line_say_cifar10_is_the_jpeg_copy(tmp_path) -> None:
    import numpy as np

    help_text = " ".join(runner.invoke(app, ["eval", "--help"], terminal_width=80).output.split())
    assert "cifar10 is the shared JPEG-q75 copy" in help_text and "cifar10_exact" in help_text
    # a CIFAR-10 data folder as the shared one holds it: only the JPEG-q75 test copy
    folder = tmp_path / "data" / "cifar10"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.savez(folder / "cifar10_test.npz", images=rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8),
             labels=np.arange(8) % 10)  # fmt: skip
    result = runner.invoke(app, ["eval", "--model", "cifar:small_cnn", "--random-init", "--data", "cifar10",
                                 "--data-dir", str(tmp_path / "data"), "--suite", "clean",
                                 "--db", str(tmp_path / "c.db")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "note: cifar10: JPEG-q75 approximated pixels" in " ".join(result.output.split())


def test_warnings_print_as_one_line_and_eval_asks_about_a_forgotten_255(tmp_path) -> None:
    import warnings

    from robustlab.cli import format_warning

    shown = format_warning(UserWarning("eps=8 exceeds 1"), UserWarning, "x.py", 3, "code")
    assert shown == "warning: eps=8 exceeds 1\n"
    hint = format_warning(UserWarning("no weights; pass pretrained=False to silence this"), UserWarning, "x.py", 3)
    assert hint == "warning: no weights; pass --random-init to silence this\n"
    args = ["eval", "--model", "cifar:small_cnn", "--random-init", "--data", "digits", "--n", "8",
            "--suite", "pgd:eps=8,steps=1", "--db", str(tmp_path / "w.db")]  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert any("did you mean eps=8/255?" in str(w.message) for w in caught)
