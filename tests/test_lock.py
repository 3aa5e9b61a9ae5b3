"""The locked environment: requirements.lock pins everything pyproject.toml asks for, and a run
record names the lock's digest."""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

from dermsynth.lockfile import differences, lock_info, pins

ROOT = Path(__file__).resolve().parents[1]


def test_lock_pins_every_dependency_of_pyproject():
    """A dependency added without `make lock` fails here (and `make` refuses the install)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    locked = pins(ROOT / "requirements.lock")
    unmet = []
    for text in project["dependencies"] + project["optional-dependencies"]["dev"]:
        req = Requirement(text)
        name = req.name.lower().replace("_", "-")
        if name not in locked or not req.specifier.contains(locked[name], prereleases=True):
            unmet.append(f"{text} (lock: {locked.get(name)})")
    assert not unmet, f"run `make lock`: requirements.lock does not satisfy {unmet}"
    assert all("--hash=sha256:" in block for block in (ROOT / "requirements.lock").read_text().split("==")[1:])


def test_lock_digest_and_drift(tmp_path):
    """A record names the lock's digest; installed packages that differ from its pins are listed."""
    info = lock_info()
    lock = Path(__file__).resolve().parents[1] / "requirements.lock"
    if info["source"] == "source tree":
        assert info["sha256"] == hashlib.sha256(lock.read_bytes()).hexdigest()
    else:
        assert info["source"] == "installed" and len(info["sha256"]) == 64
    fake = tmp_path / "requirements.lock"
    fake.write_text("pytest==0.0.1 \\\n    --hash=sha256:00\nno-such-package-xyz==1.0\n")
    assert pins(fake) == {"pytest": "0.0.1", "no-such-package-xyz": "1.0"}
    diff = differences(pins(fake))
    assert diff["no-such-package-xyz"] is None and diff["pytest"] not in (None, "0.0.1")
