"""A name → factory registry, so every choice (dataset, backend, encoder, scheduler,
optimizer) is listed in one place: help texts and error messages read from it, and adding
a choice is one decorated function instead of another branch in an if/elif chain."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from dermsynth.errors import ConfigError

T = TypeVar("T")


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
            raise ConfigError(f"{self.kind}={name!r} is unknown; choose one of {', '.join(self.names())}")
        return self._items[name]

    def names(self) -> list[str]:
        return list(self._items)

    def help(self) -> str:
        return " | ".join(self.names())

    def __contains__(self, name: object) -> bool:
        return name in self._items
