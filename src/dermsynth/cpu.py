"""What this CPU is and computes natively, read from the machine (never timed), and the one
setting dermsynth makes of the CPU's math library before anything computes.

Base layer: ``import dermsynth`` runs :func:`keep_onednn_off_amx` before torch makes its first
kernel, and the precision rule (models/precision_rule.py) reads the same flags.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# oneDNN's AMX bf16 kernels (torch 2.14's oneDNN 3.12) made classifier training NaN in 18–23 of 40 tiny
# runs on a Xeon with AMX, where its AVX512-BF16 kernels and fp32 gave 0 of 40 (docs/benchmarks.md):
# on such a CPU bf16 runs on the AVX512-BF16 kernels, still native. A value the user set is kept.
ONEDNN_ISA = "ONEDNN_MAX_CPU_ISA"
WITHOUT_AMX = "AVX512_CORE_BF16"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def native_bf16_flags() -> list[str]:
    """The CPU flags (of NATIVE_BF16_FLAGS) this machine reports; empty where it has none or
    does not say (no /proc/cpuinfo: not Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
    return [f for f in NATIVE_BF16_FLAGS if f in flags]


def keep_onednn_off_amx() -> str | None:
    """On a CPU with AMX, cap oneDNN at its AVX512-BF16 kernels (see WITHOUT_AMX) unless the
    environment sets a cap already; returns the cap in force, or None. oneDNN reads the variable
    when it makes its first primitive, so this runs when dermsynth is imported; child processes
    (Ray workers, Slurm tasks) inherit it."""
    if "amx_bf16" in native_bf16_flags() and ONEDNN_ISA not in os.environ:
        os.environ[ONEDNN_ISA] = WITHOUT_AMX
    return os.environ.get(ONEDNN_ISA)
