"""fastai's ``aug_transforms`` defaults as a batched, per-image-random GPU/CPU transform.

The paper's code used fastai ``aug_transforms()``: flip (p 0.5), rotate ≤ 10°, zoom ≤ 1.1,
perspective warp 0.2 (each affine part with p 0.75), brightness and contrast 0.2 (each with
p 0.75). Here one 3×3 matrix per image composes flip, rotation, zoom and warp, and one
``grid_sample`` applies them all (reflection padding, as fastai), so transforms cost one
pass over the batch and each image draws its own parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugConfig:
    flip: bool = True
    max_rotate: float = 10.0
    min_zoom: float = 1.0
    max_zoom: float = 1.1
    max_warp: float = 0.2
    max_lighting: float = 0.2
    p_affine: float = 0.75
    p_lighting: float = 0.75


def sample_params(batch: int, cfg: AugConfig, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Per-image parameters; a part not applied to an image gets its identity value."""
    def u(lo, hi):
        return lo + (hi - lo) * torch.rand(batch, generator=gen)

    def on(p):
        return torch.rand(batch, generator=gen) < p

    flip = on(0.5) if cfg.flip else torch.zeros(batch, dtype=torch.bool)
    rot = torch.where(on(cfg.p_affine), u(-cfg.max_rotate, cfg.max_rotate), torch.zeros(batch))
    zoom = torch.where(on(cfg.p_affine), u(cfg.min_zoom, cfg.max_zoom), torch.ones(batch))
    col, row = u(0, 1), u(0, 1)
    do_warp = on(cfg.p_affine)
    wx = torch.where(do_warp, u(-cfg.max_warp, cfg.max_warp), torch.zeros(batch))
    wy = torch.where(do_warp, u(-cfg.max_warp, cfg.max_warp), torch.zeros(batch))
    ml = cfg.max_lighting
    bright = torch.where(on(cfg.p_lighting), u(0.5 * (1 - ml), 0.5 * (1 + ml)), torch.full((batch,), 0.5))
    lo = math.log(1 - ml) if ml < 1 else -1.0
    contrast = torch.where(on(cfg.p_lighting), torch.exp(u(lo, -lo)), torch.ones(batch))
    return {"flip": flip, "rotate": rot, "zoom": zoom, "col": col, "row": row, "warp_x": wx,
            "warp_y": wy, "brightness": bright, "contrast": contrast}


def _matrices(p: dict[str, torch.Tensor]) -> torch.Tensor:
    b = p["rotate"].shape[0]
    a = torch.deg2rad(p["rotate"])
    s = 1.0 / p["zoom"]
    m = torch.zeros(b, 3, 3)
    m[:, 0, 0] = torch.cos(a) * s
    m[:, 0, 1] = -torch.sin(a) * s
    m[:, 1, 0] = torch.sin(a) * s
    m[:, 1, 1] = torch.cos(a) * s
    m[:, 0, 2] = (1 - s) * (2 * p["col"] - 1)
    m[:, 1, 2] = (1 - s) * (2 * p["row"] - 1)
    m[:, 2, 2] = 1
    m[:, 0, :] *= torch.where(p["flip"], -1.0, 1.0)[:, None]
    m[:, 2, 0] = p["warp_x"]
    m[:, 2, 1] = p["warp_y"]
    return m


def apply_aug(x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Apply sampled parameters to a float batch in [0, 1] of shape (B, 3, H, W)."""
    b, _, h, w = x.shape
    ys, xs = torch.linspace(-1, 1, h), torch.linspace(-1, 1, w)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    base = torch.stack([gx, gy, torch.ones_like(gx)], -1).reshape(1, h * w, 3)
    pts = base @ _matrices(params).transpose(1, 2)
    grid = (pts[..., :2] / pts[..., 2:].clamp_min(1e-3)).reshape(b, h, w, 2).to(x.dtype)
    out = F.grid_sample(x, grid.to(x.device), mode="bilinear", padding_mode="reflection", align_corners=True)
    logit = torch.logit(out.clamp(1e-4, 1 - 1e-4))
    c = params["contrast"].to(x.device, x.dtype)[:, None, None, None]
    br = torch.logit(params["brightness"]).to(x.device, x.dtype)[:, None, None, None]
    return torch.sigmoid(logit * c + br)


def augment(x: torch.Tensor, cfg: AugConfig, gen: torch.Generator) -> torch.Tensor:
    return apply_aug(x, sample_params(x.shape[0], cfg, gen))
