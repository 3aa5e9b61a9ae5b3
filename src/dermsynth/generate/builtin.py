"""A small class-conditional diffusion model that trains on a CPU in minutes.

Why: without GPU or hub access a user still needs a real generator to study the effect of
synthetic data. The model is conditioned like Stable Diffusion's inpainting UNet — input =
noisy image ⊕ mask ⊕ masked image, the class (an embedding plus a learned input map) plays
the prompt — so one model serves all four methods (a full mask is text-to-image). Pixel
space at 32 px: a latent autoencoder would cost more CPU than it saves at this size.
Classifier-free guidance comes from dropping the class 10 % of the time (a "null" class).
"Fine-tuning" on one class is DreamBooth-style continued training from the weights.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UNet2DModel
from diffusers.training_utils import EMAModel
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from dermsynth.errors import ConfigError, DermsynthError
from dermsynth.generate.methods import centre_square_mask, method_masks

CONFIG_NAME = "dermsynth_builtin.json"


@dataclass
class BuiltinConfig:
    """Architecture and training settings (saved beside the weights)."""

    classes: list[str] = field(default_factory=list)
    size: int = 32
    block_out_channels: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = 1
    train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    lr: float = 2e-3
    batch_size: int = 32
    cond_dropout: float = 0.1
    ema_decay: float = 0.995
    mask_fraction: float = 0.5
    # FiLM (scale and shift) from the time + class embedding instead of a bias only.
    resnet_time_scale_shift: str = "scale_shift"
    # Channels of a learned per-class spatial map given to the UNet's input beside the noisy
    # image. Why: a class embedding that only biases the resnet blocks is ignored for the
    # first thousands of steps (samples then depend on the noise, not the class); a class
    # map at the input carries class-typical layout and colour from the first steps.
    class_map_channels: int = 4
    # What the UNet predicts. "sample" (x0) degrades gracefully when training is short: an
    # under-trained model still outputs class-typical images, where "epsilon" leaves noise.
    prediction_type: str = "sample"


class ConditionedUNet(torch.nn.Module):
    """UNet2DModel with the inpainting input (noisy ⊕ mask ⊕ masked image) and a class map.

    The last class index is the "null" class used for classifier-free guidance.
    """

    def __init__(self, unet: UNet2DModel, n_classes: int, size: int, map_channels: int):
        super().__init__()
        self.unet = unet
        self.map_channels = map_channels
        self.class_maps = torch.nn.Embedding(n_classes + 1, map_channels * size * size) if map_channels else None
        if self.class_maps is not None:
            torch.nn.init.zeros_(self.class_maps.weight)

    def forward(self, x: torch.Tensor, t, class_labels: torch.Tensor) -> torch.Tensor:
        if self.class_maps is not None:
            maps = self.class_maps(class_labels).view(len(x), self.map_channels, *x.shape[-2:])
            x = torch.cat([x, maps], 1)
        return self.unet(x, t, class_labels=class_labels).sample


def build_unet(cfg: BuiltinConfig) -> ConditionedUNet:
    n = len(cfg.block_out_channels)
    down = ["DownBlock2D"] * (n - 1) + ["AttnDownBlock2D"]  # attention only at the lowest resolution
    up = ["AttnUpBlock2D"] + ["UpBlock2D"] * (n - 1)
    unet = UNet2DModel(sample_size=cfg.size, in_channels=7 + cfg.class_map_channels, out_channels=3,
                       down_block_types=tuple(down), up_block_types=tuple(up),
                       block_out_channels=tuple(cfg.block_out_channels), layers_per_block=cfg.layers_per_block,
                       num_class_embeds=len(cfg.classes) + 1, norm_num_groups=min(32, min(cfg.block_out_channels)),
                       attention_head_dim=8, resnet_time_scale_shift=cfg.resnet_time_scale_shift)
    return ConditionedUNet(unet, len(cfg.classes), cfg.size, cfg.class_map_channels)


def _random_masks(b: int, size: int, gen: torch.Generator, fraction: float) -> torch.Tensor:
    """Training masks: 40 % full (text-to-image), 20 % centre, 20 % complement, 20 % random box."""
    inner = torch.from_numpy(centre_square_mask(size, fraction))
    masks = torch.ones(b, 1, size, size)
    kind = torch.rand(b, generator=gen)
    for i in range(b):
        if kind[i] < 0.4:
            continue
        if kind[i] < 0.6:
            masks[i, 0] = inner
        elif kind[i] < 0.8:
            masks[i, 0] = 1 - inner
        else:
            h, w = (torch.randint(size // 4, size, (2,), generator=gen)).tolist()
            y, x = torch.randint(0, size - h + 1, (1,), generator=gen).item(), torch.randint(
                0, size - w + 1, (1,), generator=gen).item()
            masks[i, 0] = 0
            masks[i, 0, y:y + h, x:x + w] = 1
    return masks


def _target(sched, prediction_type: str, x0, noise, t):
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "sample":
        return x0
    if prediction_type == "v_prediction":
        return sched.get_velocity(x0, noise, t)
    raise ConfigError(f"prediction_type={prediction_type!r}; choose epsilon, sample or v_prediction")


def model_fingerprint(model_dir: str | Path) -> str:
    h = hashlib.sha256()
    for f in sorted(Path(model_dir).rglob("*")):
        if f.is_file() and f.suffix in (".safetensors", ".bin", ".json") and "checkpoint" not in f.parts:
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _save_atomic(model: ConditionedUNet, cfg: BuiltinConfig, out: Path, extra: dict | None = None) -> None:
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.unet.save_pretrained(tmp / "unet")
    if model.class_maps is not None:
        save_file({"weight": model.class_maps.weight.detach().contiguous()}, tmp / "class_maps.safetensors")
    (tmp / CONFIG_NAME).write_text(json.dumps({**asdict(cfg), **(extra or {})}, indent=2))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)


def train_builtin(images: np.ndarray, labels: list[str], out_dir: str | Path, *, classes: list[str] | None = None,
                  max_steps: int = 600, max_minutes: float | None = None, init_from: str | Path | None = None,
                  checkpoint_every: int = 100, seed: int = 0, config: BuiltinConfig | None = None,
                  progress: bool = True) -> dict:
    """Train (or continue training ``init_from``) on uint8 images (N, S, S, 3) with labels.

    Stops at ``max_steps`` or after ``max_minutes``; checkpoints every ``checkpoint_every``
    steps and resumes from the checkpoint in ``out_dir`` after a crash. Returns a summary
    with the loss curve.
    """
    out_dir = Path(out_dir)
    if len(images) == 0:
        raise DermsynthError("no training images for the built-in generator")
    if init_from is not None:
        base = load_builtin(init_from)
        cfg = base.cfg
        unknown = sorted(set(labels) - set(cfg.classes))
        if unknown:
            raise DermsynthError(f"classes {unknown} are unknown to the model in {init_from}; it knows {cfg.classes}")
        unet = base.unet
    else:
        cfg = config or BuiltinConfig()
        cfg.classes = sorted(classes or set(labels))
        unet = build_unet(cfg)
    if images.shape[1] != cfg.size:
        raise ConfigError(f"images are {images.shape[1]} px but the generator works at {cfg.size} px")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    sched = DDPMScheduler(num_train_timesteps=cfg.train_timesteps, beta_schedule=cfg.beta_schedule,
                          prediction_type=cfg.prediction_type)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=1e-4)
    ema = EMAModel(unet.parameters(), decay=cfg.ema_decay, use_ema_warmup=True, power=0.75)
    step, losses = 0, []
    ckpt = out_dir / "checkpoint"
    if (ckpt / "state.pt").exists():
        state = torch.load(ckpt / "state.pt", weights_only=False)
        unet.load_state_dict(state["unet"])
        opt.load_state_dict(state["opt"])
        ema.load_state_dict(state["ema"])
        gen.set_state(state["gen"])
        step, losses = state["step"], state["losses"]
    x_all = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1
    cls_idx = {c: i for i, c in enumerate(cfg.classes)}
    y_all = torch.tensor([cls_idx[c] for c in labels])
    null = len(cfg.classes)
    t0 = time.perf_counter()
    bar = tqdm(total=max_steps, initial=step, desc="train generator", disable=not progress)
    unet.train()
    while step < max_steps:
        if max_minutes is not None and time.perf_counter() - t0 > 60 * max_minutes:
            break
        idx = torch.randint(0, len(x_all), (cfg.batch_size,), generator=gen)
        x0, y = x_all[idx], y_all[idx].clone()
        flip = torch.rand(len(idx), generator=gen) < 0.5
        x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        y[torch.rand(len(idx), generator=gen) < cfg.cond_dropout] = null
        m = _random_masks(len(idx), cfg.size, gen, cfg.mask_fraction)
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, cfg.train_timesteps, (len(idx),), generator=gen)
        xt = sched.add_noise(x0, noise, t)
        pred = unet(torch.cat([xt, m, x0 * (1 - m)], 1), t, class_labels=y)
        loss = F.mse_loss(pred, _target(sched, cfg.prediction_type, x0, noise, t))
        if not torch.isfinite(loss):
            raise DermsynthError(f"generator loss became {loss.item()} at step {step}; lower lr (now {cfg.lr})")
        warm = min(1.0, (step + 1) / 50)
        for g in opt.param_groups:
            g["lr"] = cfg.lr * warm
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        ema.step(unet.parameters())
        step += 1
        losses.append(float(loss.item()))
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        if step % checkpoint_every == 0 or step == max_steps:
            ckpt.mkdir(parents=True, exist_ok=True)
            torch.save({"unet": unet.state_dict(), "opt": opt.state_dict(), "ema": ema.state_dict(),
                        "gen": gen.get_state(), "step": step, "losses": losses}, ckpt / "state.tmp")
            (ckpt / "state.tmp").replace(ckpt / "state.pt")
    bar.close()
    ema.copy_to(unet.parameters())
    summary = {"steps": step, "seconds": time.perf_counter() - t0, "first_loss": float(np.mean(losses[:20])),
               "last_loss": float(np.mean(losses[-20:])), "n_images": int(len(images)),
               "init_from": str(init_from) if init_from else None}
    _save_atomic(unet, cfg, out_dir / "model", {"training": summary})
    summary["model_dir"] = str(out_dir / "model")
    return summary


@dataclass
class BuiltinModel:
    unet: ConditionedUNet
    cfg: BuiltinConfig
    path: Path
    fingerprint: str


def load_builtin(model_dir: str | Path) -> BuiltinModel:
    model_dir = Path(model_dir)
    if (model_dir / "model" / CONFIG_NAME).exists():
        model_dir = model_dir / "model"
    cfg_path = model_dir / CONFIG_NAME
    if not cfg_path.exists():
        raise DermsynthError(f"{model_dir} is not a built-in generator (no {CONFIG_NAME}); train one with "
                             "`dermsynth generator train` or pass the folder it wrote")
    raw = json.loads(cfg_path.read_text())
    raw.pop("training", None)
    raw["block_out_channels"] = tuple(raw["block_out_channels"])
    # Models saved before class maps and FiLM existed load with what they were trained with.
    raw.setdefault("class_map_channels", 0)
    raw.setdefault("resnet_time_scale_shift", "default")
    cfg = BuiltinConfig(**raw)
    unet = ConditionedUNet(UNet2DModel.from_pretrained(model_dir / "unet"), len(cfg.classes), cfg.size,
                           cfg.class_map_channels)
    if unet.class_maps is not None:
        unet.class_maps.weight.data.copy_(load_file(model_dir / "class_maps.safetensors")["weight"])
    unet.eval()
    return BuiltinModel(unet, cfg, model_dir, model_fingerprint(model_dir))


def _scheduler(model: BuiltinModel, name: str):
    base = dict(num_train_timesteps=model.cfg.train_timesteps, beta_schedule=model.cfg.beta_schedule,
                prediction_type=model.cfg.prediction_type)
    if name == "ddim":
        return DDIMScheduler(**base, clip_sample=True)
    if name == "dpm":
        return DPMSolverMultistepScheduler(**base)
    raise ConfigError(f"scheduler={name!r}; choose ddim or dpm")


@torch.no_grad()
def sample(model: BuiltinModel, labels: list[str], seeds: list[int], refs: np.ndarray | None = None,
           mask: np.ndarray | None = None, steps: int = 25, guidance: float = 3.0, strength: float = 1.0,
           scheduler: str = "ddim") -> np.ndarray:
    """One denoising pass for a batch; returns uint8 (B, S, S, 3).

    ``mask`` (S, S): 1 = generate. ``strength`` < 1 starts from the reference noised to that
    level (diffusers' semantics); kept pixels are pasted back from the reference.
    """
    if not 0.0 < strength <= 1.0:
        raise ConfigError(f"strength={strength} must lie in (0, 1]")
    cfg, s, b = model.cfg, model.cfg.size, len(labels)
    unknown = sorted(set(labels) - set(cfg.classes))
    if unknown:
        raise DermsynthError(f"class(es) {unknown} unknown to the generator {model.path}; it knows {cfg.classes}")
    m = torch.ones(b, 1, s, s) if mask is None else torch.from_numpy(mask).float().expand(b, 1, s, s)
    if refs is None:
        ref = torch.zeros(b, 3, s, s)
    else:
        ref = torch.from_numpy(np.ascontiguousarray(refs)).permute(0, 3, 1, 2).float() / 127.5 - 1
    sch = _scheduler(model, scheduler)
    sch.set_timesteps(steps)
    init = min(int(steps * strength), steps)
    timesteps = sch.timesteps[(steps - init) * sch.order:]
    noise = torch.stack([torch.randn(3, s, s, generator=torch.Generator().manual_seed(int(sd))) for sd in seeds])
    x = sch.add_noise(ref, noise, timesteps[:1].repeat(b)) if strength < 1.0 else noise * sch.init_noise_sigma
    y = torch.tensor([cfg.classes.index(c) for c in labels])
    y_null = torch.full_like(y, len(cfg.classes))
    cond_img = ref * (1 - m)
    for t in timesteps:
        inp = torch.cat([x, m, cond_img], 1)
        if guidance != 1.0:
            out = model.unet(torch.cat([inp, inp]), t, class_labels=torch.cat([y, y_null]))
            eps_c, eps_u = out.chunk(2)
            eps = eps_u + guidance * (eps_c - eps_u)
        else:
            eps = model.unet(inp, t, class_labels=y)
        x = sch.step(eps, t, x).prev_sample
    x = x.clamp(-1, 1) * m + ref * (1 - m)
    return ((x + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


def generate_method(model: BuiltinModel, method: str, labels: list[str], seeds: list[int],
                    refs: np.ndarray | None, steps: int = 25, guidance: float = 3.0,
                    strength_inpaint: float = 0.97, strength_outpaint: float = 0.95,
                    mask_fraction: float = 0.5, feather: float = 0.0, scheduler: str = "ddim") -> np.ndarray:
    """Apply one of the four methods; in-then-outpaint chains two passes."""
    masks = method_masks(method, model.cfg.size, mask_fraction, feather)
    if method == "text-to-image":
        return sample(model, labels, seeds, None, None, steps, guidance, 1.0, scheduler)
    if refs is None:
        raise DermsynthError(f"method {method!r} needs reference images")
    cur = refs
    for i, m in enumerate(masks):
        strength = strength_outpaint if (method == "outpaint" or i == 1) else strength_inpaint
        cur = sample(model, labels, [sd + 7919 * i for sd in seeds], cur, m, steps, guidance, strength, scheduler)
    return cur

