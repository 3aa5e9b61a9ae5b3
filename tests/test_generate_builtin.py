"""The built-in generator, the methods and the store, with a tiny model trained for a few steps."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from dermsynth import files
from dermsynth.data.cache import cache_images
from dermsynth.data.splits import make_split
from dermsynth.data.synthetic_export import export_synthetic
from dermsynth.data.synthetic_import import import_synthetic
from dermsynth.data.synthetic_store import read_manifest, read_training_ids
from dermsynth.errors import ConfigError, DermsynthError, LeakageError
from dermsynth.generate.backends.builtin import BuiltinBackend
from dermsynth.generate.builtin.model import load_builtin
from dermsynth.generate.builtin.sampling import generate_method, sample
from dermsynth.generate.builtin.train import BuiltinConfig, train_builtin
from dermsynth.generate.methods import centre_square_mask, method_masks, prompt_for
from dermsynth.generate.runner import run_generation

TINY = BuiltinConfig(size=16, block_out_channels=(16, 32), batch_size=8)


@pytest.fixture(scope="module")
def split(demo_table):
    return make_split(demo_table, 5, 4)


@pytest.fixture(scope="module")
def model_dir(split, tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    pool = split.pool
    cached = cache_images(pool, 16, out / "cache")
    labels = list(pool.set_index("id").loc[cached.ids, "label"])
    summary = train_builtin(cached.array, labels, out, classes=sorted(split.table["label"].unique()),
                            max_steps=30, config=BuiltinConfig(**{**TINY.__dict__}))
    assert summary["last_loss"] < summary["first_loss"]  # training lowers the denoising loss
    return out / "model"


def test_masks_geometry():
    m = centre_square_mask(64)
    assert m.sum() == 32 * 32 and m[32, 32] == 1 and m[0, 0] == 0
    inp, = method_masks("inpaint", 64)
    out, = method_masks("outpaint", 64)
    assert np.array_equal(inp + out, np.ones((64, 64)))
    a, b = method_masks("in-then-outpaint", 64)
    assert np.array_equal(np.maximum(a, b), np.ones((64, 64)))  # every pixel replaced
    assert method_masks("text-to-image", 8)[0].all()
    soft = centre_square_mask(64, 0.5, feather=0.05)
    assert 0 < soft[16, 32] < 1
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ConfigError, match="fraction"):
            centre_square_mask(64, bad)
    with pytest.raises(ConfigError, match="unknown"):
        method_masks("harmonize", 8)


def test_prompt_template():
    assert prompt_for("psoriasis") == "An image of psoriasis, a skin disease"
    assert prompt_for("psoriasis", 5, with_skin_type=True).endswith(", Fitzpatrick skin type 5")


def test_sampling_keeps_unmasked_pixels_and_is_seeded(model_dir):
    m = load_builtin(model_dir)
    refs = np.random.default_rng(0).integers(0, 255, (2, 16, 16, 3), dtype=np.uint8)
    labels = m.cfg.classes[:2]
    out = generate_method(m, "inpaint", labels, [1, 2], refs, steps=3)
    keep = centre_square_mask(16) == 0
    assert np.array_equal(out[:, keep], refs[:, keep])
    assert not np.array_equal(out[:, ~keep], refs[:, ~keep])
    again = generate_method(m, "inpaint", labels, [1, 2], refs, steps=3)
    assert np.array_equal(out, again)
    other = generate_method(m, "inpaint", labels, [3, 4], refs, steps=3)
    assert not np.array_equal(out, other)
    t2i = generate_method(m, "text-to-image", labels, [1, 2], None, steps=3)
    assert t2i.shape == (2, 16, 16, 3)
    # strength as in diffusers: int(steps × strength) denoising steps from the noised reference
    calls = []
    forward = m.unet.forward
    m.unet.forward = lambda *a, **k: calls.append(1) or forward(*a, **k)
    try:
        for strength, expected in ((0.3, 3), (1.0, 10)):
            calls.clear()
            sample(m, labels, [1, 2], refs, np.ones((16, 16), np.float32), steps=10, strength=strength, guidance=1.0)
            assert len(calls) == expected
    finally:
        m.unet.forward = forward
    with pytest.raises(DermsynthError, match="unknown to the built-in generator"):
        sample(m, ["not-a-class"], [1])
    with pytest.raises(ConfigError, match="strength"):
        sample(m, labels[:1], [1], strength=0.0)


def test_finetune_one_class_continues_from_weights(model_dir, split, tmp_path):
    pool = split.pool[split.pool["label"] == "psoriasis"]
    cached = cache_images(pool, 16, tmp_path / "c")
    res = train_builtin(cached.array, ["psoriasis"] * len(cached.ids), tmp_path / "ft", max_steps=3,
                        init_from=model_dir)
    assert res["init_from"] == str(model_dir)
    assert load_builtin(tmp_path / "ft").fingerprint != load_builtin(model_dir).fingerprint


def test_training_resumes_from_checkpoint(split, tmp_path):
    pool = split.pool.iloc[:20]
    cached = cache_images(pool, 16, tmp_path / "c")
    labels = list(pool["label"])
    cfg = dict(classes=sorted(split.table["label"].unique()), config=BuiltinConfig(**TINY.__dict__),
               checkpoint_every=2)
    train_builtin(cached.array, labels, tmp_path / "a", max_steps=4, **cfg)
    res = train_builtin(cached.array, labels, tmp_path / "a", max_steps=6, **cfg)
    assert res["steps"] == 6


def test_store_resume_shard_fingerprint_and_webdataset(model_dir, split, tmp_path):
    backend = BuiltinBackend(model_dir, steps=2)
    refs = split.pool.iloc[:6]
    store = tmp_path / "store"
    r1 = run_generation(backend, refs, "inpaint", 2, store, split=split, batch_size=4, shard=(0, 2))
    r2 = run_generation(backend, refs, "inpaint", 2, store, split=split, batch_size=4, shard=(1, 2))
    assert r1.generated + r2.generated == 12
    man = read_manifest(store)
    assert len(man) == 12 and man["synth_id"].is_unique
    assert set(man["ref_id"]) == set(refs["id"])
    assert {"prompt", "seed", "steps", "guidance", "strength", "mask", "fingerprint"} <= set(man.columns)
    # a re-run generates nothing; a deleted image is regenerated identically
    victim = man["path"].iloc[0]
    before = Path(victim).read_bytes()
    import os

    os.remove(victim)
    r3 = run_generation(backend, refs, "inpaint", 2, store, batch_size=4, split=split)
    assert r3.generated == 1 and Path(victim).read_bytes() == before
    # another model may not write into this store
    other = tmp_path / "other-model"
    import shutil

    shutil.copytree(model_dir, other)
    # another model: other content (whitespace or the folder it came from would not make one)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "trained_elsewhere": True}))
    with pytest.raises(DermsynthError, match="one model per store"):
        run_generation(BuiltinBackend(other, steps=2), refs, "inpaint", 1, store, split=split)
    exported = export_synthetic(store, tmp_path / "wds", shard_size=5)
    assert [Path(s).name for s in exported["shards"]] == ["shard-inpaint-00000.tar", "shard-inpaint-00001.tar",
                                                          "shard-inpaint-00002.tar"]
    res = import_synthetic(exported["shards"], tmp_path / "back", split.table)
    assert res["imported"] == 12 and not res["skipped"]
    back = read_manifest(tmp_path / "back")
    assert sorted(back["synth_id"]) == sorted(man["synth_id"])
    assert read_training_ids(tmp_path / "back") == read_training_ids(store)  # adopted from beside the shards
    mine = man.set_index("synth_id")
    for _, r in back.iterrows():
        assert Path(r["path"]).read_bytes() == Path(mine.loc[r["synth_id"], "path"]).read_bytes()
        assert r["ref_id"] == mine.loc[r["synth_id"], "ref_id"] and r["label"] == mine.loc[r["synth_id"], "label"]
    card = (tmp_path / "wds" / "README.md").read_text()
    assert card.startswith("---\nlicense: other\ntask_categories:\n- image-classification")
    assert "size_categories:\n- n<1K" in card and "| inpaint | 12 |" in card and mine["fingerprint"].iloc[0] in card


def test_generation_bad_input(model_dir, split, tmp_path):
    backend = BuiltinBackend(model_dir, steps=2)
    refs = split.pool.iloc[:2]
    with pytest.raises(ConfigError, match="per_image"):
        run_generation(backend, refs, "inpaint", 0, tmp_path / "s", split=split)
    with pytest.raises(ConfigError, match="unknown"):
        run_generation(backend, refs, "style-transfer", 1, tmp_path / "s", split=split)
    held = split.table[split.table["split"] == "test"].iloc[:2]
    with pytest.raises(LeakageError, match="validation/test"):
        run_generation(backend, held, "inpaint", 1, tmp_path / "s", split=split)
    # the guard checks ids against the split, not a column the caller could have set
    with pytest.raises(LeakageError, match="validation/test"):
        run_generation(backend, held.assign(split="pool"), "inpaint", 1, tmp_path / "s", split=split)
    broken = refs.copy()
    broken.loc[broken.index[0], "path"] = str(tmp_path / "gone.png")
    with pytest.raises(DermsynthError, match="gone.png"):
        run_generation(backend, broken, "inpaint", 1, tmp_path / "s2", split=split)


@pytest.mark.slow
def test_killed_generation_resumes_without_loss_or_duplicates(model_dir, split, tmp_path):
    refs = split.pool.iloc[:12]
    refs_path = tmp_path / "refs.parquet"
    refs.to_parquet(refs_path)
    split.save(tmp_path / "split.parquet")
    store = tmp_path / "store"
    # The child kills itself (SIGKILL, no clean-up) when the 4th batch starts: by then the writer
    # thread has stored at least two batches. Deterministic, unlike polling for files from outside,
    # which a fast machine outran (the whole store was written before the poll saw two parts).
    script = textwrap.dedent(f"""
        import os, signal
        import pandas as pd
        from dermsynth.data.splits import Split
        from dermsynth.generate.backends.builtin import BuiltinBackend
        from dermsynth.generate.runner import run_generation

        class DiesMidway(BuiltinBackend):
            calls = 0
            def generate(self, *args):
                DiesMidway.calls += 1
                if DiesMidway.calls == 4:
                    os.kill(os.getpid(), signal.SIGKILL)
                return super().generate(*args)

        refs = pd.read_parquet({str(refs_path)!r})
        split = Split.load({str(tmp_path / "split.parquet")!r})
        run_generation(DiesMidway({str(model_dir)!r}, steps=2), refs, "text-to-image", 2, {str(store)!r},
                       split=split, batch_size=2)
    """)
    proc = subprocess.run([sys.executable, "-c", script], timeout=300)
    assert proc.returncode == -signal.SIGKILL
    partial = len(read_manifest(store))
    assert 0 < partial < 24
    res = run_generation(BuiltinBackend(model_dir, steps=2), refs, "text-to-image", 2, store, split=split,
                         batch_size=2)
    man = read_manifest(store)
    assert len(man) == 24 and man["synth_id"].is_unique
    assert res.generated == 24 - partial
    assert man["path"].is_unique and all(Path(p).exists() for p in man["path"])


def test_class_maps_are_learnt_saved_and_condition_the_samples(model_dir):
    m = load_builtin(model_dir)
    assert m.unet.class_maps.weight.abs().sum() > 0  # zero at start: the saved maps are the trained ones
    a, b = m.cfg.classes[:2]
    out = sample(m, [a, b], [5, 5], steps=4, guidance=3.0)
    assert not np.array_equal(out[0], out[1])  # same noise, different class → different image


def test_model_round_trips_through_save_pretrained(model_dir, tmp_path):
    """A diffusers ModelMixin: architecture, classes and schedule come back with the weights."""
    m = load_builtin(model_dir)
    m.unet.save_pretrained(tmp_path / "copy")
    again = load_builtin(tmp_path / "copy")
    assert list(again.cfg.classes) == list(m.cfg.classes) and again.cfg.size == 16
    assert again.cfg.prediction_type == "v_prediction"
    for (name, a), (_, b) in zip(m.unet.state_dict().items(), again.unet.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    out = sample(m, list(m.cfg.classes[:1]), [3], steps=2)
    assert np.array_equal(out, sample(again, list(m.cfg.classes[:1]), [3], steps=2))


def test_sampling_settings_change_the_fingerprint(model_dir):
    """A store made with other sampling settings is another store, never silently mixed."""
    a, b = BuiltinBackend(model_dir, steps=2), BuiltinBackend(model_dir, steps=3)
    assert a.fingerprint != b.fingerprint
    assert a.fingerprint == BuiltinBackend(model_dir, steps=2).fingerprint


@pytest.mark.slow
def test_four_shard_workers_at_once_lose_and_duplicate_nothing(model_dir, split, tmp_path):
    """Concurrent `generate --shard i/4` workers on one store: unique temp names and append-only
    parts mean no image, manifest row or reference is lost or written twice."""
    refs = split.pool.iloc[:16]
    refs.to_parquet(tmp_path / "refs.parquet")
    split.save(tmp_path / "split.parquet")
    store = tmp_path / "store"
    script = textwrap.dedent(f"""
        import sys
        import pandas as pd
        from dermsynth.data.splits import Split
        from dermsynth.generate.backends.builtin import BuiltinBackend
        from dermsynth.generate.runner import run_generation
        i = int(sys.argv[1])
        run_generation(BuiltinBackend({str(model_dir)!r}, steps=2), pd.read_parquet({str(tmp_path / "refs.parquet")!r}),
                       "text-to-image", 2, {str(store)!r}, split=Split.load({str(tmp_path / "split.parquet")!r}),
                       batch_size=2, shard=(i, 4))
    """)
    # one thread each: four processes on a small machine's cores, not eight threads fighting for them
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", script, str(i)], env=env) for i in range(4)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0, 0]
    from dermsynth.data.synthetic_store import read_references

    man = read_manifest(store)
    assert len(man) == 32 and man["synth_id"].is_unique and all(Path(p).exists() for p in man["path"])
    assert set(read_references(store)["id"]) == set(refs["id"])
    assert not list(store.rglob("*.tmp*"))  # no temporary file left behind


def test_images_of_another_model_in_a_shared_store_are_made_again(model_dir, split, tmp_path):
    """One store may hold a family of models (one per class); an image made by a model other than
    the one generating now is regenerated, never reused, and the store's digest changes."""
    from dermsynth.data.synthetic_store import store_digest

    refs, store = split.pool.iloc[:3], tmp_path / "store"
    family = ("builtin:per-class:pool", "family-fp")
    first = run_generation(BuiltinBackend(model_dir, steps=2), refs, "inpaint", 1, store, split=split,
                           store_identity=family)
    digest = store_digest(store)
    again = run_generation(BuiltinBackend(model_dir, steps=3), refs, "inpaint", 1, store, split=split,
                           store_identity=family)
    assert first.generated == again.generated == 3  # other sampling settings: another model
    assert store_digest(store) != digest
    assert len(read_manifest(store)) == 3 and read_manifest(store)["fingerprint"].nunique() == 1


def test_a_failed_write_stops_generation_and_the_manifest_names_only_written_images(model_dir, split, tmp_path,
                                                                                   monkeypatch):
    """Images are written on a background thread: a disk error must still stop the run, and a
    manifest row must never name an image that is not on disk (a resume then makes the rest)."""
    import dermsynth.generate.runner as runner

    real_save, calls = runner.save_image, {"n": 0}

    def failing_save(img, path):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError("No space left on device")
        real_save(img, path)

    monkeypatch.setattr(runner, "save_image", failing_save)
    refs, store = split.pool.iloc[:8], tmp_path / "store"
    with pytest.raises(OSError, match="No space"):
        run_generation(BuiltinBackend(model_dir, steps=2), refs, "text-to-image", 1, store, split=split,
                       batch_size=2)
    man = read_manifest(store)
    assert len(man) == 4 and all((store / p).exists() for p in man["path"])
    monkeypatch.setattr(runner, "save_image", real_save)
    res = run_generation(BuiltinBackend(model_dir, steps=2), refs, "text-to-image", 1, store, split=split,
                         batch_size=2)
    assert res.generated == 4 and len(read_manifest(store)) == 8


def test_sampling_precision_is_chosen_once_recorded_and_kept_apart(model_dir, split, tmp_path):
    """bf16 sampling where the CPU computes bf16 natively: the choice is recorded in every image's
    fingerprint and manifest row, and fp32 leaves the fingerprints of earlier stores unchanged."""
    import hashlib
    import json

    from dermsynth.models.precision_rule import auto_precision

    fp32 = BuiltinBackend(model_dir, steps=2)
    bf16 = BuiltinBackend(model_dir, steps=2, precision="bf16")
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16") and fp32.fingerprint != bf16.fingerprint
    settings = json.dumps([2, 3.0, 0.97, 0.95, 0.5, "ddim"])  # the fingerprint before precision existed
    assert fp32.fingerprint == hashlib.sha256(f"{fp32.m.fingerprint}|{settings}".encode()).hexdigest()[:16]
    auto = BuiltinBackend(model_dir, steps=2, precision="auto")
    assert (auto.precision, auto.precision_reason) == auto_precision()
    assert auto.fingerprint == (bf16 if auto.precision == "bf16" else fp32).fingerprint
    refs = split.pool.iloc[:2]
    run_generation(bf16, refs, "text-to-image", 1, tmp_path / "store", split=split)
    again = bf16.generate("text-to-image", list(refs["label"]), [], None, [1, 2])
    assert np.array_equal(again, bf16.generate("text-to-image", list(refs["label"]), [], None, [1, 2]))
    assert set(read_manifest(tmp_path / "store")["precision"]) == {"bf16"}


def test_training_precision_is_chosen_recorded_and_kept_when_a_run_resumes(split, tmp_path):
    """bf16 training is autocast with attention kept in fp32 (its CPU backward is slow in bf16);
    the choice is in training.json, a resumed "auto" run keeps its checkpoint's choice, and the
    model's own attention processors are back in place afterwards."""
    from diffusers.models.attention_processor import Attention

    from dermsynth.generate.builtin.precision import step_autocast, training_arithmetic
    from dermsynth.models.precision_rule import auto_precision

    pool = split.pool.iloc[:20]
    cached = cache_images(pool, 16, tmp_path / "c")
    labels, classes = list(pool["label"]), sorted(split.table["label"].unique())
    runs = {}
    for precision in ("fp32", "bf16"):
        cfg = BuiltinConfig(**{**TINY.__dict__, "training_precision": precision})
        res = train_builtin(cached.array, labels, tmp_path / precision, max_steps=3, classes=classes, config=cfg)
        assert (res["precision"], res["precision_reason"]) == (precision, "set in the config")
        assert files.read_json(tmp_path / precision / "model" / "training.json")["precision"] == precision
        runs[precision] = load_builtin(tmp_path / precision / "model")
    assert runs["fp32"].fingerprint != runs["bf16"].fingerprint  # the same seed and steps: the arithmetic differs
    unet = runs["bf16"].unet
    attention = [m for m in unet.modules() if isinstance(m, Attention)]
    assert attention and all(type(m.processor).__name__ == "AttnProcessor2_0" for m in attention)
    seen = {}

    def dtype_of(name):
        def hook(module, args, out) -> None:
            seen[name] = out.dtype
        return hook

    attention[0].register_forward_hook(dtype_of("attention"))
    unet.unet.conv_in.register_forward_hook(dtype_of("conv"))
    with training_arithmetic(unet, "bf16"), step_autocast("bf16"):
        unet(torch.randn(2, 7, 16, 16), torch.tensor([1, 2]), class_labels=torch.tensor([0, 1]))
    assert seen == {"conv": torch.bfloat16, "attention": torch.float32}
    assert all(type(m.processor).__name__ == "AttnProcessor2_0" for m in attention)

    auto = BuiltinConfig(**{**TINY.__dict__, "training_precision": "auto"})
    first = train_builtin(cached.array, labels, tmp_path / "auto", max_steps=2, classes=classes, config=auto,
                          checkpoint_every=1)
    assert (first["precision"], first["precision_reason"]) == auto_precision()
    state = torch.load(tmp_path / "auto" / "checkpoint" / "state.pt", weights_only=False)
    state["precision"] = {"fp32": "bf16", "bf16": "fp32"}[first["precision"]]  # as another machine chose
    torch.save(state, tmp_path / "auto" / "checkpoint" / "state.pt")
    resumed = train_builtin(cached.array, labels, tmp_path / "auto", max_steps=4, classes=classes, config=auto)
    assert resumed["steps"] == 4 and resumed["precision"] == state["precision"]
    assert resumed["precision_reason"] == "kept from the checkpoint at step 2"
