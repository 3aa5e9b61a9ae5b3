"""Identity from declarations (issue 26): a field's role, declared where the field is, decides
whether it is part of the run id and whether it can be a cell axis — no list to edit."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import create_model

from dermsynth.analysis.summary import varying_keys
from dermsynth.experiments.current_runs import CELL_FIELDS
from dermsynth.train.field_roles import INPUT, OPERATIONAL, REPLICATE, SETTING, fields_with, role, role_of
from dermsynth.train.spec import RunSpec


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
