import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dermsynth.data.cache import cache_images
from dermsynth.data.images import load_array, load_rgb
from dermsynth.errors import ImageDecodeError


def _modes(tmp_path):
    paths = {}
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[:, :15] = (200, 10, 10)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray(rgb).convert("L").save(tmp_path / "gray.png")
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "pal.png")
    rgba = Image.fromarray(rgb).convert("RGBA")
    rgba.putalpha(0)
    rgba.save(tmp_path / "rgba.png")
    Image.fromarray((np.arange(600).reshape(20, 30) * 100).astype(np.uint16)).save(tmp_path / "i16.png")
    for k in ("cmyk.jpg", "gray.png", "pal.png", "rgba.png", "i16.png"):
        paths[k] = tmp_path / k
    return paths


def test_every_colour_mode_becomes_rgb(tmp_path):
    for name, path in _modes(tmp_path).items():
        img = load_rgb(path)
        assert img.mode == "RGB", name
        arr = load_array(path, 16)
        assert arr.shape == (16, 16, 3) and arr.dtype == np.uint8
    # transparent pixels are composited on white
    assert load_rgb(tmp_path / "rgba.png").getpixel((0, 0)) == (255, 255, 255)
    # 16-bit values are scaled, not clipped to white
    assert 0 < np.asarray(load_rgb(tmp_path / "i16.png")).mean() < 255


def test_exif_rotation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° on display
    img.save(tmp_path / "rot.jpg", exif=exif.tobytes())
    assert load_rgb(tmp_path / "rot.jpg").size == (20, 40)


def test_corrupt_truncated_and_missing_files_are_named(tmp_path):
    (tmp_path / "junk.jpg").write_bytes(b"not an image at all")
    Image.new("RGB", (64, 64), (9, 9, 9)).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 2])
    for name in ("junk.jpg", "trunc.jpg", "nothere.jpg"):
        with pytest.raises(ImageDecodeError, match=name):
            load_rgb(tmp_path / name)


def test_cache_reuses_and_skips_bad(tmp_path):
    paths = []
    for i in range(3):
        p = tmp_path / f"{i}.png"
        Image.new("RGB", (10, 12), (i * 50, 0, 0)).save(p)
        paths.append(str(p))
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    table = pd.DataFrame({"id": ["a", "b", "c", "bad"], "path": paths + [str(tmp_path / "bad.png")]})
    with pytest.raises(ImageDecodeError, match="bad.png"):
        cache_images(table, 8, tmp_path / "cache")
    c = cache_images(table, 8, tmp_path / "cache", skip_bad=True)
    assert c.ids == ["a", "b", "c"] and c.skipped[0][0] == "bad"
    assert c.array.shape == (3, 8, 8, 3)
    assert c.array[1, 0, 0, 0] == 50
    # the cache holds one file per image content and is reused
    files = sorted((tmp_path / "cache" / "8px").glob("*.npy"))
    assert len(files) == 3
    mtimes = [f.stat().st_mtime_ns for f in files]
    cache_images(table.iloc[:3], 8, tmp_path / "cache")
    assert [f.stat().st_mtime_ns for f in files] == mtimes
