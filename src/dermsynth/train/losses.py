"""The training loss: cross-entropy, or focal loss (Lin et al., ICCV 2017), the remedy for class
imbalance that reviewers ask synthetic data to be compared with (Ktena et al., Nat. Med. 2024).

Focal loss down-weights the images the model already gets right, ``−(1 − p_t)^γ · log p_t``,
so training time goes to the hard, often rare-class, images. Class weights (``class_weighting =
"balanced"``) act as its α and are averaged as ``F.cross_entropy`` averages them (the weighted
mean), so that γ = 0 is cross-entropy exactly, with or without weights. torchvision's
``sigmoid_focal_loss`` is the binary, one-sigmoid-per-class form; this is the softmax form of
the paper's multi-class classifier.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0,
               weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean focal loss of a batch (``weight``: per-class weights, as in ``F.cross_entropy``).

    ``target`` holds class indices, or class probabilities (MixUp, CutMix), for which the loss is
    ``−Σ_c w_c y_c (1 − p_c)^γ log p_c`` averaged over the batch, as cross-entropy averages soft
    targets."""
    log_p = F.log_softmax(logits.float(), dim=1)
    if target.is_floating_point():  # soft targets
        focal = -((1 - log_p.exp()).clamp(min=0) ** gamma) * log_p * target
        if weight is not None:
            focal = focal * weight[None, :]
        return focal.sum(1).mean()
    log_p = log_p.gather(1, target[:, None]).squeeze(1)
    per_image = -((1 - log_p.exp()).clamp(min=0) ** gamma) * log_p
    if weight is None:
        return per_image.mean()
    w = weight[target]
    return (w * per_image).sum() / w.sum()


def training_loss(logits: torch.Tensor, target: torch.Tensor, loss: str, gamma: float,
                  weight: torch.Tensor | None = None) -> torch.Tensor:
    """The run's loss on a batch (``loss``: "cross_entropy" or "focal")."""
    if loss == "focal":
        return focal_loss(logits, target, gamma, weight)
    return F.cross_entropy(logits, target, weight=weight)
