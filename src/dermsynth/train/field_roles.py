"""What each RunSpec field is for, declared where the field is declared.

A run's id, the report's cell keys and the fields a record compares were kept in hand-written
lists (a skip set in ``run_id``, another in ``varying_keys``): add a field, forget a list, and
either every finished run re-runs (a new operational field changed every id) or two settings
are averaged into one cell. diffusers declares what is not part of a component's identity on
the class (``ignore_for_config``); here each field says its role in ``json_schema_extra`` and
everything else derives from that:

- ``setting``     (the default): changes the result; in the run id; a cell axis when it varies;
- ``replicate``:  in the run id, never a cell axis (the seed: runs of one cell differ by it);
- ``input``:      a pinned input (data digest, store, its fingerprint): in the run id, never a
                  cell axis (the same cell on other data is a stale run, not another cell);
- ``operational``: how a run executes (threads, device, cache): neither;
- ``provenance``: recorded for checks, not identity (the images' content digest).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

SETTING, REPLICATE, INPUT, OPERATIONAL, PROVENANCE = "setting", "replicate", "input", "operational", "provenance"
ROLES = (SETTING, REPLICATE, INPUT, OPERATIONAL, PROVENANCE)
IN_RUN_ID = (SETTING, REPLICATE, INPUT)


def role(kind: str, default: Any = ..., **field_kwargs: Any) -> Any:
    """A pydantic Field with its role declared (``Field(default, **field_kwargs)`` otherwise)."""
    if kind not in ROLES:
        raise ValueError(f"role {kind!r}; choose one of {ROLES}")
    return Field(default, json_schema_extra={"role": kind}, **field_kwargs)


def role_of(model: type[BaseModel], name: str) -> str:
    extra = model.model_fields[name].json_schema_extra
    return extra.get("role", SETTING) if isinstance(extra, dict) else SETTING


def fields_with(model: type[BaseModel], *kinds: str) -> list[str]:
    """The model's fields whose role is one of ``kinds``, in declaration order."""
    return [name for name in model.model_fields if role_of(model, name) in kinds]
