"""What identifies a stored cell: :class:`ResultKey`, :class:`Cell` and the canonical parameter text.

Pure Python (no sqlite3, no pandas), so code that only builds keys (the engine's resume, the report's labels)
imports nothing heavy.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, SupportsIndex, cast

__all__ = ["KEY_COLUMNS", "Cell", "ResultKey", "canonical_params", "check_int", "check_text", "check_value"]

KEY_COLUMNS = ("model", "dataset", "split", "perturbation", "severity", "params_json", "metric", "seed")
"""The columns of a result row that make its key, in table order."""

_TEXT_KEY_FIELDS = ("model", "dataset", "metric", "split", "perturbation")


def canonical_params(params: Mapping[str, Any] | str | None) -> str:
    """The canonical JSON text of a parameter mapping, as stored in ``results.params_json``.

    Keys are sorted and separators fixed, so equal mappings give equal text and therefore the same key. Note
    that ``1`` and ``1.0`` stay different (JSON keeps the distinction); pass parameters with consistent types.

    Args:
        params: the parameters (``eps``, ``steps``, ``sigma``...), their JSON text, or ``None`` for none.

    Returns:
        Canonical JSON text; ``"{}"`` for no parameters.

    Raises:
        ValueError: ``params`` is not a mapping, is not JSON-serialisable or holds NaN / infinity.
    """
    if params is None:
        return "{}"
    if isinstance(params, str):
        try:
            params = json.loads(params)
        except json.JSONDecodeError as err:
            raise ValueError(f"params must be a mapping or its JSON text, got invalid JSON {params!r}") from err
    if not isinstance(params, Mapping):
        raise ValueError(f"params must be a mapping such as {{'eps': 0.03}}, got {type(params).__name__}")
    try:
        return json.dumps(dict(params), sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as err:
        # numpy / torch scalars are the usual culprit: they are not JSON types
        raise ValueError(
            f"params must hold plain JSON values (str, int, float, bool, lists, dicts; finite numbers), got "
            f"{params!r}: {err}. Convert tensors and numpy scalars with .item()"
        ) from err


def check_text(value: object, name: str) -> str:
    """``value`` when it is a non-empty string.

    Args:
        value: the value to check.
        name: its name in the error message.

    Returns:
        The string.

    Raises:
        ValueError: not a string, or empty.
    """
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


def check_int(value: object, name: str, *, low: int | None = None) -> int:
    """``value`` as a Python int: integers (numpy ones too) and integral floats pass, bools and 2.5 do not.

    Args:
        value: the value to check.
        name: its name in the error message.
        low: the smallest allowed value, if any.

    Returns:
        The integer.

    Raises:
        ValueError: not an integer, or below ``low``.
    """
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    try:
        result = operator.index(cast(SupportsIndex, value))  # accepts numpy integers, refuses 2.5 and "3"
    except TypeError as err:
        raise ValueError(f"{name} must be an integer, got {value!r}") from err
    if low is not None and result < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {result}")
    return result


def check_value(value: object) -> float | None:
    """A metric value as a Python float; NaN becomes ``None`` (SQL NULL, read back as NaN).

    Args:
        value: a float, int or one-element tensor.

    Returns:
        The float, or ``None`` for NaN.

    Raises:
        ValueError: a string, or anything ``float()`` refuses.
    """
    if isinstance(value, (str, bytes)):
        # a stringified float has already lost its exact value; refuse rather than store it
        raise ValueError(f"value must be a number, got the string {value!r}")
    try:
        result = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"value must be a real number (a float, int or one-element tensor), got {value!r}") from err
    # SQLite stores NaN as NULL anyway; doing it here makes the decision visible. NaN means "undefined" (e.g.
    # the accuracy of an empty subset); ±inf is a legal REAL and round-trips unchanged (-0.0 reads as 0.0).
    return None if math.isnan(result) else result


@dataclass(frozen=True)
class ResultKey:
    """What identifies one measured cell: everything in a result row except ``run_id``, ``value`` and ``n``.

    Hashable, so a set of keys answers "is this cell done?" in O(1) for the engine's resume.

    Args:
        model: model name, e.g. ``"cifar:resnet20"``.
        dataset: dataset name, e.g. ``"cifar10"``.
        metric: metric name, e.g. ``"accuracy"``.
        split: dataset split.
        perturbation: corruption / attack / noise name; ``"clean"`` for unperturbed data.
        severity: perturbation severity; ``0`` means none (clean data, or a perturbation without levels).
        params_json: canonical JSON of the perturbation's parameters (see :func:`canonical_params`); build
            keys with :meth:`create` to pass a mapping instead.
        seed: the seed the perturbation's generators were derived from.

    Raises:
        ValueError: an empty name, a negative or non-integer severity, a non-integer seed or invalid params.
    """

    model: str
    dataset: str
    metric: str
    split: str = "test"
    perturbation: str = "clean"
    severity: int = 0
    params_json: str = "{}"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in _TEXT_KEY_FIELDS:
            check_text(getattr(self, name), name)
        # frozen: normalise through object.__setattr__ so 3.0 and 3, or differently ordered params, hash equal
        object.__setattr__(self, "severity", check_int(self.severity, "severity", low=0))
        object.__setattr__(self, "seed", check_int(self.seed, "seed"))
        object.__setattr__(self, "params_json", canonical_params(self.params_json))

    @classmethod
    def create(
        cls,
        model: str,
        dataset: str,
        metric: str,
        *,
        split: str = "test",
        perturbation: str = "clean",
        severity: int = 0,
        params: Mapping[str, Any] | None = None,
        seed: int = 0,
    ) -> ResultKey:
        """Build a key from a parameter mapping rather than its JSON text.

        Args:
            model: model name.
            dataset: dataset name.
            metric: metric name.
            split: dataset split.
            perturbation: perturbation name, ``"clean"`` for unperturbed data.
            severity: severity, ``0`` for none.
            params: perturbation parameters, e.g. ``{"eps": 8 / 255, "steps": 10}``.
            seed: perturbation seed.

        Returns:
            The key.

        Raises:
            ValueError: as for :class:`ResultKey`.
        """
        return cls(model, dataset, metric, split, perturbation, severity, canonical_params(params), seed)

    @classmethod
    def _from_row(cls, row: Sequence[Any]) -> ResultKey:
        # rows come from the store, where they were validated on the way in; skipping __post_init__ keeps
        # done_keys() fast on large stores
        key = object.__new__(cls)
        for name, value in zip(KEY_COLUMNS, row, strict=True):
            object.__setattr__(key, name, value)
        return key

    @property
    def params(self) -> dict[str, Any]:
        """The perturbation parameters as a dict."""
        return json.loads(self.params_json)

    def _row(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in KEY_COLUMNS)


@dataclass(frozen=True)
class Cell:
    """One measured value with its key.

    Args:
        key: what was measured.
        value: the metric value; NaN is stored as NULL (undefined) and read back as NaN.
        n: how many samples the value is computed from, if it applies.
    """

    key: ResultKey
    value: float
    n: int | None = None
