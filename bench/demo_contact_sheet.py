"""Render docs/demo_contact_sheet.png: one row of demo images per condition (for the README)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from dermsynth.data.demo import DEMO_CLASSES, render


def contact_sheet(path: str | Path, per_class: int = 8, size: int = 64, seed: int = 0) -> Path:
    """Save a grid (one row per condition) of demo images, for the README."""
    label_w = 190
    sheet = Image.new("RGB", (label_w + per_class * (size + 2), len(DEMO_CLASSES) * (size + 2)), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for c, name in enumerate(DEMO_CLASSES):
        draw.text((4, c * (size + 2) + size // 2 - 6), name, fill="black", font=font)
        for i in range(per_class):
            sheet.paste(Image.fromarray(render(c, i * 3, size, seed)), (label_w + i * (size + 2), c * (size + 2)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


if __name__ == "__main__":
    print(contact_sheet(Path(__file__).resolve().parents[1] / "docs" / "demo_contact_sheet.png"))
