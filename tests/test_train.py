import os

import numpy as np
import pandas as pd
import pytest
import torch

from dermsynth.errors import ConfigError, DermsynthError
from dermsynth.models.backbones import create_backbone, set_trainable
from dermsynth.train.mixing import add_synthetic, duplicate_classes
from dermsynth.train.run import run_training
from dermsynth.train.spec import RunSpec, auto_batch_size
from dermsynth.train.transforms import AugConfig, apply_aug, augment, sample_params


def tiny_spec(demo_root, **kw) -> RunSpec:
    base = dict(dataset="demo", root=str(demo_root), demo_n_per_class=30, demo_size=32, n_test=5, n_val=4,
                n_real=4, image_size=32, backbone="test_efficientnet", max_epochs=2, patience=2,
                cache_dir=str(demo_root / "cache"), threads=1)
    base.update(kw)
    return RunSpec(**base)


def test_transforms_draw_per_image_parameters():
    gen = torch.Generator().manual_seed(0)
    p = sample_params(64, AugConfig(), gen)
    assert p["rotate"].unique().numel() > 10 and p["zoom"].unique().numel() > 10
    assert 0.3 < p["flip"].float().mean() < 0.7
    assert (p["rotate"].abs() <= 10).all() and ((p["zoom"] >= 1) & (p["zoom"] <= 1.1)).all()
    # about 25 % of images skip rotation (p_affine = 0.75)
    assert 0.1 < (p["rotate"] == 0).float().mean() < 0.4
    x = torch.rand(1, 3, 16, 16).repeat(2, 1, 1, 1)
    out = augment(x, AugConfig(), torch.Generator().manual_seed(1))
    assert not torch.allclose(out[0], out[1])


def test_identity_parameters_leave_image_unchanged():
    x = torch.rand(2, 3, 16, 16) * 0.9 + 0.05
    ident = {"flip": torch.zeros(2, dtype=torch.bool), "rotate": torch.zeros(2), "zoom": torch.ones(2),
             "col": torch.full((2,), 0.5), "row": torch.full((2,), 0.5), "warp_x": torch.zeros(2),
             "warp_y": torch.zeros(2), "brightness": torch.full((2,), 0.5), "contrast": torch.ones(2)}
    assert torch.allclose(apply_aug(x, ident), x, atol=1e-4)
    flipped = apply_aug(x, {**ident, "flip": torch.ones(2, dtype=torch.bool)})
    assert torch.allclose(flipped, x.flip(-1), atol=1e-4)


def test_batch_size_tiers():
    assert [auto_batch_size(n) for n in (9, 100, 1000, 5000)] == [8, 32, 64, 128]


def test_frozen_mode_trains_only_head_and_norm():
    m = create_backbone("resnet18", 3)
    set_trainable(m, "frozen")
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert "fc.weight" in trainable and "bn1.weight" in trainable and "conv1.weight" not in trainable


def test_bad_backbone_and_size_and_weights(tmp_path):
    with pytest.raises(ConfigError, match="not a timm model"):
        create_backbone("resnet_nonexistent", 3)
    with pytest.raises(ConfigError, match="image_size"):
        create_backbone("vit_tiny_patch16_224", 3, image_size=64)
    with pytest.raises(DermsynthError, match="pretrained_path"):
        create_backbone("resnet18", 3, pretrained_path=tmp_path / "missing.safetensors")


def _manifest(real: pd.DataFrame, tmp_path, k=3, missing_file=False):
    rows = []
    for rid, label in zip(real["id"], real["label"], strict=True):
        for j in range(k):
            p = tmp_path / f"{rid.replace('/', '_')}-{j}.png"
            if not missing_file:
                p.write_bytes(b"x")
            rows.append({"synth_id": f"s-{rid}-{j}", "ref_id": rid, "label": label, "method": "inpaint",
                         "path": str(p)})
    return pd.DataFrame(rows)


def test_add_synthetic_exact_k_and_only_from_subset(tmp_path):
    real = pd.DataFrame({"id": ["a", "b"], "path": ["pa", "pb"], "label": ["x", "y"], "skin_type": [1, 2],
                         "skin_group": ["I-II", "I-II"]})
    man = _manifest(pd.DataFrame({"id": ["a", "b", "c"], "label": ["x", "y", "y"]}), tmp_path, k=4)
    out = add_synthetic(real, man, 2, seed=0)
    syn = out[out["synthetic"]]
    assert syn["ref_id"].value_counts().to_dict() == {"a": 2, "b": 2}
    assert "c" not in set(syn["ref_id"])
    again = add_synthetic(real, man, 2, seed=0)
    assert again["id"].tolist() == out["id"].tolist()
    with pytest.raises(DermsynthError, match="has 4 synthetic images"):
        add_synthetic(real, man, 5, seed=0)
    with pytest.raises(DermsynthError, match="missing"):
        add_synthetic(real, _manifest(real, tmp_path / "..", k=2, missing_file=True), 1, seed=0)
    dup = duplicate_classes(real.assign(synthetic=False), {"x": 3})
    assert (dup["label"] == "x").sum() == 3


def test_run_is_deterministic_and_complete(demo_root, tmp_path):
    spec = tiny_spec(demo_root)
    a = run_training(spec, tmp_path)
    b = run_training(spec, None)
    assert a["predictions"]["predicted"] == b["predictions"]["predicted"]
    assert np.allclose(a["predictions"]["probabilities"], b["predictions"]["probabilities"])
    m = a["metrics"]
    assert m["n_test"] == 45
    # accuracy is what the stored predictions say, not a number computed elsewhere
    p = a["predictions"]
    assert np.isclose(m["accuracy"], np.mean(np.array(p["label"]) == np.array(p["predicted"])))
    assert set(m["per_class_accuracy"]) == set(a["classes"])
    assert sum(map(sum, m["confusion_matrix"])) == 45
    assert "per_skin_group_accuracy" in m
    assert (tmp_path / f"{a['run_id']}.json").exists()
    assert a["n_train"] == 36 and a["fit"]["epochs_run"] >= 1


def test_a_run_gives_the_process_its_thread_count_back(demo_root):
    """A run with threads = 1 used to leave the whole process single-threaded, which changed what
    later code in it computed (a later classifier of the same seed learnt other weights)."""
    before = torch.get_num_threads()
    rec = run_training(tiny_spec(demo_root, threads=1, max_epochs=1))
    assert rec["environment"]["threads"] == 1 and torch.get_num_threads() == before


def test_linear_probe_and_bf16(demo_root):
    rec = run_training(tiny_spec(demo_root, mode="linear-probe"))
    assert rec["fit"]["history"][0]["C"] == 0.01 and len(rec["fit"]["history"]) == 4
    probs = np.array(rec["predictions"]["probabilities"])
    assert np.allclose(probs.sum(1), 1, atol=1e-4)
    assert [rec["classes"][i] for i in probs.argmax(1)] == rec["predictions"]["predicted"]
    rec = run_training(tiny_spec(demo_root, precision="bf16", max_epochs=1))
    assert rec["spec"]["precision"] == "bf16"


def test_nan_loss_stops_with_epoch(demo_root):
    from dermsynth.train.loop import TrainingDiverged

    with pytest.raises(TrainingDiverged, match="epoch 1"):
        run_training(tiny_spec(demo_root, lr=1e30, optimizer="sgd", max_epochs=3))


def test_spec_errors_name_the_field():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="n_rael"):
        RunSpec(n_rael=3)
    with pytest.raises(ValidationError, match="mode"):
        RunSpec(mode="partial")


def test_too_few_images_for_n_real(demo_root):
    with pytest.raises(DermsynthError, match="n_real=500"):
        run_training(tiny_spec(demo_root, n_real=500))


def test_empty_class_in_training_set(demo_root):
    with pytest.raises(DermsynthError, match="psoriasis.*no image in the training set"):
        run_training(tiny_spec(demo_root, class_n_real={"psoriasis": 0}))


def test_auto_precision_follows_the_cpu_and_is_recorded(demo_root, tmp_path, monkeypatch):
    """"auto" is bf16 exactly where the CPU computes bf16 natively (its flags, not a timing that
    moves with the machine's load), DERMSYNTH_PRECISION forces it, and the record says what was
    used and why; the same spec run twice on this machine gives the same predictions."""
    from dermsynth.models import precision_rule
    from dermsynth.train.precision import choose_precision

    monkeypatch.delenv("DERMSYNTH_PRECISION", raising=False)
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision_rule, "native_bf16_flags", lambda: ["avx512_bf16"])
    assert choose_precision(cpu)[0] == "bf16" and "avx512_bf16" in choose_precision(cpu)[1]
    monkeypatch.setattr(precision_rule, "native_bf16_flags", lambda: [])
    assert choose_precision(cpu)[0] == "fp32" and "no native bf16" in choose_precision(cpu)[1]
    monkeypatch.setenv("DERMSYNTH_PRECISION", "bf16")
    assert choose_precision(cpu) == ("bf16", "DERMSYNTH_PRECISION=bf16 in the environment")
    monkeypatch.setenv("DERMSYNTH_PRECISION", "half")
    with pytest.raises(DermsynthError, match="DERMSYNTH_PRECISION.*fp32 or bf16"):
        choose_precision(cpu)
    monkeypatch.undo()
    spec = tiny_spec(demo_root, max_epochs=1, cache_dir=str(tmp_path))
    rec = run_training(spec)
    assert rec["spec"]["precision"] == "auto" and rec["precision"]["used"] == precision_rule.auto_precision()[0]
    assert rec["precision"]["reason"] == precision_rule.auto_precision()[1]
    fixed = run_training(tiny_spec(demo_root, max_epochs=1, precision="fp32"))
    assert fixed["precision"] == {"used": "fp32", "reason": "set in the spec"}
    again = run_training(spec)
    assert again["predictions"]["probabilities"] == rec["predictions"]["probabilities"]


def test_onednn_is_kept_off_amx_unless_the_user_chose(monkeypatch):
    from dermsynth import cpu
    from dermsynth.models import precision_rule as rule

    monkeypatch.delenv(rule.ONEDNN_ISA, raising=False)
    for module in (cpu, rule):
        monkeypatch.setattr(module, "native_bf16_flags", lambda: ["avx512_bf16"])
    assert rule.keep_onednn_off_amx() is None and rule.ONEDNN_ISA not in os.environ  # no AMX: nothing to cap
    for module in (cpu, rule):
        monkeypatch.setattr(module, "native_bf16_flags", lambda: ["avx512_bf16", "amx_bf16"])
    assert rule.keep_onednn_off_amx() == rule.WITHOUT_AMX == os.environ[rule.ONEDNN_ISA]
    assert f"capped at {rule.WITHOUT_AMX}" in rule.auto_precision()[1]  # the record says so
    monkeypatch.setenv(rule.ONEDNN_ISA, "AVX10_1_512_AMX")
    assert rule.keep_onednn_off_amx() == "AVX10_1_512_AMX"  # a cap the user set is kept


def test_bf16_training_stays_finite_on_this_cpu(demo_root, tmp_path):
    """Where the CPU computes bf16 natively, six bf16 runs in one process all train. On a Xeon
    with AMX, oneDNN's AMX kernels made about half such runs NaN (TrainingDiverged) until dermsynth
    capped oneDNN at its AVX512-BF16 kernels on import."""
    from dermsynth.models import precision_rule as rule

    if not rule.native_bf16_flags():
        pytest.skip("this CPU has no native bf16 (bf16 would be emulated and is never chosen here)")
    if "amx_bf16" in rule.native_bf16_flags():
        assert os.environ.get(rule.ONEDNN_ISA), "dermsynth's import should cap oneDNN below AMX"
    for seed in range(6):
        rec = run_training(tiny_spec(demo_root, backbone="test_resnet", precision="bf16", max_epochs=2, image_size=16,
                                     seed=seed, threads=2, cache_dir=str(tmp_path)))
        assert np.isfinite(rec["predictions"]["probabilities"]).all()


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_training_equals_in_memory(demo_root, workers):
    """Streaming batches from the cache (with prefetching workers) changes memory, not results."""
    base = dict(max_epochs=2, transforms=True, precision="fp32")
    in_ram = run_training(tiny_spec(demo_root, stream=False, **base))
    streamed = run_training(tiny_spec(demo_root, stream=True, loader_workers=workers, **base))
    assert in_ram["run_id"] == streamed["run_id"]  # how images arrive is not part of what a run is
    assert in_ram["predictions"]["predicted"] == streamed["predictions"]["predicted"]
    assert np.allclose(in_ram["predictions"]["probabilities"], streamed["predictions"]["probabilities"])


def test_balanced_class_weights_and_sampling():
    """class_weighting/sampling = "balanced": rare classes weigh as much as common ones."""
    from dermsynth.train.loop import _epoch_order, balanced_weights

    y = torch.tensor([0] * 90 + [1] * 10)
    w = balanced_weights(y)
    assert torch.allclose(w, torch.tensor([100 / (2 * 90), 100 / (2 * 10)]))
    draws = torch.cat([_epoch_order(y, "balanced", torch.Generator().manual_seed(s)) for s in range(20)])
    share_rare = float((y[draws] == 1).float().mean())
    assert 0.45 < share_rare < 0.55  # uniform order would give 0.10
    assert sorted(_epoch_order(y, "uniform", torch.Generator().manual_seed(0)).tolist()) == list(range(100))
