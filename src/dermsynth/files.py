"""Atomic file writes with unique temporary names, and the JSON/parquet helpers built on them
(named `files`, not `io`, so that it never shadows the standard library's module).

Why: concurrent workers (generation shards, pool processes, Ray tasks) write into one
folder. A fixed temporary name (``x.tmp``) lets two writers clobber each other's half-written
file; a unique name per write plus ``os.replace`` means a reader sees the old file or the
whole new one, and two writers never share a temporary file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd


def _temp_sibling(path: Path) -> Path:
    """A hidden name beside ``path`` that no other writer uses (same folder: rename stays atomic)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it replaces ``path`` in one step.

    Works for files and folders (a folder replaces an existing one). On an exception the
    temporary is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(path)
    try:
        yield tmp
        if tmp.is_dir():
            if path.exists():
                shutil.rmtree(path)
            tmp.rename(path)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json(path: str | Path, obj: Any, indent: int | None = 2) -> Path:
    """JSON with numpy scalars converted (``.item()``) and anything else stringified."""
    return write_text(path, json.dumps(obj, indent=indent, default=_json_default))


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def write_parquet(path: str | Path, frame: pd.DataFrame) -> Path:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp)
    return Path(path)


def _json_default(obj: Any) -> Any:
    return obj.item() if hasattr(obj, "item") else str(obj)
