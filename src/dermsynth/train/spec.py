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
# The most synthetic images a balancing allocation gives one reference, as a multiple of synthetic_per_real.
ALLOCATION_CAP = 4
DEFAULT_FILTER_KEEP = 0.5


class RunSpec(SplitFields):
    """One run's settings. The split fields are flat (so a TOML grid can sweep ``n_test`` like
    ``lr``); :meth:`split_spec` gathers them into the SplitSpec the data layer takes."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # data and split: the SplitFields, then the training subset

    # Real training images per class, drawn from the training pool by ``seed`` (one seed's subsets are nested:
    # its 16 images are among its 32); ignored with use_all_pool, and a class with fewer pool images is an error.
    n_real: int = Field(16, ge=1)
    use_all_pool: bool = False  # train on the whole training pool (DDI-style), ignoring n_real
    # Per-class exceptions to n_real ({"melanoma": 25}): the named classes get that many real training images,
    # the others n_real; this is how the imbalance study ([imbalance]) makes a class rare.
    class_n_real: dict[str, int] = Field(default_factory=dict)
    # The replicate seed: it draws the real training subset, the synthetic images taken per reference, the
    # classifier's random initial weights, batch order and augmentation, so runs of one cell differ only by it.
    seed: int = role(REPLICATE, 0)
    # synthetic data

    # The synthetic store the cell draws from (a folder written by `dermsynth generator sample`, with store.json and its
    # manifest); needed when synthetic_per_real > 0 and there is no [generator], which otherwise fills it in.
    synthetic_store: str | None = role(INPUT, None)
    # Where the store was when the study first ran, when it has moved since (``synthetic_store``
    # is where it is now). The run id hashes this path in place of ``synthetic_store``, so a study
    # folder moved or copied (scratch → project storage, or named by an absolute path) keeps its
    # run ids: paths are not identity, the store's fingerprint is (experiments/runner.py).
    synthetic_store_id: str | None = role(INPUT, None)
    # The synthetic arm (tagged ARM): a real-only cell has each of these at its default.
    synthetic_per_real: int = role(SETTING, 0, tags=(ARM,), ge=0)
    # The generation methods a cell draws its synthetic images from (text-to-image, inpaint, outpaint,
    # in-then-outpaint; one name or a list, pooled per reference); unset: every method in the store.
    synthetic_methods: list[str] | None = role(SETTING, None, tags=(ARM,))
    # which generator made the store: pretrained ("none") or fine-tuned ("all", "per-class");
    # a grid axis when the experiment compares them (each value has its own store)
    generator_finetune: Literal["none", "all", "per-class"] | None = role(SETTING, None, tags=(ARM,))
    # Only the synthetic images a filter keeps (audits/synthetic_filter.py): the top ``filter_keep``
    # of each reference's images by a real-only classifier's confidence, by similarity to the
    # class's real images, or by distance from every real training image (novelty).
    synthetic_filter: Literal["none", "confidence", "similarity", "novelty"] = role(
        SETTING, "none", tags=(ARM, SINCE_IDS))
    # The share (0 < f ≤ 1) of each reference's images per method that the filter keeps (rounded up, at least
    # one); unset with a filter means 0.5, and without a filter it is always unset. A smaller share keeps only
    # the best-scored images but needs synthetic_per_real / f generated per reference.
    filter_keep: float | None = role(SETTING, None, tags=(ARM, SINCE_IDS), gt=0, le=1)
    # pinned like synthetic_fingerprint: the filtered view's digest
    filter_digest: str | None = role(INPUT, None, tags=(SINCE_IDS,))
    # Where the synthetic images go, for the same budget (synthetic_per_real × the real images): "per_real" (k per
    # real image, the paper's), "balance_classes" (to the smallest classes first, until every class has as many
    # images, then evenly), "balance_skin_types" (the same over the references' skin-type groups), "by_error" (a
    # share of the budget per class proportional to a real-only pilot's validation error on it; the pilot is this
    # run without synthetic data, never sees a test image, and is trained once per seed) or "by_error_skin_types"
    # (the same per skin-type group); a reference gets at most ALLOCATION_CAP × k images.
    synthetic_allocation: Literal["per_real", "balance_classes", "balance_skin_types", "by_error",
                                  "by_error_skin_types"] = role(
        SETTING, "per_real", tags=(ARM, SINCE_IDS))
    # Only these classes' real images get synthetic companions, and an experiment generates only for them
    # (the imbalance study's rare class, say); unset: every class.
    synthetic_classes: list[str] | None = None
    # Real images repeated per class: {"melanoma": 4} puts each real melanoma image in the training set four
    # times in all (synthetic images are not repeated), the imbalance study's duplication arm.
    duplicate_classes: dict[str, int] = Field(default_factory=dict)
    # Every real image repeated this many times: the steps-matched control of k synthetic per
    # real (repeat_real = k + 1 gives as many samples per epoch without new images).
    repeat_real: int = Field(1, ge=1)
    # Pinned inputs: the store's fingerprint and the split's digest. Part of the run id, so a
    # regenerated store or a changed data set (a later download) never reuses an old result.
    synthetic_fingerprint: str | None = role(INPUT, None)
    # Filled in by the run: a hash of which image is in which split (ids, labels, groups); leave it unset in
    # configs, and a planned run whose data has changed since is refused rather than mixed.
    data_digest: str | None = role(INPUT, None)
    # The bytes of the split's images (Split.content_digest). Not part of the run id, so studies
    # made before it keep their ids; a record whose content digest differs from the data as it
    # is now is re-run by `experiment run` and left out of the report (experiments/current_runs.py).
    content_digest: str | None = role(PROVENANCE, None)
    # model and training

    # The classifier: any timm model name (resnet18, efficientnet_b0, convnext_tiny, …; test_resnet is a tiny
    # one for tests); a name timm does not know is an error that lists the nearest names.
    backbone: str = "resnet18"
    # Start from the backbone's pretrained weights (timm's default weights, from the Hugging Face hub) with a new
    # head for these classes; false trains from random initialisation. Weights that cannot be loaded are an error.
    pretrained: bool = False
    # A local weights file (.safetensors, .bin or .pth) or a folder holding one, for machines without hub
    # access; when set, these weights are loaded whatever ``pretrained`` says.
    pretrained_path: str | None = None
    # What trains: "finetune" every layer; "frozen" only the new head and the normalisation layers;
    # "linear-probe" a logistic-regression head on features extracted once (fast triage; the optimiser,
    # epoch, batch and augmentation fields are then unused). The last two are meant for pretrained weights.
    mode: Literal["finetune", "frozen", "linear-probe"] = "finetune"
    # Side in pixels of the classifier's input: every real and synthetic image is resized (shorter side) and
    # centre-cropped to it; larger keeps more lesion detail at more compute (≥ 8, and the backbone must take it).
    image_size: int = Field(64, ge=8)
    # The paper's training augmentation (fastai's aug_transforms: flip, rotation ≤ 10°, zoom ≤ 1.1, perspective
    # warp, brightness and contrast), on training batches only; ``augment``, when set, decides it instead.
    transforms: bool = False
    # The augmentation arm (train/transforms.py): "none", "paper" (= transforms on) or a strong
    # policy on top of the paper's transforms. None: as ``transforms`` says. Set, it decides and
    # ``transforms`` follows it ("paper" ⇔ true), so old configs keep their run ids.
    augment: Literal["none", "paper", "randaugment", "trivialaugment", "augmix", "mixup", "cutmix"] | None = role(
        SETTING, None, tags=(SINCE_IDS,))
    # The most passes over the training set (default 30, as in the paper); early stopping may end training
    # sooner, and train_steps, when set, replaces it.
    max_epochs: int = Field(PAPER_EPOCHS, ge=1)
    # Equal optimisation steps for every arm (overrides max_epochs and early stopping): separates
    # "more data" from "more steps" in comparisons with synthetic data.
    train_steps: int | None = Field(None, ge=1)
    # Epochs without a better validation score (``monitor``) after which training stops early; the best
    # epoch's weights are kept either way. Not used with train_steps.
    patience: int = Field(3, ge=1)
    # The validation score that picks the best epoch (whose weights the run keeps) and drives early stopping:
    # "accuracy" (higher is better) or "loss" (cross-entropy, lower is better; finer-grained on few images).
    monitor: Literal["accuracy", "loss"] = "accuracy"
    # "adamw" (decoupled weight decay) or "adam" (weight decay as an L2 term), both with fastai's betas
    # (0.9, 0.99), or "sgd" with momentum 0.9; it updates only the parameters that ``mode`` trains.
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    # The learning rate (> 0): the constant rate, the cosine schedule's start or the one-cycle peak; lower it
    # when the loss diverges (the run stops and says so).
    lr: float = Field(1e-3, gt=0)
    # Weight decay (≥ 0) handed to the optimiser: decoupled for AdamW, an L2 penalty for Adam and SGD; 0 turns
    # it off.
    weight_decay: float = Field(1e-2, ge=0)
    # The learning rate over training: "constant"; "cosine" (annealed from lr to 0); or "onecycle" (warm-up to
    # lr, then down); those two span max_epochs (or train_steps), so an early stop ends them part-way.
    schedule: Literal["constant", "cosine", "onecycle"] = "constant"
    # Images per optimisation step, or "auto" by training-set size (≥ 5,000 images: 128, ≥ 1,000: 64, ≥ 100:
    # 32, else 8); never more than the training set, and each epoch leaves out its last incomplete batch.
    batch_size: int | Literal["auto"] = "auto"
    # "auto": bf16 autocast where the CPU computes bf16 natively (models/precision_rule.py; recorded)
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    # For imbalanced or binary tasks: weight the loss by inverse class frequency, or draw
    # batches with equal expected counts per class.
    class_weighting: Literal["none", "balanced"] = "none"
    # The training loss: "cross_entropy", or "focal" (Lin et al. 2017: −(1 − p)^γ log p, which gives the images
    # the model already gets right less weight; with class_weighting its α), the imbalance remedy that synthetic
    # data is compared with. Validation (``monitor = "loss"``) always uses cross-entropy.
    loss: Literal["cross_entropy", "focal"] = role(SETTING, "cross_entropy", tags=(SINCE_IDS,))
    # Focal loss's γ (≥ 0; 0 is cross-entropy, 2 the paper's value); unused, and reset, with cross-entropy.
    focal_gamma: float = role(SETTING, 2.0, tags=(SINCE_IDS,), ge=0)
    # The order of each epoch: "uniform" shuffles the training set; "balanced" draws as many images with
    # replacement, weighted so that every class is equally likely.
    sampling: Literal["uniform", "balanced"] = "uniform"
    # Run the network in channels-last memory layout (NHWC), usually faster for convolutions; a speed setting
    # that changes results only by floating-point rounding.
    channels_last: bool = True
    # How images reach the model (no effect on results): streamed from the cache batch by batch
    # (None: when the training set would exceed 1 GB in RAM), with prefetching loader workers.
    stream: bool | None = role(OPERATIONAL, None)
    # Worker processes that prefetch batches when the training set is streamed (``stream``); 0 reads them in
    # the training process, and a training set held in RAM ignores it.
    loader_workers: int = role(OPERATIONAL, 0, ge=0)
    # Torch CPU threads for this run (unset: every core), given back to the process afterwards; lower it when
    # several runs share one machine.
    threads: int | None = role(OPERATIONAL, None)
    # Where the classifier trains: "auto" (CUDA when available, else the CPU) or a torch device such as
    # "cpu", "cuda" or "cuda:1".
    device: str = role(OPERATIONAL, "auto")
    # Folder of decoded, resized images (images/<size>px/, keyed by file content) and image features, shared
    # by runs and rebuilt when deleted; point it at fast local disk.
    cache_dir: str = role(OPERATIONAL, ".dermsynth-cache")
    # The best weights (safetensors) + what they mean, so a run can be evaluated elsewhere,
    # predicted with and exported; over checkpoint_max_mb they are kept in fp16 or not at all.
    save_checkpoint: bool = role(OPERATIONAL, True)
    # A size budget for the saved weights, in MB (2^20 bytes): larger weights are saved in fp16 when that
    # fits, else not at all (the record says why); unset: no budget.
    checkpoint_max_mb: float | None = role(OPERATIONAL, None, gt=0)

    @field_validator("synthetic_methods", mode="before")
    @classmethod
    def _one_method(cls, v):
        return [v] if isinstance(v, str) else v

    @model_validator(mode="before")
    @classmethod
    def _augment_and_filter(cls, data):
        """``augment``, when set, decides ``transforms`` (every arm but "none" includes the paper's
        transforms); a filter gets a fraction (default 0.5), no filter none; γ is kept only with focal
        loss — so equal settings
        give equal run ids however they were written."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("augment") is not None:
            data["transforms"] = data["augment"] != "none"
        if data.get("loss", "cross_entropy") != "focal":  # γ means nothing without focal loss: one run id
            data.pop("focal_gamma", None)
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
