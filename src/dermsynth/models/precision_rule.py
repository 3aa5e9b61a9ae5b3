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

from dermsynth.cpu import NATIVE_BF16_FLAGS, ONEDNN_ISA, WITHOUT_AMX, cpu_name, keep_onednn_off_amx, native_bf16_flags

__all__ = ["NATIVE_BF16_FLAGS", "ONEDNN_ISA", "OVERRIDE", "WITHOUT_AMX", "auto_precision", "cpu_name",
           "keep_onednn_off_amx", "native_bf16_flags"]

OVERRIDE = "DERMSYNTH_PRECISION"


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
