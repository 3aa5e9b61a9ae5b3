"""Reader-study design that cannot be gamed (issue 22, items 1–4, 13, 14): no tell but the
pixels (file size, sharpness, class mix, order on disk), no near-duplicates, any data set the
toolkit loads, and the README's command reproducing the quickstart's split."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from collections import Counter
from pathlib import Path

import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from dermsynth.errors import ConfigError, DataError
from dermsynth.reader_study import database as db
from dermsynth.reader_study.design import FIXED_MTIME, StudyConfig, create_study
from dermsynth.reader_study.labelstudio import export_tasks
from readers_helpers import Server, items, tells

README = Path(__file__).resolve().parents[1] / "docs" / "guide" / "10-reader-study.md"  # the guide page on it
# inpaint only: the tiny store's text-to-image images come from a generator trained for 5 steps and
# are noise (sharpness ~6 against ~1.6 for real and inpainted images) — a tell in the pixels
# themselves, which no encoding should hide. Its inpainted images look like the real ones.
BIG = StudyConfig(n_items=40, image_size=256, seed=1, allow_mixed_resolution=True, methods=("inpaint",))


@pytest.fixture(scope="module")
def big_study(reader_store_split, tmp_path_factory):
    """A 40-item study (20 real, 20 synthetic) from the tiny quickstart's store: real images are
    32 px, synthetic ones 16 px — the issue's 64 vs 32 in miniature."""
    store, split = reader_store_split
    out = tmp_path_factory.mktemp("big") / "study"
    return out, create_study(store, split, out, BIG)


def test_no_tell_in_file_size_or_sharpness(big_study, reader_store_split, tmp_path):
    """Item 1: Content-Length and sharpness (variance of the Laplacian) as served do not tell real
    from synthetic (ROC AUC within 0.4–0.6); sources of different resolutions are refused unless
    allowed, and every item is brought to the smallest native resolution, which is recorded."""
    study, res = big_study
    assert res["n_real"] == res["n_synthetic"] == 20
    assert res["source_sizes"] == {"real": [32], "synthetic": [16]} and res["native_size"] == 16
    it = items(study)
    assert set(it.loc[it["truth"] == "real", "native_size"]) == {32}
    conn = db.connect(study / db.DB_NAME)
    token = db.add_reader(conn, "attacker")
    conn.close()
    with Server(study) as srv:
        rows = tells(study, srv, token)
    synthetic = [r[0] for r in rows]
    auc_length = roc_auc_score(synthetic, [r[1] for r in rows])
    auc_sharpness = roc_auc_score(synthetic, [r[2] for r in rows])
    print(f"tells: AUC Content-Length {auc_length:.3f}, AUC sharpness {auc_sharpness:.3f} ({len(rows)} items)")
    assert 0.4 <= auc_length <= 0.6 and 0.4 <= auc_sharpness <= 0.6
    assert res["tells"] == {"content_length_auc": auc_length, "sharpness_auc": pytest.approx(auc_sharpness)}
    assert len({p.stat().st_size for p in (study / "items").iterdir()}) == 1  # one length for every file
    store, split = reader_store_split
    with pytest.raises(ConfigError, match=r"differ in resolution \(real 32 px, synthetic 16 px"):
        create_study(store, split, tmp_path / "mixed", StudyConfig(n_items=10, seed=0))


def test_real_items_match_the_synthetic_class_and_skin_mix(big_study):
    """Item 2: no class (or skin-type group) is all real: the real items have the synthetic items'
    counts per class and skin-type group."""
    study, res = big_study
    single = items(study).query("task == 'single'")
    counts = {t: Counter(zip(g["label"], g["skin_group"].fillna("?"), strict=True))
              for t, g in single.groupby("truth")}
    assert res["skin_group_mismatches"] == 0 and counts["real"] == counts["synthetic"]


def test_order_on_disk_and_exports_carry_no_key(big_study, tmp_path):
    """Item 3: files are written in a random order (inode order does not spell the key) with one
    fixed mtime; the Label Studio export holds items/ alone, never the database."""
    study, _ = big_study
    it = items(study).query("task == 'single'")
    truth = dict(zip(it["image_a"], it["truth"], strict=True))
    files = sorted((p for p in (study / "items").iterdir() if p.stem in truth), key=lambda p: p.stat().st_ino)
    assert {p.stat().st_mtime for p in (study / "items").iterdir()} == {FIXED_MTIME}
    by_inode = [truth[p.stem] == "synthetic" for p in files]
    changes = sum(a != b for a, b in zip(by_inode, by_inode[1:], strict=False))
    assert changes >= 10 and 0.2 <= roc_auc_score(by_inode, range(len(by_inode))) <= 0.8
    out = export_tasks(study, tmp_path / "ls").parent
    assert sorted(p.name for p in out.iterdir()) == ["items", "label_config.xml", "tasks.json"]
    assert sorted(p.name for p in (out / "items").iterdir()) == sorted(p.name for p in (study / "items").iterdir())
    assert {p.stat().st_mtime for p in (out / "items").iterdir()} == {FIXED_MTIME}
    with pytest.raises(DataError, match="holds the key"):
        export_tasks(study, study / "ls")


def test_one_item_per_reference_and_patient(reader_store_split, tmp_path):
    """Item 4: no two items share a reference image or a group (patient), real items from the
    training pool included, pairs included."""
    store, split = reader_store_split
    create_study(store, split, tmp_path / "s", StudyConfig(n_items=40, n_pairs=6, real_from="pool", seed=2,
                                                           image_size=64, allow_mixed_resolution=True))
    it = items(tmp_path / "s")
    group = split.table.set_index("id")["group"]
    refs = list(it["ref_id"].dropna())
    groups = list(group.reindex(refs)) + list(group.reindex(it.loc[it["truth"] == "real", "source_id"]))
    assert len(refs) == len(set(refs)) == 26 and len(groups) == len(set(groups)) == 46


def _folder_dataset(split, root: Path, classes: list[str]) -> None:
    """A folder data set (root/<class>/<image>, no skin types, no patients) from demo images."""
    for row in split.table[split.table["label"].isin(classes)].itertuples():
        dest = root / row.label / Path(row.path).name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(row.path, dest)


def test_a_folder_data_set_works_and_a_short_one_says_what_is_short(reader_store_split, tmp_path):
    """Item 14: a folder data set (no skin-type column, 3 classes) with a store that knows none of
    its images makes a study of 10 and of 20 items; one that cannot be filled names what is short."""
    from dermsynth.data.splits import SplitSpec, load_split

    store, demo_split = reader_store_split
    classes = sorted(demo_split.table["label"].unique())[:3]
    _folder_dataset(demo_split, tmp_path / "folder", classes)
    split = load_split(SplitSpec(dataset="folder", root=str(tmp_path / "folder"), n_test=5, n_val=4))
    for n in (10, 20):
        res = create_study(store, split, tmp_path / f"s{n}", StudyConfig(n_items=n, image_size=64, seed=n,
                                                                          allow_mixed_resolution=True))
        assert res["n_real"] == res["n_synthetic"] == n // 2
        assert set(items(tmp_path / f"s{n}")["label"]) <= set(classes)  # no synthetic class without real ones
    with pytest.raises(DataError, match=r"40 synthetic items asked .* only 15 can be drawn.*lower --items"):
        create_study(store, split, tmp_path / "short", StudyConfig(n_items=80, allow_mixed_resolution=True))


def _readme_create_line() -> list[str]:
    text = README.read_text()
    block = text[text.index("# Reader study"):]
    block = block[block.index("```bash"):block.index("```", block.index("```bash") + 7)]
    lines = block.replace("\\\n", " ").splitlines()
    line = next(ln for ln in lines if ln.startswith("dermsynth reader-study create"))
    return shlex.split(line.split("#")[0])[1:]


def test_the_readme_create_line_reproduces_the_quickstart(tiny_quickstart, reader_store_split, tmp_path):
    """Item 13: the README's `reader-study create` names the quickstart's output folder, and the
    study it makes uses the quickstart's own split and store (not the defaults' 200 per class)."""
    from dermsynth.cli import app

    _, out, _ = tiny_quickstart
    args = _readme_create_line()
    assert args[args.index("--study") + 1] == "runs/quickstart"
    sizes = {"--items": "10", "--pairs": "1"}  # the tiny quickstart has 5 test images per class
    args = [str(out) if a == "runs/quickstart" else str(tmp_path / a) if a == "study1" else a for a in args]
    args = [sizes.get(args[i - 1], a) if i else a for i, a in enumerate(args)]
    res = CliRunner().invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    config = json.loads((tmp_path / "study1" / "config.json").read_text())
    store, split = reader_store_split
    assert config["split_digest"] == split.digest() and Path(config["store"]) == store
    assert re.search(r"--allow-mixed-resolution", README.read_text())
