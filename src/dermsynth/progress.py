"""Whether progress bars show: one setting for a whole call, not a flag passed down.

A ``progress: bool`` passed down would go through some twenty signatures to reach nine bars, and
each layer would have to remember to pass it on (a forgotten one draws bars into ``--json`` output
or a worker's log). Instead the caller states it once, for everything below it:

- the command line: bars unless ``--json`` (so stdout stays JSON), for the whole command;
- a worker (a pool process, a Ray task): no bars, since many would interleave in one log;
- a step that does not want its own bar inside another (a cache fill inside a stage);
- a library user: ``with progress_bars(False): run_experiment(spec, out)``.

Unset, bars show, as tqdm's do. The setting is a context variable: asyncio tasks started inside
a ``with`` see it; a new thread or process starts unset (every bar here is drawn from the
calling thread).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_SHOW: ContextVar[bool | None] = ContextVar("dermsynth_progress_bars", default=None)


def bars_shown() -> bool:
    return _SHOW.get() is not False


@contextmanager
def progress_bars(show: bool) -> Iterator[None]:
    """Progress bars on (``True``) or off for everything inside the ``with``."""
    token = _SHOW.set(bool(show))
    try:
        yield
    finally:
        _SHOW.reset(token)


def progress_bar(iterable: Iterable | None = None, *, min_items: int = 0, **kwargs: Any):
    """A tqdm bar, drawn only when bars are on (and, with ``min_items``, when there are that many)."""
    from tqdm.auto import tqdm

    total = kwargs.get("total", len(iterable) if hasattr(iterable, "__len__") else None)
    hidden = not bars_shown() or (total is not None and total < min_items)
    return tqdm(iterable, disable=hidden, **kwargs)
