"""bf16 or fp32: the rule every precision probe applies — the classifier's (train/precision.py)
and the built-in generator's sampling and training (generate/builtin_precision.py) — so one
threshold and one way of timing serve them all. Here, below both layers, because each probe
times a network of its own layer."""

from __future__ import annotations

import time
from collections.abc import Callable

# bf16 must beat fp32 by this factor to be chosen: a tie keeps the exact arithmetic.
MIN_SPEEDUP = 1.15


def best_seconds(call: Callable[[], object], repeats: int) -> float:
    """The fastest of ``repeats`` calls after one warm-up call (allocations, oneDNN's kernel choice)."""
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return min(times[1:])


def faster_precision(fp32_seconds: float, bf16_seconds: float) -> str:
    """"bf16" where it is at least MIN_SPEEDUP× faster than fp32, else "fp32"."""
    return "bf16" if fp32_seconds / bf16_seconds >= MIN_SPEEDUP else "fp32"
