"""The built-in generator in bf16 where the CPU computes bf16 natively: sampling and training.

Sampling: on a CPU that computes bf16 natively, the UNet's forward pass at the quickstart's size
is clearly faster under bf16 autocast than in fp32. Training: under plain bf16 autocast a step
gains almost nothing, because the CPU's flash-attention backward is much slower in bf16 than in
fp32 and eats what the convolutions gain; with the attention kept in fp32 inside the autocast
region the step gains about as much as sampling does (docs/benchmarks.md has the timings): that is
what "bf16" training means here. CPUs without native bf16 run it several times slower. "auto"
follows the rule of :mod:`dermsynth.models.precision_rule` (the CPU's flags, not a timing, so a
study re-run on the same machine computes the same way), and the choice is recorded: sampling's
in every image's fingerprint and manifest row, training's in the model's training.json (and so
in its weights' fingerprint that the store carries).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from dermsynth.models.precision_rule import auto_precision


class _FP32AttnProcessor(AttnProcessor2_0):
    """diffusers' scaled-dot-product attention, computed in fp32 inside a bf16 autocast region."""

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states=None,
                 attention_mask=None, temb=None) -> torch.Tensor:
        with torch.autocast(hidden_states.device.type, enabled=False):
            return super().__call__(attn, hidden_states.float(),
                                    None if encoder_hidden_states is None else encoder_hidden_states.float(),
                                    attention_mask, None if temb is None else temb.float())


@contextlib.contextmanager
def training_arithmetic(unet: torch.nn.Module, precision: str) -> Iterator[None]:
    """Where a model trains in ``precision`` (around the whole loop): for "bf16", its attention
    layers compute in fp32 (above) until the block ends, when the model's own processors are put
    back (they are not saved with it). Each step's forward runs under ``step_autocast``."""
    if precision != "bf16":
        yield
        return
    layers = [m for m in unet.modules() if isinstance(m, Attention)]
    before = [m.processor for m in layers]
    for m in layers:
        m.set_processor(_FP32AttnProcessor())
    try:
        yield
    finally:
        for m, processor in zip(layers, before, strict=True):
            m.set_processor(processor)


def step_autocast(precision: str) -> torch.autocast:
    """A training step's forward pass: bf16 autocast for "bf16" (inside ``training_arithmetic``)."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


def _choose(asked: str) -> tuple[str, str]:
    if asked != "auto":
        return asked, "set in the config"
    return auto_precision()


def choose_sampling_precision(unet, asked: str = "auto") -> tuple[str, str]:
    """("fp32" | "bf16", why) for sampling ``unet`` (the built-in model samples on the CPU):
    ``asked`` unless "auto". Machines of other kinds (Ray workers) can resolve "auto" differently;
    each image's fingerprint says which it was, so such images are made again rather than mixed
    under one fingerprint."""
    return _choose(asked)


def choose_training_precision(unet, asked: str = "auto", batch: int = 32) -> tuple[str, str]:
    """("fp32" | "bf16", why) for training ``unet`` at ``batch``: ``asked`` unless "auto"."""
    return _choose(asked)
