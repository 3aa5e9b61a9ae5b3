"""Every command driven through the mistakes a newcomer makes (issue 27): a missing flag, a
mistyped path, an empty folder, nonsense numbers. Each must end in one clear message and its
exit code (2 usage/config, 3 bad input or data) — never a traceback, never a success that
vouches for what was not checked. Most mistakes are caught before any data is read."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dermsynth.cli import app

SPLIT = ["--dataset", "folder", "--n-test", "3", "--n-val", "2"]


def fails(*args, code: int, says: str | tuple[str, ...]):
    """Run the command; assert its exit code, that the message names ``says``, and no traceback."""
    res = CliRunner().invoke(app, [str(a) for a in args])
    out = res.output
    assert res.exit_code == code, f"exit {res.exit_code} != {code} for {args}\n{out}\n{res.exception!r}"
    assert res.exception is None or isinstance(res.exception, SystemExit), f"{args} raised {res.exception!r}"
    assert "Traceback" not in out
    for fragment in (says,) if isinstance(says, str) else says:
        assert fragment in " ".join(out.split()), f"{fragment!r} not in the message of {args}:\n{out}"
    return res


@pytest.fixture(scope="module")
def folder(demo_table, tmp_path_factory) -> Path:
    """Three classes of the demo images as a folder data set (10 images each)."""
    root = tmp_path_factory.mktemp("mistakes-folder")
    for label in sorted(demo_table["label"].unique())[:3]:
        cls = root / label.replace(" ", "_")
        cls.mkdir()
        for path in demo_table[demo_table["label"] == label]["path"].head(10):
            os.symlink(path, cls / Path(path).name)
    return root


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("mistakes-cwd")
    old = Path.cwd()
    os.chdir(path)
    yield path
    os.chdir(old)


@pytest.fixture(scope="module")
def generator(folder, workdir) -> Path:
    """A 3-class built-in generator (one step: its weights do not matter here)."""
    out = workdir / "gen3"
    res = CliRunner().invoke(app, ["generator", "train", *SPLIT, "--root", str(folder), "--out", str(out),
                                   "--size", "16", "--steps", "1", "--json"])
    assert res.exit_code == 0, res.output
    return out


def _config(path: Path, folder: Path, workdir: Path, **grid) -> Path:
    axes = "\n".join(f"{k} = {json.dumps(v)}" for k, v in grid.items())
    path.write_text(f"""name = "mistakes"
seeds = 1
recognisability = false
[base]
dataset = "folder"
root = "{folder}"
n_test = 3
n_val = 2
image_size = 16
backbone = "test_resnet"
max_epochs = 1
cache_dir = "{workdir / 'cache'}"
[grid]
{axes}
""")
    return path


# 1. An audit with nothing to audit is an error naming what is missing, never "CLEAN".
def test_leakage_audit_never_vouches_for_nothing(folder, tmp_path):
    from dermsynth.data.synthetic_store import open_store

    fails("audit", "leakage", *SPLIT, "--root", folder, code=2, says="needs --store")
    fails("audit", "leakage", *SPLIT, "--root", folder, "--store", tmp_path / "DOES_NOT_EXIST", code=3,
          says=("DOES_NOT_EXIST", "not a synthetic store"))
    empty = open_store(tmp_path / "empty", "builtin", "m", "f")
    fails("audit", "leakage", *SPLIT, "--root", folder, "--store", empty, code=3, says="nothing to audit")


# 2. Nonsense input is refused instead of "succeeding" on nothing.
def test_nonsense_is_not_a_success(folder, workdir, tmp_path):
    fails("generator", "train", *SPLIT, "--root", folder, "--minutes", "-1", code=2, says="--minutes -1")
    fails("generator", "train", *SPLIT, "--root", folder, "--steps", "0", code=2, says="--steps 0")
    (tmp_path / "empty").mkdir()
    (tmp_path / "run.json").write_text("{}")
    fails("classifier", "predict", tmp_path / "empty", "--run", tmp_path / "run.json", code=3, says="no image files")
    cfg = _config(tmp_path / "exp.toml", folder, workdir, n_real=[2])
    fails("experiment", "status", cfg, "--study", tmp_path / "nowhere", code=3, says=("nowhere", "does not exist"))
    fails("experiment", "results", cfg, "--study", tmp_path / "empty", code=3, says="no finished run")
    big = _config(tmp_path / "big.toml", folder, workdir, n_real=[500])
    fails("experiment", "plan", big, "--device", "cpu", code=3, says=("n_real=500", "exceeds the training pool"))
    tasks = tmp_path / "tasks.json"  # a task list as labelstudio-export writes it: nothing annotated
    tasks.write_text(json.dumps([{"data": {"item_id": "1", "image": "x.jpg"}}]))
    fails("reader-study", "labelstudio-import", tmp_path / "study", tasks, code=3, says="no annotation")


# 3. Masked methods with too few sampler steps would return copies of the real image.
def test_masked_methods_refuse_settings_that_copy(generator, folder, tmp_path):
    fails("generator", "sample", "--model", generator, "--method", "inpaint", "--steps", "2", *SPLIT, "--root", folder,
          "--out", tmp_path / "store", code=2, says=("inpaint with 2 sampler steps", "copy", "at least 4 steps"))
    fails("generator", "sample", "--model", generator, "--method", "outpaint", "--steps", "3", *SPLIT, "--root", folder,
          "--out", tmp_path / "store", code=2, says="outpaint with 3 sampler steps")
    assert not (tmp_path / "store").exists()


def test_enough_steps_change_the_masked_region_and_the_rehearsal_uses_them(generator):
    """The refusal's threshold is real: at 2 steps inpainting leaves the centre as it was; at the
    rehearsal's steps it changes it. And the rehearsal's settings pass the check."""
    import numpy as np

    from dermsynth.experiments.presets import preset_path
    from dermsynth.experiments.rehearsal import MASKED_STEPS, rehearse
    from dermsynth.experiments.spec import load_experiment
    from dermsynth.generate.builtin.model import load_builtin
    from dermsynth.generate.builtin.sampling import generate_method, masked_copy_problem
    from dermsynth.generate.methods import centre_square_mask

    model = load_builtin(generator)
    refs = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    labels = [model.cfg.classes[0]] * 4
    centre = centre_square_mask(16) > 0

    def change(steps):
        out = generate_method(model, "inpaint", labels, [1, 2, 3, 4], refs, steps=steps)
        return float(np.abs(out.astype(float) - refs)[:, centre].mean())

    steps = rehearse(load_experiment(preset_path("skin_type_paper"))).generator.steps  # inpaint, in-then-outpaint
    assert steps == MASKED_STEPS
    assert change(2) < 1.0 < 10 < change(steps)
    assert masked_copy_problem(model, "inpaint", 2, 0.97, 0.95) is not None
    for method in ("inpaint", "outpaint", "in-then-outpaint"):
        assert masked_copy_problem(model, method, steps, 0.97, 0.95) is None


# 4. Mistakes that used to end in a Python traceback.
def test_no_traceback(folder, workdir, generator, tmp_path):
    fails("data", "info", "--dataset", "fitzpatrick17k", code=3, says="needs --root")
    fails("generator", "train", *SPLIT, "--root", folder, "--size", "30", code=2, says=("size=30", "multiple of 4"))
    fails("generator", "train", *SPLIT, "--classes", "top-2", "--root", folder, "--out", generator, "--size", "16",
          "--steps", "2", code=3, says=("holds a generator trained with other settings", "another --out"))
    images = tmp_path / "images"
    images.mkdir()
    os.symlink(next(next(folder.iterdir()).iterdir()).resolve(), images / "a.png")
    fails("classifier", "predict", images, "--run", tmp_path / "MISSING.json", code=3,
          says=("MISSING.json", "does not exist"))
    for cmd in (["invite", "add", tmp_path / "NOSTUDY", "--name", "ann"],
                ["invite", "revoke", tmp_path / "NOSTUDY", "--name", "ann"],
                ["admin", "rotate", tmp_path / "NOSTUDY"], ["report", tmp_path / "NOSTUDY"],
                ["serve", tmp_path / "NOSTUDY"], ["labelstudio-export", tmp_path / "NOSTUDY", "--out", tmp_path]):
        fails("reader-study", *cmd, code=3, says=("NOSTUDY", "not a reader study"))
    empty = tmp_path / "empty"
    empty.mkdir()
    fails("reader-study", "report", empty, code=3, says="not a reader study")
    assert not any(empty.iterdir()), "a failed report must not create study.sqlite"
    obj = tmp_path / "object.json"
    obj.write_text('{"not": "a list"}')
    fails("reader-study", "labelstudio-import", empty, obj, code=3, says="not a Label Studio JSON export")
    fails("data", "info", "--dataset", "folder", "--root", tmp_path / "typo", code=3, says="typo")


def test_clean_writes_into_a_new_folder(folder, tmp_path):
    res = CliRunner().invoke(app, ["data", "clean", "--dataset", "folder", "--root", str(folder), "--out",
                                   str(tmp_path / "NEWDIR" / "dups.csv"), "--json"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "NEWDIR" / "dups.csv").exists() and (tmp_path / "NEWDIR" / "dups_clusters.csv").exists()


# 8. Names: "did you mean", a run TOML's [base] table, an experiment config given to train.
def test_unknown_names_suggest_the_close_one(folder, workdir, tmp_path):
    fails("classifier", "train", "--dataset", "folder", "--root", folder, "--backbone", "resnet-18", code=2,
          says="did you mean 'resnet18'")
    fails("data", "info", "--dataset", "fitzpatrick-17k", code=2, says="did you mean 'fitzpatrick17k'")
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'[base]\ndataset = "folder"\nroot = "{folder}"\nn_reel = 2\n')
    fails("classifier", "train", "--config", cfg, code=2, says=("unknown field 'n_reel'", "did you mean 'n_real'"))
    exp = _config(tmp_path / "exp.toml", folder, workdir, n_real=[2])
    fails("classifier", "train", "--config", exp, code=2, says=("is an experiment config", "experiment run"))
    bad = tmp_path / "bad.toml"
    bad.write_text(exp.read_text().replace("max_epochs", "max_epoch"))
    fails("experiment", "plan", bad, code=2, says="did you mean 'max_epochs'")


def test_help_names_equal_the_registries():
    """`--help` lists names written out in cli/common (so it starts without torch): they must be
    exactly the registries' names."""
    from dermsynth.cli import common
    from dermsynth.data.registry import DATASETS
    from dermsynth.generate.backends.registry import BACKENDS
    from dermsynth.generate.methods import METHODS
    from dermsynth.models.encoders import ENCODERS

    assert tuple(DATASETS.names()) == common.DATASET_NAMES
    assert tuple(BACKENDS.names()) == common.BACKEND_NAMES
    assert common.METHOD_NAMES == METHODS
    assert tuple(ENCODERS.names()) == common.ENCODER_NAMES


def test_version_flag():
    from dermsynth import __version__

    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == __version__


# 10. evaluate/folder with --csv needs no --root.
def test_folder_csv_needs_no_root(folder, tmp_path):
    from dermsynth.data.registry import load_dataset

    img = next(next(folder.iterdir()).iterdir())
    (tmp_path / "ext.csv").write_text(f"path,label\n{img.resolve()},{img.parent.name}\n")
    table = load_dataset("folder", None, csv=tmp_path / "ext.csv")
    assert list(table["label"]) == [img.parent.name]


# 9. Paths are not identity: a study folder moved, copied or named by its absolute path is the same study.
def test_a_moved_study_resumes_and_reports_as_before(folder, workdir, generator, tmp_path, monkeypatch):
    import shutil
    import traceback

    from dermsynth.experiments.study_path import ANCHOR_KEY, locate_store

    cfg = _config(tmp_path / "exp.toml", folder, workdir, n_real=[2], synthetic_per_real=[0, 1],
                  synthetic_methods=["text-to-image"])
    cfg.write_text(cfg.read_text() + f"""
[generator]
backend = "builtin"
model = "{generator}"
methods = ["text-to-image"]
per_image = 1
steps = 2
size = 16
""")
    monkeypatch.chdir(tmp_path)  # the study is first run as the relative path "study"

    def run(*args):
        res = CliRunner().invoke(app, [str(a) for a in args])
        assert res.exit_code == 0, "".join(traceback.format_exception(res.exception))[-3000:]
        return json.loads(res.stdout)

    first = run("experiment", "run", cfg, "--study", "study", "--workers", "1", "--json")
    assert first["runs"] == 2 and first["ran"] == 2
    ids = sorted(p.name for p in (tmp_path / "study" / "runs").glob("*.json"))
    # the same folder by its absolute path: not "results of another config", nothing re-runs
    again = run("experiment", "run", cfg, "--study", tmp_path / "study", "--workers", "1", "--json")
    assert again["ran"] == 0
    # a copy elsewhere (scratch → project storage), from before the folder's first path was recorded
    # (inferred from the records then); the original is gone
    moved = tmp_path / "project" / "study"
    shutil.copytree(tmp_path / "study", moved)
    shutil.rmtree(tmp_path / "study")
    claim = json.loads((moved / "experiment.json").read_text())
    del claim[ANCHOR_KEY]
    (moved / "experiment.json").write_text(json.dumps(claim))
    status = run("experiment", "status", cfg, "--study", moved, "--json")
    assert status["counts"] == {"done": 2}, status
    assert sorted(p.name for p in (moved / "runs").glob("*.json")) == ids
    stores = {json.loads(p.read_text())["spec"]["synthetic_store"] for p in (moved / "runs").glob("*.json")} - {None}
    assert [locate_store(s, moved) for s in stores] == [moved / "synthetic"]  # the report's samples find it


def test_a_copied_study_reads_its_own_store_while_the_original_remains(tmp_path):
    """A study copied (scratch → project storage) with the original kept: its records name the
    original's store, but the copy's reports and reader studies must use the copy's own (the
    original may be changed or purged next); a store outside the study stays where it is."""
    from dermsynth.cli.reader_study import experiment_inputs
    from dermsynth.experiments.study_path import ANCHOR_KEY, locate_store
    from dermsynth.train.spec import RunSpec

    first, copy, outside = tmp_path / "scratch" / "study", tmp_path / "project" / "study", tmp_path / "shared-store"
    for store in (first / "synthetic", copy / "synthetic", outside, copy / "shared-store"):
        store.mkdir(parents=True)
        (store / "store.json").write_text("{}")
    for study in (first, copy):
        (study / "experiment.json").write_text(json.dumps({ANCHOR_KEY: str(first)}))
    assert locate_store(first / "synthetic", copy) == copy / "synthetic"
    assert locate_store(first / "synthetic", first) == first / "synthetic"
    assert locate_store(outside, copy) == outside  # not the experiment's: the path the config named
    run = RunSpec(dataset="demo", synthetic_per_real=1, synthetic_store=str(first / "synthetic"))
    (copy / "runs").mkdir()
    (copy / "runs" / "r.json").write_text(json.dumps({"run_id": run.run_id(), "spec": run.model_dump(mode="json")}))
    assert experiment_inputs(copy, None)[0] == copy / "synthetic"  # reader-study create --study COPY


def test_a_cache_inside_the_folder_does_not_make_another_config(tmp_path):
    """The quickstart and rehearsals keep their cache in OUT/cache: naming OUT another way
    changes base.cache_dir but not the study."""
    from dermsynth.experiments.presets import preset_path
    from dermsynth.experiments.spec import load_experiment
    from dermsynth.experiments.study_path import same_config

    spec = load_experiment(preset_path("quickstart"))
    here = spec.model_copy(update={"base": {**spec.base, "cache_dir": "runs/quickstart/cache"}})
    there = spec.model_copy(update={"base": {**spec.base, "cache_dir": str(tmp_path / "runs/quickstart/cache")}})
    other = spec.model_copy(update={"base": {**here.base, "n_test": 7}})
    claim = {"digest": here.digest(), "spec": here.model_dump()}
    assert same_config(claim, there) and not same_config(claim, other)


# 5. No network: one fast message that says what to do, not minutes of retries.
def test_offline_hub_ids_fail_at_once_with_what_to_do(folder, tmp_path, monkeypatch):
    import huggingface_hub.constants

    from dermsynth.models import hub

    for args in (["audit", "memorization", "--store", tmp_path, *SPLIT, "--root", folder, "--encoder", "clip"],
                 ["data", "clean", "--dataset", "folder", "--root", folder, "--embedding", "clip",
                  "--out", tmp_path / "d.csv"]):
        fails(*args, code=3, says=("openai/clip-vit-base-patch32", "cannot be reached", "--embedding for data clean"))
    fails("generator", "finetune", "--model", "org/not-cached-model", "--out", tmp_path / "ft", *SPLIT, "--root",
          folder, code=3, says=("org/not-cached-model", "cannot be reached", "--model DIR"))
    # the detection itself: a hub endpoint that refuses connections is unreachable, found in one try
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    hub.hub_reachable.cache_clear()
    try:
        assert hub.hub_reachable() is False
    finally:
        hub.hub_reachable.cache_clear()


def test_download_stops_after_a_run_of_connection_failures(tmp_path):
    from dermsynth.data.download import MAX_CONNECTION_FAILURES

    root = tmp_path / "f17k"
    root.mkdir()
    n = MAX_CONNECTION_FAILURES + 30
    rows = "".join(f"{i:032x},2,psoriasis,http://127.0.0.1:9/{i}.jpg\n" for i in range(n))
    (root / "fitzpatrick17k.csv").write_text("md5hash,fitzpatrick_scale,label,url\n" + rows)
    fails("data", "download", "--dataset", "fitzpatrick17k", "--root", root, "--retries", "1", "--workers", "2",
          code=3, says=("connection failures", "offline", "download_failures.csv"))
    import pandas as pd

    listed = pd.read_csv(root / "download_failures.csv")
    assert len(listed) == n and listed["detail"].str.startswith("not tried").sum() >= n - MAX_CONNECTION_FAILURES - 2


def test_presets_by_name_and_the_resolved_config():
    from dermsynth.train.spec import RunSpec

    res = CliRunner().invoke(app, ["experiment", "presets", "--json"])
    assert res.exit_code == 0 and "fig3_cpu" in {r["name"] for r in json.loads(res.stdout)}
    res = CliRunner().invoke(app, ["experiment", "show", "fig3_cpu", "--json"])  # a preset, by name
    assert res.exit_code == 0, res.output
    shown = json.loads(res.stdout)
    # every run field is there, a default where the config is silent, the config's value where it speaks
    assert set(RunSpec.model_fields) <= set(shown["base"])
    assert shown["base"]["weight_decay"] == RunSpec.model_fields["weight_decay"].default
    assert shown["base"]["backbone"] == "test_resnet" and shown["grid"]
    toml = CliRunner().invoke(app, ["experiment", "show", "fig3_cpu"]).stdout
    import tomllib

    assert tomllib.loads(toml)["base"]["backbone"] == "test_resnet"
    fails("experiment", "plan", "fig3-cpu", code=2, says="did you mean 'fig3_cpu'")
    fails("experiment", "show", "no_such_preset", code=2, says="experiment presets")


# 6. Say one thing: a leaky store's violations summarised on screen, all listed in a file; no dict reprs.
def test_leakage_violations_are_summarised_and_listed(folder, tmp_path):
    import numpy as np

    from dermsynth.data.splits import SplitSpec, load_split
    from dermsynth.data.synthetic_store import append_manifest, open_store, save_image

    split = load_split(SplitSpec(dataset="folder", root=str(folder), n_test=3, n_val=2))
    store = open_store(tmp_path / "leaky", "builtin", "m", "f")
    held = list(split.test["id"]) + list(split.val["id"])
    rows = []
    for i, ref in enumerate(held):
        rel = f"images/inpaint/s{i}.png"
        save_image(np.zeros((8, 8, 3), np.uint8), store / rel)
        rows.append({"synth_id": f"s{i}", "ref_id": ref, "label": "x", "method": "inpaint", "path": rel})
    append_manifest(store, rows)
    res = fails("audit", "leakage", *SPLIT, "--root", folder, "--store", store, code=1,
                says=(f"LEAK: {len(held)} violation(s)", f"… {len(held) - 10} more", "leakage_problems.txt"))
    assert res.output.count("✗") == 10
    assert len((store / "leakage_problems.txt").read_text().splitlines()) == len(held)


def test_results_for_people_are_not_python_reprs():
    from dermsynth.cli.common import plain

    assert plain({"exact_pairs": 2, "near": {"within": 1, "across": 0}, "cos": 0.51234}) == \
        "exact_pairs 2, near (within 1, across 0), cos 0.512"


def test_per_group_metrics_do_not_warn_for_every_run():
    """A skin-type group without some classes is normal; sklearn's warning about it was printed
    once per run of a study."""
    import warnings

    import numpy as np
    import pandas as pd

    from dermsynth.train.group_metrics import per_group

    y = np.array([0, 0, 1, 1, 0, 0])
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4], [0.7, 0.3], [0.4, 0.6]])
    groups = pd.Series(["I-II", "I-II", "III-IV", "III-IV", "V-VI", "V-VI"])  # I-II and V-VI: class 0 only
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = per_group(y, probs, groups, ["a", "b"])
    assert table["groups"]["I-II"]["balanced_accuracy"] == 0.5  # one of its two class-0 images right


def test_the_experiment_group_names_its_commands():
    res = CliRunner().invoke(app, ["--help"])
    line = " ".join(res.output.split())
    for cmd in ("plan", "presets", "show", "triage"):
        assert f" {cmd}," in line or f" {cmd}." in line, cmd


def test_every_other_command_names_a_missing_path(folder, tmp_path):
    """The remaining commands with a mistyped path: one message naming it, exit 2 or 3."""
    nope = tmp_path / "NOPE"
    cases = [
        (["experiment", "run", f"{nope}.toml"], 2), (["experiment", "triage", f"{nope}.toml"], 2),
        (["quickstart", "--config", f"{nope}.toml"], 2), (["experiment", "report", "--study", nope], 3),
        (["classifier", "export", f"{nope}.json", tmp_path], 3),
        (["classifier", "evaluate", f"{nope}.json", "--dataset", "folder", "--root", folder], 3),
        (["reader-study", "create", "--store", nope, "--out", tmp_path / "study", *SPLIT, "--root", folder], 3),
        (["analysis", "embed", "--store", nope, *SPLIT, "--root", folder, "--encoder", "pixels"], 3),
        (["analysis", "quality", "--store", nope, *SPLIT, "--root", folder, "--encoder", "pixels"], 3),
        (["audit", "memorization", "--store", nope, *SPLIT, "--root", folder, "--encoder", "pixels"], 3),
    ]
    for args, code in cases:
        fails(*args, code=code, says="NOPE")


def test_small_quality_groups_warn_once_per_table():
    import warnings

    import numpy as np

    from dermsynth.analysis.quality import quality_table

    rng = np.random.default_rng(0)
    real, syn = rng.normal(size=(30, 4)), rng.normal(size=(12, 4))
    labels = np.array(["a", "b", "c"] * 10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = quality_table(real, labels, syn, np.array(["a", "b", "c"] * 4), np.array(["inpaint"] * 12), reps=2)
    small = [w for w in caught if "small sample" in str(w.message)]
    assert len(table) == 4 and len(small) == 1 and "4 of 4 groups" in str(small[0].message)


def test_init_surveys_a_folder_names_cross_label_copies_and_writes_a_config_that_loads(tmp_path, monkeypatch):
    """`dermsynth init`: counts, held-out sizes that fit, the same image under two labels, and a
    config with cleaning on that validates; a too-small class and an existing config are refused."""
    import shutil

    import numpy as np
    from PIL import Image

    from dermsynth.experiments.spec import load_experiment

    root = tmp_path / "lesions"
    rng = np.random.default_rng(0)
    for c in ("nevus", "melanoma", "bcc"):
        (root / c).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / c / f"{c}{i}.png")
    shutil.copy(root / "nevus" / "nevus0.png", root / "melanoma" / "copy_of_nevus0.png")
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["init", str(root), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["per_class"] == {"bcc": 12, "melanoma": 13, "nevus": 12} and (out["n_test"], out["n_val"]) == (2, 2)
    assert out["exact_pairs"] == 1 and out["cross_label"][0]["label_a"] != out["cross_label"][0]["label_b"]
    spec = load_experiment(tmp_path / "lesions.toml")
    assert spec.base["cleaning"] == {"max_distance": 4} and spec.base["dataset"] == "folder"
    assert spec.grid["n_real"] == [2, 4, 8]  # what the smallest class's pool allows
    fails("init", str(root), code=2, says="exists")
    (root / "tiny").mkdir()
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / "tiny" / "a.png")
    fails("init", str(root), "--force", code=3, says="'tiny' (1 images)")
