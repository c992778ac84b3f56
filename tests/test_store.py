"""The results store: schema, exact floats, resume without duplicates, concurrent writers, bad files."""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from robustlab.store import (
    RUN_STATUSES,
    SCHEMA_VERSION,
    Cell,
    ResultKey,
    Store,
    canonical_params,
    export_frame,
    pivot_results,
)

KEY_COLUMNS = ["model", "dataset", "split", "perturbation", "severity", "params_json", "metric", "seed"]


def _grid_cells(n_models: int = 2, severities: int = 5) -> list[Cell]:
    """A small evaluation grid: clean + one corruption at every severity, two metrics, distinct values."""
    cells = []
    for m in range(n_models):
        for severity in range(severities + 1):
            perturbation = "clean" if severity == 0 else "gaussian_noise"
            for metric in ("accuracy", "error"):
                value = (m + 1) / 7 + severity / 11 + (0.5 if metric == "error" else 0.0)
                key = ResultKey.create(f"model{m}", "cifar10", metric, perturbation=perturbation, severity=severity)
                cells.append(Cell(key, value, n=100))
    return cells


def _read_csv(path: Path, **kwargs: Any) -> pd.DataFrame:
    # pandas >= 3 parses floats exactly by default (and deprecates float_precision); older pandas needs it
    if int(pd.__version__.split(".")[0]) < 3:
        kwargs["float_precision"] = "round_trip"
    return pd.read_csv(path, **kwargs)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "robustlab.db") as opened:
        yield opened


# ------------------------------------------------------------------------------------------------ schema


def test_schema_is_the_design(store: Store) -> None:
    conn = sqlite3.connect(store.path)
    runs = [row[1] for row in conn.execute("PRAGMA table_info(runs)")]
    assert runs == [
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
    ]
    info = {row[1]: row for row in conn.execute("PRAGMA table_info(results)")}
    assert list(info) == [
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
    ]
    assert info["value"][2] == "REAL" and info["n"][2] == "INTEGER"
    # every key column NOT NULL: SQLite treats NULLs as distinct in UNIQUE, which would allow duplicates
    assert all(info[c][3] == 1 for c in KEY_COLUMNS)
    unique = [row for row in conn.execute("PRAGMA index_list(results)") if row[2] == 1]
    assert len(unique) == 1
    columns = [row[2] for row in conn.execute(f"PRAGMA index_info({unique[0][1]!r})")]
    assert columns == KEY_COLUMNS  # everything but run_id, value and n
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_zero_byte_file_and_memory_stores_work(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    for path in (empty, ":memory:"):
        with Store(path) as store:
            run_id = store.start_run("test", {})
            assert store.add_result(run_id, "m", "d", "accuracy", 0.5) == 1
            assert len(store.results()) == 1


def test_reopening_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    with Store(path) as store:
        run_id = store.start_run("test", {})
        store.add(run_id, _grid_cells())
    with Store(path, create=False) as store:
        assert len(store.results()) == len(_grid_cells())


# ------------------------------------------------------------------------------------------------ values


def test_floats_roundtrip_exactly(store: Store) -> None:
    values = [0.1 + 0.2, 1 / 3, math.pi, 5e-324, 1.7976931348623157e308, 1 - 2**-53, float("inf")]
    run_id = store.start_run("test", {})
    store.add(run_id, [Cell(ResultKey("m", "d", f"metric{i}"), v) for i, v in enumerate(values)])
    stored = store.results().set_index("metric")["value"]
    assert stored.dtype == "float64"
    for i, value in enumerate(values):
        assert stored[f"metric{i}"] == value  # exact, no rounding anywhere
    raw = sqlite3.connect(store.path).execute("SELECT typeof(value) FROM results").fetchall()
    assert {row[0] for row in raw} == {"real"}  # stored as REAL, never as text


def test_params_floats_roundtrip_and_are_canonical(store: Store) -> None:
    run_id = store.start_run("test", {})
    params = {"steps": 10, "eps": 8 / 255}
    assert store.add_result(run_id, "m", "d", "accuracy", 0.5, perturbation="pgd", params=params) == 1
    # same parameters in another order are the same cell
    reordered = {"eps": 8 / 255, "steps": 10}
    assert store.add_result(run_id, "m", "d", "accuracy", 0.9, perturbation="pgd", params=reordered) == 0
    key = ResultKey.create("m", "d", "accuracy", perturbation="pgd", params=reordered)
    assert store.has(key)
    assert key.params["eps"] == 8 / 255
    assert canonical_params(params) == '{"eps":0.03137254901960784,"steps":10}'
    assert ResultKey("m", "d", "a", params_json='{"b": 1, "a": 2}') == ResultKey(
        "m", "d", "a", params_json='{"a":2,"b":1}'
    )


def test_nan_is_stored_as_null_and_read_back_as_nan(store: Store) -> None:
    run_id = store.start_run("test", {})
    assert store.add_result(run_id, "m", "d", "accuracy", float("nan")) == 1
    # a NaN value is still a written cell: resuming must not measure it again
    assert store.add_result(run_id, "m", "d", "accuracy", float("nan")) == 0
    assert math.isnan(store.results()["value"].iloc[0])
    assert sqlite3.connect(store.path).execute("SELECT value IS NULL FROM results").fetchone() == (1,)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"model": ""}, "model"),
        ({"severity": -1}, "severity"),
        ({"severity": 2.5}, "severity"),
        ({"severity": True}, "severity"),
        ({"seed": "0"}, "seed"),
        ({"params": {"eps": float("nan")}}, "params"),
        ({"params": {"eps": object()}}, "params"),
        ({"params": [1, 2]}, "params"),
    ],
)
def test_bad_keys_are_refused(kwargs: dict[str, Any], match: str) -> None:
    fields: dict[str, Any] = {"model": "m", "dataset": "d", "metric": "accuracy", **kwargs}
    with pytest.raises(ValueError, match=match):
        ResultKey.create(fields.pop("model"), fields.pop("dataset"), fields.pop("metric"), **fields)


def test_integral_float_severity_is_the_same_key() -> None:
    assert ResultKey("m", "d", "a", severity=3.0) == ResultKey("m", "d", "a", severity=3)
    assert hash(ResultKey("m", "d", "a", severity=3.0)) == hash(ResultKey("m", "d", "a", severity=3))


def test_a_bad_cell_writes_nothing(store: Store) -> None:
    run_id = store.start_run("test", {})
    good = Cell(ResultKey("m", "d", "accuracy"), 0.5)
    with pytest.raises(ValueError, match="string"):
        store.add(run_id, [good, Cell(ResultKey("m", "d", "error"), "0.5")])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n must"):
        store.add(run_id, [good, Cell(ResultKey("m", "d", "error"), 0.5, n=-3)])
    with pytest.raises(ValueError, match="no run with id"):
        store.add("not-a-run", [good])
    assert store.results().empty
    assert store.add(run_id, []) == 0


# ------------------------------------------------------------------------------------------------ resume

_KILLED_WRITER = """
import os, signal, sys
from robustlab.store import Cell, ResultKey, Store

path, stop = sys.argv[1], int(sys.argv[2])
def key(i):
    return ResultKey.create(f"model{i % 3}", "cifar10", "accuracy", perturbation="fog", severity=i % 5 + 1,
                            seed=i)

cells = [Cell(key(i), i / 7) for i in range(40)]
store = Store(path)
run_id = store.start_run("robustlab eval --killed", {"stop": stop})
for cell in cells[:stop]:
    store.add(run_id, [cell])
os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no finish_run, connection never closed
"""


def test_resume_after_kill_writes_each_cell_once(tmp_path: Path) -> None:
    path = tmp_path / "robustlab.db"
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(_KILLED_WRITER))
    done = subprocess.run([sys.executable, str(script), str(path), "13"], capture_output=True, timeout=120)
    assert done.returncode == -9, done.stderr.decode()

    cells = [
        Cell(
            ResultKey.create(f"model{i % 3}", "cifar10", "accuracy", perturbation="fog", severity=i % 5 + 1, seed=i),
            i / 7,
        )
        for i in range(40)
    ]
    with Store(path) as store:
        runs = store.runs()
        assert list(runs["status"]) == ["running"]  # killed: nobody recorded an end
        assert len(store.results()) == 13  # every committed cell survived the kill
        done_keys = store.done_keys()
        missing = [cell for cell in cells if cell.key not in done_keys]
        assert len(missing) == 40 - 13

        with store.run("robustlab eval --resumed", {}) as run_id:
            assert store.add(run_id, cells) == 40 - 13  # only the missing cells are new
        with store.run("robustlab eval --again", {}) as run_id:
            assert store.add(run_id, cells) == 0  # a third run adds nothing
        results = store.results()
        assert len(results) == 40
        assert not results.duplicated(KEY_COLUMNS).any()
        assert results.sort_values("seed")["value"].tolist() == [i / 7 for i in range(40)]
        first, second, third = store.runs()["n_results"]
        assert (first, second, third) == (13, 27, 0)


def _concurrent_writer(path: str, start: int, stop: int, barrier: Any, queue: Any) -> None:
    try:
        barrier.wait(timeout=60)
        # both processes open the brand-new file at the same moment, then write one cell per transaction
        with Store(path) as store:
            run_id = store.start_run(f"writer {start}", {})
            new = 0
            for i in range(start, stop):
                key = ResultKey.create("m", "d", "accuracy", perturbation="fog", severity=i % 5 + 1, seed=i)
                new += store.add(run_id, [Cell(key, i / 3, n=i)])
            store.finish_run(run_id)
        queue.put(("ok", new))
    except BaseException as err:  # report every failure ("database is locked" included) to the parent
        queue.put(("error", repr(err)))


def test_concurrent_writers_lose_nothing_and_duplicate_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    context = multiprocessing.get_context("spawn")  # no fork of a process that has torch's threads running
    barrier, queue = context.Barrier(2), context.Queue()
    # overlapping ranges: cells 150..299 are written by both processes
    writers = [
        context.Process(target=_concurrent_writer, args=(path, 0, 300, barrier, queue)),
        context.Process(target=_concurrent_writer, args=(path, 150, 450, barrier, queue)),
    ]
    for writer in writers:
        writer.start()
    outcomes = [queue.get(timeout=180) for _ in writers]
    for writer in writers:
        writer.join(timeout=60)
    assert all(status == "ok" for status, _ in outcomes), outcomes
    assert sum(new for _, new in outcomes) == 450  # each distinct cell counted new exactly once
    with Store(path) as store:
        results = store.results()
        assert len(results) == 450
        assert not results.duplicated(KEY_COLUMNS).any()
        assert sorted(results["seed"]) == list(range(450))
        assert (results["value"] == results["seed"] / 3).all()
        assert set(store.runs()["status"]) == {"finished"}


# ------------------------------------------------------------------------------------------------ runs


def test_run_records_finished_failed_interrupted(store: Store) -> None:
    cell = Cell(ResultKey("m", "d", "accuracy"), 0.5)
    with store.run("ok", {"a": 1}, device="cpu") as finished:
        store.add(finished, [cell])
    with pytest.raises(RuntimeError), store.run("boom", {}) as failed:
        store.add(failed, [Cell(ResultKey("m", "d", "error"), 0.5)])
        raise RuntimeError("boom")
    with pytest.raises(KeyboardInterrupt), store.run("ctrl-c", {}) as interrupted:
        store.add(interrupted, [Cell(ResultKey("m", "d", "loss"), 0.5)])
        raise KeyboardInterrupt
    runs = store.runs().set_index("run_id")
    assert runs.loc[finished, "status"] == "finished"
    assert runs.loc[failed, "status"] == "failed"
    assert runs.loc[interrupted, "status"] == "interrupted"
    assert runs["finished_at"].notna().all()
    assert (runs["finished_at"] >= runs["started_at"]).all()
    # rows written before the failure or the interrupt are kept
    assert runs["n_results"].tolist() == [1, 1, 1]
    assert set(store.runs()["status"]) <= set(RUN_STATUSES)


def test_start_run_records_provenance(store: Store) -> None:
    import torch

    import robustlab

    run_id = store.start_run("robustlab eval", {"model": "cifar:resnet20", "data": Path("/data")}, device="cuda:0")
    row = store.runs().set_index("run_id").loc[run_id]
    assert row["status"] == "running" and pd.isna(row["finished_at"])
    assert json.loads(row["config_json"]) == {"data": "/data", "model": "cifar:resnet20"}
    assert row["robustlab_version"] == robustlab.__version__
    assert row["torch_version"] == torch.__version__
    assert row["device"] == "cuda:0"
    assert row["git_sha"] is None or len(row["git_sha"]) == 40


def test_finish_run_refuses_bad_input(store: Store) -> None:
    run_id = store.start_run("test", {})
    with pytest.raises(ValueError, match="status must be one of"):
        store.finish_run(run_id, "done")
    with pytest.raises(ValueError, match="no run with id"):
        store.finish_run("nope")


# ------------------------------------------------------------------------------------------------ queries


def test_results_filters_and_done_keys(store: Store) -> None:
    run_id = store.start_run("test", {})
    cells = _grid_cells(n_models=3)
    store.add(run_id, cells)
    assert len(store.results(model="model1")) == len(cells) // 3
    assert set(store.results(model=["model0", "model2"])["model"]) == {"model0", "model2"}
    assert len(store.results(model=[])) == 0
    clean_acc = store.results(perturbation="clean", metric="accuracy")
    assert len(clean_acc) == 3 and (clean_acc["severity"] == 0).all()
    assert len(store.results(run_id="someone-else")) == 0
    assert store.done_keys() == {cell.key for cell in cells}
    assert store.done_keys(model="model0") == {cell.key for cell in cells if cell.key.model == "model0"}
    dtypes = store.results().dtypes
    assert (dtypes["value"], dtypes["n"], dtypes["severity"], dtypes["seed"]) == (
        "float64",
        "Int64",
        "int64",
        "int64",
    )
    assert list(store.results(model="absent").columns) == list(store.results().columns)


def test_pivot_has_one_row_per_condition_and_one_column_per_metric(store: Store) -> None:
    run_id = store.start_run("test", {})
    store.add(run_id, _grid_cells(n_models=2, severities=5))
    for eps in (2 / 255, 8 / 255):  # two attack strengths: same severity, different params
        store.add_result(run_id, "model0", "cifar10", "accuracy", 1 - eps, perturbation="pgd", params={"eps": eps})
    results = store.results()
    wide = pivot_results(results)
    assert wide.shape == (2 * 6 + 2, 2)
    assert list(wide.columns) == ["accuracy", "error"]
    assert wide.index.names == ["model", "perturbation", "severity", "params_json"]
    assert wide.loc[("model1", "gaussian_noise", 3, "{}"), "error"] == 2 / 7 + 3 / 11 + 0.5
    assert math.isnan(wide.loc[("model0", "pgd", 0, canonical_params({"eps": 2 / 255})), "error"])
    # constant key columns (dataset, split, seed) do not split rows
    assert "dataset" not in wide.index.names


# ------------------------------------------------------------------------------------------------ export


def test_export_csv_and_json_equal_the_dataframe(store: Store, tmp_path: Path) -> None:
    run_id = store.start_run("test", {})
    store.add(run_id, _grid_cells())
    store.add_result(run_id, "m", "d", "accuracy", 0.1 + 0.2)  # n unknown -> <NA>
    store.add_result(run_id, "m", "d", "undefined", float("nan"), n=0)
    frame = store.results()

    csv = store.export(frame, tmp_path / "out.csv")
    back = _read_csv(csv, keep_default_na=False, na_values=[""])
    pd.testing.assert_frame_equal(back.astype(frame.dtypes.to_dict()), frame)

    js = store.export({"model": "m"}, tmp_path / "out.json")  # filters instead of a frame
    records = json.loads(js.read_text())
    subset = store.results(model="m")
    assert records[0]["value"] == 0.1 + 0.2  # full precision, unlike DataFrame.to_json
    assert records[1]["value"] is None  # JSON has no NaN
    pd.testing.assert_frame_equal(pd.DataFrame(records).astype(subset.dtypes.to_dict()), subset)


def test_export_refuses_bad_targets(store: Store, tmp_path: Path) -> None:
    frame = store.results()
    with pytest.raises(ValueError, match=".csv"):
        store.export(frame, tmp_path / "out.xlsx")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        store.export(frame, tmp_path / "missing" / "out.csv")
    with pytest.raises(ValueError, match="unknown results filter"):
        store.export({"modle": "m"}, tmp_path / "out.csv")


def test_export_parquet_needs_pyarrow(store: Store, tmp_path: Path) -> None:
    run_id = store.start_run("test", {})
    store.add_result(run_id, "m", "d", "accuracy", 0.1 + 0.2)
    target = tmp_path / "out.parquet"
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install pyarrow"):
            store.export(None, target)
        assert not target.exists()
        return
    store.export(None, target)
    assert pd.read_parquet(target)["value"].iloc[0] == 0.1 + 0.2


def test_export_of_a_pivot_keeps_its_row_labels(store: Store, tmp_path: Path) -> None:
    run_id = store.start_run("test", {})
    store.add(run_id, _grid_cells(n_models=1, severities=2))
    wide = pivot_results(store.results())
    back = _read_csv(export_frame(wide, tmp_path / "wide.csv"))
    assert list(back.columns) == ["model", "perturbation", "severity", "accuracy", "error"]
    assert back.shape == (3, 5)


# ------------------------------------------------------------------------------------------------ bad files


def test_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Store(tmp_path / "no" / "such" / "folder" / "r.db")
    with pytest.raises(FileNotFoundError, match="robustlab demo"):
        Store(tmp_path / "absent.db", create=False)
    assert not (tmp_path / "absent.db").exists()  # create=False never leaves an empty store behind
    with pytest.raises(ValueError, match="is a directory"):
        Store(tmp_path)


def test_a_file_that_is_not_sqlite_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "results.csv"
    path.write_text("model,value\nresnet,0.5\n" * 50)
    before = _digest(path)
    with pytest.raises(ValueError, match="results.csv is not a SQLite database"):
        Store(path)
    assert _digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]  # no -wal / -shm files either


def test_a_foreign_sqlite_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE people (name TEXT)")
    conn.execute("INSERT INTO people VALUES ('ada')")
    conn.commit()
    conn.close()
    before = _digest(path)
    with pytest.raises(ValueError, match="other.db is a SQLite database of another application"):
        Store(path)
    assert _digest(path) == before  # not converted to WAL, no tables added
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]


def test_a_store_from_a_newer_robustlab_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(ValueError, match="newer robustlab"):
        Store(path)


def test_a_store_with_altered_tables_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE results ADD COLUMN extra TEXT")
    conn.close()
    with pytest.raises(ValueError, match="has columns"):
        Store(path)


def test_importing_the_engine_does_not_import_pandas() -> None:
    # the store's tables import pandas only when a DataFrame is asked for: a worker that measures and writes
    # cells should not pay pandas' import
    code = "import robustlab.engine, sys; assert 'pandas' not in sys.modules, 'pandas was imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr


def test_store_keys_need_neither_sqlite_nor_pandas() -> None:
    # keys.py is the part of the store the engine and the report build keys with; it must stay pure Python
    import ast

    import robustlab.store.keys as keys

    tree = ast.parse(Path(keys.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported, "no imports found: the test reads the wrong file"
    assert {name for name in imported if name.split(".")[0] in ("sqlite3", "pandas", "robustlab")} == set()
