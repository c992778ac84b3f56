"""Tiny model and two-class colour data shared by the training tests.

They live in ``ddp_fit_eval.py`` (the two-process worker, which must be self-contained) and are loaded
from its path, which works whatever pytest's import mode.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

WORKER_PATH = Path(__file__).with_name("ddp_fit_eval.py")


def load_worker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("robustlab_tests_ddp_fit_eval", WORKER_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_worker = load_worker()


@pytest.fixture
def make_data() -> Callable[..., object]:
    """``make_data(n, seed, *, wrong_every=0)`` -> ArrayDataset of 16 px two-class colour images."""
    return _worker.make_data


@pytest.fixture
def make_model() -> Callable[..., object]:
    """``make_model(seed=0)`` -> a tiny conv + batch-norm Classifier in eval mode."""
    return _worker.make_model
