"""The CI constraints pin torch and torchvision as one matched pair, so installing an extra with
``-c .ci/constraints.txt`` can neither move torch alone nor keep a torchvision built for another torch."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / ".ci" / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints must pin exact versions (name==x.y.z), got {line!r}"
            pins[name.strip().lower()] = version.strip()
    return pins


def test_torch_and_torchvision_are_pinned_together_as_a_released_pair() -> None:
    pins = _pins()
    assert {"torch", "torchvision"} <= set(pins)
    torch_minor = tuple(int(v) for v in pins["torch"].split(".")[:2])
    vision_minor = tuple(int(v) for v in pins["torchvision"].split(".")[:2])
    # torchvision 0.(m+15) is built against torch 2.m (0.17 <-> 2.2 ... 0.29 <-> 2.14)
    assert torch_minor[0] == 2 and vision_minor == (0, torch_minor[1] + 15), pins
    readme = (ROOT / "README.md").read_text()
    assert f"torch {pins['torch']} with torchvision {pins['torchvision']}" in readme  # the README says the same pair


def test_the_package_allows_the_pinned_pair() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    pins = _pins()
    for name in ("torch", "torchvision"):
        floor = re.search(rf'"{name}>=([\d.]+)"', text)
        assert floor is not None, f"pyproject.toml should require {name} with a lower bound"
        assert tuple(map(int, floor.group(1).split("."))) <= tuple(map(int, pins[name].split("."))), name
