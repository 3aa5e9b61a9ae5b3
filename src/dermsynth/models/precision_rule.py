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
        return "bf16", f"{cpu_name()} computes bf16 natively ({', '.join(flags)})"
    return "fp32", f"{cpu_name()} has no native bf16 ({' / '.join(NATIVE_BF16_FLAGS)}): bf16 would be emulated"
