"""The results store: one SQLite file holding every run and every measured cell, in long format.

Two tables (DESIGN.md, "Results store"):

- ``runs`` — one row per invocation: id, start/finish time, status, command, config and versions.
- ``results`` — one row per measured cell: ``(model, dataset, split, perturbation, severity, params_json,
  metric, seed)`` is the key, ``value`` (a float, stored as REAL and never rounded) and ``n`` (samples behind
  it) the payload, ``run_id`` the run that wrote it first.

The key is UNIQUE, so a resumed or repeated run skips every cell already written and nothing is ever
duplicated. The file runs in WAL mode with a busy timeout, so several processes (a sweep, a second
``robustlab eval``) can write to it at once; every write is one ``BEGIN IMMEDIATE`` transaction, so a process
killed at any point leaves only whole, committed calls behind.

Example:
    >>> with Store("robustlab.db") as store, store.run("eval", {"model": "cifar:resnet20"}) as run_id:
    ...     key = ResultKey.create("cifar:resnet20", "cifar10", "accuracy", perturbation="fog", severity=3)
    ...     if not store.has(key):
    ...         store.add(run_id, [Cell(key, value=0.8125, n=10_000)])
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
import math
import operator
import os
import re
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_PATH",
    "RUN_STATUSES",
    "SCHEMA_VERSION",
    "Cell",
    "ResultKey",
    "Store",
    "canonical_params",
    "export_frame",
    "pivot_results",
]

DEFAULT_PATH = "robustlab.db"
"""Where the store lives unless ``--db`` / ``path`` says otherwise (the working directory)."""

SCHEMA_VERSION = 1
"""Stored in ``PRAGMA user_version``; bump it and add a step to ``_MIGRATIONS`` when the schema changes."""

# Stored in ``PRAGMA application_id`` ("RLAB"), so a robustlab file is told apart from any other SQLite file.
_APPLICATION_ID = 0x524C4142

RUN_STATUSES = ("running", "finished", "failed", "interrupted")
"""Every status a run can have. A run left ``running`` by a dead process was killed (SIGKILL, power loss)."""

_SQLITE_HEADER = b"SQLite format 3\x00"

_SCHEMA = (
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
)

_RUN_COLUMNS = (
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
_KEY_COLUMNS = ("model", "dataset", "split", "perturbation", "severity", "params_json", "metric", "seed")
_RESULT_COLUMNS = (
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
_TEXT_KEY_FIELDS = ("model", "dataset", "metric", "split", "perturbation")

# Migrations from version v to v + 1, applied in order inside one transaction. Empty while the schema is at 1.
_MIGRATIONS: dict[int, str] = {}

_EXPORT_SUFFIXES = (".csv", ".json", ".parquet")

Filter = str | Sequence[str] | None
IntFilter = int | Sequence[int] | None


def canonical_params(params: Mapping[str, Any] | str | None) -> str:
    """The canonical JSON text of a parameter mapping, as stored in ``results.params_json``.

    Keys are sorted and separators fixed, so equal mappings give equal text and therefore the same key. Note
    that ``1`` and ``1.0`` stay different (JSON keeps the distinction); pass parameters with consistent types.

    Args:
        params: the parameters (``eps``, ``steps``, ``sigma``...), their JSON text, or ``None`` for none.

    Returns:
        Canonical JSON text; ``"{}"`` for no parameters.

    Raises:
        ValueError: ``params`` is not a mapping, is not JSON-serialisable or holds NaN / infinity.
    """
    if params is None:
        return "{}"
    if isinstance(params, str):
        try:
            params = json.loads(params)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"params must be a mapping or its JSON text, got invalid JSON {params!r}"
            ) from err
    if not isinstance(params, Mapping):
        raise ValueError(f"params must be a mapping such as {{'eps': 0.03}}, got {type(params).__name__}")
    try:
        return json.dumps(dict(params), sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as err:
        # numpy / torch scalars are the usual culprit: they are not JSON types
        raise ValueError(
            f"params must hold plain JSON values (str, int, float, bool, lists, dicts; finite numbers), got "
            f"{params!r}: {err}. Convert tensors and numpy scalars with .item()"
        ) from err


def _check_text(value: object, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _check_int(value: object, name: str, *, low: int | None = None) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    try:
        result = operator.index(value)  # accepts numpy integers, refuses 2.5 and "3"
    except TypeError as err:
        raise ValueError(f"{name} must be an integer, got {value!r}") from err
    if low is not None and result < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {result}")
    return result


def _check_value(value: object) -> float | None:
    """A metric value as a Python float; NaN becomes ``None`` (SQL NULL, read back as NaN)."""
    if isinstance(value, (str, bytes)):
        # a stringified float has already lost its exact value; refuse rather than store it
        raise ValueError(f"value must be a number, got the string {value!r}")
    try:
        result = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(
            f"value must be a real number (a float, int or one-element tensor), got {value!r}"
        ) from err
    # SQLite stores NaN as NULL anyway; doing it here makes the decision visible. NaN means "undefined" (e.g.
    # the accuracy of an empty subset); ±inf is a legal REAL and round-trips unchanged (-0.0 reads as 0.0).
    return None if math.isnan(result) else result


@dataclass(frozen=True)
class ResultKey:
    """What identifies one measured cell: everything in a result row except ``run_id``, ``value`` and ``n``.

    Hashable, so a set of keys answers "is this cell done?" in O(1) for the engine's resume.

    Args:
        model: model name, e.g. ``"cifar:resnet20"``.
        dataset: dataset name, e.g. ``"cifar10"``.
        metric: metric name, e.g. ``"accuracy"``.
        split: dataset split.
        perturbation: corruption / attack / noise name; ``"clean"`` for unperturbed data.
        severity: perturbation severity; ``0`` means none (clean data, or a perturbation without levels).
        params_json: canonical JSON of the perturbation's parameters (see :func:`canonical_params`); build
            keys with :meth:`create` to pass a mapping instead.
        seed: the seed the perturbation's generators were derived from.

    Raises:
        ValueError: an empty name, a negative or non-integer severity, a non-integer seed or invalid params.
    """

    model: str
    dataset: str
    metric: str
    split: str = "test"
    perturbation: str = "clean"
    severity: int = 0
    params_json: str = "{}"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in _TEXT_KEY_FIELDS:
            _check_text(getattr(self, name), name)
        # frozen: normalise through object.__setattr__ so 3.0 and 3, or differently ordered params, hash equal
        object.__setattr__(self, "severity", _check_int(self.severity, "severity", low=0))
        object.__setattr__(self, "seed", _check_int(self.seed, "seed"))
        object.__setattr__(self, "params_json", canonical_params(self.params_json))

    @classmethod
    def create(
        cls,
        model: str,
        dataset: str,
        metric: str,
        *,
        split: str = "test",
        perturbation: str = "clean",
        severity: int = 0,
        params: Mapping[str, Any] | None = None,
        seed: int = 0,
    ) -> ResultKey:
        """Build a key from a parameter mapping rather than its JSON text.

        Args:
            model: model name.
            dataset: dataset name.
            metric: metric name.
            split: dataset split.
            perturbation: perturbation name, ``"clean"`` for unperturbed data.
            severity: severity, ``0`` for none.
            params: perturbation parameters, e.g. ``{"eps": 8 / 255, "steps": 10}``.
            seed: perturbation seed.

        Returns:
            The key.

        Raises:
            ValueError: as for :class:`ResultKey`.
        """
        return cls(model, dataset, metric, split, perturbation, severity, canonical_params(params), seed)

    @classmethod
    def _from_row(cls, row: Sequence[Any]) -> ResultKey:
        # rows come from the store, where they were validated on the way in; skipping __post_init__ keeps
        # done_keys() fast on large stores
        key = object.__new__(cls)
        for name, value in zip(_KEY_COLUMNS, row, strict=True):
            object.__setattr__(key, name, value)
        return key

    @property
    def params(self) -> dict[str, Any]:
        """The perturbation parameters as a dict."""
        return json.loads(self.params_json)

    def _row(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in _KEY_COLUMNS)


@dataclass(frozen=True)
class Cell:
    """One measured value with its key.

    Args:
        key: what was measured.
        value: the metric value; NaN is stored as NULL (undefined) and read back as NaN.
        n: how many samples the value is computed from, if it applies.
    """

    key: ResultKey
    value: float
    n: int | None = None


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _torch_version() -> str | None:
    """torch's own ``__version__`` with its local build tag (``2.14.1+cu130``, ``2.13.0+cpu``).

    The wheel metadata drops the tag (``2.14.1``), which hides whether a result came from a CUDA or a CPU build.
    The store never imports torch for this: it takes the loaded module's attribute, or reads ``torch/version.py``.
    """
    loaded = sys.modules.get("torch")
    if loaded is not None and isinstance(getattr(loaded, "__version__", None), str):
        return str(loaded.__version__)
    spec = importlib.util.find_spec("torch")
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        try:
            text = (Path(folder) / "version.py").read_text()
        except OSError:
            continue
        found = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", text, flags=re.MULTILINE)
        if found:
            return found.group(1)
    return _package_version("torch")


@lru_cache(maxsize=1)
def _git_sha() -> str | None:
    """The commit of the robustlab checkout this code runs from, or ``None`` (installed wheel, no git)."""
    package_dir = Path(__file__).resolve().parent
    # an installed robustlab inside a virtualenv inside some project's repository would report that project's
    # commit, which says nothing about the robustlab code; only a source checkout has a meaningful sha
    if "site-packages" in package_dir.parts or "dist-packages" in package_dir.parts:
        return None
    try:
        done = subprocess.run(
            ["git", "-C", str(package_dir), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = done.stdout.strip()
    return sha if done.returncode == 0 and sha else None


def _resolve_path(path: str | os.PathLike[str], create: bool) -> Path:
    db = Path(path).expanduser()
    if db.is_dir():
        raise ValueError(
            f"results database path {db} is a directory; pass a file path such as {db / DEFAULT_PATH}"
        )
    if not db.exists():
        if not create:
            raise FileNotFoundError(
                f"no results database at {db}; create one by running `robustlab demo` or `robustlab eval`, "
                "or pass the path of an existing one"
            )
        if not db.parent.is_dir():
            raise FileNotFoundError(
                f"cannot create results database {db}: folder {db.parent} does not exist; create it first or "
                "choose another path"
            )
        return db
    # read the header ourselves before SQLite touches the file, so a file that is not a database is never
    # opened for writing (let alone converted to WAL); a zero-byte file is an empty database to SQLite
    with db.open("rb") as handle:
        header = handle.read(len(_SQLITE_HEADER))
    if header and header != _SQLITE_HEADER:
        raise ValueError(
            f"{db} is not a SQLite database, so it cannot be a robustlab results store; it was left "
            "untouched. Pass another path with --db"
        )
    return db


class Store:
    """A connection to a results store file, creating it (and its schema) on first use.

    Open one ``Store`` per process or thread; SQLite's locking (WAL mode, busy timeout) lets several of them
    write to the same file concurrently.

    Args:
        path: the SQLite file, or ``":memory:"`` for a throwaway store.
        create: create the file when it does not exist; with ``False`` a missing file raises.
        timeout: seconds to wait for another writer's lock before failing with "database is locked".

    Raises:
        FileNotFoundError: the file is missing and ``create`` is false, or its folder does not exist.
        ValueError: the path is a directory, the file is not a SQLite database, it holds tables that are not
            a robustlab store, or it was written by a newer robustlab. The file is never modified then.
    """

    def __init__(
        self, path: str | os.PathLike[str] = DEFAULT_PATH, *, create: bool = True, timeout: float = 30.0
    ):
        self.path: Path | str = ":memory:" if str(path) == ":memory:" else _resolve_path(path, create)
        # isolation_level=None: transactions are explicit BEGIN IMMEDIATE blocks (see _write), never the
        # implicit deferred ones of the sqlite3 module, which can fail with SQLITE_BUSY without waiting when a
        # reader upgrades to a writer while another process writes
        self._conn = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None)
        self._timeout = timeout
        try:
            self._open()
        except BaseException:
            self._conn.close()
            raise

    def _open(self) -> None:
        conn = self._conn
        try:
            version = self._check_foreign()
            conn.execute("PRAGMA foreign_keys = ON")
            if self.path != ":memory:":
                # WAL lets readers work while one process writes and makes concurrent writers queue instead of
                # fail; the setting is stored in the file, so this is a no-op after the first open
                mode = self._set_wal()
                if str(mode).lower() != "wal":
                    log.warning("results store %s could not switch to WAL mode (got %s)", self.path, mode)
            if version < SCHEMA_VERSION:
                # only creating or migrating takes the write lock: opening a current store to read it
                # writes nothing
                with self._write():
                    self._ensure_schema()
            self._check_columns()
        except sqlite3.DatabaseError as err:
            if isinstance(err, sqlite3.OperationalError) and "locked" in str(err):
                raise
            raise ValueError(f"{self.path} is not a usable robustlab results store: {err}") from err

    def _set_wal(self) -> str:
        # Switching a file to WAL needs an exclusive lock and SQLite does not always call the busy handler for
        # it, so two processes opening a brand-new store at once can see "database is locked" at once; retry
        # for as long as the busy timeout would have waited.
        deadline = time.monotonic() + self._timeout
        delay = 0.005
        while True:
            try:
                return str(self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or time.monotonic() > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def _check_foreign(self) -> int:
        """Refuse files that belong to someone else before anything is written; return the version."""
        conn = self._conn
        # one read transaction, so the three reads see one snapshot even while another process creates the
        # schema (version 0 but tables present would otherwise look like a foreign file)
        conn.execute("BEGIN")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            tables = {
                row[0]
                for row in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
                )
            }
        finally:
            conn.execute("COMMIT")
        if app_id not in (0, _APPLICATION_ID) or (tables and app_id != _APPLICATION_ID):
            raise ValueError(
                f"{self.path} is a SQLite database of another application "
                f"(tables: {sorted(tables) or 'none'}), not a robustlab results store; it was left "
                "untouched. Pass another path with --db"
            )
        if version > SCHEMA_VERSION:
            raise ValueError(
                f"{self.path} was written by a newer robustlab (store schema {version}, this version reads "
                f"up to {SCHEMA_VERSION}); upgrade robustlab to read it"
            )
        return int(version)

    def _ensure_schema(self) -> None:
        conn = self._conn
        # re-read inside the write transaction: another process may have created the schema meanwhile
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            # statement by statement: executescript() would COMMIT the surrounding IMMEDIATE transaction first
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {_APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            log.info("created results store %s (schema %d)", self.path, SCHEMA_VERSION)
            return
        while version < SCHEMA_VERSION:
            conn.execute(_MIGRATIONS[version])
            version += 1
            conn.execute(f"PRAGMA user_version = {version}")
            log.info("migrated results store %s to schema %d", self.path, version)

    def _check_columns(self) -> None:
        conn = self._conn
        for table, expected in (("runs", _RUN_COLUMNS), ("results", _RESULT_COLUMNS)):
            columns = tuple(row[1] for row in conn.execute(f"PRAGMA table_info({table})"))
            if columns != expected:
                raise ValueError(
                    f"{self.path}: table {table!r} has columns {list(columns)}, expected {list(expected)}; "
                    "the file is damaged or not a robustlab results store"
                )

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front (waiting up to the busy timeout), so the transaction can
        # never fail half-way on a lock upgrade; the whole block commits or none of it does
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error:  # pragma: no cover - the connection is already broken
                log.exception("rollback failed on %s", self.path)
            raise
        self._conn.execute("COMMIT")

    def close(self) -> None:
        """Close the connection; the store object cannot be used afterwards."""
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # ---------------------------------------------------------------------------------------------- runs

    def start_run(self, command: str, config: Mapping[str, Any] | None = None, device: str = "cpu") -> str:
        """Record the start of a run.

        Args:
            command: what was run, e.g. the CLI command line.
            config: the run's configuration; stored as JSON (values JSON cannot hold, such as paths, are
                stored as their ``str``).
            device: the device it runs on (``"cpu"``, ``"cuda:0"``).

        Returns:
            The new run's id (32 hex characters).

        Raises:
            ValueError: ``command`` is empty or ``config`` is not a mapping.
        """
        _check_text(command, "command")
        if config is not None and not isinstance(config, Mapping):
            raise ValueError(f"config must be a mapping, got {type(config).__name__}")
        # imported here, not at the top: the package's __init__ may one day re-export this module
        from robustlab import __version__

        run_id = uuid.uuid4().hex
        config_json = json.dumps(dict(config or {}), sort_keys=True, default=str)
        row = (
            run_id,
            _utc_now(),
            None,
            "running",
            command,
            config_json,
            __version__,
            _torch_version(),
            str(device),
            _git_sha(),
        )
        with self._write() as conn:
            conn.execute(
                f"INSERT INTO runs ({', '.join(_RUN_COLUMNS)}) VALUES ({', '.join('?' * len(row))})", row
            )
        log.info("run %s started: %s", run_id, command)
        return run_id

    def finish_run(self, run_id: str, status: str = "finished") -> None:
        """Record the end of a run.

        Args:
            run_id: the id returned by :meth:`start_run`.
            status: ``"finished"``, ``"failed"`` or ``"interrupted"``.

        Raises:
            ValueError: unknown status or run id.
        """
        if status not in RUN_STATUSES[1:]:
            raise ValueError(f"status must be one of {list(RUN_STATUSES[1:])}, got {status!r}")
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE runs SET status = ?, finished_at = ? WHERE run_id = ?", (status, _utc_now(), run_id)
            )
            if cursor.rowcount == 0:
                raise ValueError(f"no run with id {run_id!r} in {self.path}")
        log.info("run %s %s", run_id, status)

    @contextmanager
    def run(
        self, command: str, config: Mapping[str, Any] | None = None, device: str = "cpu"
    ) -> Iterator[str]:
        """Start a run, yield its id, and record how it ended.

        The status becomes ``finished`` when the block completes (or exits with ``SystemExit(0)``),
        ``interrupted`` on ``KeyboardInterrupt`` and ``failed`` on any other exception, which is re-raised.
        Rows added inside the block are committed as they are added and stay in the store whatever happens.

        Args:
            command: what was run.
            config: the run's configuration.
            device: the device it runs on.

        Returns:
            A context manager yielding the run id.

        Raises:
            ValueError: as for :meth:`start_run`.
        """
        run_id = self.start_run(command, config, device)
        status = "failed"
        try:
            yield run_id
            status = "finished"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        except SystemExit as exit_:
            if exit_.code in (0, None):
                status = "finished"
            raise
        finally:
            try:
                self.finish_run(run_id, status)
            except (sqlite3.Error, ValueError):
                # never let bookkeeping hide the exception that ended the run
                log.exception("could not record run %s as %s", run_id, status)

    # ------------------------------------------------------------------------------------------- results

    def add(self, run_id: str, cells: Iterable[Cell]) -> int:
        """Insert cells in one transaction, skipping those whose key is already in the store.

        Args:
            run_id: the run writing them (from :meth:`start_run`).
            cells: the measured cells.

        Returns:
            How many rows were new; cells already present (from any run) are left as they are.

        Raises:
            ValueError: an unknown run id, or a cell with an invalid value or count. Nothing is written then.
        """
        rows = []
        for cell in cells:
            if not isinstance(cell, Cell):
                raise ValueError(f"cells must be Cell objects, got {type(cell).__name__}")
            n = None if cell.n is None else _check_int(cell.n, "n", low=0)
            rows.append((run_id, *cell.key._row(), _check_value(cell.value), n))
        if not rows:
            return 0
        # ON CONFLICT ... DO NOTHING rather than INSERT OR IGNORE: both skip a duplicate key, but OR IGNORE
        # would also silently drop rows that break a NOT NULL or CHECK constraint, hiding bugs
        key_columns = ", ".join(_KEY_COLUMNS)
        sql = (
            f"INSERT INTO results (run_id, {key_columns}, value, n) VALUES ({', '.join('?' * 11)}) "
            f"ON CONFLICT ({key_columns}) DO NOTHING"
        )
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
                raise ValueError(f"no run with id {run_id!r} in {self.path}; start one with Store.start_run")
            before = conn.total_changes
            conn.executemany(sql, rows)
            new = conn.total_changes - before
        log.debug("run %s: %d of %d cells new", run_id, new, len(rows))
        return new

    def add_result(
        self,
        run_id: str,
        model: str,
        dataset: str,
        metric: str,
        value: float,
        *,
        n: int | None = None,
        split: str = "test",
        perturbation: str = "clean",
        severity: int = 0,
        params: Mapping[str, Any] | None = None,
        seed: int = 0,
    ) -> int:
        """Insert one cell unless its key is already in the store.

        Args:
            run_id: the run writing it.
            model: model name.
            dataset: dataset name.
            metric: metric name.
            value: the metric value (NaN is stored as NULL).
            n: how many samples the value is computed from.
            split: dataset split.
            perturbation: perturbation name, ``"clean"`` for unperturbed data.
            severity: severity, ``0`` for none.
            params: perturbation parameters.
            seed: perturbation seed.

        Returns:
            1 when the row was new, 0 when the cell was already stored.

        Raises:
            ValueError: as for :meth:`add` and :class:`ResultKey`.
        """
        key = ResultKey.create(
            model,
            dataset,
            metric,
            split=split,
            perturbation=perturbation,
            severity=severity,
            params=params,
            seed=seed,
        )
        return self.add(run_id, [Cell(key, value, n)])

    def has(self, key: ResultKey) -> bool:
        """Whether the cell ``key`` is already stored (by any run).

        Args:
            key: the cell's key.

        Returns:
            ``True`` when a row with this key exists.
        """
        where = " AND ".join(f"{name} = ?" for name in _KEY_COLUMNS)
        return (
            self._conn.execute(f"SELECT 1 FROM results WHERE {where} LIMIT 1", key._row()).fetchone()
            is not None
        )

    def done_keys(
        self,
        *,
        run_id: Filter = None,
        model: Filter = None,
        dataset: Filter = None,
        split: Filter = None,
        perturbation: Filter = None,
        metric: Filter = None,
    ) -> set[ResultKey]:
        """The keys of all stored cells matching the filters, for an O(1) "already done?" test when resuming.

        Args:
            run_id: only cells first written by these runs.
            model: only these models.
            dataset: only these datasets.
            split: only these splits.
            perturbation: only these perturbations.
            metric: only these metrics.

        Returns:
            A set of :class:`ResultKey`.
        """
        where, args = _where(
            run_id=run_id, model=model, dataset=dataset, split=split, perturbation=perturbation, metric=metric
        )
        rows = self._conn.execute(f"SELECT {', '.join(_KEY_COLUMNS)} FROM results{where}", args)
        return {ResultKey._from_row(row) for row in rows}

    def results(
        self,
        *,
        run_id: Filter = None,
        model: Filter = None,
        dataset: Filter = None,
        split: Filter = None,
        perturbation: Filter = None,
        severity: IntFilter = None,
        metric: Filter = None,
        seed: IntFilter = None,
    ) -> pd.DataFrame:
        """Stored results matching all the filters, in long format.

        Each filter is one value or a list of values (any of them matches); ``None`` does not filter.

        Args:
            run_id: runs that wrote the cells.
            model: model names.
            dataset: dataset names.
            split: dataset splits.
            perturbation: perturbation names.
            severity: severities.
            metric: metric names.
            seed: seeds.

        Returns:
            One row per cell with the columns of the ``results`` table, sorted by key. ``value`` is float64
            (NaN where undefined), ``n`` a nullable Int64, ``severity`` and ``seed`` int64.
        """
        where, args = _where(
            run_id=run_id,
            model=model,
            dataset=dataset,
            split=split,
            perturbation=perturbation,
            severity=severity,
            metric=metric,
            seed=seed,
        )
        rows = self._conn.execute(
            f"SELECT {', '.join(_RESULT_COLUMNS)} FROM results{where} ORDER BY {', '.join(_KEY_COLUMNS)}",
            args,
        ).fetchall()
        frame = pd.DataFrame.from_records(rows, columns=list(_RESULT_COLUMNS))
        text = {name: "str" for name in _RESULT_COLUMNS if name not in ("severity", "value", "n", "seed")}
        return frame.astype({**text, "severity": "int64", "value": "float64", "n": "Int64", "seed": "int64"})

    def cells(self, *, run_id: Filter = None, model: Filter = None, dataset: Filter = None) -> list[Cell]:
        """Stored cells matching the filters as :class:`Cell` objects, ready for :meth:`add` into another store
        (how a worker's scratch results reach the driver's store).

        Args:
            run_id: runs that wrote the cells.
            model: model names.
            dataset: dataset names.

        Returns:
            One :class:`Cell` per stored row (NaN where the value is undefined).
        """
        where, args = _where(run_id=run_id, model=model, dataset=dataset)
        columns = (*_KEY_COLUMNS, "value", "n")
        rows = self._conn.execute(f"SELECT {', '.join(columns)} FROM results{where}", args).fetchall()
        width = len(_KEY_COLUMNS)
        return [
            Cell(ResultKey._from_row(row[:width]), float("nan") if row[width] is None else float(row[width]), row[-1])
            for row in rows
        ]

    def runs(self) -> pd.DataFrame:
        """All runs, oldest first.

        Returns:
            The columns of the ``runs`` table (``started_at`` / ``finished_at`` as UTC timestamps) plus
            ``n_results``, the number of cells each run wrote first.
        """
        rows = self._conn.execute(
            f"SELECT {', '.join('r.' + c for c in _RUN_COLUMNS)}, "
            "(SELECT COUNT(*) FROM results AS x WHERE x.run_id = r.run_id) "
            "FROM runs AS r ORDER BY r.started_at, r.rowid"
        ).fetchall()
        frame = pd.DataFrame.from_records(rows, columns=[*_RUN_COLUMNS, "n_results"])
        for name in ("started_at", "finished_at"):
            frame[name] = pd.to_datetime(frame[name], utc=True, format="ISO8601")
        return frame.astype({"n_results": "int64"})

    def export(self, data: pd.DataFrame | Mapping[str, Any] | None, path: str | os.PathLike[str]) -> Path:
        """Write results to a file whose format follows its extension: ``.csv``, ``.json`` or ``.parquet``.

        Args:
            data: a DataFrame (e.g. from :meth:`results`), a mapping of :meth:`results` filters, or
                ``None`` for every result.
            path: the output file; overwritten if it exists.

        Returns:
            The path written.

        Raises:
            ValueError: unsupported extension or unknown filter name.
            FileNotFoundError: the output folder does not exist.
            ImportError: ``.parquet`` without pyarrow installed.
        """
        if not isinstance(data, pd.DataFrame):
            filters = dict(data or {})
            known = {"run_id", "model", "dataset", "split", "perturbation", "severity", "metric", "seed"}
            unknown = sorted(set(filters) - known)
            if unknown:
                raise ValueError(f"unknown results filter(s) {unknown}; known filters are {sorted(known)}")
            data = self.results(**filters)
        return export_frame(data, path)


def _where(**filters: Any) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    for column, wanted in filters.items():
        if wanted is None:
            continue
        values = [wanted] if isinstance(wanted, (str, int)) else list(wanted)
        if not values:
            clauses.append("0")  # an empty list matches nothing, as `x in []` would
            continue
        clauses.append(f"{column} IN ({', '.join('?' * len(values))})")
        args.extend(values)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


def _json_value(value: Any) -> Any:
    """A DataFrame cell as a plain JSON value; JSON has no NaN or infinity, so those become null."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy scalar -> Python scalar
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (datetime, pd.Timestamp)):
        return value.isoformat()
    return value


def export_frame(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a DataFrame to ``.csv``, ``.json`` (a list of records) or ``.parquet``, chosen by extension.

    Floats are written exactly: CSV and JSON use the shortest text that reads back to the same double (pandas
    >= 3 reads it back exactly; older pandas needs ``read_csv(..., float_precision="round_trip")``). JSON has
    no NaN or infinity, so non-finite values are written as ``null``. The file is written next to its
    destination and moved into place, so a failure never leaves a half-written file.

    Args:
        frame: the table to write; its index is written only when it is not a default range index.
        path: the output file; overwritten if it exists.

    Returns:
        The path written.

    Raises:
        ValueError: unsupported extension.
        FileNotFoundError: the output folder does not exist.
        ImportError: ``.parquet`` without pyarrow installed.
    """
    out = Path(path).expanduser()
    suffix = out.suffix.lower()
    if suffix not in _EXPORT_SUFFIXES:
        raise ValueError(f"cannot export to {out}: the extension must be one of {list(_EXPORT_SUFFIXES)}")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"cannot export to {out}: folder {out.parent} does not exist")
    if suffix == ".parquet" and importlib.util.find_spec("pyarrow") is None:
        raise ImportError(f"exporting {out} needs pyarrow: pip install pyarrow (or export to .csv / .json)")
    if not isinstance(frame.index, pd.RangeIndex):
        frame = frame.reset_index()  # a pivot's row labels are data
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        if suffix == ".csv":
            frame.to_csv(tmp, index=False)
        elif suffix == ".json":
            # pandas' to_json rounds floats to at most 15 significant digits; json.dumps writes repr (exact)
            records = [
                {str(k): _json_value(v) for k, v in record.items()}
                for record in frame.to_dict(orient="records")
            ]
            tmp.write_text(json.dumps(records, indent=1, allow_nan=False) + "\n", encoding="utf-8")
        else:
            frame.to_parquet(tmp, index=False)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("exported %d rows to %s", len(frame), out)
    return out


def pivot_results(results: pd.DataFrame) -> pd.DataFrame:
    """A wide view of long-format results: one row per evaluated condition, one column per metric.

    The rows are ``model × perturbation × severity``, refined by every other key column (dataset, split,
    params_json, seed) that is not constant in ``results`` — so an attack evaluated at several ``eps`` or a
    corruption under several seeds gets one row each and no value is ever aggregated away. Metric columns
    (rather than severity columns) keep the table well defined for attacks, which have no severities, and for
    any mix of metrics.

    Args:
        results: long-format results as returned by :meth:`Store.results`.

    Returns:
        A DataFrame indexed by the row key columns with one float column per metric, sorted.

    Raises:
        ValueError: ``results`` lacks the key columns, or holds two values for one cell (e.g. rows
            concatenated from two stores).
    """
    missing = [c for c in (*_KEY_COLUMNS, "value") if c not in results.columns]
    if missing:
        raise ValueError(f"results lacks column(s) {missing}; pass a DataFrame from Store.results()")
    index = [
        c
        for c in ("model", "dataset", "split", "perturbation", "severity", "params_json", "seed")
        if c in ("model", "perturbation", "severity") or results[c].nunique(dropna=False) > 1
    ]
    if results.duplicated([*index, "metric"]).any():
        raise ValueError(
            "results holds more than one value for the same cell; cannot pivot without aggregating"
        )
    wide = results.pivot(index=index, columns="metric", values="value").sort_index()
    wide.columns.name = None
    return wide
