"""What each spec field is for (a run's, a generator table's), declared where the field is declared.

Kept in hand-written lists (a skip set in ``run_id``, another in ``varying_keys``), a run's id,
the report's cell keys and the fields a record compares drift apart: add a field, forget a list,
and either every finished run re-runs (a new operational field changes every id) or two settings
are averaged into one cell. diffusers declares what is not part of a component's identity on
the class (``ignore_for_config``); here each field says its role in ``json_schema_extra`` and
everything else derives from that:

- ``setting``     (the default): changes the result; in the run id; a cell axis when it varies;
- ``replicate``:  in the run id, never a cell axis (the seed: runs of one cell differ by it);
- ``input``:      a pinned input (data digest, store, its fingerprint): in the run id, never a
                  cell axis (the same cell on other data is a stale run, not another cell);
- ``operational``: how a run executes (threads, device, cache): neither;
- ``provenance``: recorded for checks, not identity (the images' content digest).

Tags say more where a field is declared, for what else derives from fields:

- ``ARM``: the field describes a cell's synthetic arm (how many synthetic images, which method,
  generator and filter); a real-only cell has every arm field at its default, and the report
  pairs each arm with the real-only cell equal in every other field;
- ``SINCE_IDS``: added after run ids were in use, so the field is in the id only when it is not
  at its default (every id from before it is unchanged);
- any other name: a stage whose cache key the field belongs to (a generator field that changes
  the built-in model's training is tagged with that stage, and the stage's reuse key follows).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field

SETTING, REPLICATE, INPUT, OPERATIONAL, PROVENANCE = "setting", "replicate", "input", "operational", "provenance"
ROLES = (SETTING, REPLICATE, INPUT, OPERATIONAL, PROVENANCE)
IN_RUN_ID = (SETTING, REPLICATE, INPUT)
ARM, SINCE_IDS = "arm", "since-ids"


def role(kind: str, default: Any = ..., *, tags: tuple[str, ...] = (), formerly: str | None = None,
         formerly_default: Any = ..., **field_kwargs: Any) -> Any:
    """A pydantic Field with its role (and tags) declared (``Field(default, **field_kwargs)`` otherwise).

    ``formerly``: the field's name in an older, flat spelling of the config (with the default it
    had there, ``formerly_default``, when that differs): old configs are read through it and
    identities made from the old spelling are kept (experiments/generator_spec.py)."""
    if kind not in ROLES:
        raise ValueError(f"role {kind!r}; choose one of {ROLES}")
    extra: dict[str, Any] = {"role": kind, "tags": list(tags)}
    if formerly:
        extra["formerly"] = formerly
    if formerly_default is not ...:
        extra["formerly_default"] = formerly_default
    return Field(default, json_schema_extra=extra, **field_kwargs)


def declaration(model: type[BaseModel], name: str) -> dict:
    """The field's declaration (role, tags); empty for a field declared without one."""
    extra = model.model_fields[name].json_schema_extra
    return extra if isinstance(extra, dict) else {}


def role_of(model: type[BaseModel], name: str) -> str:
    return declaration(model, name).get("role", SETTING)


def fields_tagged(model: type[BaseModel], tag: str) -> list[str]:
    """The model's fields declared with ``tag``, in declaration order."""
    return [name for name in model.model_fields if tag in declaration(model, name).get("tags", ())]


def defaults_of(model: type[BaseModel], names: list[str]) -> dict[str, Any]:
    """Each named field's declared default (default factories called)."""
    return {n: model.model_fields[n].get_default(call_default_factory=True) for n in names}


def stage_key(instance: BaseModel, tag: str) -> tuple[dict[str, Any], dict[str, tuple[str | None, Any]]]:
    """A stage's reuse key (the values of ``instance``'s fields tagged ``tag``, as JSON) and, per
    key, its former name and its default (JSON): how a cached stage recorded before the key
    existed, or under its former name, is read."""
    model = type(instance)
    earlier = {name: (declaration(model, name).get("formerly"), default_value(model, name))
               for name in fields_tagged(model, tag)}
    data = instance.model_dump(mode="json")
    return {name: data[name] for name in earlier}, earlier


def default_value(model: type[BaseModel], name: str) -> Any:
    """The field's default as its JSON dump reads (a tuple as a list), to compare with dumps."""
    return json.loads(json.dumps(model.model_fields[name].get_default(call_default_factory=True), default=str))


def fields_with(model: type[BaseModel], *kinds: str) -> list[str]:
    """The model's fields whose role is one of ``kinds``, in declaration order."""
    return [name for name in model.model_fields if role_of(model, name) in kinds]
