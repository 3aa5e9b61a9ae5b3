"""Fitting one classifier on a training table and predicting a set of images: shared by a run
(which predicts its test images) and a by_error pilot (which predicts only validation images)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dermsynth.data.cache import cache_images
from dermsynth.data.splits import Split
from dermsynth.errors import DataError
from dermsynth.models.backbones import create_backbone, set_trainable
from dermsynth.train.image_source import InMemoryImages, image_source
from dermsynth.train.loop import fit, predict
from dermsynth.train.spec import RunSpec


def device_for(spec: RunSpec) -> torch.device:
    if spec.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(spec.device)


def images_tensor(cache, ids) -> torch.Tensor:
    """The cached images of ``ids`` as a uint8 (N, 3, H, W) tensor, in the order of ``ids``."""
    return InMemoryImages(cache, ids).x


def fit_and_predict(spec: RunSpec, split: Split, train: pd.DataFrame, evaluate: pd.DataFrame, classes: list[str],
                    device) -> tuple[torch.nn.Module, np.ndarray, object, str, str]:
    """Train on ``train`` (early stopping on the split's validation images) and predict ``evaluate``:
    the model, its probabilities, the fit's result and the precision used and why. Only the images
    of ``train``, the validation set and ``evaluate`` are read, so a pilot that evaluates on the
    validation set never opens a test image."""
    val = split.val
    missing = [c for c in classes if c not in set(train["label"])]
    if missing:
        raise DataError(f"class(es) {missing} have no image in the training set; every class needs ≥ 1")
    cache_dir = Path(spec.cache_dir) / "images"
    cached = cache_images(pd.concat([train, val, evaluate]).drop_duplicates("id"), spec.image_size, cache_dir)
    cls_idx = {c: i for i, c in enumerate(classes)}
    ty, vy = (torch.tensor(t["label"].map(cls_idx).to_numpy(), dtype=torch.long) for t in (train, val))
    tx = image_source(cached, train["id"], spec.stream)  # streamed batch by batch when large
    vx, sx = images_tensor(cached, val["id"]), images_tensor(cached, evaluate["id"])
    model = create_backbone(spec.backbone, len(classes), spec.pretrained, spec.pretrained_path, spec.image_size)
    model.to(device)
    if spec.mode == "linear-probe":
        from dermsynth.train.probe import linear_probe

        used, why = "fp32", "linear probe: features in fp32"
        probs, fitres = linear_probe(model, tx, ty, vx, vy, sx, spec, device, len(classes))
    else:
        set_trainable(model, spec.mode)
        effective, used, why = resolve_precision(spec, model, len(classes), device, len(tx))
        fitres = fit(model, tx, ty, vx, vy, effective, device)
        probs = predict(model, sx, effective, device)
    return model, probs, fitres, used, why


def resolve_precision(spec: RunSpec, model, num_classes: int, device, n_train: int | None = None
                      ) -> tuple[RunSpec, str, str]:
    """The spec with ``precision = "auto"`` resolved for this machine (models/precision_rule.py:
    the CPU's native bf16, never a timing), the choice and why. ``model``, ``num_classes`` and
    ``n_train`` are kept for callers; the rule does not depend on them."""
    if spec.precision != "auto":
        return spec, spec.precision, "set in the spec"
    from dermsynth.train.precision import choose_precision

    used, why = choose_precision(device)
    return spec.model_copy(update={"precision": used}), used, why
