"""Typed progress events, and the listener that code deep inside a loop reports to.

The evaluation engine, ``attack_dataset`` and the attack cascade report what they do as small frozen dataclasses:

- :class:`GroupStarted`: the engine begins group ``index`` of ``total`` (a corruption with its severities, the
  noise levels, one attack setting), ``batches`` batches long;
- :class:`BatchDone`: ``done`` of ``total`` batches of the current group (or of ``attack_dataset``);
- :class:`CellDone`: a store cell is finished, with its value;
- :class:`StageDone`: a cascade stage (AutoAttack's APGD-CE, APGD-T, FAB-T, Square) finished on a batch, with the
  images still robust after it.

The training loop (:func:`robustlab.train.fit`) sends :class:`EpochStarted`, :class:`TrainStep` and
:class:`EpochDone` to its ``callback=``.

The engine's functions take ``callback=``; code that runs deeper (a cascade inside an engine batch) reaches the
same callback through :func:`emit`, which sends to whatever :func:`listening` installed (a context variable, so
threads and nested evaluations keep their own). Nothing here prints: the command line turns events into progress
bars or plain log lines.

Events still read like the dicts the engine and the training loop used to send (``event["kind"]``,
``event.get("done")``, ``"loss" in event``, ``{**event}``), so callbacks written for those keep working.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ClassVar

_MISSING = object()


@dataclass(frozen=True)
class Event:
    """Base of every progress event; ``kind`` names it as the engine's old dict events did."""

    kind: ClassVar[str] = "event"

    def get(self, key: str, default: Any = None) -> Any:
        """Dict-style read of a field (``"kind"`` included), for callbacks written for dict events."""
        if key == "kind":
            return self.kind
        legacy = self._legacy()
        if key in legacy:
            return legacy[key]
        return getattr(self, key, default) if key in {f.name for f in dataclasses.fields(self)} else default

    def __getitem__(self, key: str) -> Any:
        sentinel = object()
        value = self.get(key, sentinel)
        if value is sentinel:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key, _MISSING) is not _MISSING

    def keys(self) -> list[str]:
        """``"kind"``, the fields and the old dict keys: what ``{**event}`` and ``dict(event)`` copy."""
        return list(dict.fromkeys(["kind", *(f.name for f in dataclasses.fields(self)), *self._legacy()]))

    def __iter__(self) -> Iterator[str]:
        """The keys, as iterating the old dict events gave them (``set(event)``)."""
        return iter(self.keys())

    def _legacy(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True)
class GroupStarted(Event):
    """The engine starts a group of conditions that share one pass over the data."""

    kind: ClassVar[str] = "group"
    index: int
    """1-based position among the groups this call computes (resumed groups are not counted)."""
    total: int
    """How many groups this call computes."""
    name: str
    """The group, e.g. ``"fog"``, ``"gaussian_noise_sigma"``, ``"pgd"``."""
    detail: str
    """What inside it: ``"severities 1-5"``, ``"sigma 0.02-0.3 (8 levels)"``, ``"eps=8/255,steps=20"``."""
    batches: int
    """Batches in its pass (this rank's shard)."""

    def _legacy(self) -> dict[str, Any]:
        return {"description": self.name, "total": self.batches}


@dataclass(frozen=True)
class BatchDone(Event):
    """``done`` of ``total`` batches of the current pass are finished."""

    kind: ClassVar[str] = "batch"
    done: int
    total: int


@dataclass(frozen=True)
class CellDone(Event):
    """One store cell is finished."""

    kind: ClassVar[str] = "cell"
    key: Any
    """Its :class:`robustlab.store.ResultKey`."""
    value: float
    n: int | None


@dataclass(frozen=True)
class StageDone(Event):
    """A cascade stage finished on one batch: ``robust`` of its ``n`` images are still classified correctly."""

    kind: ClassVar[str] = "stage"
    stage: str
    """The stage's label, e.g. ``"apgd_t"``."""
    index: int
    """1-based position in the cascade."""
    total: int
    """Stages in the cascade."""
    robust: int
    n: int


@dataclass(frozen=True)
class EpochStarted(Event):
    """The training loop begins epoch ``epoch`` (1-based) of ``epochs``."""

    kind: ClassVar[str] = "epoch_start"
    epoch: int
    epochs: int


@dataclass(frozen=True)
class TrainStep(Event):
    """One optimiser step of the training loop is done."""

    kind: ClassVar[str] = "step"
    epoch: int
    """1-based epoch the step belongs to."""
    step: int
    """Steps done so far in the whole run (1-based, counting a resumed run's earlier steps)."""
    total: int
    """Steps the run makes in all."""
    loss: float
    """This batch's training loss."""
    lr: float
    """The learning rate the step used."""


@dataclass(frozen=True)
class EpochDone(Event):
    """An epoch of the training loop is finished; the fields are its entry in ``FitResult.history``."""

    kind: ClassVar[str] = "epoch_end"
    epoch: int
    train_loss: float
    train_acc: float | None
    """None when the loss function returns no logits."""
    val_acc: float | None
    """None without validation data."""
    lr: float
    seconds: float


Callback = Callable[[Any], None]
"""What receives events (typed events, and the dict events some method loops still send)."""

_listener: ContextVar[Callback | None] = ContextVar("robustlab_progress_listener", default=None)


def emit(event: Event) -> None:
    """Send ``event`` to the listener :func:`listening` installed, if any (a no-op otherwise)."""
    listener = _listener.get()
    if listener is not None:
        listener(event)


@contextlib.contextmanager
def listening(callback: Callback | None) -> Iterator[None]:
    """Route :func:`emit` to ``callback`` inside the block (``None`` leaves the current listener in place)."""
    if callback is None:
        yield
        return
    token = _listener.set(callback)
    try:
        yield
    finally:
        _listener.reset(token)
