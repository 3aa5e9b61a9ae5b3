"""A run's model as a bundle a colleague can use: weights (safetensors) and everything that
decides what the weights mean — backbone config, class list, preprocessing.

``weights/RUN.safetensors`` + ``weights/RUN.model.json`` sit beside the run's record. Loading rebuilds the
timm model from its name and class count (no download: the weights are all in the file),
and test-time preprocessing is the evaluation's own (decode → RGB → resize + centre crop →
scale to [0, 1] → normalise with the backbone's mean/std), so a prediction from a bundle
equals the run's own test prediction.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from dermsynth import files
from dermsynth.errors import DataError
from dermsynth.train.spec import RunSpec

log = logging.getLogger(__name__)
BUNDLE_FORMAT = 1


def weights_path(folder: str | Path, run_id: str) -> Path:
    """Beside the records, in their own folder (a records folder holds only records)."""
    return Path(folder) / "weights" / f"{run_id}.safetensors"


def meta_path(folder: str | Path, run_id: str) -> Path:
    return Path(folder) / "weights" / f"{run_id}.model.json"


def model_meta(model: nn.Module, spec: RunSpec, classes: list[str], dtype: str, precision: str) -> dict:
    """What the weights mean: enough to rebuild the model and preprocess an image as in evaluation."""
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    return {
        "format": BUNDLE_FORMAT, "run_id": spec.run_id(), "backbone": spec.backbone, "num_classes": len(classes),
        "classes": classes, "dtype": dtype,
        "preprocessing": {"image_size": spec.image_size, "resize": "shorter side to size, centre crop (bicubic)",
                          "color": "RGB", "scale": "x / 255", "mean": list(cfg.get("mean", (0.485, 0.456, 0.406))),
                          "std": list(cfg.get("std", (0.229, 0.224, 0.225))), "channels_last": spec.channels_last,
                          "precision": precision},
        "backbone_config": {k: v for k, v in cfg.items() if isinstance(v, str | int | float | bool | list | tuple)},
    }


def save_bundle(model: nn.Module, spec: RunSpec, classes: list[str], folder: str | Path,
                max_mb: float | None = None, precision: str = "fp32") -> dict:
    """Write the run's weights and meta; returns {"saved", "path", "mb", "dtype"} (or why not saved).

    ``max_mb``: a size budget per run. Weights over it are stored in fp16 when that fits (half
    the size, predictions equal to ~1e-3); otherwise they are not stored, and the record says so.
    ``precision``: the autocast the run evaluated with (fp32/bf16), so predictions match its own.
    """
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    mb = sum(v.numel() * v.element_size() for v in state.values()) / 2**20
    dtype = "float32"
    if max_mb is not None and mb > max_mb:
        if mb / 2 > max_mb:
            log.warning("run %s: weights are %.0f MB, over checkpoint_max_mb=%s even in fp16; not saved",
                        spec.run_id(), mb, max_mb)
            return {"saved": False, "reason": f"{mb:.0f} MB > checkpoint_max_mb={max_mb}", "mb": mb}
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        mb, dtype = mb / 2, "float16"
    path = weights_path(folder, spec.run_id())
    path.parent.mkdir(parents=True, exist_ok=True)
    with files.atomic_path(path) as tmp:
        save_file(state, str(tmp))
    files.write_json(meta_path(folder, spec.run_id()), model_meta(model, spec, classes, dtype, precision))
    return {"saved": True, "path": f"weights/{path.name}", "mb": round(mb, 2), "dtype": dtype}


def load_bundle(folder: str | Path, run_id: str) -> tuple[nn.Module, dict]:
    """The model (eval mode, fp32) and its meta; a run saved without weights is a clear error."""
    meta = bundle_meta(folder, run_id)
    return _model_from(meta["backbone"], meta["num_classes"], weights_path(folder, run_id)), meta


def bundle_meta(folder: str | Path, run_id: str) -> dict:
    """What a run's saved weights mean, without loading them; a run without weights is a clear error."""
    wpath, mpath = weights_path(folder, run_id), meta_path(folder, run_id)
    if not wpath.exists() or not mpath.exists():
        raise DataError(f"run {run_id} has no saved weights ({wpath.name} in {folder}); re-run it with "
                        "save_checkpoint = true (the default for new runs), or raise checkpoint_max_mb")
    return files.read_json(mpath)


def load_export(folder: str | Path) -> tuple[nn.Module, dict]:
    """A folder written by ``dermsynth classifier export`` (config.json + model.safetensors), as a bundle."""
    folder = Path(folder)
    if not (folder / "config.json").exists() or not (folder / "model.safetensors").exists():
        raise DataError(f"{folder} is not an export folder (config.json and model.safetensors); "
                        "write one with `dermsynth classifier export RUN FOLDER`")
    cfg = files.read_json(folder / "config.json")
    meta = {"backbone": cfg["architecture"], "num_classes": cfg["num_classes"], "classes": cfg["label_names"],
            "preprocessing": cfg["preprocessing"], "run_id": cfg.get("dermsynth_run_id")}
    return _model_from(cfg["architecture"], cfg["num_classes"], folder / "model.safetensors"), meta


def _model_from(backbone: str, num_classes: int, weights: Path) -> nn.Module:
    from dermsynth.models.backbones import create_backbone

    model = create_backbone(backbone, num_classes, pretrained=False)
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(weights)).items()}
    model.load_state_dict(state)
    return model.eval()


def set_linear_head(model: nn.Module, weight: np.ndarray, bias: np.ndarray) -> None:
    """Put a fitted linear head (e.g. a linear probe's logistic regression) into the model's classifier."""
    head = model.get_classifier()
    if not isinstance(head, nn.Linear) or tuple(head.weight.shape) != weight.shape:
        raise DataError(f"the backbone's classifier ({type(head).__name__}) cannot hold a {weight.shape} head")
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(weight, dtype=head.weight.dtype))
        head.bias.copy_(torch.as_tensor(bias, dtype=head.bias.dtype))
