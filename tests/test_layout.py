"""The package's layout rules, checked on the source: test-module names, the one-way layering, no import cycles.

The suite runs in pytest's default import mode, where two test modules with the same file name in different
folders stop collection on a clean checkout (a stale cache can hide it locally).

The import rules read ``src/robustlab`` with :mod:`ast` (nothing is imported): ``methods/`` (training recipes) sits
above the layers it builds on, so none of them may import it, not even inside a function; and module-level imports
between robustlab's modules form no cycle.
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "robustlab"
BELOW_METHODS = ("models", "engine", "perturb", "data", "attacks", "explain", "metrics")


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _resolve(module: str, node: ast.ImportFrom, known: dict[str, Path]) -> str:
    """The absolute module a ``from ... import`` statement reads from (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    package = module if known[module].name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _imports(module: str, known: dict[str, Path], *, module_level_only: bool) -> set[str]:
    """robustlab modules that ``module`` imports: ``from a import b`` counts ``a.b`` when that is a module."""
    tree = ast.parse(known[module].read_text(encoding="utf-8"))
    # ``if TYPE_CHECKING:`` blocks never run; function bodies run only when called (skipped for module level)
    candidates: list[ast.AST] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        candidates.append(node)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack += node.orelse
            continue
        if module_level_only and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        stack += list(ast.iter_child_nodes(node))
    found: set[str] = set()
    for node in candidates:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node, known)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    return {name for name in found if name == "robustlab" or name.startswith("robustlab.")}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), or a module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def test_test_module_names_are_unique():
    root = Path(__file__).parent
    names = Counter(p.name for p in root.rglob("*.py") if p.name != "conftest.py" and p.name != "__init__.py")
    assert [name for name, count in names.items() if count > 1] == []


def test_nothing_below_methods_imports_methods():
    known = _modules()
    below = [m for m in known if m.split(".")[1:2] and m.split(".")[1] in BELOW_METHODS]
    assert below, "no modules found: is SRC right?"
    offenders = {
        module: sorted(i for i in _imports(module, known, module_level_only=False)
                       if i == "robustlab.methods" or i.startswith("robustlab.methods."))
        for module in below
    }  # fmt: skip
    assert {m: i for m, i in offenders.items() if i} == {}


def test_no_import_cycles_between_modules():
    known = _modules()
    graph = {module: _imports(module, known, module_level_only=True) for module in known}
    assert sum(len(v) for v in graph.values()) > 100, "the import graph looks empty: is SRC right?"
    assert _cycles(graph) == []


def test_no_import_cycles_through_function_level_imports():
    # a lazy import that closes a loop (models/_zoo <-> models/checkpoint, engine/suite <-> engine/measures) hides
    # a circle instead of removing it
    known = _modules()
    graph = {module: _imports(module, known, module_level_only=False) for module in known}
    assert _cycles(graph) == []


def test_the_checks_catch_what_they_look_for(tmp_path: Path):
    # the cycle finder finds a two-module loop and a self-import, and passes a chain
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert _cycles({"a": {"a"}}) == [["a"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    # a function-level import counts for the methods rule, not for cycles; a submodule named in "from" counts
    (tmp_path / "x.py").write_text(
        "from typing import TYPE_CHECKING\nfrom robustlab import rng\nimport torch\n\nif TYPE_CHECKING:\n"
        "    from robustlab import engine\n\n\ndef f():\n    from robustlab.methods import a3\n"
    )
    known = {
        "robustlab.x": tmp_path / "x.py",
        "robustlab.rng": tmp_path,
        "robustlab.methods.a3": tmp_path,
        "robustlab.engine": tmp_path,
    }
    assert _imports("robustlab.x", known, module_level_only=True) == {"robustlab.rng"}
    assert _imports("robustlab.x", known, module_level_only=False) == {"robustlab.rng", "robustlab.methods.a3"}
