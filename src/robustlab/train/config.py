"""Typed, validated settings of :func:`robustlab.train.fit`: one field per keyword, a docstring per field."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields
from typing import Any

from robustlab._registry import close_matches_message

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "constant")
AMP_MODES = (None, True, False, "bf16", "fp16")

# Fields that say how to run, not what to train: they may change between a run and its resume silently.
RUN_CONTROL_FIELDS = frozenset({"epochs", "checkpoint", "resume", "max_time", "num_workers"})


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class FitConfig:
    """Settings of one training run. Every field is a keyword of :func:`robustlab.train.fit` of the same name.

    Raises:
        ValueError: from ``__post_init__`` when a field is out of range or an unknown name; the message
            starts with the field's name and says what is expected.

    Example:
        >>> FitConfig(epochs=10, lr=0.1).schedule
        'cosine'
    """

    epochs: int
    """Total number of passes over the training data (a resumed run trains until this many are done)."""

    lr: float
    """Peak learning rate, reached after warm-up."""

    batch_size: int = 128
    """Samples per optimiser step *per process*; under torchrun the global batch is
    ``batch_size * world_size``."""

    optimizer: str = "sgd"
    """``"sgd"`` (with momentum) or ``"adamw"``. Weight decay skips biases and normalisation weights (1-D)."""

    momentum: float = 0.9
    """SGD momentum in [0, 1); ignored by AdamW."""

    weight_decay: float = 5e-4
    """Decoupled (AdamW) or L2 (SGD) weight decay, >= 0, applied to weights with two or more dimensions."""

    warmup_epochs: float = 0.0
    """Linear warm-up length in epochs (fractions allowed), converted to steps; exclusive with
    ``warmup_steps``."""

    warmup_steps: int | None = None
    """Linear warm-up length in optimiser steps; overrides the epoch-based length when given."""

    schedule: str = "cosine"
    """Learning-rate schedule after warm-up: ``"cosine"`` (to zero at the last step) or ``"constant"``."""

    grad_clip: float | None = None
    """Clip the global gradient L2 norm to this value (> 0); None disables clipping."""

    amp: bool | str | None = None
    """Mixed precision: None = on for CUDA (bf16 where supported, else fp16), off on CPU; True = on;
    False = off; ``"bf16"`` / ``"fp16"`` force a dtype. fp16 uses a gradient scaler."""

    drop_last: bool = False
    """Drop each epoch's last, smaller batch (set when batch norm would see a batch of one)."""

    seed: int = 0
    """Seeds the shuffling and augmentation generators (derived per epoch and batch; the global RNG is
    untouched)."""

    checkpoint: str | None = None
    """Path of the checkpoint written after every epoch and when ``max_time`` stops the run; None writes
    none."""

    resume: bool = False
    """Continue from ``checkpoint``, which must exist."""

    max_time: float | None = None
    """Wall-clock budget in seconds for this call; when spent, training stops after the current step and
    checkpoints. None means no limit."""

    num_workers: int = 0
    """DataLoader worker processes that read batches (useful for datasets that decode image files)."""

    def __post_init__(self) -> None:
        if not _is_int(self.epochs) or self.epochs < 1:
            raise ValueError(f"epochs must be an integer >= 1, got {self.epochs!r}")
        if not _is_number(self.lr) or self.lr <= 0:
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        if not _is_int(self.batch_size) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        if self.optimizer not in OPTIMIZERS:
            known = list(OPTIMIZERS)
            raise ValueError("optimizer: " + close_matches_message("optimizer", str(self.optimizer), known))
        if not _is_number(self.momentum) or not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be a number in [0, 1), got {self.momentum!r}")
        if not _is_number(self.weight_decay) or self.weight_decay < 0:
            raise ValueError(f"weight_decay must be a number >= 0, got {self.weight_decay!r}")
        if not _is_number(self.warmup_epochs) or self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be a number >= 0, got {self.warmup_epochs!r}")
        if self.warmup_steps is not None:
            if not _is_int(self.warmup_steps) or self.warmup_steps < 0:
                raise ValueError(f"warmup_steps must be an integer >= 0 or None, got {self.warmup_steps!r}")
            if self.warmup_epochs:
                raise ValueError(
                    f"warmup_steps={self.warmup_steps} and warmup_epochs={self.warmup_epochs} were both "
                    "given; set only one of them"
                )
        if self.schedule not in SCHEDULES:
            known = list(SCHEDULES)
            raise ValueError("schedule: " + close_matches_message("schedule", str(self.schedule), known))
        if self.grad_clip is not None and (not _is_number(self.grad_clip) or self.grad_clip <= 0):
            raise ValueError(f"grad_clip must be a number > 0 or None, got {self.grad_clip!r}")
        if not any(self.amp is mode or (isinstance(mode, str) and self.amp == mode) for mode in AMP_MODES):
            raise ValueError(f"amp must be one of None, True, False, 'bf16', 'fp16', got {self.amp!r}")
        if not isinstance(self.drop_last, bool):
            raise ValueError(f"drop_last must be True or False, got {self.drop_last!r}")
        if not _is_int(self.seed):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if self.checkpoint is not None:
            if not isinstance(self.checkpoint, (str, os.PathLike)) or not os.fspath(self.checkpoint):
                raise ValueError(f"checkpoint must be a file path or None, got {self.checkpoint!r}")
            # stored as text so the config can travel inside a weights_only checkpoint
            self.checkpoint = os.fspath(self.checkpoint)
        if not isinstance(self.resume, bool):
            raise ValueError(f"resume must be True or False, got {self.resume!r}")
        if self.resume and self.checkpoint is None:
            raise ValueError("resume=True needs checkpoint=PATH (the file to continue from)")
        if self.max_time is not None and (not _is_number(self.max_time) or self.max_time < 0):
            raise ValueError(f"max_time must be a number of seconds >= 0 or None, got {self.max_time!r}")
        if not _is_int(self.num_workers) or self.num_workers < 0:
            raise ValueError(f"num_workers must be an integer >= 0, got {self.num_workers!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-typed copy (str, int, float, bool, None) fit for a ``weights_only`` checkpoint."""
        return asdict(self)

    def changed_fields(self, stored: dict[str, Any]) -> list[str]:
        """Training fields whose value differs from a stored config (run-control fields are ignored)."""
        names = [f.name for f in fields(self) if f.name not in RUN_CONTROL_FIELDS and f.name in stored]
        return [name for name in names if stored[name] != getattr(self, name)]
