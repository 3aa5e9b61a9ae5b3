"""DreamBooth fine-tuning of a Stable Diffusion UNet, written on diffusers components.

The authors' settings are the defaults: lr 5e-6 constant, no warm-up, batch 4, 4 epochs,
512 px, no prior preservation, text encoder frozen, AdamW (0.9, 0.999, wd 1e-2), gradient
clipping 1.0; one model per class (or one for all classes). Works for the text-to-image
UNet (4 input channels) and the inpainting UNet (9 channels: latents ⊕ mask ⊕ masked-image
latents, trained with the method's masks). Optional prior preservation and LoRA (peft).

Only training-pool images may be used: :func:`finetune_from_split` takes the split and
refuses validation/test images, and records the ids it used in the model folder (the
synthetic store's training-ids file) so generation carries them into the store and the
leakage audit can prove it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dermsynth import files
from dermsynth.data.images import load_array
from dermsynth.data.splits import Split, refuse_held_out
from dermsynth.data.synthetic_store import write_training_ids
from dermsynth.errors import ConfigError, DataError
from dermsynth.generate.dreambooth_config import DEFAULT_RESOLUTION, DreamBoothConfig
from dermsynth.generate.methods import centre_square_mask, prompt_for, prompt_name, row_prompt
from dermsynth.progress import progress_bar


def _runtime(cfg: DreamBoothConfig) -> tuple[torch.device, torch.dtype | None]:
    """The device and the autocast dtype (None: full precision) this fine-tune runs with."""
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device)
    choice = cfg.mixed_precision
    if choice == "auto":
        choice = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "no"
    dtypes = {"no": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if choice not in dtypes:
        raise ConfigError(f"mixed_precision={cfg.mixed_precision!r}; choose auto, no, bf16 or fp16")
    return device, dtypes[choice]


def _optimizer(params: list, cfg: DreamBoothConfig):
    kwargs = dict(lr=cfg.learning_rate(), betas=(cfg.adam_beta1, cfg.adam_beta2), weight_decay=cfg.weight_decay)
    if not cfg.use_8bit_adam:
        return torch.optim.AdamW(params, **kwargs)
    try:
        import bitsandbytes as bnb
    except ImportError:
        raise ConfigError("use_8bit_adam needs bitsandbytes (pip install bitsandbytes, CUDA only)") from None
    return bnb.optim.AdamW8bit(params, **kwargs)


def _load_components(model: str):
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from dermsynth.models.hub import hub_load_kwargs

    # offline, a hub id is one message at once instead of minutes of retries
    kw = hub_load_kwargs(model, "the Stable Diffusion model", "--model DIR (a folder saved with save_pretrained)",
                         "model_index.json")
    try:
        return (CLIPTokenizer.from_pretrained(model, subfolder="tokenizer", **kw),
                CLIPTextModel.from_pretrained(model, subfolder="text_encoder", **kw),
                AutoencoderKL.from_pretrained(model, subfolder="vae", **kw),
                UNet2DConditionModel.from_pretrained(model, subfolder="unet", **kw),
                DDPMScheduler.from_pretrained(model, subfolder="scheduler", **kw))
    except (OSError, ValueError) as exc:
        raise DataError(f"could not load Stable Diffusion components from {model!r} ({exc}); pass a local "
                             "folder saved with save_pretrained") from None


def _encode_prompts(tokenizer, text_encoder, prompts: list[str]) -> torch.Tensor:
    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    with torch.no_grad():
        return text_encoder(ids)[0]


def _latents(vae, x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
    dist = vae.encode(x).latent_dist
    z = dist.sample(generator=gen) if gen is not None else dist.mean
    return z * vae.config.scaling_factor


def _loss(unet, vae, sched, x, cond, gen, masks=None):
    """Denoising loss for a batch; for an inpainting UNet the masked-image latents are inputs.

    Random draws come from ``gen`` on the CPU, so a run is the same on any device.
    """
    device = unet.device
    x, cond = x.to(device), cond.to(device)
    masks = None if masks is None else masks.to(device)
    with torch.no_grad():
        z = _latents(vae, x, gen)
    noise = torch.randn(z.shape, generator=gen).to(device)
    t = torch.randint(0, sched.config.num_train_timesteps, (len(z),), generator=gen).to(device)
    zt = sched.add_noise(z, noise, t)
    if unet.config.in_channels == 9:
        with torch.no_grad():
            masked = _latents(vae, x * (1 - masks), None)
        small = F.interpolate(masks, size=z.shape[-2:], mode="nearest")
        zt = torch.cat([zt, small, masked], 1)
    pred = unet(zt, t, encoder_hidden_states=cond).sample
    target = noise if sched.config.prediction_type == "epsilon" else sched.get_velocity(z, noise, t)
    return F.mse_loss(pred.float(), target.float())


def _trainable_unet(unet, cfg: DreamBoothConfig) -> list:
    """The parameters that train: the whole UNet, or LoRA adapters on its attention projections."""
    if cfg.lora:
        from peft import LoraConfig

        unet.requires_grad_(False)
        unet.add_adapter(LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_rank, init_lora_weights="gaussian",
                                    target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
    return [p for p in unet.parameters() if p.requires_grad]


def _to_model_range(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1


def _random_method_masks(size: int, n: int, gen: torch.Generator) -> torch.Tensor:
    """One mask per image: full (text-to-image), centre square (inpaint) or its complement (outpaint)."""
    inner = torch.from_numpy(centre_square_mask(size))
    kind = torch.randint(0, 3, (n,), generator=gen)
    return torch.stack([torch.ones_like(inner) if k == 0 else inner if k == 1 else 1 - inner for k in kind])[:, None]


@dataclass
class _Batches:
    """The training set (and optional class-prior set) as tensors with their prompt embeddings."""

    x: torch.Tensor
    cond: torch.Tensor
    prior_x: torch.Tensor | None = None
    prior_cond: torch.Tensor | None = None


def _step_loss(unet, vae, sched, data: _Batches, idx: torch.Tensor, gen: torch.Generator,
               prior_weight: float) -> torch.Tensor:
    size = data.x.shape[-1]
    loss = _loss(unet, vae, sched, data.x[idx], data.cond[idx], gen, _random_method_masks(size, len(idx), gen))
    if data.prior_x is not None:  # prior preservation: keep what the model drew for the class before
        j = torch.randint(0, len(data.prior_x), (len(idx),), generator=gen)
        loss = loss + prior_weight * _loss(unet, vae, sched, data.prior_x[j], data.prior_cond[j], gen,
                                           _random_method_masks(size, len(idx), gen))
    return loss


def _held_loss(unet, vae, sched, data: _Batches) -> float:
    """Loss on a fixed batch with fixed noise and timesteps: comparable before and after tuning."""
    g = torch.Generator().manual_seed(1234)
    n = min(len(data.x), 4)
    with torch.no_grad():
        return float(_loss(unet, vae, sched, data.x[:n], data.cond[:n], g, _random_method_masks(data.x.shape[-1], n,
                                                                                               g)))


def finetune(model: str, images: np.ndarray, prompts: list[str], out_dir: str | Path,
             cfg: DreamBoothConfig | None = None, prior_images: np.ndarray | None = None,
             prior_prompts: list[str] | None = None, training_ids=None) -> dict:
    """Fine-tune the UNet of ``model`` on uint8 images (N, R, R, 3) with their prompts; save a pipeline folder.

    Returns the loss on a fixed held batch (same noise and timesteps) before and after, so a
    caller can check that fine-tuning fitted the images.
    """
    cfg = cfg or DreamBoothConfig()
    if len(images) == 0:
        raise DataError("DreamBooth needs at least one training image")
    tokenizer, text_encoder, vae, unet, sched = _load_components(model)
    text_encoder.requires_grad_(False)
    vae.requires_grad_(False)
    device, amp = _runtime(cfg)
    unet.to(device)
    vae.to(device)
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    params = _trainable_unet(unet, cfg)
    opt = _optimizer(params, cfg)
    data = _Batches(_to_model_range(images), _encode_prompts(tokenizer, text_encoder, prompts))
    if cfg.prior_preservation and prior_images is not None:
        data.prior_x = _to_model_range(prior_images)
        data.prior_cond = _encode_prompts(tokenizer, text_encoder, prior_prompts)
    before = _held_loss(unet, vae, sched, data)
    gen = torch.Generator().manual_seed(cfg.seed)
    total = cfg.max_steps or cfg.epochs * max(1, int(np.ceil(len(data.x) / cfg.batch_size)))
    losses, t0 = [], time.perf_counter()
    unet.train()
    with progress_bar(total=total, desc="dreambooth") as bar:
        while len(losses) < total:
            for idx in torch.randperm(len(data.x), generator=gen).split(cfg.batch_size):
                with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                    loss = _step_loss(unet, vae, sched, data, idx, gen, cfg.prior_weight)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                opt.step()
                losses.append(float(loss.item()))
                bar.update(1)
                if len(losses) >= total:
                    break
    unet.eval()
    after = _held_loss(unet, vae, sched, data)
    unet.to("cpu")
    out_dir = Path(out_dir)
    _save(model, unet, out_dir, cfg)
    summary = {"steps": len(losses), "seconds": time.perf_counter() - t0, "held_loss_before": before,
               "held_loss_after": after, "train_losses": losses, "config": cfg.model_dump(), "base_model": model,
               "n_images": int(len(images)), "n_prior_images": 0 if data.prior_x is None else int(len(data.prior_x)),
               "device": str(device), "autocast": str(amp) if amp else "fp32", "prompts": sorted(set(prompts))}
    if training_ids is not None:  # before dreambooth.json, which marks the folder complete
        write_training_ids(out_dir, training_ids)
    files.write_json(out_dir / "dreambooth.json", summary)
    return summary


def _save(model: str, unet, out_dir: Path, cfg: DreamBoothConfig) -> None:
    """Save a complete pipeline folder (LoRA weights fused) that SDBackend can load."""
    from diffusers import DiffusionPipeline

    if cfg.lora:
        unet.fuse_lora()
        unet.unload_lora()
    pipe = DiffusionPipeline.from_pretrained(model, unet=unet, safety_checker=None, requires_safety_checker=False,
                                             local_files_only=Path(model).exists())
    with files.atomic_path(out_dir) as tmp:
        pipe.save_pretrained(tmp)


def finetune_from_split(model: str, split: Split, out_dir: str | Path, label: str | None = None,
                        ids: list[str] | None = None, cfg: DreamBoothConfig | None = None,
                        with_skin_type: bool = False) -> dict:
    """DreamBooth on training-pool images only (one class, all classes, or given ids)."""
    cfg = (cfg or DreamBoothConfig()).at_resolution(DEFAULT_RESOLUTION)
    table = split.table
    if ids is not None:
        chosen = table[table["id"].isin(ids)]
        refuse_held_out(chosen, split, "DreamBooth")
    else:
        chosen = split.pool if label is None else split.pool[split.pool["label"] == label]
    if chosen.empty:
        raise DataError(f"no training-pool images{' of class ' + repr(label) if label else ''} to fine-tune on")
    images = np.stack([load_array(p, cfg.resolution) for p in chosen["path"]])
    rows = chosen.to_dict("records")
    # the generation prompt of each image (generate/runner.py), so the model learns the words it is asked with
    prompts = [row_prompt(r, with_skin_type=with_skin_type) for r in rows]
    prior, prior_prompts = None, None
    if cfg.prior_preservation:  # DreamBooth's class-prior set: what the model drew before fine-tuning
        names = sorted({prompt_name(r) for r in rows})
        prior_prompts = [prompt_for(c) for c in names for _ in range(cfg.prior_images)]
        prior = prior_class_images(model, prior_prompts, cfg.resolution, cfg.prior_steps, cfg.seed)
    return finetune(model, images, prompts, out_dir, cfg, prior_images=prior, prior_prompts=prior_prompts,
                    training_ids=list(chosen["id"]))


def prior_class_images(model: str, prompts: list[str], resolution: int, steps: int, seed: int,
                       batch_size: int = 8) -> np.ndarray:
    """Images of each prompt from the model as it is (text-to-image, or an inpainting UNet with
    a full mask), uint8 (N, R, R, 3)."""
    from diffusers import UNet2DConditionModel

    from dermsynth.generate.backends.sd import SDBackend
    from dermsynth.models.hub import hub_load_kwargs

    local = hub_load_kwargs(model, "the Stable Diffusion model", "--model DIR (a folder saved with save_pretrained)",
                            "model_index.json")
    inpainting = UNet2DConditionModel.load_config(model, subfolder="unet", **local)["in_channels"] == 9
    backend = SDBackend(model, inpaint_model=model, steps=steps, size=resolution, strength_inpaint=1.0)
    out = []
    for i in range(0, len(prompts), batch_size):
        batch = prompts[i:i + batch_size]
        seeds = [seed + i + k for k in range(len(batch))]
        if inpainting:
            grey = np.full((len(batch), resolution, resolution, 3), 127, np.uint8)
            out.append(backend.generate_masked(batch, grey, np.ones((resolution, resolution), np.float32), seeds))
        else:
            out.append(backend.generate("text-to-image", batch, batch, None, seeds))
    return np.concatenate(out)
