"""The :class:`Store`: a connection to one SQLite results file, its runs and its measured cells.

The key is UNIQUE, so a resumed or repeated run skips every cell already written and nothing is ever
duplicated. The file runs in WAL mode with a busy timeout, so several processes (a sweep, a second
``robustlab eval``) can write to it at once; every write is one ``BEGIN IMMEDIATE`` transaction, so a process
killed at any point leaves only whole, committed calls behind.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from robustlab.store.connection import open_checked, resolve_path, write
from robustlab.store.keys import KEY_COLUMNS, Cell, ResultKey, check_int, check_text, check_value
from robustlab.store.provenance import git_sha, torch_version, utc_now
from robustlab.store.schema import DEFAULT_PATH, RESULT_COLUMNS, RUN_COLUMNS, RUN_STATUSES
from robustlab.store.tables import export_frame, is_frame, results_frame, runs_frame

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

__all__ = ["Filter", "IntFilter", "Store"]

Filter = str | Sequence[str] | None
IntFilter = int | Sequence[int] | None


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

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_PATH, *, create: bool = True, timeout: float = 30.0):
        self.path: Path | str = ":memory:" if str(path) == ":memory:" else resolve_path(path, create)
        # isolation_level=None: transactions are explicit BEGIN IMMEDIATE blocks (see _write), never the
        # implicit deferred ones of the sqlite3 module, which can fail with SQLITE_BUSY without waiting when a
        # reader upgrades to a writer while another process writes
        self._conn = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None)
        try:
            open_checked(self._conn, self.path, timeout)
        except BaseException:
            self._conn.close()
            raise

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        return write(self._conn, self.path)

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
        check_text(command, "command")
        if config is not None and not isinstance(config, Mapping):
            raise ValueError(f"config must be a mapping, got {type(config).__name__}")
        # imported here, not at the top: the package's __init__ may one day re-export this module
        from robustlab import __version__

        run_id = uuid.uuid4().hex
        config_json = json.dumps(dict(config or {}), sort_keys=True, default=str)
        row = (
            run_id,
            utc_now(),
            None,
            "running",
            command,
            config_json,
            __version__,
            torch_version(),
            str(device),
            git_sha(),
        )
        with self._write() as conn:
            conn.execute(f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) VALUES ({', '.join('?' * len(row))})", row)
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
                "UPDATE runs SET status = ?, finished_at = ? WHERE run_id = ?", (status, utc_now(), run_id)
            )
            if cursor.rowcount == 0:
                raise ValueError(f"no run with id {run_id!r} in {self.path}")
        log.info("run %s %s", run_id, status)

    @contextmanager
    def run(self, command: str, config: Mapping[str, Any] | None = None, device: str = "cpu") -> Iterator[str]:
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
            n = None if cell.n is None else check_int(cell.n, "n", low=0)
            rows.append((run_id, *cell.key._row(), check_value(cell.value), n))
        if not rows:
            return 0
        # ON CONFLICT ... DO NOTHING rather than INSERT OR IGNORE: both skip a duplicate key, but OR IGNORE
        # would also silently drop rows that break a NOT NULL or CHECK constraint, hiding bugs
        key_columns = ", ".join(KEY_COLUMNS)
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
        where = " AND ".join(f"{name} = ?" for name in KEY_COLUMNS)
        return self._conn.execute(f"SELECT 1 FROM results WHERE {where} LIMIT 1", key._row()).fetchone() is not None

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
        rows = self._conn.execute(f"SELECT {', '.join(KEY_COLUMNS)} FROM results{where}", args)
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
            f"SELECT {', '.join(RESULT_COLUMNS)} FROM results{where} ORDER BY {', '.join(KEY_COLUMNS)}",
            args,
        ).fetchall()
        return results_frame(rows)

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
        columns = (*KEY_COLUMNS, "value", "n")
        rows = self._conn.execute(f"SELECT {', '.join(columns)} FROM results{where}", args).fetchall()
        width = len(KEY_COLUMNS)
        return [
            Cell(ResultKey._from_row(row[:width]), float("nan") if row[width] is None else float(row[width]), row[-1])
            for row in rows
        ]

    def add_attributes(self, model: str, attributes: Mapping[str, Any], *, run_id: str | None = None) -> None:
        """Store facts about ``model`` (its architecture), replacing earlier values of the same names.

        Args:
            model: the model spec, as in the results' ``model`` column.
            attributes: name -> value; values are JSON (numbers, strings, booleans, lists; tuples become lists).
            run_id: the run that measured them, if any.

        Raises:
            ValueError: an empty model or name, or a value that is not JSON-serialisable.
        """
        check_text(model, "model")
        rows = []
        for name, value in attributes.items():
            check_text(name, "attribute name")
            try:
                rows.append((model, name, json.dumps(value, allow_nan=False), run_id))
            except (TypeError, ValueError) as err:
                raise ValueError(f"attribute {name!r} of {model!r} is not a JSON value ({err}); pass "
                                 "numbers, strings, booleans or lists") from err  # fmt: skip
        with self._write() as conn:
            conn.executemany("INSERT OR REPLACE INTO attributes (model, name, value_json, run_id) VALUES (?, ?, ?, ?)",
                             rows)  # fmt: skip

    def attributes(self, model: Filter = None) -> dict[str, dict[str, Any]]:
        """Stored facts per model: ``{model: {name: value}}`` (lists where tuples were written).

        Args:
            model: only these models.
        """
        where, args = _where(model=model)
        out: dict[str, dict[str, Any]] = {}
        for owner, name, value in self._conn.execute(
            f"SELECT model, name, value_json FROM attributes{where} ORDER BY model, name", args
        ):
            out.setdefault(owner, {})[name] = json.loads(value)
        return out

    def runs(self) -> pd.DataFrame:
        """All runs, oldest first.

        Returns:
            The columns of the ``runs`` table (``started_at`` / ``finished_at`` as UTC timestamps) plus
            ``n_results``, the number of cells each run wrote first.
        """
        rows = self._conn.execute(
            f"SELECT {', '.join('r.' + c for c in RUN_COLUMNS)}, "
            "(SELECT COUNT(*) FROM results AS x WHERE x.run_id = r.run_id) "
            "FROM runs AS r ORDER BY r.started_at, r.rowid"
        ).fetchall()
        return runs_frame(rows)

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
        if not is_frame(data):
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
