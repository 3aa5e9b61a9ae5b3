"""What a folder of images (one sub-folder per class) holds, before a study spends compute on it:
classes and their sizes, whether the held-out sets fit every class, unreadable files, and
duplicates — exact, near (pHash) and the same image filed under two labels.

Why before: a study on a folder with duplicates trains a generator, generates and checks its
images, and only then fails the leakage audit, because one copy of an image sits in training and
the other in test. ``dermsynth init`` runs this survey and writes a config whose ``cleaning``
makes every duplicate cluster one split group, so copies always land on the same side.

The rule for an image filed under two labels: it stays in both classes (we cannot know which
label is right), its copies share a split group (so neither copy can leak into the other's test
set), and the survey names every such pair so the user can remove the wrong copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dermsynth.data.duplicates import find_duplicates
from dermsynth.data.folder import load_folder
from dermsynth.errors import DataError

# The paper's held-out sets: 40 test and 40 validation images per class.
PAPER_HELD_OUT = 40


@dataclass
class FolderSurvey:
    """The survey of one folder (or CSV) of images."""

    root: str
    per_class: dict[str, int]
    n_test: int
    n_val: int
    pool_min: int  # training-pool images of the smallest class after test and validation
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    exact_pairs: int = 0
    near_pairs: int = 0
    cross_label: list[dict] = field(default_factory=list)  # the same image under two labels
    clustered: int = 0  # images in a duplicate cluster

    @property
    def fits_paper(self) -> bool:
        return self.n_test == PAPER_HELD_OUT and self.n_val == PAPER_HELD_OUT

    def n_real_axis(self) -> list[int]:
        """Training images per class worth comparing: small values, where synthetic data may help,
        up to what the smallest class's pool allows."""
        values = [n for n in (2, 4, 8, 16, 32, 64) if n <= self.pool_min]
        return values or [self.pool_min]


def held_out_sizes(smallest: int) -> tuple[int, int]:
    """The paper's 40 + 40 when the smallest class has room for them and a training pool of at
    least as many; otherwise a fifth of it each (≥ 1), leaving the rest to train on."""
    if smallest >= 3 * PAPER_HELD_OUT:
        return PAPER_HELD_OUT, PAPER_HELD_OUT
    each = max(1, smallest // 5)
    return each, each


def survey_folder(root: str | Path, max_distance: int = 4) -> FolderSurvey:
    """Survey ``root/<class>/<image>``: see the module's docstring. Refuses a class too small to
    hold out one test and one validation image and keep one to train on."""
    table = load_folder(root)
    per_class = {str(k): int(v) for k, v in table["label"].value_counts().sort_index().items()}
    small = {k: v for k, v in per_class.items() if v < 3}
    if small:
        raise DataError(f"{root}: class(es) {', '.join(f'{k!r} ({v} images)' for k, v in small.items())} have fewer "
                        "than 3 images: a study needs 1 test, 1 validation and 1 training image per class at the very "
                        "least; add images or move that folder out")
    n_test, n_val = held_out_sizes(min(per_class.values()))
    rep = find_duplicates(table, max_distance)
    found = rep.summary()
    return FolderSurvey(
        root=str(root), per_class=per_class, n_test=n_test, n_val=n_val,
        pool_min=min(per_class.values()) - n_test - n_val, unreadable=list(rep.unreadable),
        exact_pairs=found["exact_pairs"], near_pairs=found["near_pairs"], cross_label=rep.under_two_labels(),
        clustered=found["images_in_clusters"])


def survey_lines(s: FolderSurvey) -> list[str]:
    """The survey for people: one line per finding, each saying what it means for the study."""
    lines = [f"{s.root}: {sum(s.per_class.values())} images in {len(s.per_class)} classes ("
             + ", ".join(f"{k} {v}" for k, v in s.per_class.items()) + ")"]
    if s.fits_paper:
        lines.append(f"held out per class: {s.n_test} test + {s.n_val} validation, as in the paper; the smallest "
                     f"class keeps {s.pool_min} images to train on")
    else:
        lines.append(f"the smallest class has {min(s.per_class.values())} images: too few for the paper's 40 test + "
                     f"40 validation per class, so the config holds out {s.n_test} + {s.n_val} (accuracies are then "
                     "noisier; add images to the small classes to use the paper's sizes)")
    if s.unreadable:
        lines.append(f"{len(s.unreadable)} unreadable images (a study skips them and says so): "
                     + "; ".join(f"{i} ({why})" for i, why in s.unreadable[:5]))
    if s.exact_pairs or s.near_pairs:
        lines.append(f"duplicates: {s.exact_pairs} exact and {s.near_pairs} near (pHash) pairs, {s.clustered} images "
                     "in clusters; the config's cleaning keeps each cluster on one side of the split")
    else:
        lines.append("no exact or near duplicates found")
    for p in s.cross_label[:10]:
        lines.append(f"the same image under two labels ({p['kind']}): {p['id_a']} ({p['label_a']}) and {p['id_b']} "
                     f"({p['label_b']}); both kept, in one split group; remove the wrong copy")
    if len(s.cross_label) > 10:
        lines.append(f"… and {len(s.cross_label) - 10} more pairs under two labels")
    return lines


def study_config(s: FolderSurvey, name: str) -> str:
    """A commented study config for the folder: real only vs text-to-image and inpainting synthetic
    data at small n_real, the built-in generator, the survey's held-out sizes, cleaning on."""
    root = Path(s.root).resolve()
    return f'''# A study of your images, written by `dermsynth init` — edit freely, then:
#   dermsynth experiment plan {name}.toml       # what it will cost, and which effect its seeds detect
#   dermsynth experiment run {name}.toml        # every stage and run; resumable
#   dermsynth experiment report {name}.toml     # the HTML report (runs/{name}/report.html)
# Question: does synthetic data from the built-in generator help a classifier trained on few real
# images per class? Every field is explained in the docs (`make docs`: Config tables).
name = "{name}"
description = "Real only vs synthetic data on {root.name}"
# 5 seeds per arm; `experiment run --until-decided --max-seeds 10` adds seeds where a comparison is
# undecided (the sequential design keeps the error rates).
seeds = 5

[base]
dataset = "folder"
root = "{root}"
# held out per class ({"the paper's" if s.fits_paper else "smaller than the paper's 40 + 40: your smallest class"})
n_test = {s.n_test}
n_val = {s.n_val}
image_size = 128
backbone = "resnet18"
pretrained = false
max_epochs = 30
patience = 6
transforms = true

# Duplicates (exact and pHash distance ≤ 4) found on every load: each cluster is one split group,
# so copies of an image never sit on both sides of the split.
[base.cleaning]
max_distance = 4

[generator]
backend = "builtin"
methods = ["inpaint", "text-to-image"]
per_image = 2
steps = 10

[generator.builtin]
size = 64
train_steps = 1000

[grid]
n_real = {s.n_real_axis()}
synthetic_per_real = [0, 2]
synthetic_methods = ["inpaint", "text-to-image"]
'''
