"""The report opens in a real browser (headless Chromium) with every plot decoded and the store's numbers shown."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from robustlab.report import write_report
from robustlab.store import Cell, ResultKey, Store

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (.ci/run installs it)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


def _store(db) -> None:
    with Store(db) as store, store.run("test", {"seed": 0}) as run_id:
        cells = []
        for model, clean in (("cnn_a", 0.91), ("cnn_b", 0.85)):
            cells.append(Cell(ResultKey.create(model, "toy", "accuracy"), clean, 100))
            for name in ("fog", "contrast", "gaussian_noise"):
                for s in range(1, 6):
                    cells.append(Cell(ResultKey.create(model, "toy", "accuracy", perturbation=name, severity=s,
                                                       seed=1), clean - 0.07 * s, 100))  # fmt: skip
            for sigma in (0.05, 0.1, 0.2):
                cells.append(Cell(ResultKey.create(model, "toy", "accuracy", perturbation="gaussian_noise_sigma",
                                                   params={"sigma": sigma}, seed=1), clean - sigma, 100))  # fmt: skip
        store.add(run_id, cells)


def test_report_renders_with_every_plot(tmp_path) -> None:
    db, page = tmp_path / "r.db", tmp_path / "r.html"
    _store(db)
    write_report(db, page, baseline="cnn_a")
    common = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1300,2000"]
    dom = subprocess.run([*common, "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout  # fmt: skip
    plots = re.search(r'data-plots="(\d+)"', dom)
    rendered = re.search(r'data-plots-rendered="(\d+)"', dom)
    assert plots and rendered, "the page's load handler did not run"
    assert int(plots.group(1)) == 4  # corruption grid, corruption bars, noise curve, noise-study RankDiff strips
    assert rendered.group(1) == plots.group(1)
    for number in ("0.9100", "0.8500", "0.7700"):
        assert number in dom
    # at a 1,300-px window every plot is shown at its own size (1:1): none is scaled down
    shrunk = re.search(r'data-plots-shrunk="(\d+)"', dom)
    assert shrunk and shrunk.group(1) == "0"
    # the leaderboard row of cnn_a: clean 91.0 % with its 95 % interval from n = 100
    board = dom[dom.index('id="leaderboard-toy"') :]
    row = board[board.index(">cnn_a<") : board.index("</tr>", board.index(">cnn_a<"))]
    assert 'data-v="0.91"' in row and "91.0" in row and "[83.8, 95.2]" in row
    shot = tmp_path / "shot.png"
    subprocess.run([*common, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.std() > 10  # not a blank page
