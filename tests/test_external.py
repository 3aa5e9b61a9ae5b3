"""Using what a study found: runs keep their model, external validation, predict, export,
model card, and the metrics beyond accuracy (calibration, per-group gaps, equalized odds)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from dermsynth.analysis.report import build_report
from dermsynth.cli import app
from dermsynth.data.demo import DEMO_CLASSES, render
from dermsynth.errors import ConfigError, DataError
from dermsynth.experiments.external_evaluation import evaluate_runs, match_labels
from dermsynth.experiments.results import load_records
from dermsynth.experiments.runner import run_experiment
from dermsynth.experiments.spec import validate_experiment
from dermsynth.train.checkpoint import load_bundle
from dermsynth.train.group_metrics import calibration, per_group
from dermsynth.train.predict import predict_arrays

CLASSES = DEMO_CLASSES[:3]
runner = CliRunner()


@pytest.fixture(scope="module")
def study(demo_root, tmp_path_factory):
    """A finished 2-seed study (real only vs 1 synthetic per real would need a generator; the
    cells here vary n_real), trained on demo data of 3 classes."""
    out = tmp_path_factory.mktemp("ext") / "exp"
    spec = validate_experiment({
        "name": "ext", "seeds": 2,
        "base": dict(dataset="demo", root=str(demo_root), classes=",".join(CLASSES), demo_n_per_class=30,
                     demo_size=32, n_test=6, n_val=4, image_size=32, backbone="test_resnet", max_epochs=3,
                     patience=3, lr=3e-3, cache_dir=str(demo_root / "cache"), threads=1),
        "grid": {"n_real": [6, 12]}})
    run_experiment(spec, out)
    return out


@pytest.fixture(scope="module")
def other_site(tmp_path_factory):
    """Another 'clinic': the same conditions drawn with another seed (no image in common),
    folder names spelled differently, and one class the models do not know."""
    root = tmp_path_factory.mktemp("site")
    for c, name in enumerate(DEMO_CLASSES[:4]):
        folder = root / name.upper().replace(" ", "_")
        folder.mkdir()
        for i in range(8):
            Image.fromarray(render(c, i, 48, seed=7)).save(folder / f"{i}.png")
    return root


def test_every_run_keeps_its_model_and_it_reproduces_the_test_predictions(study):
    for rec in load_records(study):
        assert rec["checkpoint"]["saved"] and (study / "runs" / rec["checkpoint"]["path"]).exists()
        model, meta = load_bundle(study / "runs", rec["run_id"])
        assert meta["classes"] == rec["classes"] and meta["preprocessing"]["image_size"] == 32
    rec = load_records(study)[0]
    model, meta = load_bundle(study / "runs", rec["run_id"])
    from dermsynth.data.images import load_array
    from dermsynth.data.registry import load_dataset

    table = load_dataset("demo", rec["spec"]["root"], classes=",".join(CLASSES), n_per_class=30, size=32)
    paths = table.set_index("id").loc[rec["predictions"]["id"], "path"]
    probs = predict_arrays(model, meta, np.stack([load_array(p, 32) for p in paths]))
    assert np.allclose(probs, np.array(rec["predictions"]["probabilities"]), atol=2e-5)


def test_external_validation_on_a_disjoint_folder(study, other_site):
    with pytest.raises(DataError, match="BASAL|basal|match no class"):
        evaluate_runs(study, "folder", other_site)
    res = evaluate_runs(study, "folder", other_site, exclude_unknown=True, where={"n_real": "12"})
    assert len(res["runs"]) == 2  # the cell: both seeds
    assert res["excluded_labels"] == {DEMO_CLASSES[3].upper().replace(" ", "_"): 8} and res["n_images"] == 24
    ext = load_records(study / "external" / other_site.name)
    assert {len(r["predictions"]["id"]) for r in ext} == {24}
    assert all(r["metrics"]["n_test"] == 24 and "calibration" in r["metrics"] for r in ext)
    assert {r["external"]["dataset"] for r in ext} == {"folder"}
    # through the CLI, the whole experiment
    got = runner.invoke(app, ["classifier", "evaluate", str(study), "--dataset", "folder", "--root", str(other_site),
                              "--exclude-unknown", "--json"])
    assert got.exit_code == 0, got.output
    assert len(json.loads(got.stdout)["runs"]) == 4
    report = build_report(study).read_text()
    assert f"External validation: {other_site.name}" in report and "acc_external" in report
    assert "Calibration and fairness" in report and "equalized_odds_diff" in report
    fairness = pd.read_csv(study / "fairness.csv")
    assert len(fairness) == 2 and fairness["ece"].between(0, 1).all()
    assert (study / "figures" / "calibration_reliability.png").exists()


def test_seen_images_are_refused_and_a_label_map_is_used(study, tmp_path):
    from dermsynth.data.splits import load_split
    from dermsynth.train.spec import RunSpec

    rec = load_records(study)[0]
    pool = load_split(RunSpec(**rec["spec"]).split_spec()).pool
    copies = tmp_path / "copies"  # the same pixels under other names: caught by content
    copies.mkdir()
    for i, p in enumerate(pool["path"][:3]):
        (copies / f"{i}.png").write_bytes(Path(p).read_bytes())
    pd.DataFrame({"path": [f"{i}.png" for i in range(3)], "label": list(pool["label"][:3])}).to_csv(
        copies / "images.csv", index=False)
    with pytest.raises(DataError, match="training or validation images"):
        evaluate_runs(study, "folder", copies, csv=copies / "images.csv")
    table = pd.DataFrame({"label": ["BCC", f" {CLASSES[1].upper()} ", "other"], "id": ["a", "b", "c"]})
    mapped, left = match_labels(table, CLASSES, {"BCC": CLASSES[0], "other": None}, exclude_unknown=True)
    assert list(mapped["label"]) == [CLASSES[0], CLASSES[1]] and left == {"other": 1}
    with pytest.raises(ConfigError, match="nevus"):
        match_labels(table, CLASSES, {"BCC": "nevus"})


def test_predict_and_export_round_trip(study, tmp_path):
    rec_path = sorted((study / "runs").glob("*.json"))[0]
    rec = json.loads(rec_path.read_text())
    table = load_records(study)  # noqa: F841 - the records exist
    from dermsynth.data.registry import load_dataset

    data = load_dataset("demo", rec["spec"]["root"], classes=",".join(CLASSES), n_per_class=30, size=32)
    test = data.set_index("id").loc[rec["predictions"]["id"]].reset_index()
    csv = tmp_path / "to_predict.csv"
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    pd.concat([test[["id", "path"]], pd.DataFrame({"id": ["broken"], "path": [str(broken)]})]).to_csv(csv, index=False)
    folder = tmp_path / "exported"
    got = runner.invoke(app, ["classifier", "export", str(rec_path), str(folder)])
    assert got.exit_code == 0, got.output
    card = (folder / "model_card.md").read_text()
    assert "Fitzpatrick skin type (FST) is not skin tone" in card and "## Training data" in card
    assert json.loads((folder / "model_card.json").read_text())["training_data"]["real_images"] == rec["n_train_real"]
    for run_arg in (str(rec_path), str(folder)):
        out = tmp_path / f"pred-{len(run_arg)}.csv"
        got = runner.invoke(app, ["classifier", "predict", str(csv), "--run", run_arg, "--to", str(out)])
        assert got.exit_code == 0, got.output
        assert "broken.png" in got.output and "1 could not be read" in got.output
        pred = pd.read_csv(out).set_index("id").loc[rec["predictions"]["id"]]
        probs = pred[[f"p:{c}" for c in rec["classes"]]].to_numpy()
        assert np.allclose(probs, np.array(rec["predictions"]["probabilities"]), atol=2e-5)
        assert list(pred["predicted"]) == rec["predictions"]["predicted"]
    # loadable without dermsynth: torch.hub from the folder, and timm with the weights file
    import timm

    hub = torch.hub.load(str(folder), "model", source="local", trust_repo=True)
    cfg = json.loads((folder / "config.json").read_text())
    plain = timm.create_model(cfg["architecture"], num_classes=cfg["num_classes"], pretrained=True,
                              pretrained_cfg_overlay={"file": str(folder / "model.safetensors"),
                                                      "num_classes": cfg["num_classes"]}).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(hub(x), plain(x), atol=1e-6)
    assert hub.label_names == rec["classes"]
    sys.modules.pop("hubconf", None)


def test_a_run_without_weights_is_a_clear_error(study, tmp_path):
    rec_path = sorted((study / "runs").glob("*.json"))[0]
    rec = json.loads(rec_path.read_text())
    with pytest.raises(DataError, match="no saved weights"):
        load_bundle(tmp_path, rec["run_id"])
    got = runner.invoke(app, ["classifier", "export", str(rec_path), str(tmp_path / "x")])
    assert got.exit_code == 0
    lonely = tmp_path / "runs"
    lonely.mkdir()
    (lonely / rec_path.name).write_text(rec_path.read_text())
    got = runner.invoke(app, ["classifier", "export", str(lonely / rec_path.name), str(tmp_path / "y")])
    assert got.exit_code == 3 and "save_checkpoint" in got.output


def test_calibration_and_group_metrics_on_known_cases():
    y = np.array([0, 0, 1, 1])
    perfect = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    assert calibration(y, perfect)["ece"] == 0.0
    over = np.array([[0.9, 0.1], [0.9, 0.1], [0.9, 0.1], [0.9, 0.1]])  # 90 % sure, right half the time
    assert calibration(y, over)["ece"] == pytest.approx(0.4)
    # group A perfect, group B always predicts class 0: accuracy gap and equalized odds are large
    y = np.array([0, 1] * 10 + [0, 1] * 10)
    probs = np.vstack([np.eye(2)[y[:20]], np.tile([0.8, 0.2], (20, 1))])
    groups = pd.Series(["A"] * 20 + ["B"] * 20)
    res = per_group(y, probs, groups, ["benign", "malignant"])
    assert res["groups"]["A"]["accuracy"] == 1.0 and res["groups"]["B"]["accuracy"] == 0.5
    assert res["gaps"]["accuracy"] == {"gap": 0.5, "best": "A", "worst": "B"}
    assert res["equalized_odds_difference"] == pytest.approx(1.0)  # TPR 1 vs 0


def test_linear_probe_runs_are_exportable_models(demo_root, tmp_path):
    """The probe's logistic regression is folded into the backbone's head: the saved model
    predicts exactly what the run recorded."""
    from dermsynth.train.run import run_training
    from dermsynth.train.spec import RunSpec

    spec = RunSpec(dataset="demo", root=str(demo_root), classes=",".join(CLASSES), demo_n_per_class=30, demo_size=32,
                   n_test=6, n_val=4, n_real=8, image_size=32, backbone="test_resnet", mode="linear-probe",
                   cache_dir=str(demo_root / "cache"), threads=1)
    rec = run_training(spec, tmp_path)
    model, meta = load_bundle(tmp_path, rec["run_id"])
    from dermsynth.data.images import load_array
    from dermsynth.data.registry import load_dataset

    data = load_dataset("demo", str(demo_root), classes=",".join(CLASSES), n_per_class=30, size=32)
    paths = data.set_index("id").loc[rec["predictions"]["id"], "path"]
    probs = predict_arrays(model, meta, np.stack([load_array(p, 32) for p in paths]))
    assert np.allclose(probs, np.array(rec["predictions"]["probabilities"]), atol=1e-4)
