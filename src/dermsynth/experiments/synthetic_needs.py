"""What the cells of a study need from a synthetic store: how many images per reference, and
whether a generator's images keep what an allocation counts them by.

A store is sized to its cells, not to a constant: a cell under a balancing allocation draws
its quotas (train/allocation.py), which are known from the real subset before anything trains,
so generation makes those and nothing more, and the images a store already holds are reused.
"""

from __future__ import annotations

import math

from dermsynth.errors import ConfigError
from dermsynth.experiments.generator_spec import GeneratorSpec
from dermsynth.train.allocation import most_per_reference, needed_per_reference, over_skin_types
from dermsynth.train.spec import RunSpec
from dermsynth.train.training_set import real_subset


def images_per_reference(run: RunSpec) -> int:
    """The most images to generate for one reference of ``run``: its allocation's most, or enough
    that its filter keeps that many."""
    return _before_filter(run, most_per_reference(run))


def _before_filter(run: RunSpec, k: int) -> int:
    return k if run.synthetic_filter == "none" else math.ceil(k / run.filter_keep - 1e-9)


def reference_counts(runs: list[RunSpec], splits: dict, methods: list[str]) -> dict[str, dict[str, int]]:
    """Images each reference needs of each method ({method: {reference id: images}}): the most any
    of ``runs`` that draws on that method takes from it (``methods``: what a run without
    synthetic_methods draws on). A balancing allocation's quotas are known before training
    (train/allocation.py), so only those are made; a ``by_error`` allocation's depend on its
    pilot, so its references get the cap."""
    need: dict[str, dict[str, int]] = {}
    for run in (r for r in runs if r.synthetic_per_real > 0):
        real = real_subset(run, splits[run.split_spec()])
        if run.synthetic_classes is not None:
            real = real[real["label"].isin(run.synthetic_classes)]
        counts = needed_per_reference(run, real).map(lambda q, r=run: _before_filter(r, int(q)))
        for method in run.synthetic_methods or methods:
            mine = need.setdefault(method, {})
            for ref, q in counts.items():
                mine[ref] = max(mine.get(ref, 0), int(q))
    return need


def most_needed(need: dict[str, dict[str, int]]) -> int:
    """The most images any reference needs of any method."""
    return max((n for per_ref in need.values() for n in per_ref.values()), default=0)


def check_skin_type_kept(gen: GeneratorSpec, runs: list[RunSpec]) -> None:
    """A skin-type allocation counts each synthetic image in its reference's group, which is true
    only where the image keeps that skin: inpainting (the reference's skin around the mask), or
    Stable Diffusion with the skin type in the prompt. The built-in model is conditioned on the
    class alone, so its text-to-image and outpainted skin is anyone's; such a cell is refused."""
    for run in runs:
        if not over_skin_types(run.synthetic_allocation):
            continue
        unkept = [m for m in (run.synthetic_methods or gen.methods)
                  if m != "inpaint" and not (gen.backend == "sd" and gen.with_skin_type)]
        if unkept:
            raise ConfigError(
                f"synthetic_allocation={run.synthetic_allocation} counts each synthetic image in its reference's skin-"
                f"type group, but method(s) {unkept} of the {gen.backend} generator do not keep the reference's skin"
                f"{' (the built-in model is conditioned on the class only)' if gen.backend == 'builtin' else ''}; use "
                "synthetic_methods = [\"inpaint\"], or backend = \"sd\" with generator.with_skin_type = true")
