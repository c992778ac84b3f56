"""The results store: one SQLite file holding every run and every measured cell, in long format.

Two tables (DESIGN.md, "Results store"): ``runs``, one row per invocation, and ``results``, one row per measured
cell, keyed by ``(model, dataset, split, perturbation, severity, params_json, metric, seed)``. A resumed or
repeated run skips every cell already written; several processes may write one file at once.

The package is split by what each part needs: :mod:`~robustlab.store.keys` (pure Python: keys and cells),
:mod:`~robustlab.store.schema` (tables and versions), :mod:`~robustlab.store.provenance` (versions and git
commit of a run), :mod:`~robustlab.store.connection` (opening and write transactions),
:mod:`~robustlab.store.store` (the :class:`Store`) and :mod:`~robustlab.store.tables` (DataFrames and export,
pandas imported only when called).

Example:
    >>> with Store("robustlab.db") as store, store.run("eval", {"model": "cifar:resnet20"}) as run_id:
    ...     key = ResultKey.create("cifar:resnet20", "cifar10", "accuracy", perturbation="fog", severity=3)
    ...     if not store.has(key):
    ...         store.add(run_id, [Cell(key, value=0.8125, n=10_000)])
"""

from __future__ import annotations

from robustlab.store.keys import Cell, ResultKey, canonical_params
from robustlab.store.schema import DEFAULT_PATH, RUN_STATUSES, SCHEMA_VERSION
from robustlab.store.store import Filter, IntFilter, Store
from robustlab.store.tables import export_frame, pivot_results

__all__ = [
    "DEFAULT_PATH",
    "RUN_STATUSES",
    "SCHEMA_VERSION",
    "Cell",
    "Filter",
    "IntFilter",
    "ResultKey",
    "Store",
    "canonical_params",
    "export_frame",
    "pivot_results",
]
