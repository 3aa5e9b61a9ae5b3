"""Sampling the built-in generator: one denoising pass, and the four methods built on it."""

from __future__ import annotations

import numpy as np
import torch

from dermsynth.errors import ConfigError, DataError
from dermsynth.generate.builtin.model import BuiltinModel, make_scheduler
from dermsynth.generate.methods import method_masks

# A masked pass starts from the reference noised to the first timestep it denoises. Above this
# share of the reference's amplitude (√ᾱ at that timestep) the sampler only retouches the
# reference: at 2 steps and strength 0.97 the pass starts at timestep 0, i.e. from the
# reference itself, and the "synthetic" image is a copy (hardly a grey level changed on average).
MAX_REFERENCE_SHARE = 0.75


def reference_share(model: BuiltinModel, steps: int, strength: float, scheduler: str = "ddim") -> float:
    """√ᾱ at the first denoised timestep of a pass with ``strength``: 0 = pure noise, 1 = the reference."""
    if strength >= 1.0:
        return 0.0
    sch = make_scheduler(model.unet, scheduler)
    sch.set_timesteps(steps)
    init = min(int(steps * strength), steps)
    timesteps = sch.timesteps[(steps - init) * sch.order:]
    return 1.0 if len(timesteps) == 0 else float(sch.alphas_cumprod[int(timesteps[0])]) ** 0.5


def masked_copy_problem(model: BuiltinModel, method: str, steps: int, strength_inpaint: float,
                        strength_outpaint: float, scheduler: str = "ddim") -> str | None:
    """Why these settings cannot change a masked method's region (None when they can)."""
    if method == "text-to-image":
        return None
    strengths = {"inpaint": [strength_inpaint], "outpaint": [strength_outpaint]}.get(
        method, [strength_inpaint, strength_outpaint])
    share = max(reference_share(model, steps, s, scheduler) for s in strengths)
    if share <= MAX_REFERENCE_SHARE:
        return None
    enough = next((n for n in range(steps + 1, 200) if max(
        reference_share(model, n, s, scheduler) for s in strengths) <= MAX_REFERENCE_SHARE), None)
    return (f"{method} with {steps} sampler steps at strength {'/'.join(map(str, strengths))} starts from "
            f"{100 * share:.0f} % of the reference image: the masked region stays (nearly) a copy of the real "
            f"image" + (f"; use at least {enough} steps (--steps)" if enough else "; raise the strength"))


def _to_model_range(refs: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(refs)).permute(0, 3, 1, 2).float() / 127.5 - 1


@torch.no_grad()
def sample(model: BuiltinModel, labels: list[str], seeds: list[int], refs: np.ndarray | None = None,
           mask: np.ndarray | None = None, steps: int = 25, guidance: float = 3.0, strength: float = 1.0,
           scheduler: str = "ddim", bf16: bool = False) -> np.ndarray:
    """One denoising pass for a batch; returns uint8 (B, S, S, 3).

    ``mask`` (S, S): 1 = generate. ``strength`` < 1 starts from the reference noised to that
    level (diffusers' semantics); kept pixels are pasted back from the reference. ``bf16``: the
    UNet runs under bf16 autocast (builtin/precision.py decides where that is faster); the
    scheduler's arithmetic stays fp32.
    """
    if not 0.0 < strength <= 1.0:
        raise ConfigError(f"strength={strength} must lie in (0, 1]")
    unet, s, b = model.unet, model.cfg.size, len(labels)
    y = unet.class_index(labels)
    m = torch.ones(b, 1, s, s) if mask is None else torch.from_numpy(mask).float().expand(b, 1, s, s)
    ref = torch.zeros(b, 3, s, s) if refs is None else _to_model_range(refs)
    sch = make_scheduler(unet, scheduler)
    sch.set_timesteps(steps)
    init = min(int(steps * strength), steps)
    timesteps = sch.timesteps[(steps - init) * sch.order:]
    noise = torch.stack([torch.randn(3, s, s, generator=torch.Generator().manual_seed(int(sd))) for sd in seeds])
    x = sch.add_noise(ref, noise, timesteps[:1].repeat(b)) if strength < 1.0 else noise * sch.init_noise_sigma
    y_null = torch.full_like(y, len(model.cfg.classes))
    cond_img = ref * (1 - m)
    for t in timesteps:
        inp = torch.cat([x, m, cond_img], 1)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            if guidance != 1.0:
                out = unet(torch.cat([inp, inp]), t, class_labels=torch.cat([y, y_null]))
            else:
                out = unet(inp, t, class_labels=y)
        out = out.float()
        if guidance != 1.0:
            pred_c, pred_u = out.chunk(2)
            pred = pred_u + guidance * (pred_c - pred_u)
        else:
            pred = out
        x = sch.step(pred, t, x).prev_sample
    x = x.clamp(-1, 1) * m + ref * (1 - m)
    return ((x + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


def generate_method(model: BuiltinModel, method: str, labels: list[str], seeds: list[int],
                    refs: np.ndarray | None, steps: int = 25, guidance: float = 3.0,
                    strength_inpaint: float = 0.97, strength_outpaint: float = 0.95,
                    mask_fraction: float = 0.5, feather: float = 0.0, scheduler: str = "ddim",
                    bf16: bool = False) -> np.ndarray:
    """Apply one of the four methods; in-then-outpaint chains two passes."""
    masks = method_masks(method, model.cfg.size, mask_fraction, feather)
    if method == "text-to-image":
        return sample(model, labels, seeds, None, None, steps, guidance, 1.0, scheduler, bf16)
    if refs is None:
        raise DataError(f"method {method!r} needs reference images")
    cur = refs
    for i, m in enumerate(masks):
        strength = strength_outpaint if (method == "outpaint" or i == 1) else strength_inpaint
        cur = sample(model, labels, [sd + 7919 * i for sd in seeds], cur, m, steps, guidance, strength, scheduler,
                     bf16)
    return cur
