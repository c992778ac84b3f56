"""Progress that can be followed: the engine's typed events (group k/N, batches, cells, cascade stages), one CLI
adapter that draws bars on a terminal and writes plain lines elsewhere, and the total time at the end."""

from __future__ import annotations

import io
import re

import torch
from rich.console import Console
from typer.testing import CliRunner

from robustlab.attacks import worst_case
from robustlab.cli import app
from robustlab.cli._progress import ProgressView, format_seconds
from robustlab.data import head, load_dataset
from robustlab.engine import evaluate
from robustlab.models import create_model
from robustlab.progress import BatchDone, CellDone, EpochDone, GroupStarted, StageDone, TrainStep, listening
from robustlab.store import Store

runner = CliRunner()
SUITE = "clean,noise:sigmas=0.1+0.3,fog:severities=1-2"


def _setup() -> tuple[torch.nn.Module, object]:
    return create_model("cifar:small_cnn", pretrained=False, seed=0), head(load_dataset("digits"), 40)


def test_the_engine_reports_group_k_of_n_batches_and_cells_as_typed_events(tmp_path) -> None:
    model, data = _setup()
    events: list[object] = []
    with Store(tmp_path / "e.db") as store, store.run("eval", {}) as run_id:
        cells = evaluate(model, data, SUITE, batch_size=16, store=store, run_id=run_id, callback=events.append)
    groups = [e for e in events if isinstance(e, GroupStarted)]
    assert [(g.index, g.total, g.name, g.detail, g.batches) for g in groups] == [
        (1, 3, "clean", "", 3), (2, 3, "noise", "2 settings", 3), (3, 3, "fog", "severities 1-2", 3)]  # fmt: skip
    assert [e.done for e in events if isinstance(e, BatchDone)] == [1, 2, 3] * 3
    done = [e for e in events if isinstance(e, CellDone)]
    assert [(e.key, e.value, e.n) for e in done] == [(c.key, c.value, c.n) for c in cells]
    assert groups[0]["kind"] == "group" and groups[0]["description"] == "clean" and groups[0].get("total") == 3
    # a resumed run computes nothing: no group starts, no batch runs
    again: list[object] = []
    with Store(tmp_path / "e.db") as store, store.run("eval", {}) as run_id:
        evaluate(model, data, SUITE, batch_size=16, store=store, run_id=run_id, callback=again.append)
    assert again == []


def test_a_cascade_reports_each_stage_with_the_images_still_robust() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 3))
    from robustlab.models import wrap_model

    model = wrap_model(net, mean=(0.5,) * 3, std=(0.25,) * 3, input_size=8)
    x = torch.rand(6, 3, 8, 8)
    y = model(x).argmax(1)
    stages: list[StageDone] = []
    with listening(stages.append):
        result = worst_case(model, x, y, ["fgsm", ("pgd", {"steps": 3})], generator=torch.Generator().manual_seed(0))
    assert [(s.stage, s.index, s.total, s.n) for s in stages] == [("fgsm", 1, 2, 6), ("pgd:steps=3", 2, 2, 6)]
    assert [s.robust / s.n for s in stages] == list(result.accuracies[1:])
    worst_case(model, x, y, ["fgsm"])  # nobody listening: nothing to send, nothing fails


def test_eval_writes_plain_lines_when_output_is_not_a_terminal(tmp_path) -> None:
    args = ["eval", "--model", "cifar:small_cnn", "--random-init", "--data", "digits", "--n", "40", "--batch-size",
            "16", "--suite", SUITE, "--db", str(tmp_path / "p.db")]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("[1/3] clean: 3 batch(es)") for line in lines)
    assert any(line.startswith("[3/3] fog · severities 1-2: 3 batch(es)") for line in lines)
    cells = [line for line in lines if line.startswith("  ") and " = " in line]
    assert len(cells) == 5 and cells[0].startswith("  clean accuracy = ") and "(n=40)" in cells[0]
    assert any(line.startswith("  fog s2 accuracy = ") for line in cells)
    assert not re.search(r"━+\s+\d+/\d+", result.output)  # no progress-bar frames in a log
    assert re.search(r"finished in \d+\.\d s$", " ".join(result.output.split()))


def test_the_view_prints_cascade_stages_as_lines_and_draws_bars_on_a_terminal() -> None:
    log = io.StringIO()
    with ProgressView(Console(file=log, width=120), "autoattack on digits") as view:
        view(GroupStarted(index=1, total=1, name="autoattack", detail="eps=8/255", batches=2))
        view(StageDone(stage="apgd:loss=ce", index=1, total=2, robust=3, n=4))
        view(StageDone(stage="apgd:loss=ce", index=1, total=2, robust=1, n=4))
        view({"kind": "step", "step": 3, "total": 10, "epoch": 1, "loss": 0.5})  # a training loop's dict event
    text = log.getvalue()
    assert "apgd (stage 1/2): 3 of 4 attacked images still robust so far (75.0 %)" in text
    assert "apgd (stage 1/2): 4 of 8 attacked images still robust so far (50.0 %)" in text
    screen = io.StringIO()
    terminal = Console(file=screen, width=120, force_terminal=True)
    with ProgressView(terminal, "eval") as view:
        assert view.live and view.progress is not None
        view(GroupStarted(index=2, total=3, name="fog", detail="severities 1-5", batches=4))
        view(BatchDone(done=3, total=4))
        tasks = {t.description: t for t in view.progress.tasks}
        assert tasks["overall: group 2/3"].completed == 7 and tasks["overall: group 2/3"].total == 12
        assert tasks["[2/3] fog · severities 1-5"].completed == 3
    assert format_seconds(42.04) == "42.0 s" and format_seconds(185) == "3 min 05 s"
    assert format_seconds(3725) == "1 h 02 min"


def test_the_view_follows_the_training_loops_typed_events() -> None:
    log = io.StringIO()
    with ProgressView(Console(file=log, width=120), "train") as view:
        view(TrainStep(epoch=1, step=3, total=10, loss=0.5, lr=0.1))
        view(EpochDone(epoch=1, train_loss=0.4321, train_acc=None, val_acc=0.875, lr=0.1, seconds=1.0))
    assert "epoch 1 done: train loss 0.4321, val acc 87.50 %" in log.getvalue()
    screen = io.StringIO()
    with ProgressView(Console(file=screen, width=120, force_terminal=True), "train") as view:
        view(TrainStep(epoch=2, step=7, total=10, loss=0.25, lr=0.1))
        assert view.progress is not None
        (current,) = [t for t in view.progress.tasks if t.description.startswith("train epoch 2")]
        assert (current.completed, current.total) == (7, 10) and "loss 0.250" in current.description
