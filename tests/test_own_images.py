"""Your own images: duplicates are found by default, an image under two labels follows one stated
rule, and a copy of a held-out image in the pool refuses a study before any compute is spent."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermsynth.data.splits import SplitSpec, load_split
from dermsynth.errors import LeakageError
from dermsynth.train.spec import RunSpec


def noise_folder(root: Path, classes=("bcc", "melanoma", "nevus"), per_class: int = 12) -> Path:
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / c / f"{c}{i}.png")
    return root


def test_folder_data_is_cleaned_unless_the_config_turns_it_off():
    assert SplitSpec(dataset="folder", root="x").cleaning is not None
    assert RunSpec(dataset="folder", root="x").split_spec().cleaning is not None
    assert SplitSpec(dataset="folder", root="x", cleaning=False).cleaning is None
    assert SplitSpec(dataset="demo").cleaning is None  # rendered images, no copies to find
    kept = RunSpec(dataset="folder", root="x", cleaning=False)
    assert RunSpec(**kept.model_dump()).cleaning is None  # a record reloads as it ran


def test_one_image_under_two_labels_stays_in_both_classes_on_one_side_of_the_split(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)  # the cleaning cache lives in ./.dermsynth-cache
    root = noise_folder(tmp_path / "lesions")
    shutil.copy(root / "nevus" / "nevus0.png", root / "melanoma" / "copy_of_nevus0.png")
    with caplog.at_level(logging.WARNING):
        split = load_split(SplitSpec(dataset="folder", root=str(root), n_test=3, n_val=3))
    t = split.table.set_index("id")
    a, b = t.loc["nevus/nevus0"], t.loc["melanoma/copy_of_nevus0"]
    assert (a["label"], b["label"]) == ("nevus", "melanoma")  # each copy keeps its label
    assert a["split"] == b["split"] and a["group"] == b["group"]
    assert split.cleaning["under_two_labels"][0]["label_a"] != split.cleaning["under_two_labels"][0]["label_b"]
    assert "same side of the split" in caplog.text and "copy_of_nevus0" in caplog.text


def test_a_held_out_copy_in_the_pool_refuses_the_study_before_the_generator_trains(tmp_path, monkeypatch):
    from dermsynth.experiments.runner import run_experiment
    from dermsynth.experiments.spec import ExperimentSpec

    monkeypatch.chdir(tmp_path)
    root = noise_folder(tmp_path / "lesions")
    for i in range(12):  # every nevus also filed again under its own class: some copy lands on each side
        shutil.copy(root / "nevus" / f"nevus{i}.png", root / "nevus" / f"again{i}.png")
    spec = ExperimentSpec(name="own", seeds=[0], base={"dataset": "folder", "root": str(root), "n_test": 3,
                                                       "n_val": 3, "cleaning": False, "backbone": "test_resnet",
                                                       "image_size": 16, "max_epochs": 1},
                          grid={"n_real": [2], "synthetic_per_real": [0, 1]},
                          generator={"backend": "builtin", "methods": ["text-to-image"],
                                     "builtin": {"size": 16, "train_steps": 2}})
    with pytest.raises(LeakageError, match="before any compute"):
        run_experiment(spec, tmp_path / "study")
    assert not (tmp_path / "study" / "generator").exists() and not (tmp_path / "study" / "runs").exists()


def test_the_readme_walk_from_a_folder_of_images_to_a_report(tmp_path, monkeypatch):
    """init → plan → run → status → report, as the README tells it, on a folder made here (the
    written config shrunk to test sizes, nothing else changed)."""
    import json
    import re

    from typer.testing import CliRunner

    from dermsynth.cli import app

    monkeypatch.chdir(tmp_path)
    root = noise_folder(tmp_path / "lesions", per_class=14)
    cli = CliRunner()

    def ok(*args):
        res = cli.invoke(app, [str(a) for a in args])
        assert res.exit_code == 0, f"{args}: {res.output}"
        return res

    ok("init", root)
    config = tmp_path / "lesions.toml"
    text = config.read_text()
    for old, new in ((r"seeds = 5", "seeds = 2"), (r"image_size = 128", "image_size = 16"),
                     (r'backbone = "resnet18"', 'backbone = "test_resnet"'), (r"max_epochs = 30", "max_epochs = 1"),
                     (r"size = 64", "size = 16"), (r"train_steps = 1000", "train_steps = 2"),
                     (r"\nsteps = 10", "\nsteps = 2"), (r"n_real = \[[^\]]*\]", "n_real = [2]")):
        text, n = re.subn(old, new, text)
        assert n == 1, old
    config.write_text(text)
    assert "device-hours" in ok("experiment", "plan", "lesions.toml").output
    ok("experiment", "run", "lesions.toml")
    status = json.loads(ok("experiment", "status", "lesions.toml", "--json").stdout)
    assert status["counts"] == {"done": 6}  # 3 cells (real only, inpaint, text-to-image) × 2 seeds
    ok("experiment", "report", "lesions.toml")
    assert (tmp_path / "runs" / "lesions" / "report.html").exists()
    assert list((tmp_path / "runs" / "lesions" / "cleaning").glob("split-*.json"))  # cleaned, as init said
