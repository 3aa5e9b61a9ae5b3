"""The built-in generator's network: a small class-conditional UNet that trains on a CPU.

Why: without GPU or hub access a user still needs a real generator to study the effect of
synthetic data. The model is conditioned like Stable Diffusion's inpainting UNet — input =
noisy image ⊕ mask ⊕ masked image, the class (an embedding plus a learned input map) plays
the prompt — so one model serves all four methods (a full mask is text-to-image). Pixel
space at 32 px: a latent autoencoder would cost more CPU than it saves at this size.
The last class index is the "null" class used for classifier-free guidance.

It is a diffusers ``ModelMixin``/``ConfigMixin``: ``save_pretrained``/``from_pretrained``
round-trip the architecture, the class list and the noise schedule with the weights.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, UNet2DModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from dermsynth.errors import DataError
from dermsynth.registry import Registry


class ConditionedUNet(ModelMixin, ConfigMixin):
    """UNet2DModel with the inpainting input (noisy ⊕ mask ⊕ masked image) and a class map."""

    @register_to_config
    def __init__(self, classes: list[str], size: int = 32, block_out_channels: tuple[int, ...] = (32, 64, 64),
                 layers_per_block: int = 1, class_map_channels: int = 4,
                 resnet_time_scale_shift: str = "scale_shift", train_timesteps: int = 1000,
                 beta_schedule: str = "squaredcos_cap_v2", prediction_type: str = "sample",
                 mask_fraction: float = 0.5):
        super().__init__()
        n = len(block_out_channels)
        down = ["DownBlock2D"] * (n - 1) + ["AttnDownBlock2D"]  # attention only at the lowest resolution
        up = ["AttnUpBlock2D"] + ["UpBlock2D"] * (n - 1)
        self.unet = UNet2DModel(
            sample_size=size, in_channels=7 + class_map_channels, out_channels=3, down_block_types=tuple(down),
            up_block_types=tuple(up), block_out_channels=tuple(block_out_channels),
            layers_per_block=layers_per_block, num_class_embeds=len(classes) + 1,
            norm_num_groups=min(32, min(block_out_channels)), attention_head_dim=8,
            resnet_time_scale_shift=resnet_time_scale_shift)
        # A learned per-class spatial map beside the noisy image. Why: a class embedding that
        # only modulates the resnet blocks is ignored for the first thousands of steps (samples
        # then depend on the noise, not the class); a map at the input carries class-typical
        # layout and colour from the first steps. Zero-initialised; the null class has its own.
        self.class_maps = (torch.nn.Embedding(len(classes) + 1, class_map_channels * size * size)
                           if class_map_channels else None)
        if self.class_maps is not None:
            torch.nn.init.zeros_(self.class_maps.weight)

    def forward(self, x: torch.Tensor, t, class_labels: torch.Tensor) -> torch.Tensor:
        if self.class_maps is not None:
            channels = self.config.class_map_channels
            maps = self.class_maps(class_labels).view(len(x), channels, *x.shape[-2:])
            x = torch.cat([x, maps], 1)
        return self.unet(x, t, class_labels=class_labels).sample

    def class_index(self, labels: list[str]) -> torch.Tensor:
        classes = list(self.config.classes)
        unknown = sorted(set(labels) - set(classes))
        if unknown:
            raise DataError(f"class(es) {unknown} unknown to the built-in generator; it knows {classes}")
        return torch.tensor([classes.index(c) for c in labels])


SCHEDULERS: Registry = Registry("scheduler")
SCHEDULERS.register("ddim")(lambda **kw: DDIMScheduler(**kw, clip_sample=True))
SCHEDULERS.register("dpm")(lambda **kw: DPMSolverMultistepScheduler(**kw))


def make_scheduler(unet: ConditionedUNet, name: str):
    """A sampling scheduler with the model's own noise schedule and prediction target."""
    cfg = unet.config
    return SCHEDULERS.get(name)(num_train_timesteps=cfg.train_timesteps, beta_schedule=cfg.beta_schedule,
                                prediction_type=cfg.prediction_type)


# Keys of the model folder's JSON files that say where or how fast a model was made, not what it
# is: diffusers writes the folder it loaded the base model from, training.json the wall time.
VOLATILE_KEYS = frozenset({"_name_or_path", "seconds", "init_from", "model_dir"})


def model_fingerprint(model_dir: str | Path) -> str:
    """Hash of the model folder's weights and configs: a retrained model with other weights gets
    a new fingerprint, and the same model trained again from scratch (in another folder, at
    another speed) the same one, so that its images are reused rather than made again."""
    h = hashlib.sha256()
    for f in sorted(Path(model_dir).rglob("*")):
        if f.is_file() and f.suffix in (".safetensors", ".bin", ".json") and "checkpoint" not in f.parts:
            h.update(f.name.encode())
            if f.suffix == ".json":
                data = json.loads(f.read_text())
                if isinstance(data, dict):
                    data = {k: v for k, v in data.items() if k not in VOLATILE_KEYS}
                h.update(json.dumps(data, sort_keys=True).encode())
            else:
                h.update(f.read_bytes())
    return h.hexdigest()[:16]


@dataclass
class BuiltinModel:
    unet: ConditionedUNet
    path: Path
    fingerprint: str

    @property
    def cfg(self):
        return self.unet.config


def resolve_model_dir(model_dir: str | Path) -> Path:
    """Accept a training folder (holding ``model/``) or the model folder itself."""
    model_dir = Path(model_dir)
    if (model_dir / "model" / ConditionedUNet.config_name).exists():
        model_dir = model_dir / "model"
    if not (model_dir / ConditionedUNet.config_name).exists():
        raise DataError(f"{model_dir} is not a built-in generator (no {ConditionedUNet.config_name}); train one "
                        "with `dermsynth generator train` or pass the folder it wrote")
    return model_dir


def load_builtin(model_dir: str | Path) -> BuiltinModel:
    path = resolve_model_dir(model_dir)
    unet = ConditionedUNet.from_pretrained(path).eval()
    return BuiltinModel(unet, path, model_fingerprint(path))
