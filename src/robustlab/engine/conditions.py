"""What the engine measures, and the option syntax of suite entries: shared by the suite and the measures.

:class:`Condition` is one measured condition (one store cell family) and :class:`Group` the conditions that share a
pass over the data. The parsers read the raw ``key=value`` strings of a suite entry (:func:`parse_suite`): numbers
with fractions (``8/255``), ``+``-joined lists, severity and index ranges (``1-5``), and typed attack options.
Both :mod:`robustlab.engine.suite` (which builds the groups) and :mod:`robustlab.engine.measures` (the attack,
stability and AFAT conditions) import this module, so neither imports the other back.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

__all__ = [
    "Condition",
    "Group",
    "Measure",
    "parse_floats",
    "parse_int_list",
    "parse_number",
    "parse_option_value",
    "parse_severities",
    "parse_suite",
]


Measure = Callable[[nn.Module, Tensor, Tensor, Tensor, int], Tensor]
"""``measure(model, images, labels, indices, seed) -> per-batch metric sums``."""


@dataclass(frozen=True, eq=False)
class Condition:
    """One measured condition: the store key's perturbation fields and how to produce its images.

    Args:
        perturbation: the store's perturbation name (``"clean"``, a corruption, ``"gaussian_noise_sigma"``...).
        severity: 1..5 for corruptions, 0 where the level lives in ``params``.
        params: parameters recorded in the store key (profile, σ, ratio...).
        seeded: whether the seed changes the result (clean data is stored with seed 0 whatever the seed).
        apply: the image transform; None for clean data. Sequences return frames ``(N, T, C, H, W)``.
        metrics: what is measured: ``("accuracy",)``, or ``("flip_probability", "top5_distance")`` for sequences.
        measure: a condition that measures for itself (attacks, explanation stability) instead of ``apply`` +
            accuracy: ``measure(model, images, labels, indices, seed) -> sums (len(metrics),)`` over the batch. It
            runs outside inference mode, so it may take gradients.
        finalize: turns the metric sums over the dataset and the sample count into the stored values (default:
            each sum divided by the count).
        check: ``check(model, images, labels)`` raises ValueError for a setting that cannot run with this model
            and data; the engine calls it on an empty batch before measuring anything.
    """

    perturbation: str
    severity: int = 0
    params: Mapping[str, Any] = field(default_factory=dict)
    seeded: bool = True
    apply: Callable[[Tensor, Tensor, int], Tensor] | None = field(default=None, compare=False)
    metrics: tuple[str, ...] = ("accuracy",)
    measure: Measure | None = field(default=None, compare=False)
    finalize: Callable[[Tensor, int], list[float]] | None = field(default=None, compare=False)
    check: Callable[[nn.Module, Tensor, Tensor], object] | None = field(default=None, compare=False)

    @property
    def identity(self) -> tuple[str, int, str]:
        return (self.perturbation, self.severity, json.dumps(dict(self.params), sort_keys=True))

    def images(self, images: Tensor, indices: Tensor, seed: int) -> Tensor:
        return images if self.apply is None else self.apply(images, indices, seed)


@dataclass(frozen=True)
class Group:
    """Conditions evaluated in one pass over the data.

    ``dataset`` replaces the evaluated dataset for this group: pre-made corrupted files (CIFAR-10-C, ImageNet-C)
    whose samples are the clean dataset's samples in the same order.
    """

    name: str
    conditions: tuple[Condition, ...]
    dataset: Any = None


def parse_suite(suite: str | Sequence[str]) -> list[tuple[str, dict[str, str]]]:
    """Split a suite into ``(name, options)`` pairs (options as raw strings).

    Raises:
        ValueError: an option before any token, or an option that is not ``key=value``.
    """
    parts = [p for t in ([suite] if isinstance(suite, str) else suite) for p in str(t).split(",")]
    tokens: list[tuple[str, dict[str, str]]] = []
    for part in (p.strip() for p in parts):
        if not part:
            continue
        if "=" in part and ":" not in part:
            # an option continuing the previous token: "pgd:eps=8/255,steps=20"
            if not tokens:
                raise ValueError(f"suite option {part!r} comes before any suite entry")
            key, _, value = part.partition("=")
            tokens[-1][1][key.strip()] = value.strip()
            continue
        name, _, rest = part.partition(":")
        options: dict[str, str] = {}
        if rest:
            key, eq, value = rest.partition("=")
            if not eq:
                raise ValueError(f"suite option {rest!r} of {name!r} must look like key=value")
            options[key.strip()] = value.strip()
        tokens.append((name.strip(), options))
    return tokens


def parse_number(text: str, what: str) -> float:
    try:
        if "/" in text:
            num, _, den = text.partition("/")
            return float(num) / float(den)
        return float(text)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"{what} must be numbers (fractions like 8/255 allowed) joined by '+', got {text!r}") from None


def parse_floats(text: str, what: str) -> tuple[float, ...]:
    return tuple(parse_number(v.strip(), what) for v in text.split("+") if v.strip())


def parse_severities(text: str | None) -> tuple[int, ...]:
    if text is None:
        return (1, 2, 3, 4, 5)
    if "-" in text:
        lo, _, hi = text.partition("-")
        values = tuple(range(int(lo), int(hi) + 1))
    else:
        values = tuple(int(float(v)) for v in parse_floats(text, "severities"))
    if not values or any(not 1 <= s <= 5 for s in values):
        raise ValueError(f"severities must lie in 1..5, got {text!r}")
    return values


def parse_int_list(text: str, what: str) -> list[int]:
    if "-" in text:
        lo, _, hi = text.partition("-")
        return list(range(int(lo), int(hi) + 1))
    try:
        return [int(v) for v in text.split("+") if v.strip()]
    except ValueError:
        raise ValueError(f"{what} must be integers joined by '+' or a range like 0-5, got {text!r}") from None


def parse_option_value(key: str, text: str, default: Any, attack: str) -> Any:
    if isinstance(default, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{attack}: option {key} must be true or false, got {text!r}")
    if isinstance(default, int):
        value = parse_number(text, f"{attack} option {key}")
        if value != int(value):
            raise ValueError(f"{attack}: option {key} must be an integer, got {text!r}")
        return int(value)
    if isinstance(default, float) or default is None:
        try:
            value = parse_number(text, f"{attack} option {key}")
        except ValueError:
            if default is None:  # a None default may stand for a name (e.g. a loss) as well as a number
                return text
            raise
        # a None default may stand for an integer (a layer index): keep whole numbers written as such integers
        return int(value) if default is None and text.lstrip("-").isdigit() else value
    return text
