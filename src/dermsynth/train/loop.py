"""The training loop, readable on one screen: epochs, early stopping, best epoch restored.

Images arrive as uint8 tensors (N, 3, H, W) from the decoded-image cache; each batch is
converted, augmented per image, normalised and fed in channels-last layout.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dermsynth.errors import DermsynthError
from dermsynth.progress import progress_bar
from dermsynth.registry import Registry
from dermsynth.train.image_source import batches
from dermsynth.train.losses import training_loss
from dermsynth.train.spec import RunSpec, auto_batch_size
from dermsynth.train.transforms import AugConfig, Augmentation, augment


class TrainingDiverged(DermsynthError):
    """The loss became NaN/inf; the best state so far was kept."""


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    epochs_run: int = 0
    train_seconds: float = 0.0
    images_per_second: float = 0.0  # over the whole fit, validation included
    train_images_per_second: float = 0.0  # optimisation steps only
    batch_size: int = 0
    steps: int = 0  # optimisation steps taken


def normalizer(model: nn.Module, device):
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    mean = torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406)), device=device).view(1, 3, 1, 1)
    std = torch.tensor(cfg.get("std", (0.229, 0.224, 0.225)), device=device).view(1, 3, 1, 1)
    return lambda x: (x - mean) / std


def to_input(xb: torch.Tensor, norm, channels_last: bool, aug: AugConfig | None, gen) -> torch.Tensor:
    """uint8 images (or floats in [0, 1], already augmented) → normalised model input."""
    x = xb.float().div_(255.0) if xb.dtype == torch.uint8 else xb
    if aug is not None:
        x = augment(x, aug, gen)
    x = norm(x)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, spec: RunSpec, device, batch: int = 256) -> np.ndarray:
    """Softmax probabilities for uint8 images (N, 3, H, W)."""
    model.eval()
    norm = normalizer(model, device)
    out = []
    for i in range(0, len(x), batch):
        xb = to_input(x[i:i + batch].to(device), norm, spec.channels_last, None, None)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec.precision == "bf16"):
            logits = model(xb)
        out.append(torch.softmax(logits.float(), 1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0))


def _fused(params: list) -> dict:
    """Adam's fused kernel where torch has one for the parameters' device: the fused AdamW step is
    much cheaper than the per-tensor loop, a visible share of a small epoch (docs/benchmarks.md)."""
    return {"fused": True} if params and all(p.device.type in ("cpu", "cuda") for p in params) else {}


# fastai's defaults (betas 0.9, 0.99), which the authors' code trained with.
OPTIMIZERS: Registry = Registry("optimizer")
OPTIMIZERS.register("adamw")(lambda p, lr, wd: torch.optim.AdamW(p, lr=lr, betas=(0.9, 0.99), weight_decay=wd,
                                                                 **_fused(p)))
OPTIMIZERS.register("adam")(lambda p, lr, wd: torch.optim.Adam(p, lr=lr, betas=(0.9, 0.99), weight_decay=wd,
                                                               **_fused(p)))
OPTIMIZERS.register("sgd")(lambda p, lr, wd: torch.optim.SGD(p, lr=lr, momentum=0.9, weight_decay=wd))

SCHEDULES: Registry = Registry("schedule")
SCHEDULES.register("constant")(lambda opt, lr, total: None)
SCHEDULES.register("cosine")(lambda opt, lr, total: torch.optim.lr_scheduler.CosineAnnealingLR(opt, total))
SCHEDULES.register("onecycle")(lambda opt, lr, total: torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=total))


def balanced_weights(y: torch.Tensor) -> torch.Tensor:
    """Inverse class frequency, scaled so a balanced set gets weight 1 per class (sklearn's 'balanced')."""
    counts = torch.bincount(y).float()
    return torch.where(counts > 0, len(y) / (len(counts) * counts.clamp_min(1)), torch.zeros_like(counts))


def _epoch_order(y: torch.Tensor, sampling: str, gen: torch.Generator) -> torch.Tensor:
    """One epoch's sample order: a permutation, or draws with equal expected counts per class."""
    if sampling == "balanced":
        return torch.multinomial(balanced_weights(y)[y], len(y), replacement=True, generator=gen)
    return torch.randperm(len(y), generator=gen)


def _epoch_plan(steps_per_epoch: int, spec: RunSpec) -> list[int]:
    """Steps in each epoch: ``max_epochs`` full epochs, or passes adding up to ``train_steps``."""
    if spec.train_steps is None:
        return [steps_per_epoch] * spec.max_epochs
    full, rest = divmod(spec.train_steps, steps_per_epoch)
    return [steps_per_epoch] * full + ([rest] if rest else [])


def fit(model: nn.Module, train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor,
        val_y: torch.Tensor, spec: RunSpec, device) -> FitResult:
    """Train until ``max_epochs`` or early stopping; the best epoch's weights are restored."""
    gen = torch.Generator().manual_seed(spec.seed)
    # the augmentation arm: none, the paper's transforms, or those plus a strong policy
    augmentation = Augmentation(spec.augmentation(), getattr(model, "num_classes", 0) or int(train_y.max()) + 1)
    bs = spec.batch_size if spec.batch_size != "auto" else auto_batch_size(len(train_x))
    bs = min(bs, len(train_x))
    steps_per_epoch = max(1, len(train_x) // bs)
    opt = OPTIMIZERS.get(spec.optimizer)([p for p in model.parameters() if p.requires_grad], spec.lr,
                                         spec.weight_decay)
    # Equal-steps mode: every arm gets the same number of optimisation steps (k synthetic per
    # real make an epoch k+1 times longer); validation after each pass, no early stopping.
    epoch_steps = _epoch_plan(steps_per_epoch, spec)
    sched = SCHEDULES.get(spec.schedule)(opt, spec.lr, sum(epoch_steps))
    norm = normalizer(model, device)
    class_weight = balanced_weights(train_y).to(device) if spec.class_weighting == "balanced" else None
    if spec.channels_last:
        model.to(memory_format=torch.channels_last)
    res = FitResult(batch_size=bs)
    best_score, best_state, bad_epochs, seen = -math.inf, copy.deepcopy(model.state_dict()), 0, 0
    step_seconds = 0.0
    t0 = time.perf_counter()
    for epoch, n_steps in enumerate(epoch_steps, start=1):
        model.train()
        perm = _epoch_order(train_y, spec.sampling, gen)
        losses = []
        bar = progress_bar(batches(train_x, perm, bs, n_steps, spec.loader_workers), total=n_steps,
                           desc=f"epoch {epoch}", leave=False)
        te = time.perf_counter()
        for step, (idx, raw) in enumerate(bar):
            xb, yb = augmentation(raw.to(device), train_y[idx].to(device), gen)  # yb: soft for MixUp/CutMix
            xb = to_input(xb, norm, spec.channels_last, None, None)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec.precision == "bf16"):
                loss = training_loss(model(xb), yb, spec.loss, spec.focal_gamma, class_weight)
            if not torch.isfinite(loss):
                model.load_state_dict(best_state)
                raise TrainingDiverged(
                    f"loss became {loss.item()} at epoch {epoch}, step {step}; stopped and restored the "
                    f"best weights (epoch {res.best_epoch}). Lower lr (now {spec.lr}) or use precision=fp32.")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            losses.append(loss.item())
            seen += len(idx)
            res.steps += 1
            bar.set_postfix(loss=f"{loss.item():.3f}", img_s=f"{(step + 1) * bs / (time.perf_counter() - te):.0f}")
        step_seconds += time.perf_counter() - te
        probs = predict(model, val_x, spec, device)
        val_loss = float(F.nll_loss(torch.log(torch.from_numpy(probs).clamp_min(1e-8)), val_y).item())
        val_acc = float((probs.argmax(1) == val_y.numpy()).mean())
        res.history.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "val_loss": val_loss,
                            "val_accuracy": val_acc})
        res.epochs_run = epoch
        score = val_acc if spec.monitor == "accuracy" else -val_loss
        if score > best_score:
            best_score, best_state, res.best_epoch, bad_epochs = score, copy.deepcopy(model.state_dict()), epoch, 0
        else:
            bad_epochs += 1
            if bad_epochs >= spec.patience and spec.train_steps is None:
                break
    res.train_seconds = time.perf_counter() - t0
    res.images_per_second = seen / max(res.train_seconds, 1e-9)
    res.train_images_per_second = seen / max(step_seconds, 1e-9)
    model.load_state_dict(best_state)
    return res
