"""Every command through typer's CliRunner on tiny data: its --json output and its exit code on
bad input (0 ok, 1 an audit found a problem, 2 usage error, 3 bad input or data)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dermsynth.cli import app

SPLIT = ["--dataset", "folder", "--n-test", "5", "--n-val", "4"]


def run(*args: str, code: int = 0):
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == code, f"exit {res.exit_code} != {code}\n{res.output}\n{res.exception!r}"
    return res


def as_json(res) -> dict | list:
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def folder(demo_table, tmp_path_factory) -> Path:
    """The session's demo images as a folder data set (one sub-folder per class)."""
    root = tmp_path_factory.mktemp("folder")
    for _, r in demo_table.iterrows():
        cls = root / r["label"].replace(" ", "_")
        cls.mkdir(exist_ok=True)
        os.symlink(r["path"], cls / Path(r["path"]).name)
    return root


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """Commands write their default caches under the working directory: give them their own."""
    path = tmp_path_factory.mktemp("cwd")
    old = Path.cwd()
    os.chdir(path)
    yield path
    os.chdir(old)


@pytest.fixture(scope="module")
def store(folder, workdir) -> Path:
    gen = workdir / "gen"
    res = run("generator", "train", *SPLIT, "--root", folder, "--out", gen, "--size", "16", "--steps", "3", "--json")
    assert as_json(res)["steps"] == 3 and (gen / "model" / "config.json").exists()
    out = workdir / "store"
    res = run("generator", "sample", "--backend", "builtin", "--model", gen, "--method", "inpaint", "--per-image", "1",
              *SPLIT, "--root", folder, "--n-real", "2", "--steps", "4", "--out", out, "--json")
    assert as_json(res)["generated"] == 18  # 2 references × 9 classes
    return out


def test_version():
    from dermsynth import __version__

    assert as_json(run("version", "--json")) == {"version": __version__}


def test_data_info_and_bad_root(folder, tmp_path):
    info = as_json(run("data", "info", "--dataset", "folder", "--root", folder, "--json"))
    assert info["present"] == 270 and info["classes"] == 9
    res = run("data", "info", "--dataset", "folder", "--root", tmp_path / "nowhere", code=3)
    assert "nowhere" in res.output and "is not a folder" in res.output
    run("data", "info", "--dataset", "imagenet", code=2)  # not a registered data set


def test_data_download_from_file_urls(tmp_path):
    src = tmp_path / "remote.jpg"
    src.write_bytes(b"\xff\xd8bytes")
    md5 = hashlib.md5(src.read_bytes()).hexdigest()
    root = tmp_path / "f17k"
    root.mkdir()
    (root / "fitzpatrick17k.csv").write_text(
        "md5hash,fitzpatrick_scale,label,url\n"
        f"{md5},2,psoriasis,{src.as_uri()}\n"
        f"{'0' * 32},3,psoriasis,{(tmp_path / 'gone.jpg').as_uri()}\n")
    res = as_json(run("data", "download", "--dataset", "fitzpatrick17k", "--root", root, "--retries", "1", "--json"))
    assert res["ok"] == 1 and res["failed"] == 1 and (root / "images" / f"{md5}.jpg").exists()
    assert (root / "download_failures.csv").exists()
    run("data", "download", "--dataset", "demo", "--root", root, code=2)
    run("data", "download", "--dataset", "fitzpatrick17k", "--root", tmp_path, code=3)  # no CSV there


def test_data_clean_finds_a_planted_copy(folder, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(folder, data, symlinks=False)
    first = sorted((data / "psoriasis").iterdir())[0]
    shutil.copy(first, data / "psoriasis" / "copy.png")
    res = as_json(run("data", "clean", "--dataset", "folder", "--root", data, "--out", tmp_path / "d.csv", "--json"))
    assert res["exact_pairs"] >= 1 and Path(res["clusters_file"]).exists()
    run("data", "clean", "--dataset", "folder", "--root", tmp_path / "none", code=3)


def _config(path: Path, folder: Path, workdir: Path, generator: bool = True) -> Path:
    text = f"""
name = "cli-tiny"
seeds = 1
recognisability = false
[base]
dataset = "folder"
root = "{folder}"
n_test = 5
n_val = 4
image_size = 16
backbone = "test_resnet"
max_epochs = 1
cache_dir = "{workdir / 'cache'}"
threads = 1
[grid]
n_real = [2]
synthetic_per_real = [0, 1]
synthetic_methods = ["text-to-image"]
"""
    if generator:
        text += """
[generator]
backend = "builtin"
methods = ["text-to-image"]
per_image = 1
steps = 2
size = 16
train_steps = 2
block_out_channels = [16, 32]
batch_size = 32
"""
    path.write_text(text)
    return path


def test_experiment_run_status_results_report(folder, workdir, tmp_path):
    cfg = _config(tmp_path / "exp.toml", folder, workdir)
    out = tmp_path / "out"
    res = as_json(run("experiment", "run", cfg, "--study", out, "--workers", "1", "--json"))
    assert res["runs"] == 2 and res["failed"] == 0
    status = as_json(run("experiment", "status", cfg, "--study", out, "--json"))
    assert status["counts"] == {"done": 2}
    table = as_json(run("experiment", "results", cfg, "--study", out, "--format", "parquet", "--json"))
    assert table["runs"] == 2 and Path(table["file"]).suffix == ".parquet"
    report = as_json(run("experiment", "report", "--study", out, "--ci", "wilson", "--json"))
    assert Path(report["report"]).exists()
    run("experiment", "run", cfg, "--study", out, "--executor", "slurm", code=2)  # rejected before any stage
    run("experiment", "results", cfg, "--study", out, "--format", "xlsx", code=2)
    run("experiment", "report", "--study", tmp_path / "empty", code=3)


def test_bracketed_words_reach_the_user(folder, workdir, tmp_path):
    """Rich markup would swallow '[generator]'; messages are printed with markup off."""
    cfg = _config(tmp_path / "nogen.toml", folder, workdir, generator=False)
    res = run("experiment", "run", cfg, "--study", tmp_path / "o", code=2)
    assert "add a [generator] section" in res.output


def test_train_one_run(folder, workdir, tmp_path):
    fields = tmp_path / "run.toml"
    fields.write_text(f'n_test = 3\nn_val = 3\ncache_dir = "{workdir / "cache"}"\n')
    res = as_json(run("classifier", "train", "--config", fields, "--dataset", "folder", "--root", folder, "--n-real",
                      "2", "--n-test", "5", "--n-val", "4", "--backbone", "test_resnet", "--image-size", "16",
                      "--max-epochs", "1", "--out", tmp_path, "--json"))
    record = Path(res["record"])
    assert record == tmp_path / "runs" / f"{res['run_id']}.json"  # a study of one run: the layout evaluate reads
    spec = json.loads(record.read_text())["spec"]
    assert (spec["n_test"], spec["n_val"]) == (5, 4)  # the split flags override the TOML, as on every command
    ids = tmp_path / "test_ids.txt"
    ids.write_text("\n".join(json.loads(record.read_text())["predictions"]["id"]))
    evaluated = as_json(run("classifier", "evaluate", record, "--dataset", "folder", "--root", folder, "--ids", ids,
                            "--name", "again", "--json"))
    assert evaluated["runs"][0]["external_n"] == res["n_test"]
    run("classifier", "train", "--mode", "half", code=2)
    bad = tmp_path / "bad.toml"
    bad.write_text("n_rael = 3\n")
    assert "n_rael" in run("classifier", "train", "--config", bad, code=2).output


def test_generate_rejects_bad_shard_and_method(store, folder, workdir):
    common = ["--backend", "builtin", "--model", workdir / "gen", *SPLIT, "--root", folder, "--out", store]
    run("generator", "sample", *common, "--shard", "1of2", code=2)
    run("generator", "sample", *common, "--method", "harmonize", code=2)
    run("generator", "sample", *common[:2], "--model", workdir / "no-model", *SPLIT, "--root", folder, "--out", store,
        code=3)


def test_audit_leakage_clean_then_planted(store, folder, workdir, tmp_path):
    res = as_json(run("audit", "leakage", *SPLIT, "--root", folder, "--store", store, "--json"))
    assert res["clean"] and res["n_synthetic"] == 18 and res["n_training_ids"] > 0
    leaky = tmp_path / "leaky"
    shutil.copytree(store, leaky)
    from dermsynth.data.splits import SplitSpec, load_split
    from dermsynth.data.synthetic_store import read_training_ids, write_training_ids

    split = load_split(SplitSpec(dataset="folder", root=str(folder), n_test=5, n_val=4))
    write_training_ids(leaky, read_training_ids(leaky) | {split.test["id"].iloc[0]})
    res = run("audit", "leakage", *SPLIT, "--root", folder, "--store", leaky, "--json", code=1)
    assert not as_json(res)["clean"]


def test_memorization_embed_quality_write_under_the_experiment(store, folder, tmp_path):
    results = tmp_path / "exp"
    mem = as_json(run("audit", "memorization", "--store", store, *SPLIT, "--root", folder, "--encoder", "pixels",
                      "--study", results, "--max-flagged", "1000", "--json"))
    assert mem["n_synthetic"] == 18 and (results / "analysis" / "memorization" / "memorization.json").exists()
    emb = as_json(run("analysis", "embed", "--store", store, *SPLIT, "--root", folder, "--encoder", "pixels", "--study",
                      results, "--no-umap", "--json"))
    assert set(emb["means"]) == {"real-real", "real-synthetic", "synthetic-own-reference"}
    assert (results / "analysis" / "embedding" / "embedding.json").exists()
    q = as_json(run("analysis", "quality", "--store", store, *SPLIT, "--root", folder, "--encoder", "pixels:4",
                    "--study", results, "--json"))
    assert any(row["group"].startswith("inpaint") for row in q)
    assert (results / "analysis" / "quality" / "quality.csv").exists()
    run("analysis", "embed", "--store", tmp_path / "not-a-store", *SPLIT, "--root", folder, "--encoder", "pixels",
        code=3)
    run("analysis", "quality", "--store", store, *SPLIT, "--root", folder, "--encoder", "sift", code=2)


def test_embed_uses_the_studys_own_split(store, folder, tmp_path):
    """With --study, embed compares the store with the study's split (here n_test 6,
    n_val 3), not one rebuilt from the split options' defaults (40/40 do not fit this data set)."""
    from dermsynth.data.splits import SplitSpec, load_split
    from dermsynth.experiments.runner import record_claim
    from dermsynth.experiments.spec import validate_experiment

    study = tmp_path / "study"
    record_claim(validate_experiment({"name": "s", "base": {"dataset": "folder", "root": str(folder), "n_test": 6,
                                                            "n_val": 3}}), study)
    emb = as_json(run("analysis", "embed", "--store", store, "--dataset", "folder", "--root", folder,
                      "--encoder", "pixels", "--study", study, "--no-umap", "--json"))
    assert emb["n_real"] == len(load_split(SplitSpec(dataset="folder", root=str(folder), n_test=6, n_val=3)).pool)


@pytest.mark.slow
def test_finetune_tiny_sd(folder, tmp_path):
    from tiny_sd import build_tiny_sd

    model = build_tiny_sd(tmp_path / "sd")
    res = as_json(run("generator", "finetune", "--model", model, *SPLIT, "--root", folder, "--class", "psoriasis",
                      "--max-steps", "1", "--resolution", "32", "--batch-size", "2", "--out", tmp_path / "db",
                      "--json"))
    assert res["steps"] == 1 and (tmp_path / "db" / "dreambooth.json").exists()
    run("generator", "finetune", "--model", tmp_path / "no-sd", *SPLIT, "--root", folder, "--max-steps", "1", "--out",
        tmp_path / "x", code=3)


@pytest.mark.slow
def test_quickstart_with_a_tiny_config(folder, workdir, tmp_path):
    cfg = _config(tmp_path / "qs.toml", folder, workdir)
    res = as_json(run("quickstart", "--config", cfg, "--study", tmp_path / "qs", "--json"))
    assert res["runs"] == 2 and Path(res["report"]).exists()
    run("quickstart", "--config", tmp_path / "missing.toml", code=2)


def test_experiment_plan_for_the_paper_presets(tmp_path):
    from dermsynth.experiments.presets import preset_path

    fig3 = as_json(run("experiment", "plan", preset_path("fig3_paper"), "--json"))
    stages = {s["stage"]: s for s in fig3["stages"]}
    assert stages["fine-tune generators"]["what"].startswith("18 models")  # 9 classes × (t2i + inpaint)
    assert "× 2 generators" in stages["generate"]["what"] and "420 runs" in stages["train classifiers"]["what"]
    assert fig3["total_device_hours"] > 0 and "not measured here" in fig3["source"]
    # 420 EfficientNetV2-M checkpoints (≈ 0.2 GB each) are part of the disk a study needs
    assert 70 < stages["train classifiers"]["disk_gb"] < 110
    ddi = as_json(run("experiment", "plan", preset_path("skin_type_paper"), "--json"))
    assert {s["stage"]: s for s in ddi["stages"]}["fine-tune generators"]["what"].startswith("1 models")
    rates = tmp_path / "rates.json"
    rates.write_text(json.dumps({"sd_img_s": 2.0, "dreambooth_steps_s": 1.0, "builtin_img_s": None,
                                 "builtin_train_steps_s": None, "classifier_img_s": {"tf_efficientnetv2_m": 300.0}}))
    mine = as_json(run("experiment", "plan", preset_path("fig3_paper"), "--throughput", rates, "--json"))
    gen_hours = {s["stage"]: s["device_hours"] for s in mine["stages"]}["generate"]
    assert abs(gen_hours - stages["generate"]["device_hours"] / 2) < 0.02  # twice the images/s, half the hours
    run("experiment", "plan", preset_path("fig3_paper"), "--device", "tpu", code=2)
