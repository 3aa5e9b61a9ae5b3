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


# --- Augmentation arms: the study factor ``augment`` -------------------------------------------
#
# Why: "would strong augmentation have done as well as synthetic data?" needs the usual strong
# policies as arms of the same grid. Each strong arm is the paper's transforms plus one policy
# from torchvision's v2 transforms at its published default magnitude, so "none" ⊂ "paper" ⊂
# "paper + policy" and a strong arm differs from "paper" by that policy alone.

AUGMENTATIONS = ("none", "paper", "randaugment", "trivialaugment", "augmix", "mixup", "cutmix")

# The magnitudes used, recorded in every run's record. RandAugment: N = 2 ops at M = 9 of 31 bins
# (Cubuk et al. 2020, torchvision's defaults); TrivialAugmentWide: one op, magnitude uniform over
# 31 bins (Müller & Hutter 2021); AugMix: severity 3, width 3, random depth, Dirichlet/Beta α = 1
# (Hendrycks et al. 2020); MixUp α = 0.2 (Zhang et al. 2018 on ImageNet; torchvision's reference
# recipe); CutMix α = 1 (Yun et al. 2019). MixUp and CutMix mix every batch (targets become soft).
POLICY_SETTINGS = {
    "randaugment": {"num_ops": 2, "magnitude": 9, "num_magnitude_bins": 31},
    "trivialaugment": {"num_magnitude_bins": 31},
    "augmix": {"severity": 3, "mixture_width": 3, "chain_depth": -1, "alpha": 1.0, "all_ops": True},
    "mixup": {"alpha": 0.2},
    "cutmix": {"alpha": 1.0},
}
PER_IMAGE = {"randaugment": "RandAugment", "trivialaugment": "TrivialAugmentWide", "augmix": "AugMix"}
PER_BATCH = {"mixup": "MixUp", "cutmix": "CutMix"}


def augmentation_record(name: str) -> dict:
    """What an arm does, for the run's record: the paper's transforms' settings and the policy's."""
    from dataclasses import asdict

    import torchvision

    out: dict = {"name": name, "paper_transforms": asdict(AugConfig()) if name != "none" else None}
    if name in POLICY_SETTINGS:
        cls = PER_IMAGE.get(name) or PER_BATCH[name]
        out["policy"] = {"implementation": f"torchvision.transforms.v2.{cls} (torchvision {torchvision.__version__})",
                         "applied": "per image, on uint8, before the paper's transforms" if name in PER_IMAGE
                         else "per batch, after the paper's transforms (soft targets)",
                         **POLICY_SETTINGS[name]}
    return out


class Augmentation:
    """One training batch's augmentation: uint8 (B, 3, H, W) + labels → float [0, 1] + targets.

    Targets are class indices, or class probabilities for MixUp/CutMix. Every random draw
    comes from ``gen``: torchvision's policies draw from torch's global generator, so each
    batch runs them under a forked generator seeded from ``gen`` — reproducible per seed,
    and the caller's random state is left as it was.
    """

    def __init__(self, name: str, num_classes: int) -> None:
        if name not in AUGMENTATIONS:
            raise ValueError(f"augment={name!r}; choose one of {', '.join(AUGMENTATIONS)}")
        from torchvision.transforms import v2

        self.name = name
        self.paper = AugConfig() if name != "none" else None
        settings = POLICY_SETTINGS.get(name, {})
        self.policy = getattr(v2, PER_IMAGE[name])(**settings) if name in PER_IMAGE else None
        self.mix = getattr(v2, PER_BATCH[name])(num_classes=num_classes, **settings) if name in PER_BATCH else None

    def __call__(self, raw: torch.Tensor, y: torch.Tensor, gen: torch.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.policy is None and self.mix is None:  # the paper's transforms draw from gen alone
            x = raw.float().div_(255.0)
            return (augment(x, self.paper, gen) if self.paper is not None else x), y
        # (forking and seeding the global generator costs time every batch: only where a policy draws from it)
        seed = int(torch.randint(0, 2**62, (1,), generator=gen))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if self.policy is not None:
                device = raw.device
                raw = torch.stack([self.policy(img) for img in raw.cpu()]).to(device)
            x = raw.float().div_(255.0)
            if self.paper is not None:
                x = augment(x, self.paper, gen)
            if self.mix is not None:
                x, y = self.mix(x, y)
        return x, y
