"""The one adapter from robustlab's progress events to the screen or a log.

On a terminal: an overall bar (group k/N with an ETA over all the batches still to run) and a bar for the current
group that says what it holds (``fog · severities 1-5``), with AutoAttack's stage and robust accuracy so far. When
stderr is not a terminal (nohup, SLURM logs, a pipe) bars would arrive only as their last state, so the same events
become plain lines: one when a group starts, one per finished cell, one per cascade stage. Both end with the total
time. The training loop's events (:class:`~robustlab.progress.TrainStep` ...) and the dict events some loops still
send (``{"kind": "step", ...}``) are followed on the current bar too.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from robustlab.progress import BatchDone, CellDone, EpochDone, EpochStarted, Event, GroupStarted, StageDone, TrainStep


def format_seconds(seconds: float) -> str:
    """``42.0 s``, ``3 min 05 s``, ``1 h 02 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _cell_text(event: CellDone) -> str:
    key = event.key
    where = key.perturbation + (f" s{key.severity}" if key.severity else "")
    params = getattr(key, "params_json", "{}")
    shown = "" if params in ("{}", "") else f" {params}"
    n = f" (n={event.n})" if event.n is not None else ""
    return f"{where}{shown} {key.metric} = {event.value:.4f}{n}"


class ProgressView:
    """Follow an evaluation, an attack or a training loop; call it with each event.

    Args:
        console: where to draw (the CLI's stderr console).
        label: what the bars follow when no group says it (``"pgd on cifar10"``).
        live: draw bars (default: when ``console`` is a terminal) instead of plain lines.
    """

    def __init__(self, console: Console, label: str = "", *, live: bool | None = None) -> None:
        self.console = console
        self.label = label
        self.live = console.is_terminal if live is None else live
        self.start = time.perf_counter()
        self.progress: Progress | None = None
        self._overall: Any = None
        self._current: Any = None
        self._group = ""
        self._group_total = 1
        self._batches_before = 0  # batches of the groups already finished, for the overall bar
        self._stage_robust: dict[int, list[int]] = {}

    @classmethod
    def attach(cls, progress: Progress, task_id: Any, label: str = "") -> ProgressView:
        """Follow events on a task of a progress display the caller already runs (one bar among several)."""
        view = cls(progress.console, label.strip(), live=True)
        view.progress, view._current = progress, task_id
        return view

    # ------------------------------------------------------------------ context
    def __enter__(self) -> ProgressView:
        self.start = time.perf_counter()
        if self.live:
            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("eta"), TimeRemainingColumn(), console=self.console, transient=False,
            )  # fmt: skip
            self.progress.__enter__()
            self._current = self.progress.add_task(escape(self.label) or "starting", total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)  # type: ignore[arg-type]
            self.progress = None

    @property
    def seconds(self) -> float:
        """Seconds since the view was entered."""
        return time.perf_counter() - self.start

    def line(self, text: str) -> None:
        """Print a plain line (above the bars when they are drawn)."""
        target = self.progress.console if self.progress is not None else self.console
        target.print(text, markup=False, highlight=False, soft_wrap=True)

    # ------------------------------------------------------------------ events
    def __call__(self, event: Any) -> None:
        if isinstance(event, GroupStarted):
            self._on_group(event)
        elif isinstance(event, BatchDone):
            self._on_batch(event)
        elif isinstance(event, CellDone):
            if not self.live:
                self.line(f"  {_cell_text(event)}  [{format_seconds(self.seconds)}]")
        elif isinstance(event, StageDone):
            self._on_stage(event)
        elif isinstance(event, (dict, EpochStarted, TrainStep, EpochDone)):
            self._on_dict(event)  # the training loop's typed events read like its old dicts

    def _on_group(self, event: GroupStarted) -> None:
        self._stage_robust = {}
        self._group = f"[{event.index}/{event.total}] {event.name}" + (f" · {event.detail}" if event.detail else "")
        self._group_total = max(event.batches, 1)
        self._batches_before = (event.index - 1) * self._group_total  # every group passes over the same batches
        if self.progress is None:
            self.line(f"{self._group}: {event.batches} batch(es)  [{format_seconds(self.seconds)}]")
            return
        if self._overall is None:
            # every group makes one pass over the same batches: the overall bar counts all of them
            self._overall = self.progress.add_task("overall", total=event.total * self._group_total)
        self.progress.update(self._overall, description=f"overall: group {event.index}/{event.total}",
                             completed=self._batches_before, total=event.total * self._group_total)  # fmt: skip
        self.progress.update(self._current, description=escape(self._group), completed=0, total=self._group_total)

    def _on_batch(self, event: BatchDone) -> None:
        if self.progress is None:
            return
        self.progress.update(self._current, completed=event.done, total=event.total)
        if self._overall is not None:
            self.progress.update(self._overall, completed=self._batches_before + event.done)

    def _on_stage(self, event: StageDone) -> None:
        seen = self._stage_robust.setdefault(event.index, [0, 0])
        seen[0] += event.robust
        seen[1] += event.n
        accuracy = 100 * seen[0] / seen[1] if seen[1] else float("nan")
        # the cascade attacks the images the model gets right, so the share is of those attacked
        stage = event.stage.split(":")[0]
        text = (f"{stage} (stage {event.index}/{event.total}): {seen[0]} of {seen[1]} attacked images still robust "
                f"so far ({accuracy:.1f} %)")  # fmt: skip
        if self.progress is None:
            self.line(f"  {text}  [{format_seconds(self.seconds)}]")
        else:
            self.progress.update(self._current, description=escape(f"{self._group or self.label} · {text}"))

    def _on_dict(self, event: dict[str, Any] | Event) -> None:
        # the training loops' and the studies' events: a count, a total, maybe a description
        done = next((event[k] for k in ("completed", "done", "step") if k in event), None)
        description = event.get("description")
        if event.get("kind") == "model":  # a study finished one model: a line in both modes, the bars go on
            self.line(f"model {done}/{event.get('total')} done: {description}  [{format_seconds(self.seconds)}]")
            self._group, self._batches_before = "", 0
            return
        if event.get("kind") == "step" and "loss" in event:
            description = f"{self.label} epoch {event.get('epoch')}  loss {event['loss']:.3f}".strip()
        if self.progress is None:
            if event.get("kind") == "epoch_end" and "train_loss" in event:
                val = "" if event.get("val_acc") is None else f", val acc {100 * event['val_acc']:.2f} %"
                self.line(f"epoch {event.get('epoch')} done: train loss {event['train_loss']:.4f}{val}  "
                          f"[{format_seconds(self.seconds)}]")  # fmt: skip
            elif event.get("kind") in ("epoch_end", "stage"):
                self.line(f"{description or event.get('kind')}: {done}/{event.get('total')}  "
                          f"[{format_seconds(self.seconds)}]")  # fmt: skip
            return
        if done is not None:
            self.progress.update(self._current, total=event.get("total"), completed=done)
        if description:
            self.progress.update(self._current, description=escape(str(description)))

    def finish(self, what: str = "finished") -> None:
        """Print the total time (``what in 3 min 05 s``)."""
        self.line(f"{what} in {format_seconds(self.seconds)}")
