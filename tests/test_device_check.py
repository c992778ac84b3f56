"""benchmarks/device_check.py: the smallest pieces of its CPU dry run, so a lent GPU's minutes never meet a typo."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import device_check  # noqa: E402


def test_quick_corruption_part_writes_rates_and_exact_agreement(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "check.json"
    args = ["--device", "cpu", "--quick", "--parts", "corruptions", "--corruptions", "brightness,jpeg_compression"]
    device_check.main([*args, "--out", str(out), "--data-dir", str(tmp_path)])  # no data there: fixed noise images
    report = json.loads(out.read_text())
    assert report["meta"]["device"] == "cpu" and report["meta"]["quick"] is True
    part = report["parts"]["corruptions"]
    assert part["status"] == "ok", part
    assert set(part["rows"]) == {"brightness", "jpeg_compression"}
    for row in part["rows"].values():
        # the same device twice with fresh generators: the agreement check itself must report exact equality
        assert row["images_per_s"] > 0 and row["max_abs_diff"] == 0 and row["exact"] is True
    assert "corruptions" in capsys.readouterr().out


def test_unknown_part_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        device_check.main(["--device", "cpu", "--quick", "--parts", "corruption", "--out", str(tmp_path / "x.json")])
