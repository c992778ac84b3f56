"""Users read the papers' names (AR2, AFAT, A3, A-TPT, the Gaussian-noise study), never the internal "seed 00N"."""

from __future__ import annotations

import re
from pathlib import Path

import robustlab

INTERNAL_NAME = re.compile(r"seed (paper )?00\d|seed papers?\b", re.IGNORECASE)
ROOT = Path(robustlab.__file__).resolve().parent


def test_source_help_and_report_use_the_papers_names() -> None:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if INTERNAL_NAME.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)


def test_readme_uses_the_papers_names() -> None:
    readme = ROOT.parents[1] / "README.md"
    assert readme.is_file()
    assert not INTERNAL_NAME.search(readme.read_text(encoding="utf-8"))
