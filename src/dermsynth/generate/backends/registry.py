"""Generator backends behind one interface, chosen by name from a registry."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Protocol

import numpy as np

from dermsynth.registry import Registry


class Backend(Protocol):
    """What the generation runner needs of a generator."""

    name: str
    model: str
    fingerprint: str  # changes whenever the weights or a sampling setting change
    size: int

    def params(self, method: str) -> dict: ...

    def training_ids(self) -> set[str]: ...

    def generate(self, method: str, labels: list[str], prompts: list[str], refs: np.ndarray | None,
                 seeds: list[int]) -> np.ndarray: ...


def _lazy(target: str):
    """A factory that imports its class on first use: listing backends must not import diffusers."""
    module, _, name = target.partition(":")
    return lambda *args, **kwargs: getattr(importlib.import_module(module), name)(*args, **kwargs)


BACKENDS: Registry = Registry("backend")
BACKENDS.register("builtin")(_lazy("dermsynth.generate.backends.builtin:BuiltinBackend"))
BACKENDS.register("sd")(_lazy("dermsynth.generate.backends.sd:SDBackend"))


def make_backend(backend: str, model: str | Path, **kwargs) -> Backend:
    """``builtin`` (a model folder) or ``sd`` (a hub id or local pipeline folder)."""
    return BACKENDS.get(backend)(model, **kwargs)
