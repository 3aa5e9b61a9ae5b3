"""The paper's experiments (and the quickstart) as config files shipped with the package."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from dermsynth.errors import ConfigError


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("dermsynth").joinpath("presets").iterdir()
                  if p.name.endswith(".toml"))


def preset_path(name: str) -> Path:
    path = Path(str(resources.files("dermsynth") / "presets" / f"{name}.toml"))
    if not path.exists():
        raise ConfigError(f"no preset {name!r}; presets: {', '.join(preset_names())}")
    return path
