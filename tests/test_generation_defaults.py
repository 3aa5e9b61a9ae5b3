"""Per-backend generation defaults: a config or command without ``steps`` samples with its own
backend's setting (built-in 10, Stable Diffusion 50), never the other backend's."""

from __future__ import annotations

from dermsynth.data.cache import cache_images
from dermsynth.data.splits import make_split
from dermsynth.experiments.spec import validate_experiment
from dermsynth.generate.backends.registry import DEFAULT_STEPS, make_backend
from dermsynth.generate.builtin.train import BuiltinConfig, train_builtin


def test_generator_steps_default_per_backend():
    builtin = validate_experiment({"name": "x", "generator": {"backend": "builtin"}}).generator
    sd = validate_experiment({"name": "x", "generator": {"backend": "sd", "model": "m"}}).generator
    given = validate_experiment({"name": "x", "generator": {"backend": "builtin", "steps": 7}}).generator
    assert (builtin.steps, sd.steps, given.steps) == (10, 50, 7)
    # a dumped spec reloads with the same steps (run folders and stores keep their identity)
    assert type(sd).model_validate_json(sd.model_dump_json()).steps == 50


def test_make_backend_without_steps_uses_the_builtin_default(demo_table, tmp_path):
    split = make_split(demo_table, 5, 4)
    pool = split.pool.groupby("label").head(2)
    cached = cache_images(pool, 16, tmp_path / "cache")
    labels = list(pool.set_index("id").loc[cached.ids, "label"])
    train_builtin(cached.array, labels, tmp_path, classes=sorted(split.table["label"].unique()), max_steps=1,
                  config=BuiltinConfig(size=16, block_out_channels=(16, 32), batch_size=4))
    backend = make_backend("builtin", tmp_path / "model")
    assert backend.steps == DEFAULT_STEPS["builtin"] == 10
    assert backend.params("text-to-image")["steps"] == 10
