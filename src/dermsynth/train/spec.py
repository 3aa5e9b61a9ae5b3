"""RunSpec: every setting of one classifier run, validated on entry.

One flat, typed record means a run can be hashed (its id), stored beside its results,
swept over by the experiment grid, and re-run exactly. Unknown fields are errors that
name the field, so a typo in a config never silently falls back to a default.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from dermsynth.data.splits import SplitFields, SplitSpec
from dermsynth.field_roles import (
    ARM,
    IN_RUN_ID,
    INPUT,
    OPERATIONAL,
    PROVENANCE,
    REPLICATE,
    SETTING,
    SINCE_IDS,
    defaults_of,
    fields_tagged,
    fields_with,
    role,
)

PAPER_EPOCHS = 30
DEFAULT_FILTER_KEEP = 0.5


class RunSpec(SplitFields):
    """One run's settings. The split fields are flat (so a TOML grid can sweep ``n_test`` like
    ``lr``); :meth:`split_spec` gathers them into the SplitSpec the data layer takes."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # data and split: the SplitFields, then the training subset
    n_real: int = Field(16, ge=1)
    use_all_pool: bool = False  # train on the whole training pool (DDI-style), ignoring n_real
    class_n_real: dict[str, int] = Field(default_factory=dict)
    seed: int = role(REPLICATE, 0)
    # synthetic data
    synthetic_store: str | None = role(INPUT, None)
    # Where the store was when the study first ran, when it has moved since (``synthetic_store``
    # is where it is now). The run id hashes this path in place of ``synthetic_store``, so a study
    # folder moved or copied (scratch → project storage, or named by an absolute path) keeps its
    # run ids: paths are not identity, the store's fingerprint is (experiments/runner.py).
    synthetic_store_id: str | None = role(INPUT, None)
    # The synthetic arm (tagged ARM): a real-only cell has each of these at its default.
    synthetic_per_real: int = role(SETTING, 0, tags=(ARM,), ge=0)
    synthetic_methods: list[str] | None = role(SETTING, None, tags=(ARM,))
    # which generator made the store: pretrained ("none") or fine-tuned ("all", "per-class");
    # a grid axis when the experiment compares them (each value has its own store)
    generator_finetune: Literal["none", "all", "per-class"] | None = role(SETTING, None, tags=(ARM,))
    # Only the synthetic images a filter keeps (audits/synthetic_filter.py): the top ``filter_keep``
    # of each reference's images by a real-only classifier's confidence, by similarity to the
    # class's real images, or by distance from every real training image (novelty).
    synthetic_filter: Literal["none", "confidence", "similarity", "novelty"] = role(
        SETTING, "none", tags=(ARM, SINCE_IDS))
    filter_keep: float | None = role(SETTING, None, tags=(ARM, SINCE_IDS), gt=0, le=1)
    # pinned like synthetic_fingerprint: the filtered view's digest
    filter_digest: str | None = role(INPUT, None, tags=(SINCE_IDS,))
    synthetic_classes: list[str] | None = None
    duplicate_classes: dict[str, int] = Field(default_factory=dict)
    # Every real image repeated this many times: the steps-matched control of k synthetic per
    # real (repeat_real = k + 1 gives as many samples per epoch without new images).
    repeat_real: int = Field(1, ge=1)
    # Pinned inputs: the store's fingerprint and the split's digest. Part of the run id, so a
    # regenerated store or a changed data set (a later download) never reuses an old result.
    synthetic_fingerprint: str | None = role(INPUT, None)
    data_digest: str | None = role(INPUT, None)
    # The bytes of the split's images (Split.content_digest). Not part of the run id, so studies
    # made before it keep their ids; a record whose content digest differs from the data as it
    # is now is re-run by `experiment run` and left out of the report (experiments/current_runs.py).
    content_digest: str | None = role(PROVENANCE, None)
    # model and training
    backbone: str = "resnet18"
    pretrained: bool = False
    pretrained_path: str | None = None
    mode: Literal["finetune", "frozen", "linear-probe"] = "finetune"
    image_size: int = Field(64, ge=8)
    transforms: bool = False
    # The augmentation arm (train/transforms.py): "none", "paper" (= transforms on) or a strong
    # policy on top of the paper's transforms. None: as ``transforms`` says. Set, it decides and
    # ``transforms`` follows it ("paper" ⇔ true), so old configs keep their run ids.
    augment: Literal["none", "paper", "randaugment", "trivialaugment", "augmix", "mixup", "cutmix"] | None = role(
        SETTING, None, tags=(SINCE_IDS,))
    max_epochs: int = Field(PAPER_EPOCHS, ge=1)
    # Equal optimisation steps for every arm (overrides max_epochs and early stopping): separates
    # "more data" from "more steps" in comparisons with synthetic data.
    train_steps: int | None = Field(None, ge=1)
    patience: int = Field(3, ge=1)
    monitor: Literal["accuracy", "loss"] = "accuracy"
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-2, ge=0)
    schedule: Literal["constant", "cosine", "onecycle"] = "constant"
    batch_size: int | Literal["auto"] = "auto"
    # "auto": bf16 autocast where the CPU computes bf16 natively (models/precision_rule.py; recorded)
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    # For imbalanced or binary tasks: weight the loss by inverse class frequency, or draw
    # batches with equal expected counts per class.
    class_weighting: Literal["none", "balanced"] = "none"
    sampling: Literal["uniform", "balanced"] = "uniform"
    channels_last: bool = True
    # How images reach the model (no effect on results): streamed from the cache batch by batch
    # (None: when the training set would exceed 1 GB in RAM), with prefetching loader workers.
    stream: bool | None = role(OPERATIONAL, None)
    loader_workers: int = role(OPERATIONAL, 0, ge=0)
    threads: int | None = role(OPERATIONAL, None)
    device: str = role(OPERATIONAL, "auto")
    cache_dir: str = role(OPERATIONAL, ".dermsynth-cache")
    # The best weights (safetensors) + what they mean, so a run can be evaluated elsewhere,
    # predicted with and exported; over checkpoint_max_mb they are kept in fp16 or not at all.
    save_checkpoint: bool = role(OPERATIONAL, True)
    checkpoint_max_mb: float | None = role(OPERATIONAL, None, gt=0)

    @field_validator("synthetic_methods", mode="before")
    @classmethod
    def _one_method(cls, v):
        return [v] if isinstance(v, str) else v

    @model_validator(mode="before")
    @classmethod
    def _augment_and_filter(cls, data):
        """``augment``, when set, decides ``transforms`` (every arm but "none" includes the paper's
        transforms); a filter gets a fraction (default 0.5), no filter none — so equal settings
        give equal run ids however they were written."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("augment") is not None:
            data["transforms"] = data["augment"] != "none"
        if data.get("synthetic_filter", "none") == "none":
            data["filter_keep"] = None
        elif data.get("filter_keep") is None:
            data["filter_keep"] = DEFAULT_FILTER_KEEP
        return data

    def split_spec(self) -> SplitSpec:
        return SplitSpec(**{k: getattr(self, k) for k in SplitSpec.model_fields})

    def augmentation(self) -> str:
        """The augmentation arm this run trains with ("paper" when only ``transforms`` is set)."""
        return self.augment or ("paper" if self.transforms else "none")

    def run_id(self) -> str:
        """Hash of the fields whose declared role is in the id (settings, the seed, pinned inputs;
        not how the run executes: threads, device, cache).

        ``augment`` "none"/"paper" hash as ``transforms`` false/true did, and fields added later
        are left out at their defaults: every run id from before them is unchanged."""
        keep = set(fields_with(type(self), *IN_RUN_ID))  # roles declared on the fields (field_roles.py)
        payload = {k: v for k, v in self.model_dump().items() if k in keep}
        if payload["synthetic_store_id"] is not None:
            payload["synthetic_store"] = payload["synthetic_store_id"]
        del payload["synthetic_store_id"]
        if payload["augment"] in ("none", "paper"):
            payload["augment"] = None
        for k, default in defaults_of(type(self), fields_tagged(type(self), SINCE_IDS)).items():
            if payload[k] == default:
                del payload[k]
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def real_only_fields() -> dict:
    """Every synthetic-arm field (declared ARM) at its default: what a real-only cell, the
    steps-matched control and the filter's classifier share."""
    return defaults_of(RunSpec, fields_tagged(RunSpec, ARM))


def auto_batch_size(n_train: int) -> int:
    """The authors' tiers: ≥ 5,000 images → 128, ≥ 1,000 → 64, ≥ 100 → 32, else 8."""
    if n_train >= 5000:
        return 128
    if n_train >= 1000:
        return 64
    if n_train >= 100:
        return 32
    return 8
