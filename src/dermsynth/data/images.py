"""Robust image decoding: every colour mode and orientation a clinical archive throws at us.

Real collections contain CMYK JPEGs, palette GIF-like PNGs, RGBA screenshots, 16-bit
scans and phone photos rotated by EXIF; a classifier must see all of them as upright RGB.
A truncated or corrupt file raises :class:`ImageDecodeError` naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dermsynth.errors import ImageDecodeError


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB; transparency is composited onto white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        hi = arr.max() if arr.size else 1.0
        scale = 255.0 / (65535.0 if hi > 255 else max(hi, 1.0))
        img = Image.fromarray(np.clip(arr * scale, 0, 255).astype(np.uint8), mode="L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo if hi > lo else 1.0) * 255.0
        img = Image.fromarray(arr.astype(np.uint8), mode="L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB") if img.mode != "RGB" else img


def load_rgb(path: str | Path) -> Image.Image:
    """Open an image as upright 8-bit RGB, or raise ImageDecodeError naming the file."""
    path = Path(path)
    if not path.exists():
        raise ImageDecodeError(str(path), "file not found")
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img) or img
            return _to_rgb(img)
    except UnidentifiedImageError:
        raise ImageDecodeError(str(path), "not a recognised image format") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(str(path), f"corrupt or truncated ({exc})") from None


def resize_center_crop(img: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to ``size`` and crop the centre square (fastai's Resize crop)."""
    return ImageOps.fit(img, (size, size), method=Image.Resampling.BICUBIC, centering=(0.5, 0.5))


def load_array(path: str | Path, size: int) -> np.ndarray:
    """Decode, orient, convert and resize to a ``(size, size, 3)`` uint8 array."""
    return np.asarray(resize_center_crop(load_rgb(path), size), dtype=np.uint8)
