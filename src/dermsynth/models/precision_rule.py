"""bf16 or fp32 for ``precision = "auto"``: one rule for the classifier (train/precision.py) and
the built-in generator's sampling and training (generate/builtin/precision.py).

Why a rule of the machine and not a timing. bf16 pays on a CPU only where the CPU computes it
natively (AVX512-BF16 or AMX); without it bf16 is emulated and runs several times slower
(docs/benchmarks.md). A timed probe would give the same answers, but near its threshold it flips
with the machine's load, so a re-run of a study from scratch could compute in another
arithmetic and give other numbers. The CPU's flags do not move: the same
config on the same machine always computes the same way, and every record says which precision
was used and why. ``DERMSYNTH_PRECISION=fp32|bf16`` forces what "auto" resolves to (to run the
test suite under each arithmetic, or to pin a cluster's choice); "fp32" or "bf16" set in a
config are never overridden.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
OVERRIDE = "DERMSYNTH_PRECISION"
# oneDNN's AMX bf16 kernels (torch 2.14's oneDNN 3.12) made classifier training NaN in 23 of 40 tiny
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


def auto_precision() -> tuple[str, str]:
    """("fp32" | "bf16", why) on this CPU: bf16 where it computes bf16 natively, else fp32, unless
    ``DERMSYNTH_PRECISION`` says otherwise."""
    forced = os.environ.get(OVERRIDE, "").strip().lower()
    if forced in ("fp32", "bf16"):
        return forced, f"{OVERRIDE}={forced} in the environment"
    if forced:
        from dermsynth.errors import ConfigError

        raise ConfigError(f"{OVERRIDE}={forced!r}; set it to fp32 or bf16, or unset it")
    flags = native_bf16_flags()
    if flags:
        cap = os.environ.get(ONEDNN_ISA)
        return "bf16", f"{cpu_name()} computes bf16 natively ({', '.join(flags)})" + (
            f"; oneDNN kernels capped at {cap} ({ONEDNN_ISA})" if cap else "")
    return "fp32", f"{cpu_name()} has no native bf16 ({' / '.join(NATIVE_BF16_FLAGS)}): bf16 would be emulated"
