"""What `experiment presets` and `experiment show` print: the shipped configs, and one config
with every default filled in (so a reader sees what will run, not only what was written)."""

from __future__ import annotations

import json
from typing import Any


def presets_table() -> list[dict]:
    """Name and one-line description of every shipped config."""
    from dermsynth.experiments.presets import preset_names, preset_path
    from dermsynth.experiments.spec import load_experiment

    rows = []
    for name in preset_names():
        spec = load_experiment(preset_path(name))
        rows.append({"name": name, "description": (spec.description or spec.name).splitlines()[0][:110],
                     "path": str(preset_path(name))})
    return rows


def resolved_config(spec) -> dict[str, Any]:
    """The config as it runs: [base] with every RunSpec default, then the spec's other tables."""
    from dermsynth.train.spec import RunSpec

    defaults = {k: f.get_default(call_default_factory=True) for k, f in RunSpec.model_fields.items()}
    out = json.loads(json.dumps(spec.model_dump(), default=str))
    out["base"] = {**json.loads(json.dumps(defaults, default=str)), **out.get("base", {})}
    out["seeds"] = spec.seed_list()
    return out


def to_toml(data: dict) -> str:
    """TOML text (None has no TOML spelling: such fields are shown as comments)."""
    import tomli_w

    def clean(d):
        if isinstance(d, dict):
            return {k: clean(v) for k, v in d.items() if v is not None}
        if isinstance(d, list):
            return [clean(v) for v in d if v is not None]
        return d

    unset = sorted(k for k, v in data.get("base", {}).items() if v is None)
    text = tomli_w.dumps(clean(data))
    return text + (f"\n# unset (None) in [base]: {', '.join(unset)}\n" if unset else "")
