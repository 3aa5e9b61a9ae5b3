"""Shared fixtures: a small demo data set rendered once per test session."""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SHARED_F17K = Path(__file__).resolve().parents[2] / "shared" / "data" / "fitzpatrick17k"


@pytest.fixture(autouse=True)
def _no_progress_bars():
    """Tests draw no progress bars (dermsynth.progress: one setting, not a flag per call)."""
    from dermsynth.progress import progress_bars

    with progress_bars(False):
        yield


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("demo")


@pytest.fixture(scope="session")
def demo_table(demo_root):
    from dermsynth.data.demo import load_demo

    return load_demo(demo_root, n_per_class=30, size=32, seed=0)


@pytest.fixture(scope="session")
def f17k_root() -> Path:
    if not (SHARED_F17K / "fitzpatrick17k.csv").exists():
        pytest.skip("real Fitzpatrick 17k copy not present (../shared/data/fitzpatrick17k)")
    return SHARED_F17K


def _built_once(tmp_path_factory, name: str, build) -> Path:
    """``build(folder)`` run by the first test process of the session that asks, under a lock,
    into a folder every process shares (xdist's workers have one base folder above their own):
    a fixture that takes a minute to build is built once, not once per worker."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder = shared / name
    with FileLock(str(shared / f"{name}.lock")):
        if not (folder / ".built").exists():
            shutil.rmtree(folder, ignore_errors=True)  # a build that failed half-way
            folder.mkdir()
            build(folder)
            (folder / ".built").touch()
    return folder


@pytest.fixture(scope="session")
def tiny_quickstart(tmp_path_factory):
    """A whole tiny study run by the quickstart's code: generator → store → grid → report.
    Returns (spec, out, report path). Built once per session on demo data of its own; each test
    process gets its own copy of the study folder (tests write into it), whose run ids stay."""
    from dermsynth.experiments.spec import validate_experiment

    built = _built_once(tmp_path_factory, "tiny-quickstart", _build_tiny_quickstart)
    out = tmp_path_factory.mktemp("study") / "study"
    shutil.copytree(built / "study", out)
    spec = validate_experiment(_tiny_quickstart_spec(built / "demo"))
    return spec, out, out / json.loads((built / "report.json").read_text())


def _build_tiny_quickstart(folder: Path) -> None:
    from dermsynth.cli.quickstart import run_quickstart
    from dermsynth.experiments.spec import validate_experiment

    res = run_quickstart(folder / "study", spec=validate_experiment(_tiny_quickstart_spec(folder / "demo")))
    (folder / "report.json").write_text(json.dumps(str(Path(res["report"]).relative_to(folder / "study"))))


def _tiny_quickstart_spec(demo_root: Path) -> dict:
    return {
        "name": "tiny-study", "seeds": 2,
        "base": dict(dataset="demo", root=str(demo_root), demo_n_per_class=30, demo_size=32, n_test=5, n_val=4,
                     image_size=32, backbone="test_efficientnet", max_epochs=2, patience=1,
                     cache_dir=str(demo_root / "cache"), threads=1),
        "generator": {"backend": "builtin", "methods": ["inpaint", "text-to-image"], "per_image": 2, "steps": 2,
                      "size": 16, "train_steps": 5, "block_out_channels": [16, 32], "batch_size": 32,
                      "finetune": "per-class", "finetune_steps": 2},
        "grid": {"n_real": [2, 4], "synthetic_per_real": [0, 2], "synthetic_methods": ["inpaint", "text-to-image"]},
    }


@pytest.fixture(scope="session")
def reader_store_split(tiny_quickstart):
    """The tiny quickstart's synthetic store and its split: reader studies are made from it."""
    from dermsynth.data.splits import load_split
    from dermsynth.experiments.results import load_records
    from dermsynth.train.spec import RunSpec

    _, out, _ = tiny_quickstart
    spec = RunSpec(**load_records(out)[0]["spec"])
    return out / "synthetic", load_split(spec.split_spec())


# Fixtures that train a model, generate images or run a study: a test that uses one is slow.
STUDY_FIXTURES = frozenset({"tiny_quickstart", "reader_store_split", "store_and_split", "store", "generator",
                            "study", "model_dir", "tiny", "imbalance_study", "big_study", "scored", "other_site",
                            "planted_store", "tiny_clip", "served"})
# Calls (and CLI verbs) that train, generate or run a study when a test makes them itself.
WORK_CALLS = re.compile(r"\b(run_training|run_experiment|run_quickstart|train_builtin|finetune|run_generation|"
                        r"recognisability|calibrate|triage|rehearse|fit)\(|\"(quickstart|train|generate|"
                        r"calibrate|finetune|triage)\"|\"experiment\", \"(run|calibrate|triage)\"")


def pytest_collection_modifyitems(config, items):
    """Mark ``slow`` every test that trains, generates or runs a study — by the fixtures it uses or
    the calls in its own source — so that `make test-fast` (``-m "not slow"``) is fast without
    anyone remembering to mark a new test."""
    for item in items:
        if item.get_closest_marker("slow") or not hasattr(item, "function"):
            continue
        try:
            source = inspect.getsource(item.function)
        except (OSError, TypeError):
            source = ""
        if STUDY_FIXTURES & set(getattr(item, "fixturenames", ())) or WORK_CALLS.search(source):
            item.add_marker(pytest.mark.slow)
