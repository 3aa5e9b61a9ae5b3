"""Image encoders: uint8 images → L2-normalised embeddings.

CLIP ViT-B/32's image encoder (``openai/clip-vit-base-patch32`` through transformers:
512-d) as the paper's Fig. 2, any timm model, or raw pixels (a "pixel space" for copy
detection). Hub id or local folder; tests use a tiny random CLIP. The decoded images are
cached (``data.cache``); embeddings are recomputed, which costs seconds at study scale.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from dermsynth.errors import DataError
from dermsynth.registry import Registry

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class Encoder:
    """A function from uint8 images (N, S, S, 3) to L2-normalised embeddings, with its input size."""

    name: str
    size: int
    fn: object
    fingerprint: str

    def __call__(self, images: np.ndarray, batch: int = 64) -> np.ndarray:
        out = [self.fn(images[i:i + batch]) for i in range(0, len(images), batch)]
        emb = np.concatenate(out) if out else np.zeros((0, 1), np.float32)
        return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)


def _to_tensor(images: np.ndarray, mean, std) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


ENCODERS: Registry = Registry("encoder")


@ENCODERS.register("clip")
def clip_encoder(model: str = "openai/clip-vit-base-patch32") -> Encoder:
    from dermsynth.models.hub import hub_load_kwargs

    hint = "clip:/path/to/folder (--encoder for audit, embed and quality; --embedding for data clean)"
    kwargs = hub_load_kwargs(model, "the CLIP image encoder", hint)  # offline: one message at once, no retries
    from transformers import CLIPVisionModelWithProjection
    try:
        net = CLIPVisionModelWithProjection.from_pretrained(model, **kwargs).eval()
    except OSError as exc:
        raise DataError(f"could not load the CLIP image encoder {model!r}: {exc}; pass a local folder as "
                        f"{hint}") from None
    size = int(net.config.image_size)

    @torch.no_grad()
    def fn(images):
        return net(pixel_values=_to_tensor(images, CLIP_MEAN, CLIP_STD)).image_embeds.float().numpy()

    return Encoder(f"clip:{model}", size, fn, hashlib.sha1(f"clip:{model}".encode()).hexdigest()[:12])


@ENCODERS.register("timm")
def timm_encoder(name: str = "resnet50", pretrained: bool = True, pretrained_path: str | None = None,
                 size: int = 224) -> Encoder:
    from dermsynth.models.backbones import create_backbone

    net = create_backbone(name, 0, pretrained, pretrained_path).eval()
    cfg = net.pretrained_cfg

    @torch.no_grad()
    def fn(images):
        return net(_to_tensor(images, cfg.get("mean", CLIP_MEAN), cfg.get("std", CLIP_STD))).float().numpy()

    return Encoder(f"timm:{name}", size, fn, hashlib.sha1(f"timm:{name}:{pretrained_path}".encode()).hexdigest()[:12])


@ENCODERS.register("pixels")
def pixel_encoder(size: int | str = 16) -> Encoder:
    """Down-sampled, mean-centred pixels: near-copies are close, honest samples are not."""
    size = int(size)

    def fn(images):
        x = images.reshape(len(images), -1).astype(np.float32) / 255.0
        return x - x.mean(1, keepdims=True)

    return Encoder(f"pixels:{size}", size, fn, f"pixels{size}")


def make_encoder(spec: str) -> Encoder:
    """``clip`` / ``clip:PATH_OR_ID`` / ``timm:NAME`` / ``pixels[:SIZE]``."""
    kind, _, arg = spec.partition(":")
    factory = ENCODERS.get(kind)
    return factory(arg) if arg else factory()
