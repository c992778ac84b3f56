"""The HTML report shows what the store holds, and nothing else."""

from __future__ import annotations

import math

import pytest

from robustlab.report import write_report
from robustlab.store import Cell, ResultKey, Store


def _fill(db) -> None:
    with Store(db) as store, store.run("test", {"k": 1}) as run_id:
        cells = [Cell(ResultKey.create("m1", "d", "accuracy"), 0.9125, 400)]
        for i, sigma in enumerate((0.1, 0.2), start=1):
            cells.append(
                Cell(
                    ResultKey.create(
                        "m1",
                        "d",
                        "accuracy",
                        perturbation="gaussian_noise_sigma",
                        severity=i,
                        params={"sigma": sigma},
                        seed=3,
                    ),
                    0.8 - i / 10,
                    400,
                )
            )
        cells.append(Cell(ResultKey.create("m2", "d", "accuracy"), 0.5, None))
        cells.append(Cell(ResultKey.create("m2", "d", "loss"), math.nan, None))
        store.add(run_id, cells)


def test_report_contains_store_numbers_and_plot(tmp_path) -> None:
    db = tmp_path / "r.db"
    _fill(db)
    out = write_report(db, tmp_path / "r.html", title="T<est>")
    html = out.read_text()
    assert "T&lt;est&gt;" in html  # escaped
    for value in ("0.9125", "0.7000", "0.6000", "0.5000"):
        assert value in html
    assert html.count("data:image/png;base64,") == 1  # one perturbation with several levels
    assert "config of run" in html


def test_report_empty_store_and_errors(tmp_path) -> None:
    db = tmp_path / "e.db"
    Store(db).close()
    html = write_report(db, tmp_path / "e.html").read_text()
    assert "no results yet" in html
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_report(tmp_path / "missing.db", tmp_path / "x.html")
    with pytest.raises(FileNotFoundError, match="output folder"):
        write_report(db, tmp_path / "nope" / "x.html")


def test_report_shows_attacks_and_explanation_stability(tmp_path) -> None:
    db = tmp_path / "a.db"
    with Store(db) as store, store.run("test", {}) as run_id:
        cells = []
        for eps, robust in ((1 / 255, 0.4), (8 / 255, 0.05)):
            params = {"eps": eps, "norm": "linf", "steps": 10}
            for metric, value in (("clean_accuracy", 0.9), ("robust_accuracy", robust)):
                cells.append(Cell(ResultKey.create("m1", "d", metric, perturbation="pgd", params=params), value, 50))
        for s, cosine in ((1, 0.97), (5, 0.61)):
            cells.append(Cell(ResultKey.create("m1", "d", "cam_cosine", perturbation="fog", severity=s), cosine, 50))
        store.add(run_id, cells)
    html = write_report(db, tmp_path / "a.html").read_text()
    assert "Adversarial attacks" in html and "CAM stability" in html
    assert "Common corruptions" not in html  # stability cells alone are not accuracy results
    assert "pgd eps=8/255 linf steps=10 (robust acc.)" in html and "0.0500" in html
    assert "cam cosine (mean)" in html and "0.7900" in html
    assert html.count("data:image/png;base64,") == 2
