"""The HTML report shows what the store holds, and nothing else."""

from __future__ import annotations

import math
from html.parser import HTMLParser

import pytest

from robustlab.metrics import wilson_interval
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


def _board_store(db) -> None:
    """Two models on two corruptions x two severities, attacks at two radii, a noise sweep: numbers worked by hand."""
    accuracy = {  # model -> clean, {corruption: [severity 1, severity 2]}
        "base": (0.9, {"fog": [0.8, 0.6], "contrast": [0.7, 0.5]}),
        "better": (0.8, {"fog": [0.75, 0.65], "contrast": [0.8, 0.7]}),
    }
    attacks = {("base", "pgd", 8): 0.05, ("base", "autoattack", 8): 0.03, ("better", "pgd", 8): 0.4,
               ("better", "autoattack", 8): 0.35, ("better", "pgd", 2): 0.6}  # fmt: skip
    with Store(db) as store, store.run("test", {}) as run_id:
        cells = []
        for model, (clean, corrupted) in accuracy.items():
            cells.append(Cell(ResultKey.create(model, "d", "accuracy"), clean, 1000))
            for name, values in corrupted.items():
                for severity, value in enumerate(values, start=1):
                    key = ResultKey.create(model, "d", "accuracy", perturbation=name, severity=severity)
                    cells.append(Cell(key, value, 1000))
        for (model, attack, eps), value in attacks.items():
            params = {"eps": eps / 255, "norm": "linf", "steps": 10}
            for metric, v in (("clean_accuracy", accuracy[model][0]), ("robust_accuracy", value)):
                cells.append(Cell(ResultKey.create(model, "d", metric, perturbation=attack, params=params), v, 200))
        for sigma, value in ((0.1, 0.7), (0.2, 0.5)):
            key = ResultKey.create(
                "base", "d", "accuracy", perturbation="gaussian_noise_sigma", params={"sigma": sigma}
            )
            cells.append(Cell(key, value, 1000))
        store.add(run_id, cells)


class _Tables(HTMLParser):
    """Each table of a page by id: its header and, per row, each cell's data-v (the exact value) and text."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, tuple[list[str], list[list[tuple[str, str]]]]] = {}
        self._id: str | None = None
        self._cell: list[str] | None = None
        self._raw = ""

    def handle_starttag(self, tag: str, attrs: list) -> None:
        found = dict(attrs)
        if tag == "table":
            self._id = found.get("id") or ""
            self.tables[self._id] = ([], [])
        elif self._id is not None and tag == "tr":
            self.tables[self._id][1].append([])
        elif self._id is not None and tag in ("th", "td"):
            self._cell, self._raw = [], found.get("data-v", "")

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._id = None
        elif tag in ("th", "td") and self._cell is not None and self._id is not None:
            head, rows = self.tables[self._id]
            text = " ".join("".join(self._cell).split())
            if tag == "th":
                head.append(text)
                rows.pop() if rows and not rows[-1] else None
            else:
                rows[-1].append((self._raw, text))
            self._cell = None


def test_leaderboard_holds_the_store_numbers_with_intervals(tmp_path) -> None:
    db = tmp_path / "b.db"
    _board_store(db)
    page = write_report(db, tmp_path / "b.html", baseline="base").read_text()
    parser = _Tables()
    parser.feed(page)
    head, rows = parser.tables["leaderboard-d"]
    board = {row[0][1]: dict(zip(head, row, strict=True)) for row in rows}
    assert set(board) == {"base", "better"}
    assert head[:3] == ["model", "n", "clean acc. %"]

    def value(model: str, column: str) -> float:
        return float(board[model][column][0])

    assert value("base", "clean acc. %") == 0.9 and value("better", "clean acc. %") == 0.8
    low, high = wilson_interval(0.9, 1000)
    assert f"[{100 * low:.1f}, {100 * high:.1f}]" in board["base"]["clean acc. %"][1]
    # worst case over the attacks stored at a radius, and the attack that gave it
    assert (
        value("base", "robust acc. linf ε=8/255 %") == 0.03
        and "autoattack" in board["base"]["robust acc. linf ε=8/255 %"][1]
    )
    assert value("better", "robust acc. linf ε=8/255 %") == 0.35
    assert value("better", "robust acc. linf ε=2/255 %") == 0.6 and board["base"]["robust acc. linf ε=2/255 %"][0] == ""
    low, high = wilson_interval(0.35, 200)
    assert f"[{100 * low:.1f}, {100 * high:.1f}]" in board["better"]["robust acc. linf ε=8/255 %"][1]
    # mean error over the 2 x 2 cells; CE and relative CE against the baseline, by hand
    assert value("base", "mean corr. error %") == pytest.approx(0.35)
    assert value("better", "mean corr. error %") == pytest.approx(0.275)
    assert value("base", "mCE vs base %") == pytest.approx(1.0)
    assert value("better", "mCE vs base %") == pytest.approx((0.6 / 0.6 + 0.5 / 0.8) / 2)
    assert value("better", "rel. mCE vs base %") == pytest.approx((0.1 / 0.2 + 0.05 / 0.3) / 2)
    assert value("base", "noise slope") == pytest.approx(-2.0)
    assert board["better"]["noise slope"][0] == ""
    # the adversarial table: one row per model x attack x radius, robust accuracy as stored
    head, rows = parser.tables["attacks"]
    assert len(rows) == 5
    robust = {(r[0][1], r[2][1], r[4][1]): float(r[head.index("robust acc. %")][0]) for r in rows}
    assert robust[("base", "autoattack", "8/255")] == 0.03 and robust[("better", "pgd", "2/255")] == 0.6
    with pytest.raises(ValueError, match="baseline 'bse' is not a model in the store"):
        write_report(db, tmp_path / "x.html", baseline="bse")


def test_report_without_baseline_has_no_relative_columns(tmp_path) -> None:
    db = tmp_path / "b.db"
    _board_store(db)
    parser = _Tables()
    parser.feed(write_report(db, tmp_path / "b.html").read_text())
    head, _ = parser.tables["leaderboard-d"]
    assert "mean corr. error %" in head and not any("mCE" in h for h in head)


def test_report_draws_error_bars_at_zero_and_full_accuracy(tmp_path) -> None:
    db = tmp_path / "z.db"
    with Store(db) as store, store.run("test", {}) as run_id:
        params = {"eps": 8 / 255, "norm": "linf", "steps": 10}
        cells = [
            Cell(ResultKey.create("m", "d", metric, perturbation="pgd", params=params), value, 100)
            for metric, value in (("clean_accuracy", 1.0), ("robust_accuracy", 0.0))
        ]
        store.add(run_id, cells)
    html = write_report(db, tmp_path / "z.html").read_text()
    assert html.count("data:image/png;base64,") == 1
    low, high = wilson_interval(0.0, 100)
    assert low == 0.0 and f"[0.0, {100 * high:.1f}]" in html


def test_report_command_refuses_an_unknown_baseline(tmp_path) -> None:
    from typer.testing import CliRunner

    from robustlab.cli import app

    db = tmp_path / "b.db"
    _board_store(db)
    args = ["report", "--db", str(db), "--out", str(tmp_path / "r.html"), "--baseline"]
    result = CliRunner().invoke(app, [*args, "bse"])
    assert result.exit_code == 1 and "pass one of: base, better" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r.html").exists()
    assert CliRunner().invoke(app, [*args, "base"]).exit_code == 0 and (tmp_path / "r.html").is_file()
