"""``precision = "auto"`` for a classifier: bf16 autocast where the CPU computes bf16 natively.

The rule, and why it is not a timing, is in :mod:`dermsynth.models.precision_rule`; on CUDA,
bf16 where the device supports it. Every run record says which precision was used and why.
"""

from __future__ import annotations

import torch

from dermsynth.models.precision_rule import auto_precision


def choose_precision(device: torch.device) -> tuple[str, str]:
    """("fp32" | "bf16", why) for "auto" on ``device``."""
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        return ("bf16" if ok else "fp32"), f"CUDA device {'supports' if ok else 'lacks'} bf16"
    return auto_precision()
