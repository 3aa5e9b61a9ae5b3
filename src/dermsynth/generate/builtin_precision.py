"""The built-in generator in bf16 where a quick probe says it is faster: sampling and training.

Sampling, measured on the 2-core AMD EPYC (AVX512-BF16) at the quickstart's size: a batch-64
forward pass of the (32, 64, 64) UNet took 136 ms under bf16 autocast and 198 ms in fp32 (1.45×).
Training: a batch-32 step took 274 ms in fp32 and 259 ms under plain bf16 autocast (1.06×), because
the CPU's flash-attention backward runs 6.6× slower in bf16 than in fp32 (754 vs 114 ms per 10
steps, torch 2.14 profiler) and eats what the convolutions gain (backward 1.5×, forward 1.7×).
With the attention kept in fp32 inside the autocast region the step took 192 ms (1.43×): that is
what "bf16" training means here. Other CPUs run bf16 convolutions several times slower, so the
choice is the machine's, made by timing the model itself (once per process and architecture)
and recorded: sampling's in every image's fingerprint and manifest row, training's in the
model's training.json (and so in its weights' fingerprint that the store carries).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from dermsynth.models.bf16_probe import MIN_SPEEDUP, best_seconds, faster_precision

PROBE_BATCH = 64


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


def _inputs(unet, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    size = unet.config.size
    gen = torch.Generator().manual_seed(0)  # the probe draws nothing from the global generator
    x = torch.randn(batch, 7, size, size, generator=gen)  # noisy image ⊕ mask ⊕ masked image
    t = torch.randint(0, unet.config.train_timesteps, (batch,), generator=gen)
    return x, t, torch.zeros(batch, dtype=torch.long)


def _seconds_per_forward(unet, batch: int, bf16: bool, repeats: int = 3) -> float:
    x, t, y = _inputs(unet, batch)

    def forward() -> None:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            unet(x, t, class_labels=y)

    return best_seconds(forward, repeats)


def _seconds_per_training_step(unet, batch: int, bf16: bool, repeats: int = 3) -> float:
    x, t, y = _inputs(unet, batch)
    model = copy.deepcopy(unet)  # the probe leaves no trace in the weights being trained
    model.train()
    precision = "bf16" if bf16 else "fp32"

    def step() -> None:
        with step_autocast(precision):
            loss = model(x, t, class_labels=y).float().square().mean()
        model.zero_grad(set_to_none=True)
        loss.backward()

    with training_arithmetic(model, precision):
        return best_seconds(step, repeats)


_CHOSEN: dict[tuple, tuple[str, str]] = {}  # per process: every class's generation task loads the model anew


def _choose(unet, asked: str, what: str, batch: int, timer) -> tuple[str, str]:
    if asked != "auto":
        return asked, "set in the config"
    key = (what, batch, torch.get_num_threads(), unet.config.size, tuple(unet.config.block_out_channels),
           len(unet.config.classes), torch.__version__)
    if key not in _CHOSEN:
        with torch.random.fork_rng(devices=[]):
            fp32, bf16 = timer(unet, batch, False), timer(unet, batch, True)
        why = (f"probe ({torch.get_num_threads()} threads, batch {batch}): {1000 * fp32:.0f} ms fp32, "
               f"{1000 * bf16:.0f} ms bf16 per {what} ({fp32 / bf16:.2f}×; bf16 needs ≥ {MIN_SPEEDUP}×)")
        _CHOSEN[key] = faster_precision(fp32, bf16), why
    return _CHOSEN[key]


def choose_sampling_precision(unet, asked: str = "auto") -> tuple[str, str]:
    """("fp32" | "bf16", why) for sampling ``unet`` (the built-in model samples on the CPU):
    ``asked`` unless "auto"; "auto" probes, once per process and architecture. Near the threshold
    two processes (a resumed run, Ray workers) can choose differently; each image's fingerprint
    says which it was, so such images are made again rather than mixed under one fingerprint."""
    return _choose(unet, asked, "forward", PROBE_BATCH, _seconds_per_forward)


def choose_training_precision(unet, asked: str = "auto", batch: int = 32) -> tuple[str, str]:
    """("fp32" | "bf16", why) for training ``unet`` at ``batch``: ``asked`` unless "auto", which
    times a few training steps (forward and backward) of a copy of the model each way."""
    return _choose(unet, asked, "training step", batch, _seconds_per_training_step)
