"""Evaluation engine: the one loop over batches x perturbations, streamed, sharded under torchrun, resumable.

:func:`evaluate` runs a suite (``"clean,corruptions,noise"``) and writes every cell to the results store as it
finishes; :func:`evaluate_accuracy` is the plain (optionally perturbed) accuracy loop; :func:`summarize` turns cells
into headline numbers (clean accuracy, mean corruption error, mCE, noise slope).
"""

from __future__ import annotations

from robustlab._amp import resolve_amp
from robustlab._parallel import shard_indices
from robustlab.engine.accuracy import evaluate_accuracy, predict
from robustlab.engine.conditions import Condition, Group
from robustlab.engine.evaluate import CellResult, evaluate
from robustlab.engine.loading import load_model_and_data
from robustlab.engine.suite import (
    DEFAULT_RATIOS,
    DEFAULT_SIGMAS,
    build_suite,
    file_groups,
    parse_suite,
)
from robustlab.metrics.summary import summarize

__all__ = [
    "DEFAULT_RATIOS",
    "DEFAULT_SIGMAS",
    "CellResult",
    "Condition",
    "Group",
    "build_suite",
    "evaluate",
    "evaluate_accuracy",
    "file_groups",
    "load_model_and_data",
    "parse_suite",
    "predict",
    "resolve_amp",
    "shard_indices",
    "summarize",
]
