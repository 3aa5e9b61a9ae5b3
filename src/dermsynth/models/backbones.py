"""Backbones through timm's registry, with honest handling of pretrained weights.

Weights come from the hub when reachable or from a local file/folder; when neither works
the error names the weights and how to supply them — never a silent fallback to random
weights, which would quietly turn a "pretrained" study into a from-scratch one.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from dermsynth.errors import ConfigError, DermsynthError
from dermsynth.registry import did_you_mean


def check_backbone(name: str) -> str:
    """``name`` when timm knows it; else a ConfigError with the closest names (before any data is read)."""
    if not timm.is_model(name):
        hint = did_you_mean(name, timm.list_models()) or did_you_mean(name, timm.list_models(f"*{name[:4]}*"))
        raise ConfigError(f"backbone={name!r} is not a timm model{hint}; `timm.list_models('*resnet*')` lists names "
                          "(test_resnet is the tiny one for CPU tests)")
    return name


def create_backbone(name: str, num_classes: int, pretrained: bool = False,
                    pretrained_path: str | Path | None = None, image_size: int | None = None) -> nn.Module:
    """A timm model with a fresh ``num_classes`` head."""
    check_backbone(name)
    kwargs = {"num_classes": num_classes}
    if pretrained_path is not None:
        path = Path(pretrained_path)
        if not path.exists():
            raise DermsynthError(f"pretrained_path={path} does not exist; point it at a .safetensors/.pth "
                                 f"file or a folder holding one for {name}")
        if path.is_dir():
            cands = sorted([*path.glob("*.safetensors"), *path.glob("*.bin"), *path.glob("*.pth")])
            if not cands:
                raise DermsynthError(f"no weights file (*.safetensors, *.bin, *.pth) in {path}")
            path = cands[0]
        kwargs["pretrained"] = True
        kwargs["pretrained_cfg_overlay"] = {"file": str(path)}
    elif pretrained:
        kwargs["pretrained"] = True
    try:
        model = timm.create_model(name, **kwargs)
    except Exception as exc:  # hub unreachable, bad file, incompatible weights
        if kwargs.get("pretrained"):
            raise DermsynthError(
                f"could not load pretrained weights for {name!r} ({type(exc).__name__}: {exc}). "
                "Without internet, download them elsewhere (timm/huggingface hub) and pass "
                "pretrained_path=FILE_OR_DIR, or set pretrained=false to train from random init.") from None
        raise
    if image_size is not None:
        check_input_size(model, name, image_size)
    return model


def check_input_size(model: nn.Module, name: str, image_size: int) -> None:
    """Fail early, with the backbone's name, when it cannot take ``image_size`` px."""
    if image_size < 8:
        raise ConfigError(f"image_size={image_size} is too small for {name}; use ≥ 32")
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size))
    except Exception as exc:
        raise ConfigError(f"backbone {name!r} cannot take image_size={image_size} px ({exc}); "
                          f"its default is {model.pretrained_cfg.get('input_size')}") from None


def set_trainable(model: nn.Module, mode: str) -> None:
    """``finetune``: all layers; ``frozen``: head and normalisation layers only (fastai's freeze)."""
    if mode == "finetune":
        for p in model.parameters():
            p.requires_grad_(True)
        return
    if mode != "frozen":
        raise ConfigError(f"mode={mode!r}; choose finetune, frozen or linear-probe")
    for p in model.parameters():
        p.requires_grad_(False)
    for m in model.modules():
        if isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)):
            for p in m.parameters():
                p.requires_grad_(True)
    for p in model.get_classifier().parameters():
        p.requires_grad_(True)
