"""The Stable Diffusion backend and DreamBooth/LoRA on tiny random components (no download)."""

import numpy as np
import pytest

from dermsynth.data.splits import make_split
from dermsynth.data.synthetic_store import read_manifest, read_training_ids, write_training_ids
from dermsynth.errors import DermsynthError, LeakageError
from dermsynth.generate.backends.sd import SDBackend
from dermsynth.generate.dreambooth import DreamBoothConfig, finetune, finetune_from_split
from dermsynth.generate.runner import run_generation
from tiny_sd import build_tiny_sd


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("sd")
    return build_tiny_sd(root / "t2i"), build_tiny_sd(root / "inpaint", inpainting=True)


def test_sd_backend_all_methods_through_the_runner(tiny, demo_table, tmp_path):
    t2i, inp = tiny
    backend = SDBackend(str(t2i), inpaint_model=str(inp), steps=2, size=32)
    split = make_split(demo_table, 5, 4)
    refs = split.pool.iloc[:2]
    for method in ("text-to-image", "inpaint", "outpaint", "in-then-outpaint"):
        res = run_generation(backend, refs, method, 1, tmp_path / "store", split=split, batch_size=2)
        assert res.generated == 2
    man = read_manifest(tmp_path / "store")
    assert len(man) == 8 and set(man["method"]) == {"text-to-image", "inpaint", "outpaint", "in-then-outpaint"}
    assert (man[man["method"] == "inpaint"]["strength"] == 0.97).all()
    assert (man[man["method"] == "outpaint"]["strength"] == 0.95).all()
    # deterministic per seed
    a = backend.generate("text-to-image", ["x"], ["An image of psoriasis, a skin disease"], None, [5])
    b = backend.generate("text-to-image", ["x"], ["An image of psoriasis, a skin disease"], None, [5])
    assert np.array_equal(a, b)


def test_missing_model_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    backend = SDBackend("stabilityai/stable-diffusion-2-1-base", steps=1, size=32)
    with pytest.raises(DermsynthError, match="stable-diffusion-2-1-base.*--model"):
        backend.generate("text-to-image", ["x"], ["p"], None, [1])


@pytest.mark.parametrize("inpainting,lora", [(False, False), (True, True)])
def test_dreambooth_lowers_loss_and_saved_model_generates(tiny, tmp_path, inpainting, lora):
    model = tiny[1] if inpainting else tiny[0]
    imgs = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    cfg = DreamBoothConfig(lr=1e-2 if lora else 1e-3, max_steps=8, resolution=32, lora=lora, lora_rank=4)
    s = finetune(str(model), imgs, ["An image of psoriasis, a skin disease"] * 4, tmp_path / "db", cfg)
    assert s["held_loss_after"] < s["held_loss_before"]
    backend = SDBackend(str(tiny[0]) if inpainting else str(tmp_path / "db"),
                        inpaint_model=str(tmp_path / "db") if inpainting else None, steps=2, size=32)
    method = "inpaint" if inpainting else "text-to-image"
    out = backend.generate(method, ["x"], ["An image of psoriasis, a skin disease"], imgs[:1], [1])
    assert out.shape == (1, 32, 32, 3)


def test_dreambooth_refuses_held_out_images(tiny, demo_table, tmp_path):
    # a loader that names the condition apart from the label, as DDI does ("melanoma", not "malignant")
    split = make_split(demo_table.assign(prompt_label=np.where(demo_table["label"] == "psoriasis", "plaque psoriasis",
                                                               None)), 5, 4)
    test_ids = list(split.test["id"][:2])
    with pytest.raises(LeakageError, match="validation/test"):
        finetune_from_split(str(tiny[0]), split, tmp_path / "x", ids=test_ids,
                            cfg=DreamBoothConfig(max_steps=1, resolution=32))
    res = finetune_from_split(str(tiny[0]), split, tmp_path / "ok", label="psoriasis",
                              cfg=DreamBoothConfig(max_steps=1, resolution=32, batch_size=2))
    used = read_training_ids(tmp_path / "ok")
    assert res["n_images"] == len(used) and used <= set(split.pool["id"])
    # generating with the fine-tuned pipeline carries its training ids into the store
    backend = SDBackend(str(tmp_path / "ok"), steps=1, size=32)
    psoriasis = split.pool[split.pool["label"] == "psoriasis"]
    run_generation(backend, psoriasis.iloc[:1], "text-to-image", 1, tmp_path / "store", split=split)
    assert read_training_ids(tmp_path / "store") == used
    # one prompt rule: DreamBooth learnt with the words generation asks with (the condition's name)
    asked = set(read_manifest(tmp_path / "store")["prompt"])
    assert asked == {"An image of plaque psoriasis, a skin disease"} and set(res["prompts"]) == asked
    # and a pipeline that learnt from a held-out image is refused at generation
    write_training_ids(tmp_path / "ok", used | {split.test["id"].iloc[0]})
    with pytest.raises(LeakageError, match="held-out images"):
        run_generation(SDBackend(str(tmp_path / "ok"), steps=1, size=32), split.pool.iloc[:1], "text-to-image", 1,
                       tmp_path / "store2", split=split)


def test_experiment_with_dreambooth_stage_on_tiny_sd(tiny, demo_root, tmp_path):
    from dermsynth.experiments.results import load_records
    from dermsynth.experiments.runner import run_experiment
    from dermsynth.experiments.spec import validate_experiment

    t2i, inp = tiny
    spec = validate_experiment({
        "name": "sd-tiny", "seeds": 1,
        "base": dict(dataset="demo", root=str(demo_root), demo_n_per_class=30, demo_size=32, n_test=5, n_val=4,
                     image_size=32, backbone="test_efficientnet", max_epochs=1, cache_dir=str(demo_root / "cache"),
                     threads=1),
        "generator": {"backend": "sd", "model": str(t2i), "inpaint_model": str(inp), "methods": ["inpaint"],
                      "per_image": 1, "steps": 2, "resolution": 32, "finetune": "all", "finetune_steps": 1,
                      "batch_size": 8},
        "grid": {"n_real": [1], "synthetic_per_real": [0, 1]},
    })
    res = run_experiment(spec, tmp_path / "e")
    assert res.failed == 0 and res.runs == 2
    assert (tmp_path / "e" / "finetuned" / "all" / "inpaint" / "dreambooth.json").exists()
    assert not (tmp_path / "e" / "finetuned" / "all" / "t2i").exists()  # only the methods asked for
    syn = [r for r in load_records(tmp_path / "e") if r["n_train_synthetic"]]
    assert syn and syn[0]["n_train_synthetic"] == 9


@pytest.mark.parametrize("inpainting", [False, True])
def test_prior_preservation_reaches_the_loop(tiny, demo_table, tmp_path, inpainting):
    """--prior-preservation generates class images with the model before tuning and trains on them."""
    split = make_split(demo_table, 5, 4)
    cfg = DreamBoothConfig(max_steps=2, resolution=32, batch_size=2, prior_preservation=True, prior_images=3,
                           prior_steps=2)
    res = finetune_from_split(str(tiny[1] if inpainting else tiny[0]), split, tmp_path / "pp", label="psoriasis",
                              cfg=cfg)
    assert res["n_prior_images"] == 3
    plain = finetune_from_split(str(tiny[0]), split, tmp_path / "plain", label="psoriasis",
                                cfg=DreamBoothConfig(max_steps=2, resolution=32, batch_size=2))
    assert plain["n_prior_images"] == 0


def test_dreambooth_gpu_options_are_honoured_on_cpu(tiny, tmp_path):
    """Gradient checkpointing and an explicit autocast run (here on the CPU) and are recorded;
    8-bit Adam without bitsandbytes is a clear error, not a silent fallback."""
    imgs = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    cfg = DreamBoothConfig(max_steps=2, resolution=32, batch_size=2, gradient_checkpointing=True,
                           mixed_precision="bf16", device="cpu")
    s = finetune(str(tiny[0]), imgs, ["An image of psoriasis, a skin disease"] * 2, tmp_path / "gc", cfg)
    assert s["device"] == "cpu" and s["autocast"] == "torch.bfloat16" and s["steps"] == 2
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        with pytest.raises(DermsynthError, match="bitsandbytes"):
            finetune(str(tiny[0]), imgs, ["p"] * 2, tmp_path / "b8", DreamBoothConfig(max_steps=1, resolution=32,
                                                                                   use_8bit_adam=True))
