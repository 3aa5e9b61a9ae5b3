"""Stable Diffusion's table (``[generator.sd]`` of an experiment config): which models, at which
resolution. ``formerly``: a field's name in the flat ``[generator]`` spelling of older configs."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from dermsynth.field_roles import SETTING, role


class StableDiffusionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = role(SETTING, None, formerly="model")  # hub id or local pipeline folder
    # inpainting pipeline for the masked methods; unset: ``model``
    inpaint_model: str | None = role(SETTING, None, formerly="inpaint_model")
    resolution: int = role(SETTING, 512, formerly="resolution", ge=8)  # generation (and fine-tuning) resolution
