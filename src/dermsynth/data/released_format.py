"""The authors' released synthetic images, as their WebDataset samples describe them.

Two releases share one sample format — a 512 × 512 ``png`` and a ``json`` with ``name``,
``md5hash`` (the Fitzpatrick 17k image it was made from), ``label``, ``method``, ``submethod``,
``generation_num`` and ``tag`` — in two layouts: ``tbuckley/synthetic-derm-1M``
(``shard-{label}-{method}-{submethod}-{index}.tar``, methods written with underscores,
``finetune_inpaint``) and ``tbuckley/synthetic-derm-1M-train`` (``shard-{method}-{index}.tar``,
shuffled, methods with hyphens, ``finetune-inpaint``). dermsynth's own export (a ``json`` with
``synth_id`` and ``fingerprint``) is the third layout. This module says what one sample means;
:mod:`dermsynth.data.synthetic_import` streams shards through it.

``label == "all"`` marks an image of a model trained on every class: its class is the
reference's, found by joining ``md5hash`` to the data set's table. A labelled sample's class is
checked against the reference's too, so a sample can never carry a class its reference lacks.
"""

from __future__ import annotations

from dataclasses import dataclass

# How the authors made the released images (their paper and repository): recorded with every
# imported image, since no dermsynth model fingerprint can describe them.
RELEASED_SETTINGS = {
    "text-to-image": {"model": "stabilityai/stable-diffusion-2-1-base", "scheduler": "DPM-Solver", "guidance": 3.0,
                      "steps": 50, "strength": None},
    "inpaint": {"model": "runwayml/stable-diffusion-inpainting", "scheduler": "DPM-Solver", "guidance": 3.0,
                "steps": 50, "strength": 0.97},
    "in-then-outpaint": {"model": "runwayml/stable-diffusion-inpainting", "scheduler": "DPM-Solver",
                         "guidance": 3.0, "steps": 50, "strength": 0.97, "outpaint_strength": 0.95},
}
RELEASED_PROMPT = "An image of {}, a skin disease"
# The released `submethod` → dermsynth's method.
SUBMETHODS = {"text-to-image": "text-to-image", "inpaint": "inpaint", "inpaint-outpaint": "in-then-outpaint"}
# The released `method`'s first word → the generator variant.
VARIANTS = {"finetune": "finetune", "pretrained": "pretrained"}
RELEASED_KEYS = ("md5hash", "label", "method", "submethod")


class SampleSkip(Exception):
    """A sample that cannot be imported; the message is the reason counted in the summary."""


@dataclass(frozen=True)
class ReleasedSample:
    """One released image's meaning in dermsynth's terms."""

    ref_id: str
    label: str | None  # None for "all": the reference's class decides
    method: str  # dermsynth's: text-to-image, inpaint, in-then-outpaint
    variant: str  # finetune or pretrained
    generation_num: str | None
    tag: str | None
    name: str | None


def is_released(meta: dict) -> bool:
    return all(k in meta for k in RELEASED_KEYS) and "synth_id" not in meta


def is_own_export(meta: dict) -> bool:
    return all(k in meta for k in ("synth_id", "ref_id", "label", "method", "fingerprint"))


def normalise_label(label: str) -> str:
    """The releases write classes with hyphens (``lichen-planus``); Fitzpatrick 17k with spaces."""
    return str(label).replace("-", " ").replace("_", " ").strip()


def parse_released(meta: dict) -> ReleasedSample:
    """A released sample's json → :class:`ReleasedSample`; a :class:`SampleSkip` names what is off."""
    missing = [k for k in RELEASED_KEYS if not meta.get(k)]
    if missing:
        raise SampleSkip(f"json lacks {', '.join(missing)}")
    words = str(meta["method"]).replace("_", "-").split("-", 1)
    variant = VARIANTS.get(words[0])
    submethod = str(meta["submethod"]).replace("_", "-")
    if variant is None:
        raise SampleSkip(f"unknown method {meta['method']!r}")
    if submethod not in SUBMETHODS:
        raise SampleSkip(f"unknown submethod {meta['submethod']!r}")
    label = None if str(meta["label"]) == "all" else normalise_label(meta["label"])
    generation = meta.get("generation_num")
    return ReleasedSample(ref_id=str(meta["md5hash"]), label=label, method=SUBMETHODS[submethod], variant=variant,
                          generation_num=None if generation is None else str(generation),
                          tag=None if meta.get("tag") is None else str(meta["tag"]),
                          name=None if meta.get("name") is None else str(meta["name"]))


def released_key_and_json(md5: str, label: str, method: str, submethod: str, generation: int = 0,
                          tag: str = "generations1") -> tuple[str, dict]:
    """A sample's key and json as the authors' copy script builds them (``method`` spelled as the
    json should carry it: ``finetune_inpaint`` in the 1M set, ``finetune-inpaint`` in the train set);
    for the stand-ins and tests that must be in exactly the released format."""
    prefix = f"{label}_{method}_{submethod}".replace("-", "_")
    key = f"{prefix}_{tag}_{generation:02d}_{md5}"
    return key, {"name": f"{key}.png", "md5hash": md5, "label": label, "method": method, "submethod": submethod,
                 "generation_num": f"{generation:02d}", "tag": tag}
