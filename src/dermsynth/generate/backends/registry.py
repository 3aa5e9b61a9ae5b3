"""Generator backends behind one interface, chosen by name from a registry."""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path
from typing import Protocol

import numpy as np

from dermsynth.errors import DataError
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


class PerClassBackend:
    """One model per class (DreamBooth per class) behind one Backend: batches are split by label."""

    def __init__(self, backends: dict[str, Backend]):
        self.backends = backends
        first = next(iter(backends.values()))
        self.name, self.size = first.name, first.size
        self.model = "per-class:" + ",".join(f"{k}={b.model}" for k, b in sorted(backends.items()))
        self.fingerprint = hashlib.sha256("|".join(f"{k}:{b.fingerprint}" for k, b in sorted(backends.items()))
                                          .encode()).hexdigest()[:16]

    def params(self, method: str) -> dict:
        return next(iter(self.backends.values())).params(method)

    def training_ids(self) -> set[str]:
        return set().union(*(b.training_ids() for b in self.backends.values()))

    def generate(self, method, labels, prompts, refs, seeds) -> np.ndarray:
        out: list = [None] * len(labels)
        for label in sorted(set(labels)):
            if label not in self.backends:
                raise DataError(f"no fine-tuned model for class {label!r}")
            idx = [i for i, lab in enumerate(labels) if lab == label]
            imgs = self.backends[label].generate(method, [labels[i] for i in idx], [prompts[i] for i in idx],
                                                 None if refs is None else refs[idx], [seeds[i] for i in idx])
            for i, img in zip(idx, imgs, strict=True):
                out[i] = img
        return np.stack(out)
