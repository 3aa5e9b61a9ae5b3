"""A task's contract is its signature: the payload type, each named input and the result type,
checked where one task hands over to the next.

When tasks run as ``fn(payload, *results)``, with dict payloads and their dependencies' results
by position, a task that changes what it returns breaks another one later, somewhere inside it
(say, a task that takes a ``str`` from one dependency kind and a ``dict`` from another).
diffusers names and types a pipeline's parts (``register_modules(unet=…)``); here each task
function's annotations are its declaration, and the graph checks the payload and every input
before the call and the result after it, naming the task, the parameter and the task it came
from. A broken contract is a bug in dermsynth (or a plugin), not a user's mistake, so it is a
``TypeError``, not a :class:`~dermsynth.errors.DermsynthError`.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from functools import cache
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

from pydantic import BaseModel, TypeAdapter, ValidationError


class TaskContractError(TypeError):
    """A task was given, or returned, something its signature does not declare."""


@cache
def _hints(fn: Callable) -> dict[str, Any]:
    return get_type_hints(fn)


@cache
def _adapter(hint: Any) -> TypeAdapter:
    return TypeAdapter(hint)


def _conforms(value: Any, hint: Any) -> bool:
    """Whether ``value`` is a ``hint``: models by instance (pydantic's strict mode would take a
    dict for one), unions member by member, anything else by pydantic's strict validation."""
    if isinstance(hint, type) and issubclass(hint, BaseModel):
        return isinstance(value, hint)
    if get_origin(hint) in (Union, UnionType):
        return any(_conforms(value, member) for member in get_args(hint))
    try:
        _adapter(hint).validate_python(value, strict=True)
        return True
    except ValidationError:
        return False


def _name(hint: Any) -> str:
    """``GeneratorModels | None``, not the module-qualified repr."""
    if isinstance(hint, type):
        return "None" if hint is type(None) else hint.__name__
    if get_origin(hint) in (Union, UnionType):
        return " | ".join(_name(member) for member in get_args(hint))
    return re.sub(r"\b(?:\w+\.)+(\w+)", r"\1", str(hint))


def _describe(value: Any) -> str:
    return type(value).__name__ + (f" {value!r}"[:80] if isinstance(value, (str, int, float)) else "")


def _first_parameter(fn: Callable) -> str:
    return next(iter(inspect.signature(fn).parameters))


def check_call(task: str, fn: Callable, payload: Any, inputs: dict[str, str], values: dict[str, Any]) -> None:
    """Refuse a call whose payload or named inputs do not match ``fn``'s annotations.

    ``inputs`` maps each parameter to the task whose result feeds it; ``values`` holds the results."""
    hints, params = _hints(fn), inspect.signature(fn).parameters
    first = _first_parameter(fn)
    if first in hints and not _conforms(payload, hints[first]):
        raise TaskContractError(f"task {task}: {fn.__name__} takes a {_name(hints[first])} payload, got "
                                f"{_describe(payload)}")
    for name, source in inputs.items():
        if name not in params or name == first:
            raise TaskContractError(f"task {task}: {fn.__name__} has no input {name!r} (fed by task {source}); "
                                    f"its inputs: {[p for p in params if p != first]}")
        if name in hints and not _conforms(values[name], hints[name]):
            raise TaskContractError(f"task {task}: input {name!r} of {fn.__name__} is the result of task {source}, "
                                    f"a {_describe(values[name])}; {fn.__name__} declares {_name(hints[name])}")


def check_result(task: str, fn: Callable, result: Any) -> Any:
    """``result`` if it is what ``fn`` declares it returns, else a TaskContractError."""
    hint = _hints(fn).get("return")
    if hint is not None and not _conforms(result, hint):
        raise TaskContractError(f"task {task}: {fn.__name__} returned a {_describe(result)}, "
                                f"but declares {_name(hint)}")
    return result
