"""Reaching the Hugging Face hub, decided once and fast.

Offline, ``from_pretrained("openai/clip-vit-base-patch32")`` waits through the hub client's
retries (a long wait for CLIP, longer for a Stable Diffusion pipeline: docs/benchmarks.md) and
prints dozens of warnings before it fails. So before loading a hub id we look in the local cache,
then ask once per process whether the hub answers at all (one TCP connect, 3 s at most) and, if
it does not, stop with one message that says what to do: a local folder or the cache folder.
"""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from dermsynth.errors import DataError

CONNECT_TIMEOUT_S = 3.0


def _offline_by_env() -> bool:
    return any(os.environ.get(k, "0").lower() not in ("0", "", "false", "no")
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


@functools.cache
def hub_reachable() -> bool:
    """Whether the hub's endpoint accepts a TCP connection (cached per process)."""
    if _offline_by_env():
        return False
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=CONNECT_TIMEOUT_S):
            return True
    except OSError:
        return False


def cached_locally(model: str, filename: str = "config.json") -> bool:
    """Whether the hub id's ``filename`` is in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(model, filename), str)
    except ValueError:  # not a valid repo id
        return False


def hub_load_kwargs(model: str | Path, what: str, local_hint: str, filename: str = "config.json") -> dict:
    """``from_pretrained`` keyword arguments for ``model`` (a folder or a hub id), or a DataError
    at once when it is a hub id that is neither cached here nor reachable.

    ``what`` names the model's role ("the CLIP image encoder"); ``local_hint`` says how to pass
    a folder instead (e.g. "--encoder clip:/path/to/folder").
    """
    if Path(model).exists():
        return {"local_files_only": True}
    if cached_locally(str(model), filename):
        return {"local_files_only": True}
    if hub_reachable():
        return {}
    from huggingface_hub import constants

    raise DataError(f"{what} {str(model)!r} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and the hub "
                    f"cannot be reached (no network). On a machine with internet run `huggingface-cli download "
                    f"{model}` and copy that cache folder here (or set HF_HOME to it), or pass a local folder: "
                    f"{local_hint}")
