import numpy as np
import pandas as pd
from PIL import Image, ImageFilter

from dermsynth.data.demo import render
from dermsynth.data.duplicates import find_duplicates


def test_exact_and_near_duplicates_found_across_classes(tmp_path):
    rows = []
    for i in range(6):
        p = tmp_path / f"{i}.png"
        Image.fromarray(render(i % 9, i, 64)).save(p)
        rows.append({"id": f"img{i}", "path": str(p), "label": f"c{i % 3}"})
    # exact copy (other class) and a slightly blurred, re-encoded near copy
    (tmp_path / "copy.png").write_bytes((tmp_path / "0.png").read_bytes())
    Image.open(tmp_path / "1.png").filter(ImageFilter.GaussianBlur(0.6)).save(tmp_path / "near.jpg", quality=85)
    rows += [{"id": "copy", "path": str(tmp_path / "copy.png"), "label": "c2"},
             {"id": "near", "path": str(tmp_path / "near.jpg"), "label": "c1"}]
    table = pd.DataFrame(rows)
    rep = find_duplicates(table, max_distance=6)
    pairs = {(a, b, k) for a, b, k in zip(rep.pairs["id_a"], rep.pairs["id_b"], rep.pairs["kind"], strict=True)}
    assert ("img0", "copy", "exact") in pairs
    assert ("img1", "near", "near") in pairs
    assert rep.summary()["cross_class_pairs"] >= 1
    assert rep.clusters[0] == rep.clusters[6] and rep.clusters[1] == rep.clusters[7]
    assert pd.isna(rep.clusters[2])
    assert sorted(rep.to_drop()) == [6, 7]
    # distinct images are not flagged
    assert not any(a == "img2" or b == "img2" for a, b, _ in pairs)
    assert np.isfinite(rep.pairs["distance"]).all()


def test_embedding_cosine_finds_colour_edited_copy(tmp_path):
    from PIL import ImageEnhance

    from dermsynth.data.cache import embed_table
    from dermsynth.models.encoders import pixel_encoder

    rows = []
    for i in range(4):
        p = tmp_path / f"{i}.png"
        Image.fromarray(render(i, i, 64)).save(p)
        rows.append({"id": f"img{i}", "path": str(p), "label": "c"})
    ImageEnhance.Brightness(Image.open(tmp_path / "2.png")).enhance(1.08).save(tmp_path / "bright.png")
    rows.append({"id": "bright", "path": str(tmp_path / "bright.png"), "label": "c"})
    enc = pixel_encoder(16)
    rep = find_duplicates(pd.DataFrame(rows), max_distance=0, embed=lambda t: embed_table(t, enc, tmp_path),
                          max_cosine=0.02)
    emb = rep.pairs[rep.pairs["kind"] == "embedding"]
    assert {("img2", "bright")} <= set(zip(emb["id_a"], emb["id_b"], strict=True)) or \
        ("img2", "bright") in set(zip(rep.pairs["id_a"], rep.pairs["id_b"], strict=True))
    assert not ((rep.pairs["id_a"] == "img0") & (rep.pairs["id_b"] == "img1")).any()
