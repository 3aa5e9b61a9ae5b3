"""The fields that decide a split, with what each means: one model shared by SplitSpec (what the data
layer takes) and the flat RunSpec (so a TOML grid can sweep ``n_test`` like ``lr``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from dermsynth.data.cleaning import CleaningSpec
from dermsynth.field_roles import SETTING, SINCE_IDS, role

CLEANED_BY_DEFAULT = ("folder",)


class SplitFields(BaseModel):
    """The fields that decide a split; shared by SplitSpec and the flat RunSpec."""

    # The data set's loader: "demo" (a procedural nine-class set rendered offline), "fitzpatrick17k", "ddi", or
    # "folder" (your own images, one sub-folder per class under root).
    dataset: str = "demo"
    # Where the data set's files are; needed by every data set but the demo, which renders into
    # .dermsynth-cache/demo when unset.
    root: str | None = None
    # Which classes: unset or "all" every class, "f17k9" the paper's nine Fitzpatrick17k classes, "top-N" the N
    # with most images, or names (a comma-separated string or a list); the demo takes names only, DDI ignores it.
    classes: str | tuple[str, ...] | None = None
    # Fitzpatrick17k's metadata column used as the class: "label" (114 conditions), "nine_partition_label" or
    # "three_partition_label" (benign, malignant, non-neoplastic); other data sets ignore it.
    label_column: str = "label"
    # Images the demo renders per class (demo only); it must cover n_test + n_val + the largest n_real.
    demo_n_per_class: int = Field(200, ge=1)
    # Side in pixels of the demo's rendered images (demo only); the classifier resizes them to image_size.
    demo_size: int = Field(64, ge=8)
    # How often the demo's patients have each Fitzpatrick skin type I–VI (six weights, normalised; demo only).
    # Unset: 18, 25, 20, 16, 12 and 9 %. Fewer of types V–VI makes an under-represented skin-type group, as in
    # Fitzpatrick 17k; each patient keeps its lesions, only its skin changes.
    demo_skin_weights: tuple[float, ...] | None = role(SETTING, None, tags=(SINCE_IDS,))
    # Test images held out per stratum (per class, or per skin-type group with stratify = "skin_group"), taken
    # as whole patient and duplicate groups; more gives tighter accuracy estimates but leaves a smaller pool.
    n_test: int = Field(40, ge=1)
    # Validation images held out per stratum, the same way: they pick the best epoch and stop training early.
    n_val: int = Field(40, ge=1)
    # Seed of the order in which groups are assigned to test and validation: another value gives another split
    # of the same data (the run's ``seed`` then draws the training subset from its pool).
    split_seed: int = 0
    # What the held-out quotas count: "label" (n_test and n_val per class) or "skin_group" (per skin-type group,
    # as for DDI; images without a skin type are then left out).
    stratify: Literal["label", "skin_group"] = "label"
    # Cleaning reaches the split: a CSV with columns id,cluster (as `dermsynth data clean` writes
    # *_clusters.csv) makes each cluster one split group; a file of ids (CSV with an id column,
    # or one id per line) drops those images.
    duplicates_file: str | None = None
    # Images to drop before splitting (a CSV with an id column, or one id per line): mislabelled or unusable
    # images found in review.
    exclude_file: str | None = None
    # Duplicate detection on every load (data/cleaning.py, cached): its clusters are split groups too. On by
    # default for your own images (dataset "folder", a folder or a CSV of paths); `cleaning = false` turns it off.
    cleaning: CleaningSpec | None = role(SETTING, None, tags=(SINCE_IDS,))  # in run ids only when set
    # A synthetic store, or a folder of stores as `data import-synthetic` writes: validation and test images
    # are drawn only among the real images none of its images was made from, and the training pool is its
    # references alone (so every run can add synthetic images to every real one). The conservative choice
    # for released images, whose generators learnt from real images nobody listed: the images they were
    # made from are the likeliest to have been learnt from. Unset, any image may be held out, and the
    # synthetic images of held-out references are excluded from training instead (and counted).
    held_out_avoids_store: str | None = role(SETTING, None, tags=(SINCE_IDS,))

    @model_validator(mode="before")
    @classmethod
    def _cleaning_by_default(cls, data):
        """Your own images have been through nobody's cleaning, and one copy of an image in test and
        another in training inflates accuracy: they are cleaned unless the config says otherwise."""
        if isinstance(data, dict):
            if data.get("cleaning") is False:
                return {**data, "cleaning": None}
            if data.get("dataset") in CLEANED_BY_DEFAULT and "cleaning" not in data:
                return {**data, "cleaning": {}}
        return data

    @field_validator("demo_skin_weights", mode="before")
    @classmethod
    def _six_weights(cls, v):
        if v is None:
            return v
        v = tuple(float(w) for w in v)
        if len(v) != 6 or min(v) < 0 or sum(v) <= 0:
            raise ValueError(f"demo_skin_weights={list(v)}: give six weights ≥ 0 for skin types I–VI, not all 0")
        return v

    @field_validator("classes", mode="before")
    @classmethod
    def _hashable_classes(cls, v):
        return tuple(v) if isinstance(v, list) else v
