"""Shared fixtures: a small demo data set rendered once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SHARED_F17K = Path(__file__).resolve().parents[2] / "shared" / "data" / "fitzpatrick17k"


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


@pytest.fixture(scope="session")
def reader_store_split(demo_table, tmp_path_factory):
    """A tiny real synthetic store (built-in generator, a few steps) and its split, for reader studies."""
    from readers_helpers import make_store_and_split

    return make_store_and_split(tmp_path_factory.mktemp("reader-store"), demo_table)
