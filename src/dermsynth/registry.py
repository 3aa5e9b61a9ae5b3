"""A name → factory registry, so every choice (dataset, backend, encoder, scheduler,
optimizer) is listed in one place: help texts and error messages read from it, and adding
a choice is one decorated function instead of another branch in an if/elif chain."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from dermsynth.errors import ConfigError

T = TypeVar("T")


def did_you_mean(name: str, choices: Iterable[str], n: int = 3) -> str:
    """" (did you mean 'x'?)" for the closest choices (spelling, '-' for '_'), or "" when none is close.

    Why: an unknown name answered with the whole list of 50 choices, or with none, leaves the
    reader to find the typo; the closest names usually are the fix."""
    choices = list(choices)
    norm = {c.lower().replace("-", "").replace("_", ""): c for c in choices}
    key = name.lower().replace("-", "").replace("_", "")
    close = ([norm[key]] if key in norm else []) + difflib.get_close_matches(name, choices, n=n, cutoff=0.6)
    close = list(dict.fromkeys(close))[:n]
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


class Registry(Generic[T]):
    """Named factories of one kind; ``get`` names the valid choices when a name is unknown."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = item
            return item

        return add

    def get(self, name: str) -> T:
        if name not in self._items:
            raise ConfigError(f"{self.kind}={name!r} is unknown{did_you_mean(name, self.names())}; choose one of "
                              f"{', '.join(self.names())}")
        return self._items[name]

    def names(self) -> list[str]:
        return list(self._items)

    def help(self) -> str:
        return " | ".join(self.names())

    def __contains__(self, name: object) -> bool:
        return name in self._items
