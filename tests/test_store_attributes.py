"""Model attributes in the results store: written by the noise study, read back as written, old stores migrated."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from robustlab.store import SCHEMA_VERSION, Store
from robustlab.store.schema import SCHEMA
from robustlab.study.noise import noise_study


def test_attributes_round_trip_and_replace(tmp_path: Path) -> None:
    with Store(tmp_path / "a.db") as store:
        store.add_attributes("cifar:resnet20", {"stem_kernel": 3, "mean": (0.49, 0.48, 0.45), "antialiased": False})
        store.add_attributes("cifar:resnet20", {"stem_kernel": 5, "global_pool": "avg"})  # a later measurement wins
        store.add_attributes("m2", {"min_std": 0.25})
        assert store.attributes() == {
            "cifar:resnet20": {
                "stem_kernel": 5,
                "mean": [0.49, 0.48, 0.45],
                "antialiased": False,
                "global_pool": "avg",
            },
            "m2": {"min_std": 0.25},
        }
        assert store.attributes(model="m2") == {"m2": {"min_std": 0.25}}
        with pytest.raises(ValueError, match="not a JSON value"):
            store.add_attributes("m2", {"bad": object()})
        with pytest.raises(ValueError, match="not a JSON value"):
            store.add_attributes("m2", {"nan": float("nan")})
        assert store.attributes(model="m2") == {"m2": {"min_std": 0.25}}  # a refused call writes nothing


def test_a_schema_1_store_gains_the_attributes_table_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    for statement in SCHEMA:
        if "CREATE TABLE attributes" not in statement:
            conn.execute(statement)
    conn.execute("PRAGMA application_id = 1380729154")  # "RLAB"
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO runs (run_id, started_at, status, command) VALUES ('r', '2026-01-01', 'finished', 'x')")
    conn.execute(
        "INSERT INTO results (run_id, model, dataset, metric, value, n) VALUES ('r', 'm', 'd', 'accuracy', 0.5, 4)"
    )
    conn.commit()
    conn.close()
    with Store(path) as store:
        assert store.attributes() == {}
        store.add_attributes("m", {"stem_kernel": 7})
        assert store.attributes() == {"m": {"stem_kernel": 7}}
        assert store.results()["value"].tolist() == [0.5]
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2


def test_noise_study_stores_the_architecture_it_measured(tmp_path: Path) -> None:
    with Store(tmp_path / "r.db") as store:
        noise_study(["cifar:resnet20"], "digits", "0,0.1", store=store, n=8, batch_size=8, pretrained=False,
                    device="cpu")  # fmt: skip
        stored = store.attributes()["cifar:resnet20"]
        run_ids = {row[0] for row in store._conn.execute("SELECT run_id FROM attributes")}
        assert run_ids == set(store.runs()["run_id"])  # recorded by the study's run
    # the values spec_attributes reads from the built model (tests/study/test_study_report.py)
    assert (stored["stem_kernel"], stored["stem_stride"], stored["global_pool"], stored["input_size"]) == (
        3,
        1,
        "avg",
        32,
    )
    assert stored["family"] == "cnn" and stored["num_params"] > 200_000 and len(stored["std"]) == 3
