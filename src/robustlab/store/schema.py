"""The store's SQLite schema: table definitions, expected columns, versions and migrations.

Three tables (DESIGN.md, "Results store"):

- ``runs`` — one row per invocation: id, start/finish time, status, command, config and versions.
- ``results`` — one row per measured cell: ``(model, dataset, split, perturbation, severity, params_json,
  metric, seed)`` is the key, ``value`` (a float, stored as REAL and never rounded) and ``n`` (samples behind
  it) the payload, ``run_id`` the run that wrote it first.
- ``attributes`` — facts about a model (its architecture), one row per ``(model, name)``, the value as JSON
  (schema 2).
"""

from __future__ import annotations

__all__ = ["DEFAULT_PATH", "RUN_COLUMNS", "RESULT_COLUMNS", "RUN_STATUSES", "SCHEMA", "SCHEMA_VERSION"]

DEFAULT_PATH = "robustlab.db"
"""Where the store lives unless ``--db`` / ``path`` says otherwise (the working directory)."""

SCHEMA_VERSION = 2
"""Stored in ``PRAGMA user_version``; bump it and add a step to ``MIGRATIONS`` when the schema changes."""

# Stored in ``PRAGMA application_id`` ("RLAB"), so a robustlab file is told apart from any other SQLite file.
_APPLICATION_ID = 0x524C4142

RUN_STATUSES = ("running", "finished", "failed", "interrupted")
"""Every status a run can have. A run left ``running`` by a dead process was killed (SIGKILL, power loss)."""

_SQLITE_HEADER = b"SQLite format 3\x00"

# Facts about a model (stem kernel, input size, pooling, parameter count...), written by whoever measured it, so
# the report reads them instead of building the model. Keyed by the model spec as in results.model.
_ATTRIBUTES = """CREATE TABLE attributes (
    model      TEXT NOT NULL,
    name       TEXT NOT NULL,
    -- JSON, so numbers, strings, booleans and lists read back as what was written
    value_json TEXT NOT NULL,
    run_id     TEXT REFERENCES runs (run_id),
    PRIMARY KEY (model, name)
)"""

SCHEMA = (
    f"""CREATE TABLE runs (
    run_id            TEXT PRIMARY KEY,
    started_at        TEXT NOT NULL,
    finished_at       TEXT,
    status            TEXT NOT NULL CHECK (status IN ({", ".join(repr(s) for s in RUN_STATUSES)})),
    command           TEXT NOT NULL,
    config_json       TEXT NOT NULL DEFAULT '{{}}',
    robustlab_version TEXT,
    torch_version     TEXT,
    device            TEXT,
    git_sha           TEXT
)""",
    # The comments inside this statement are kept in sqlite_master, so the reasoning travels with the file.
    """CREATE TABLE results (
    run_id       TEXT NOT NULL REFERENCES runs (run_id),
    -- Every key column is NOT NULL with a default meaning "not applicable" (severity 0 = no perturbation
    -- strength, params '{}', seed 0): SQLite treats NULLs as distinct in a UNIQUE constraint, so one nullable
    -- key column would let the same cell be inserted again and again.
    model        TEXT NOT NULL,
    dataset      TEXT NOT NULL,
    split        TEXT NOT NULL DEFAULT 'test',
    perturbation TEXT NOT NULL DEFAULT 'clean',
    severity     INTEGER NOT NULL DEFAULT 0,
    params_json  TEXT NOT NULL DEFAULT '{}',
    metric       TEXT NOT NULL,
    value        REAL,
    n            INTEGER,
    seed         INTEGER NOT NULL DEFAULT 0,
    -- Deliberately without run_id: a cell is the same measurement whichever run produced it, so re-running
    -- any run (after a crash, or the same command next week) skips cells already written instead of
    -- duplicating them across runs. run_id records which run wrote the cell first.
    UNIQUE (model, dataset, split, perturbation, severity, params_json, metric, seed)
)""",
    "CREATE INDEX results_run_id ON results (run_id)",
    _ATTRIBUTES,
)


RUN_COLUMNS = (
    "run_id",
    "started_at",
    "finished_at",
    "status",
    "command",
    "config_json",
    "robustlab_version",
    "torch_version",
    "device",
    "git_sha",
)
RESULT_COLUMNS = (
    "run_id",
    "model",
    "dataset",
    "split",
    "perturbation",
    "severity",
    "params_json",
    "metric",
    "value",
    "n",
    "seed",
)

# Migrations from version v to v + 1, applied in order inside one transaction.
MIGRATIONS: dict[int, str] = {1: _ATTRIBUTES}  # 2: the attributes table
