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


# Sampler steps when a config or command gives none, per backend: Stable Diffusion's usual 50
# (the authors'), the built-in model's tuned 10 (bench/generator_quality.py: more steps cost
# proportionally more time, not better samples). One table, so `dermsynth generator sample`,
# [generator] and make_backend agree.
DEFAULT_STEPS = {"builtin": 10, "sd": 50}

BACKENDS: Registry = Registry("backend")
BACKENDS.register("builtin")(_lazy("dermsynth.generate.backends.builtin:BuiltinBackend"))
BACKENDS.register("sd")(_lazy("dermsynth.generate.backends.sd:SDBackend"))


def make_backend(backend: str, model: str | Path, **kwargs) -> Backend:
    """``builtin`` (a model folder) or ``sd`` (a hub id or local pipeline folder); ``steps``
    defaults to the backend's own (DEFAULT_STEPS)."""
    if kwargs.get("steps") is None:
        kwargs["steps"] = DEFAULT_STEPS.get(backend, 50)
    return BACKENDS.get(backend)(model, **kwargs)
