"""The suite runs in pytest's default import mode, where two test modules with the same file name in different
folders stop collection on a clean checkout (a stale cache can hide it locally)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path


def test_test_module_names_are_unique():
    root = Path(__file__).parent
    names = Counter(p.name for p in root.rglob("*.py") if p.name != "conftest.py" and p.name != "__init__.py")
    assert [name for name, count in names.items() if count > 1] == []


def test_report_imports_only_the_store_metrics_and_itself():
    """DESIGN.md: the report reads only the store (and pure metric functions), never models, engine or study code.

    Every import in report/ is checked, function-level ones included, so a lazy import cannot hide a model build.
    """
    import ast

    allowed = ("robustlab.store", "robustlab.metrics", "robustlab.report")
    report = Path(__file__).parents[1] / "src" / "robustlab" / "report"
    files = sorted(report.rglob("*.py"))
    assert files, f"no report modules under {report}"
    found = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:  # a relative import stays inside report/
                    names = ["robustlab.report"]
                elif node.module == "robustlab":  # `from robustlab import models` imports robustlab.models
                    names = [f"robustlab.{a.name}" for a in node.names]
                else:
                    names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                if name.split(".")[0] == "robustlab" and not (name + ".").startswith(tuple(a + "." for a in allowed)):
                    found.append(f"{path.name}:{node.lineno} imports {name}")
    assert found == []
