"""Evaluation engine: streamed, sharded evaluation of a model over a dataset.

For now the engine offers clean accuracy (:func:`evaluate_accuracy`, :func:`predict`) and the sharding
rule every evaluation follows under ``torchrun`` (:func:`shard_indices`: contiguous shards, no padding,
(correct, count) pairs summed over ranks).
"""

from __future__ import annotations

from robustlab.engine._shard import shard_indices
from robustlab.engine.accuracy import evaluate_accuracy, predict, resolve_amp

__all__ = ["evaluate_accuracy", "predict", "resolve_amp", "shard_indices"]
