"""The store file on disk: path checks, opening (foreign files refused, WAL, schema created or migrated) and
write transactions.

Several processes may open and write one file at once; everything here is written so that they queue on
SQLite's locks instead of failing, and so that a file that is not a robustlab store is never modified.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from robustlab.store.schema import (
    DEFAULT_PATH,
    MIGRATIONS,
    RESULT_COLUMNS,
    RUN_COLUMNS,
    SCHEMA,
    SCHEMA_VERSION,
)

log = logging.getLogger("robustlab.store")

__all__ = ["open_checked", "resolve_path", "write"]

# Stored in ``PRAGMA application_id`` ("RLAB"), so a robustlab file is told apart from any other SQLite file.
_APPLICATION_ID = 0x524C4142

_SQLITE_HEADER = b"SQLite format 3\x00"


def resolve_path(path: str | os.PathLike[str], create: bool) -> Path:
    """The store file ``path``, checked before SQLite opens it, so a wrong path is never modified.

    Args:
        path: the file.
        create: whether a missing file may be created.

    Returns:
        The path, user-expanded.

    Raises:
        FileNotFoundError: the file is missing and ``create`` is false, or its folder does not exist.
        ValueError: the path is a directory or a file that is not a SQLite database.
    """
    db = Path(path).expanduser()
    if db.is_dir():
        raise ValueError(f"results database path {db} is a directory; pass a file path such as {db / DEFAULT_PATH}")
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


def open_checked(conn: sqlite3.Connection, path: Path | str, timeout: float) -> None:
    """Check a freshly connected store file, switch it to WAL, and create or migrate its schema.

    Args:
        conn: the connection (autocommit: ``isolation_level=None``).
        path: its file, or ``":memory:"``; named in errors.
        timeout: seconds the WAL switch may retry while another process holds the file.

    Raises:
        ValueError: the file belongs to another application, to a newer robustlab, or is damaged.
        sqlite3.OperationalError: the file stayed locked past ``timeout``.
    """
    try:
        version = _check_foreign(conn, path)
        conn.execute("PRAGMA foreign_keys = ON")
        if path != ":memory:":
            # WAL lets readers work while one process writes and makes concurrent writers queue instead of
            # fail; the setting is stored in the file, so this is a no-op after the first open
            mode = _set_wal(conn, timeout)
            if str(mode).lower() != "wal":
                log.warning("results store %s could not switch to WAL mode (got %s)", path, mode)
        if version < SCHEMA_VERSION:
            # only creating or migrating takes the write lock: opening a current store to read it
            # writes nothing
            with write(conn, path):
                _ensure_schema(conn, path)
        _check_columns(conn, path)
    except sqlite3.DatabaseError as err:
        if isinstance(err, sqlite3.OperationalError) and "locked" in str(err):
            raise
        raise ValueError(f"{path} is not a usable robustlab results store: {err}") from err


def _set_wal(conn: sqlite3.Connection, timeout: float) -> str:
    # Switching a file to WAL needs an exclusive lock and SQLite does not always call the busy handler for
    # it, so two processes opening a brand-new store at once can see "database is locked" at once; retry
    # for as long as the busy timeout would have waited.
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _check_foreign(conn: sqlite3.Connection, path: Path | str) -> int:
    """Refuse files that belong to someone else before anything is written; return the version."""
    # one read transaction, so the three reads see one snapshot even while another process creates the
    # schema (version 0 but tables present would otherwise look like a foreign file)
    conn.execute("BEGIN")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = {
            row[0]
            for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        }
    finally:
        conn.execute("COMMIT")
    if app_id not in (0, _APPLICATION_ID) or (tables and app_id != _APPLICATION_ID):
        raise ValueError(
            f"{path} is a SQLite database of another application "
            f"(tables: {sorted(tables) or 'none'}), not a robustlab results store; it was left "
            "untouched. Pass another path with --db"
        )
    if version > SCHEMA_VERSION:
        raise ValueError(
            f"{path} was written by a newer robustlab (store schema {version}, this version reads "
            f"up to {SCHEMA_VERSION}); upgrade robustlab to read it"
        )
    return int(version)


def _ensure_schema(conn: sqlite3.Connection, path: Path | str) -> None:
    # re-read inside the write transaction: another process may have created the schema meanwhile
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == 0:
        # statement by statement: executescript() would COMMIT the surrounding IMMEDIATE transaction first
        for statement in SCHEMA:
            conn.execute(statement)
        conn.execute(f"PRAGMA application_id = {_APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        log.info("created results store %s (schema %d)", path, SCHEMA_VERSION)
        return
    while version < SCHEMA_VERSION:
        conn.execute(MIGRATIONS[version])
        version += 1
        conn.execute(f"PRAGMA user_version = {version}")
        log.info("migrated results store %s to schema %d", path, version)


def _check_columns(conn: sqlite3.Connection, path: Path | str) -> None:
    for table, expected in (("runs", RUN_COLUMNS), ("results", RESULT_COLUMNS)):
        columns = tuple(row[1] for row in conn.execute(f"PRAGMA table_info({table})"))
        if columns != expected:
            raise ValueError(
                f"{path}: table {table!r} has columns {list(columns)}, expected {list(expected)}; "
                "the file is damaged or not a robustlab results store"
            )


@contextmanager
def write(conn: sqlite3.Connection, path: Path | str) -> Iterator[sqlite3.Connection]:
    """One ``BEGIN IMMEDIATE`` transaction: commits when the block ends, rolls back when it raises.

    Args:
        conn: the connection.
        path: its file, named in the log when a rollback fails.

    Returns:
        A context manager yielding ``conn``.
    """
    # IMMEDIATE takes the write lock up front (waiting up to the busy timeout), so the transaction can
    # never fail half-way on a lock upgrade; the whole block commits or none of it does
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:  # pragma: no cover - the connection is already broken
            log.exception("rollback failed on %s", path)
        raise
    conn.execute("COMMIT")
