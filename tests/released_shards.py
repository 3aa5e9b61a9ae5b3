"""Shards made in exactly the formats of the authors' releases (see data/released_format.py):
``tbuckley/synthetic-derm-1M`` (``shard-{label}-{method}-{submethod}-{index}.tar``, methods with
underscores in the json) and ``tbuckley/synthetic-derm-1M-train`` (``shard-{method}-{index}.tar``,
methods with hyphens). Keys and names as the authors' copy script builds them."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from dermsynth.data.released_format import released_key_and_json
from dermsynth.data.shard_stream import write_shard  # noqa: F401 — the tests' shard writer


def png(seed: int, size: int = 32) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def released_sample(md5: str, label: str, method: str, submethod: str, generation: int = 0,
                    tag: str = "generations1", layout: str = "1M", seed: int = 0) -> tuple[str, dict[str, bytes]]:
    """One sample: ``method`` as ``finetune_inpaint`` (the 1M set) or hyphenated (the train set)."""
    spelled = method.replace("-", "_") if layout == "1M" else method.replace("_", "-")
    key, meta = released_key_and_json(md5, label, spelled, submethod, generation, tag)
    return key, {"png": png(seed), "json": json.dumps(meta).encode()}


def truncate(path: Path, keep: float) -> Path:
    """Cut the shard at ``keep`` of its bytes (inside a member, as a broken download is)."""
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    return path
