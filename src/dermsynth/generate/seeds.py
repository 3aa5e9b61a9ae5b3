"""Per-image seeds that make generation resumable and reproducible.

The seed of a synthetic image derives from (reference id, k, method, model fingerprint),
so re-running a generation regenerates exactly what is missing, in any order, on any
number of workers.
"""

from __future__ import annotations

import hashlib


def image_seed(ref_id: str, k: int, method: str, fingerprint: str, base_seed: int = 42) -> int:
    digest = hashlib.sha256(f"{base_seed}|{ref_id}|{k}|{method}|{fingerprint}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def synth_id(ref_id: str, k: int, method: str) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(ref_id))
    return f"{method}__{safe}__{k:03d}"
