"""WebDataset shards read as a stream of samples, one at a time.

A shard is a tar file whose members are grouped into samples by key — the member's name up to
its first dot after the last slash, as webdataset groups them (``abc.png`` + ``abc.json`` →
sample ``abc``). The tar is read in stream mode (``r|*``) through webdataset's ``gopen``, so a
local path, ``file:``, ``http(s):`` or ``pipe:`` URL are read alike, and memory holds one
sample at a time whatever the shard's size (a released shard is about 2 GB). A shard that ends
mid-way raises :class:`ShardTruncated` after its complete samples, so the caller can count
what it got instead of losing the shard.
"""

from __future__ import annotations

import glob
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path

from dermsynth.errors import DataError

URL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)


class ShardTruncated(Exception):
    """The shard ended inside a member (a partial download, a killed copy)."""

    def __init__(self, shard: str, samples: int, reason: str):
        super().__init__(f"{shard} ends mid-way after {samples} complete samples ({reason})")
        self.shard, self.samples = shard, samples


def expand_shards(patterns: list[str]) -> list[str]:
    """Brace patterns (``shard-{00000..00009}.tar``) and, for local paths, globs, in the order
    given; a pattern that names nothing is an error naming it (never an import of nothing)."""
    from braceexpand import braceexpand

    shards: list[str] = []
    for pattern in patterns:
        for name in braceexpand(str(pattern)):
            if URL.match(name) and not name.startswith("file:"):
                shards.append(name)
                continue
            local = name.removeprefix("file://").removeprefix("file:")
            found = sorted(glob.glob(local)) if glob.has_magic(local) else ([local] if Path(local).exists() else [])
            if not found:
                raise DataError(f"no shard at {name}: check the path (globs and brace patterns are expanded)")
            shards += found
    return list(dict.fromkeys(shards))


def sample_key(member: str) -> tuple[str, str]:
    """(key, extension) of a tar member as webdataset splits it."""
    folder, _, base = member.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), (ext if dot else "")


def iter_samples(shard: str) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {extension: bytes}) per sample of ``shard``, in order; :class:`ShardTruncated` at a
    premature end (the sample it was reading is not yielded)."""
    from webdataset.gopen import gopen

    done, key, parts = 0, None, {}
    try:
        stream = gopen(shard, "rb")
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot open the shard {shard}: {exc}") from None
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                k, ext = sample_key(member.name)
                if k != key and key is not None:
                    yield key, parts
                    done += 1
                    parts = {}
                key = k
                handle = tar.extractfile(member)
                data = handle.read() if handle is not None else b""
                if len(data) != member.size:
                    raise ShardTruncated(shard, done, f"member {member.name} is cut short")
                parts[ext] = data
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ShardTruncated(shard, done, str(exc) or type(exc).__name__) from None
    finally:
        stream.close()
    if key is not None:
        yield key, parts


def write_shard(path: str | Path, samples) -> Path:
    """Write ``(key, {extension: bytes})`` samples as one tar shard, atomically (a shard is
    complete or absent, never half-written)."""
    import io

    from dermsynth import files

    with files.atomic_path(path) as tmp, tarfile.open(tmp, "w") as tar:
        for key, parts in samples:
            for ext, data in parts.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return Path(path)
