import pandas as pd
import pytest

from dermsynth.data.splits import Split, assert_no_leakage, check_split_leakage, make_split
from dermsynth.errors import LeakageError, SplitError


def test_split_quotas_groups_and_nesting(demo_table):
    split = make_split(demo_table, n_test=5, n_val=4, split_seed=0)
    t = split.table
    assert (split.test["label"].value_counts() == 5).all()
    assert (split.val["label"].value_counts() == 4).all()
    # a patient never straddles splits
    assert (t.groupby("patient")["split"].nunique() == 1).all()
    assert check_split_leakage(split) == []
    small = split.train_subset(4, seed=3)
    big = split.train_subset(8, seed=3)
    assert set(small["id"]) < set(big["id"])
    assert (big["label"].value_counts() == 8).all()
    other = split.train_subset(8, seed=4)
    assert set(other["id"]) != set(big["id"])
    assert set(big["id"]).isdisjoint(set(split.test["id"]) | set(split.val["id"]))


def test_split_is_deterministic_and_independent_of_row_order(demo_table):
    a = make_split(demo_table, 5, 4, split_seed=1).table.set_index("id")["split"]
    shuffled = demo_table.sample(frac=1.0, random_state=0)
    b = make_split(shuffled, 5, 4, split_seed=1).table.set_index("id")["split"]
    assert a.sort_index().equals(b.sort_index())


def test_too_few_images_names_class(demo_table):
    with pytest.raises(SplitError, match="psoriasis|has 30 images"):
        make_split(demo_table, n_test=20, n_val=20)
    split = make_split(demo_table, 5, 5)
    with pytest.raises(SplitError, match="n_real=100"):
        split.train_subset(100, seed=0)


def test_skin_group_stratified_test(demo_table):
    split = make_split(demo_table, n_test=10, n_val=5, stratify="skin_group")
    assert (split.test["skin_group"].value_counts() == 10).all()


def test_duplicates_never_straddle(demo_table):
    dup = pd.Series(None, index=demo_table.index, dtype=object)
    ids = demo_table.index[:40:4]
    dup[ids] = "cluster-1"  # images of different classes/patients declared duplicates
    split = make_split(demo_table, 5, 4, duplicate_groups=dup)
    assert split.table.loc[ids, "split"].nunique() == 1


def test_leakage_check_catches_planted_straddle(demo_table, tmp_path):
    split = make_split(demo_table, 5, 4)
    t = split.table.copy()
    pid = t.loc[t["split"] == "test", "patient"].iloc[0]
    victim = t.index[(t["split"] == "pool")][0]
    t.loc[victim, "patient"] = pid
    bad = Split(t)
    with pytest.raises(LeakageError, match=str(pid)):
        assert_no_leakage(bad)
    path = split.save(tmp_path / "split.parquet")
    assert Split.load(path).table["split"].tolist() == split.table["split"].tolist()
