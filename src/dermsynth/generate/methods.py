"""The four generation methods and their masks (1 = pixel to generate, 0 = keep).

- text-to-image: every pixel generated from the prompt alone;
- inpaint: a centred square, side = half the image side (a quarter of the area);
- outpaint: the exact complement of the inpaint mask;
- in-then-outpaint: inpaint, then outpaint that result — every pixel replaced, but the
  composition still follows the reference.
"""

from __future__ import annotations

import numpy as np

from dermsynth.errors import ConfigError

METHODS = ("text-to-image", "inpaint", "outpaint", "in-then-outpaint")
DEFAULT_PROMPT = "An image of {label}, a skin disease"
SKIN_TYPE_SUFFIX = ", Fitzpatrick skin type {skin_type}"


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ConfigError(f"method={method!r} is unknown; choose one of {', '.join(METHODS)}")
    return method


def centre_square_mask(size: int, fraction: float = 0.5, feather: float = 0.0) -> np.ndarray:
    """Float mask (size, size): 1 inside a centred square of side ``fraction`` × size.

    ``feather`` (fraction of the side) softens the border linearly, for seamless blending.
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"mask fraction={fraction} must lie strictly between 0 and 1")
    side = fraction * size
    lo, hi = (size - side) / 2, (size + side) / 2
    c = np.arange(size) + 0.5
    if feather > 0:
        f = feather * size
        inside = np.clip(np.minimum(c - lo, hi - c) / f + 0.5, 0, 1)
    else:
        inside = ((c >= lo) & (c < hi)).astype(np.float32)
    return np.outer(inside, inside).astype(np.float32)


def method_masks(method: str, size: int, fraction: float = 0.5, feather: float = 0.0) -> list[np.ndarray]:
    """The mask of each pass of a method (in-then-outpaint has two passes)."""
    check_method(method)
    inner = centre_square_mask(size, fraction, feather)
    if method == "text-to-image":
        return [np.ones((size, size), np.float32)]
    if method == "inpaint":
        return [inner]
    if method == "outpaint":
        return [1.0 - inner]
    return [inner, 1.0 - inner]


def prompt_for(label: str, skin_type=None, template: str = DEFAULT_PROMPT, with_skin_type: bool = False) -> str:
    text = template.format(label=label)
    if with_skin_type and skin_type is not None and not (isinstance(skin_type, float) and np.isnan(skin_type)):
        text += SKIN_TYPE_SUFFIX.format(skin_type=int(skin_type))
    return text


def prompt_name(row) -> str:
    """What a prompt calls an image's condition: the loader's ``prompt_label`` where it names the
    disease apart from the label (DDI: "melanoma", not "malignant"), else the label."""
    named = row.get("prompt_label")
    return named if isinstance(named, str) and named else str(row["label"])


def row_prompt(row, template: str = DEFAULT_PROMPT, with_skin_type: bool = False) -> str:
    """The one prompt rule for an image row (a dict or a pandas row), shared by DreamBooth's
    fine-tuning and by generation: a model is asked for exactly what it was taught."""
    return prompt_for(prompt_name(row), row.get("skin_type"), template=template, with_skin_type=with_skin_type)


def method_params(method: str, steps: int, guidance: float, strength_inpaint: float, strength_outpaint: float,
                  mask_fraction: float = 0.5) -> dict:
    """The sampling settings recorded in the manifest for one image of ``method``."""
    strength = {"inpaint": strength_inpaint, "outpaint": strength_outpaint, "text-to-image": 1.0}.get(
        method, strength_inpaint)
    mask = "none" if method == "text-to-image" else f"centre-square-{mask_fraction}"
    return {"steps": steps, "guidance": guidance, "strength": strength, "mask": mask}
