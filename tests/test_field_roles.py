"""Identity from declarations (issue 26): a field's role, declared where the field is, decides
whether it is part of the run id and whether it can be a cell axis — no list to edit."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import create_model

from dermsynth.analysis.summary import arm_keys, varying_keys
from dermsynth.experiments.current_runs import CELL_FIELDS
from dermsynth.experiments.generator_spec import GeneratorSpec
from dermsynth.experiments.synthetic_stage import store_identity
from dermsynth.field_roles import (
    INPUT,
    OPERATIONAL,
    REPLICATE,
    SETTING,
    fields_with,
    role,
    role_of,
    stage_key,
)
from dermsynth.generate.builtin.config import BUILTIN_FINETUNE, BUILTIN_TRAINING, BuiltinConfig
from dermsynth.train.spec import RunSpec, real_only_fields


def test_a_new_field_follows_its_declared_role_into_ids_and_keys():
    Sub = create_model("Sub", __base__=RunSpec, new_setting=(int, 0), new_knob=(int, role(OPERATIONAL, 1)),
                       new_digest=(str | None, role(INPUT, None)))
    base = Sub()
    # an operational field never changes the id; a setting and a pinned input do
    assert Sub(new_knob=7).run_id() == base.run_id()
    assert Sub(new_setting=1).run_id() != base.run_id()
    assert Sub(new_digest="abc").run_id() != base.run_id()
    table = pd.DataFrame({"new_setting": [0, 1], "new_knob": [1, 2], "new_digest": ["a", "b"], "seed": [0, 1],
                          "lr": [1e-3, 1e-3]})
    # only a varying setting is a cell axis: not the knob, the digest or the seed
    assert varying_keys(table, spec_class=Sub) == ["new_setting"]


def test_declared_roles_of_the_existing_fields():
    assert role_of(RunSpec, "seed") == REPLICATE and role_of(RunSpec, "lr") == SETTING
    assert set(fields_with(RunSpec, OPERATIONAL)) == {"threads", "device", "cache_dir", "save_checkpoint",
                                                      "checkpoint_max_mb", "stream", "loader_workers"}
    assert {"data_digest", "synthetic_fingerprint", "synthetic_store"} <= set(fields_with(RunSpec, INPUT))
    assert "seed" in CELL_FIELDS and "lr" in CELL_FIELDS
    assert not {"threads", "data_digest", "content_digest"} & CELL_FIELDS
    with pytest.raises(ValueError, match="role"):
        role("identity", 0)


def test_generator_stage_keys_follow_the_fields_declared_for_them():
    """The generator's reuse keys (built-in training, fine-tunes) and the store's identity are the
    fields declared for them: a new field joins its stage's key, an operational one no key."""
    Built = create_model("Built", __base__=BuiltinConfig,
                         noise_schedule=(str, role(SETTING, "cosine", tags=(BUILTIN_TRAINING,))),
                         workers=(int, role(OPERATIONAL, 1)))
    key, earlier = stage_key(Built(), BUILTIN_TRAINING)
    assert key["noise_schedule"] == "cosine" and earlier["noise_schedule"] == (None, "cosine")
    assert "workers" not in key and "noise_schedule" not in stage_key(Built(), BUILTIN_FINETUNE)[0]
    family = "builtin:none:pool"
    same = store_identity(GeneratorSpec(builtin=Built()), family)
    assert store_identity(GeneratorSpec(builtin=Built(noise_schedule="linear")), family) != same
    assert store_identity(GeneratorSpec(builtin=Built(workers=4), batch_size=3, store="/elsewhere"), family) == same
    # a field added later, at its default, leaves the identity of stores made before it alone
    assert same == store_identity(GeneratorSpec(builtin=BuiltinConfig()), family)


def test_the_declared_keys_are_the_ones_kept_by_hand_before():
    """Behaviour kept: the derived keys equal the hand-written lists they replace (and the arm
    fields declared since: synthetic_allocation)."""
    assert set(GeneratorSpec.model_fields) - set(fields_with(GeneratorSpec, SETTING)) == {"store", "batch_size"}
    assert arm_keys() == ["synthetic_per_real", "method", "generator_finetune", "synthetic_filter", "filter_keep",
                          "synthetic_allocation"]
    assert real_only_fields() == {"synthetic_per_real": 0, "synthetic_methods": None, "generator_finetune": None,
                                  "synthetic_filter": "none", "filter_keep": None, "synthetic_allocation": "per_real"}
