"""The built-in generator's settings: architecture, training, fine-tuning and sampling, as one
typed table (``[generator.builtin]`` of an experiment config, handed to training as is).

Each field declares which cached stage it belongs to (field_roles.py tags): the built-in
model's training (``builtin-training``) or its per-class continuation (``builtin-finetune``);
a cached stage made with other values of its fields is refused, never silently reused. A
field's ``formerly`` is its name in the flat ``[generator]`` spelling of older configs.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

from dermsynth.errors import ConfigError
from dermsynth.field_roles import OPERATIONAL, SETTING, role

BUILTIN_TRAINING, BUILTIN_FINETUNE = "builtin-training", "builtin-finetune"
BOTH = (BUILTIN_TRAINING, BUILTIN_FINETUNE)


class BuiltinConfig(BaseModel):
    """Architecture (for a new model), training, fine-tuning and sampling settings."""

    model_config = ConfigDict(extra="forbid")

    # A trained built-in model folder to sample from; unset, the experiment trains one.
    model: str | None = role(SETTING, None, formerly="model")
    # Set from the data when a model is trained (the classes of its training images).
    classes: list[str] = role(OPERATIONAL, default_factory=list)
    # Side in pixels at which the generator trains and draws (real images resized and centre-cropped to it):
    # ≥ 8 and a multiple of 2 ** (len(block_out_channels) − 1); larger shows more detail at much more compute.
    size: int = role(SETTING, 32, tags=(BUILTIN_TRAINING,), formerly="size")
    # Channels of the UNet's resolution levels, one entry per level: (32, 64, 64) is what
    # bench/generator_quality.py chose and every CPU preset sets; a config in the flat [generator]
    # spelling that leaves it out gets that spelling's default, (16, 32, 64).
    block_out_channels: tuple[int, ...] = role(SETTING, (32, 64, 64), tags=(BUILTIN_TRAINING,),
                                               formerly="block_out_channels", formerly_default=[16, 32, 64])
    # ResNet layers in each resolution level of the UNet (≥ 1): more capacity, at more compute per step.
    layers_per_block: int = role(SETTING, 1, tags=(BUILTIN_TRAINING,), ge=1)
    # Channels of the learned, zero-initialised per-class map fed to the UNet beside the noisy image (≥ 1): it
    # carries class-typical layout and colour from the first steps, when the class embedding is still ignored.
    class_map_channels: int = role(SETTING, 4, tags=(BUILTIN_TRAINING,), ge=1)
    # How the time + class embedding enters each ResNet block: "scale_shift" (FiLM: it scales and shifts the
    # normalised features) or "default" (it is added to them).
    resnet_time_scale_shift: Literal["scale_shift", "default"] = role(SETTING, "scale_shift", tags=(BUILTIN_TRAINING,))
    # v-prediction: after a few CPU minutes of training on the demo data (bench/generator_quality.py;
    # docs/benchmarks.md) its text-to-image samples are recognised far more often than x0's or epsilon's,
    # with a much lower FID in a real-only classifier's feature space; epsilon leaves noise when training
    # is this short, and x0 averages into blurry blobs.
    prediction_type: Literal["v_prediction", "sample", "epsilon"] = role(
        SETTING, "v_prediction", tags=(BUILTIN_TRAINING,), formerly="prediction_type")
    # AdamW learning rate of the generator's training and fine-tuning (> 0), reached after a 50-step linear
    # warm-up; lower it when the loss becomes non-finite.
    lr: float = role(SETTING, 2e-3, tags=BOTH, gt=0)
    batch_size: int = role(SETTING, 32, tags=BOTH, ge=1)  # training batch (generation's is [generator] batch_size)
    cond_dropout: float = role(SETTING, 0.1, tags=BOTH, ge=0, lt=1)  # the null class, for classifier-free guidance
    # Decay of the exponential moving average of the weights (the average is what is saved and sampled from),
    # in (0, 1) and ramped up over the first steps; closer to 1 averages over more steps (about 1 / (1 − decay)),
    # which suits longer training.
    ema_decay: float = role(SETTING, 0.995, tags=BOTH, gt=0, lt=1)
    # Side of the centre-square training mask (and of its complement, for outpaint) as a fraction of the image
    # side, in (0, 1); generation's inpaint and outpaint masks stay at 0.5 whatever it says.
    mask_fraction: float = role(SETTING, 0.5, tags=(BUILTIN_TRAINING,), gt=0, lt=1)
    # Optimisation steps (batch_size images each) of the generator's training from scratch: more steps give
    # better samples at proportionally more compute. Unused when ``model`` is given.
    train_steps: int = role(SETTING, 600, tags=(BUILTIN_TRAINING,), formerly="train_steps", ge=1)
    # A wall-clock cap on that training, in minutes (unset: none): it stops at train_steps or here, whichever
    # comes first, so with a cap the model depends on the machine's speed.
    train_minutes: float | None = role(SETTING, None, tags=(BUILTIN_TRAINING,), formerly="train_minutes", gt=0)
    # Steps of per-class (or all-class) continued training; unset: 200.
    finetune_steps: int | None = role(SETTING, None, tags=(BUILTIN_FINETUNE,), formerly="finetune_steps", ge=1)
    scheduler: Literal["ddim", "dpm"] = role(SETTING, "ddim", formerly="scheduler")  # the sampler
    # The sampler's arithmetic: "auto" takes bf16 autocast where the CPU computes bf16 natively
    # (models/precision_rule.py), which samples clearly faster there (docs/benchmarks.md). Not in the
    # store's identity: the choice is the machine's, so it is carried where it acts — in every image's
    # fingerprint (and so in the store digest that run ids pin); images made the other way are made
    # again, not mixed.
    sampling_precision: Literal["fp32", "bf16", "auto"] = role(OPERATIONAL, "fp32")
    # Training's arithmetic (and fine-tuning's): "bf16" is autocast with attention kept in fp32,
    # "auto" takes it where the CPU computes bf16 natively, which trains clearly faster there
    # (docs/benchmarks.md). Not in the store's identity (the choice is the machine's): the model's
    # training.json records it and the images carry the weights' fingerprint. In the training
    # stages' keys, so a cached model made with another setting is not reused.
    training_precision: Literal["fp32", "bf16", "auto"] = role(OPERATIONAL, "fp32", tags=BOTH)

    @model_validator(mode="after")
    def _halvable_size(self) -> BuiltinConfig:
        # Each level below the first halves the image: a size the UNet cannot halve that often
        # fails deep in torch with a tensor-size mismatch, so say it here, naming the field.
        factor = 2 ** (len(self.block_out_channels) - 1)
        if self.size < 8 or self.size % factor:
            ok = [s for s in (16, 32, 48, 64) if s % factor == 0]
            raise ConfigError(f"size={self.size}: the built-in generator needs a multiple of {factor} (≥ 8) with "
                              f"{len(self.block_out_channels)} levels, e.g. {', '.join(map(str, ok))}")
        return self

    def build(self):
        """A new ConditionedUNet of this architecture (random weights)."""
        from dermsynth.generate.builtin.model import ConditionedUNet

        return ConditionedUNet(classes=sorted(self.classes), size=self.size,
                               block_out_channels=tuple(self.block_out_channels),
                               layers_per_block=self.layers_per_block, class_map_channels=self.class_map_channels,
                               resnet_time_scale_shift=self.resnet_time_scale_shift,
                               prediction_type=self.prediction_type, mask_fraction=self.mask_fraction)
