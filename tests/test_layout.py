"""The suite runs in pytest's default import mode, where two test modules with the same file name in different
folders stop collection on a clean checkout (a stale cache can hide it locally)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path


def test_test_module_names_are_unique():
    root = Path(__file__).parent
    names = Counter(p.name for p in root.rglob("*.py") if p.name != "conftest.py" and p.name != "__init__.py")
    assert [name for name, count in names.items() if count > 1] == []
