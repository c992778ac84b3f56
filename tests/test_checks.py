"""The one home of close-match suggestions and choice checks (robustlab._checks)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from robustlab._checks import check_choice, close_matches, did_you_mean


def test_close_matches_best_first_and_bounded() -> None:
    known = ["gaussian_noise", "shot_noise", "impulse_noise", "glass_blur"]
    assert close_matches("gausian_noise", known)[0] == "gaussian_noise"
    assert len(close_matches("noise", known, n=2)) <= 2
    assert close_matches("zzzz", known) == []
    assert close_matches(3, ["3", "4"]) == ["3"]  # anything is compared as text


def test_did_you_mean_sentence() -> None:
    assert did_you_mean("lnf", ["linf", "l2"]) == " Did you mean 'linf'?"
    assert did_you_mean("resnet5", ["resnet50"], prefix="timm:") == " Did you mean 'timm:resnet50'?"
    assert did_you_mean("zzzz", ["linf", "l2"]) == ""


def test_check_choice_returns_the_value_or_names_the_choices() -> None:
    assert check_choice("l2", ("linf", "l2"), "norm") == "l2"
    with pytest.raises(ValueError, match=r"Unknown norm 'linfinity'\. Did you mean 'linf'\? The norm must be one of"):
        check_choice("linfinity", ("linf", "l2"), "norm")
    with pytest.raises(ValueError, match=r"Unknown norm 7\. The norm must be one of linf, l2\."):
        check_choice(7, ("linf", "l2"), "norm")


def test_difflib_is_called_only_by_the_checks() -> None:
    # one home for close-match suggestions: every other module goes through _checks (or the registry's message)
    src = Path(__file__).resolve().parents[1] / "src" / "robustlab"
    users = sorted(
        str(path.relative_to(src))
        for path in src.rglob("*.py")
        if any(
            (isinstance(node, ast.Import) and any(a.name == "difflib" for a in node.names))
            or (isinstance(node, ast.ImportFrom) and node.module == "difflib")
            for node in ast.walk(ast.parse(path.read_text()))
        )
    )
    assert users == ["_checks.py"]
