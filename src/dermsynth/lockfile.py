"""Which locked environment a result was produced in.

``requirements.lock`` pins every package (with hashes) that ``make`` installs. ``make`` copies
its digest into the virtual environment it installs (``VENV/dermsynth-lock.sha256``), so a run
record names the lock the environment was *installed from* — not merely the file lying in the
source tree, which may have been updated since. Without that stamp (an install by hand), the
tree's lock is named, with the installed packages that differ from its pins.
"""

from __future__ import annotations

import functools
import hashlib
import re
import sys
from importlib import metadata
from pathlib import Path

LOCK_NAME = "requirements.lock"
STAMP_NAME = "dermsynth-lock.sha256"
_PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)")


def tree_lock() -> Path:
    """The lock file of the source tree this package runs from (an editable install)."""
    return Path(__file__).resolve().parents[2] / LOCK_NAME


def pins(path: str | Path) -> dict[str, str]:
    """{package: version} of a lock file's ``name==version`` lines."""
    out = {}
    for line in Path(path).read_text().splitlines():
        match = _PIN.match(line.strip())
        if match:
            out[_norm(match.group(1))] = match.group(2)
    return out


def differences(locked: dict[str, str]) -> dict[str, str | None]:
    """Packages whose installed version is not the pinned one: {name: installed version or None}."""
    out = {}
    for name, version in locked.items():
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            have = None
        if have is None or have.split("+")[0] != version.split("+")[0]:
            out[name] = have
    return out


@functools.lru_cache(maxsize=1)
def lock_info() -> dict:
    """{"sha256", "source": installed | source tree | none, "differs"?}: for a run record."""
    stamp = Path(sys.prefix) / STAMP_NAME
    if stamp.is_file():
        return {"sha256": stamp.read_text().split()[0], "source": "installed"}
    lock = tree_lock()
    if lock.is_file():
        diff = differences(pins(lock))
        return {"sha256": hashlib.sha256(lock.read_bytes()).hexdigest(), "source": "source tree",
                "differs": dict(sorted(diff.items())[:20]), "n_differs": len(diff)}
    return {"sha256": None, "source": "none"}


def unmet_requirements(dist: str = "dermsynth", extras: tuple[str, ...] = ("dev",)) -> list[str]:
    """The project's requirements (with ``extras``) that the environment does not satisfy: what a
    dependency added to pyproject.toml without ``make lock`` looks like after an install from the lock."""
    from packaging.requirements import Requirement

    out = []
    for text in metadata.requires(dist) or []:
        req = Requirement(text)
        if req.marker and not any(req.marker.evaluate({"extra": e}) for e in ("", *extras)):
            continue
        try:
            have = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            out.append(f"{req} (not installed)")
            continue
        if not req.specifier.contains(have, prereleases=True):
            out.append(f"{req} (installed {have})")
    return out


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


if __name__ == "__main__":  # `make` runs this after installing from the lock
    problems = unmet_requirements()
    if problems:
        sys.exit(f"{LOCK_NAME} does not satisfy pyproject.toml: {'; '.join(problems)}. Run `make lock` (re-pins "
                 "with hashes) and commit requirements.lock.")
    print(f"environment matches pyproject.toml ({LOCK_NAME} {lock_info()['sha256'][:12]})")
