"""Fig. 2 embedding analysis, quality metrics and the memorization audit (tiny random CLIP)."""

import warnings

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dermsynth.analysis.distances import distance_analysis, distance_tests, headline_method
from dermsynth.analysis.embedding_study import embedding_study, quality_study
from dermsynth.analysis.quality import fid, kid, precision_recall, quality
from dermsynth.audits.memorization import audit_memorization, memorization_study
from dermsynth.data.splits import make_split
from dermsynth.data.synthetic_store import append_manifest, open_store
from dermsynth.models.encoders import clip_encoder, pixel_encoder


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    cfg = CLIPVisionConfig(image_size=32, patch_size=8, hidden_size=32, intermediate_size=37, num_attention_heads=4,
                           num_hidden_layers=2, projection_dim=16)
    path = tmp_path_factory.mktemp("clip") / "tiny-clip"
    CLIPVisionModelWithProjection(cfg).save_pretrained(path)
    return clip_encoder(str(path))


@pytest.fixture(scope="module")
def planted_store(demo_table, tmp_path_factory):
    """Honest samples (other images rendered afresh) plus planted jittered copies of pool and test images."""
    from dermsynth.data.demo import DEMO_CLASSES, render

    split = make_split(demo_table, 5, 4)
    store = open_store(tmp_path_factory.mktemp("store") / "s", "test", "planted", "fp0")
    (store / "images" / "text-to-image").mkdir(parents=True)
    rows = []
    rng = np.random.default_rng(0)
    pool = split.pool.reset_index(drop=True)
    for n, (_, r) in enumerate(pool.iloc[:27].iterrows()):
        honest = render(DEMO_CLASSES.index(r["label"]), 500 + n, 32, seed=9)
        rel = f"images/text-to-image/h{n}.png"
        Image.fromarray(honest).save(store / rel)
        rows.append(dict(synth_id=f"honest-{n}", ref_id=r["id"], label=r["label"], method="text-to-image", path=rel))
    for kind, src in (("copy-train", pool.iloc[30]), ("copy-test", split.test.iloc[0])):
        arr = np.asarray(Image.open(src["path"]).convert("RGB"), dtype=np.int16)
        jit = np.clip(arr + rng.integers(-3, 4, arr.shape), 0, 255).astype(np.uint8)
        rel = f"images/text-to-image/{kind}.png"
        Image.fromarray(jit).save(store / rel)
        rows.append(dict(synth_id=kind, ref_id=pool.iloc[0]["id"], label=src["label"], method="text-to-image",
                         path=rel))
    append_manifest(store, rows)
    return split, store


def test_metric_sanity():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 8)), rng.normal(size=(300, 8))
    shifted = b + 2.0
    assert fid(a, b) < 0.5 < fid(a, shifted)
    assert abs(kid(a, b)) < 0.05 < kid(a, shifted)
    p, r = precision_recall(a, b)
    assert p > 0.7 and r > 0.7
    p2, _ = precision_recall(a, shifted)
    assert p2 < 0.3


def test_small_samples_warn_and_never_negative():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(12, 4)), rng.normal(size=(12, 4))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        row = quality(a, b, "tiny", reps=10)
    assert any("small sample" in str(x.message) for x in w)
    assert row.kid >= 0 and row.kid_ci[0] >= 0 and np.isfinite(row.fid)


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_distance_analysis_orders_reference_pairs_closest():
    rng = np.random.default_rng(0)
    real = _unit(rng.normal(size=(100, 16)))
    syn = _unit(np.repeat(real[:40], 3, axis=0) + 0.2 * rng.normal(size=(120, 16)))  # 3 images per reference
    refs = [f"r{i}" for i in range(100)]
    res = distance_analysis(real, refs, syn, [refs[i // 3] for i in range(120)], "in-then-outpaint")
    m = res.means()
    assert m["synthetic-own-reference"] < m["real-synthetic"] and m["synthetic-own-reference"] < m["real-real"]
    tests = distance_tests([res])
    assert len(tests) == 3 and (tests["p_bh"] >= tests["p_value"]).all()
    # one value per image: 100 real images, 40 references — not thousands of pairs that share images
    assert set(tests["n_a"]) | set(tests["n_b"]) == {100, 40}


def test_text_to_image_has_no_own_reference():
    rng = np.random.default_rng(1)
    real = _unit(rng.normal(size=(30, 8)))
    refs = [f"r{i}" for i in range(30)]
    res = distance_analysis(real, refs, _unit(real[:10] + 0.01), refs[:10], "text-to-image")
    assert "synthetic-own-reference" not in res.means()
    assert list(distance_tests([res])["comparison"]) == ["real-real vs real-synthetic"]
    assert headline_method(["inpaint", "in-then-outpaint", "text-to-image"]) == "in-then-outpaint"
    assert headline_method(["text-to-image", "inpaint"]) == "inpaint"


def test_distance_tests_hold_their_level_when_images_are_alike():
    """Synthetic images drawn like the real ones (10 per reference, images of varying spread):
    the test over random pairs that share images rejected in 28 % of 200 such data sets; the
    per-image test keeps near the nominal 5 %."""
    hits = 0
    for s in range(200):
        rng = np.random.default_rng(s)
        centres = rng.normal(size=(3, 16))

        def draw(n, rng=rng, centres=centres):
            return _unit(centres[rng.integers(0, 3, n)] + rng.normal(size=(n, 16)) * rng.uniform(0.3, 1.5, (n, 1)))

        refs = [f"r{i}" for i in range(40)]
        res = distance_analysis(draw(40), refs, draw(300), [refs[i // 10] for i in range(300)], "text-to-image")
        hits += distance_tests([res])["p_value"].iloc[0] < 0.05
    assert hits / 200 <= 0.12


@pytest.mark.slow
def test_embedding_study_figures_and_numbers(planted_store, tiny_clip, tmp_path):
    split, store = planted_store
    res = embedding_study(split, store, tiny_clip, tmp_path / "emb", umap=True, cache_dir=str(tmp_path / "c"))
    assert res["n_synthetic"] == 29 and res["encoder"].startswith("clip:")
    assert (tmp_path / "emb" / "fig2_pca.png").exists() and (tmp_path / "emb" / "fig2_distances.png").exists()
    assert res["means"]["real-real"] > 1e-4  # distinct images are not all mapped to one point
    # the planted store is text-to-image: no image has an "own reference" to be measured against
    assert res["method"] == "text-to-image" and "synthetic-own-reference" not in res["means"]
    q = quality_study(split, store, tiny_clip, tmp_path / "q", reps=5, cache_dir=str(tmp_path / "c"))
    assert {"fid", "kid", "precision", "recall"} <= set(q.columns) and (q["kid"] >= 0).all()


def test_memorization_flags_planted_copies_only(planted_store, tmp_path):
    split, store = planted_store
    table = memorization_study(split, store, None, tmp_path / "m", cache_dir=str(tmp_path / "c")).table
    flagged = set(table.loc[table["flagged"], "synth_id"])
    assert {"copy-train", "copy-test"} <= flagged
    assert not any(s.startswith("honest") for s in flagged)


def test_masked_methods_may_keep_their_own_reference():
    syn = pd.DataFrame({"synth_id": ["a", "b"], "ref_id": ["r0", "r1"], "method": ["inpaint", "text-to-image"],
                        "label": ["x", "x"]})
    base = np.eye(4)
    s = np.stack([base[0], base[1]])
    rep = audit_memorization(syn, {"pix": (s, base[:3], base[3:])}, ["r0", "r1", "r2"], ["t0"])
    assert rep.table["flagged"].tolist() == [False, True]
    assert pixel_encoder(8).size == 8


def test_precision_recall_in_blocks_equals_the_full_matrix():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(300, 16)), rng.normal(size=(200, 16)) + 0.5

    def reference(a, b, k=3):  # the N × N × d broadcast the blocked version replaces
        def radii(x):
            return np.sort(np.linalg.norm(x[:, None] - x[None], axis=-1), axis=1)[:, k]

        def covered(src, r, q):
            return float((np.linalg.norm(q[:, None] - src[None], axis=-1) <= r[None]).any(1).mean())

        return covered(a, radii(a), b), covered(b, radii(b), a)

    assert precision_recall(real, fake, block=7) == precision_recall(real, fake) == reference(real, fake)
