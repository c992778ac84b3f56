"""Name -> callable registries filled by a decorator.

Five registries exist in robustlab (models, perturbations, attacks, explainers, methods); each is an instance of
:class:`Registry`. Keys equal the registered function's ``__name__`` unless given explicitly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from robustlab._checks import did_you_mean

F = TypeVar("F", bound=Callable[..., Any])


def close_matches_message(kind: str, name: str, known: list[str]) -> str:
    """Build the standard "unknown name" message with close-match suggestions."""
    return f"Unknown {kind} {name!r}.{did_you_mean(name, known)} Known {plural(kind)}: {', '.join(sorted(known))}."


def plural(noun: str) -> str:
    """English plural of a registry kind: "suite entry" -> "suite entries", "attack" -> "attacks"."""
    if noun.endswith("y") and noun[-2:-1] not in tuple("aeiou"):
        return noun[:-1] + "ies"
    return noun + ("es" if noun.endswith(("s", "x", "ch", "sh")) else "s")


class Registry:
    """A dict of named callables with helpful lookup errors.

    Example:
        >>> attacks = Registry("attack")
        >>> @attacks.register
        ... def fgsm(model, images, labels): ...
        >>> attacks.get("fgsm") is fgsm
        True
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Callable[..., Any]] = {}

    def register(self, fn: F | None = None, *, name: str | None = None) -> Any:
        """Register ``fn`` under ``name`` (default: its ``__name__``). Usable bare or with arguments."""

        def add(f: F) -> F:
            key = name or f.__name__
            if key in self._items and self._items[key] is not f:
                raise ValueError(f"{self.kind} {key!r} is already registered")
            self._items[key] = f
            return f

        return add(fn) if fn is not None else add

    def get(self, name: str) -> Callable[..., Any]:
        """Look up ``name``.

        Raises:
            ValueError: unknown name; the message lists close matches and every known name.
        """
        if not isinstance(name, str):
            raise ValueError(f"{self.kind} name must be a string, got {type(name).__name__}")
        try:
            return self._items[name]
        except KeyError:
            raise ValueError(close_matches_message(self.kind, name, list(self._items))) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
