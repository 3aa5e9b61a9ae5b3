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
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from dermsynth import io
from dermsynth.data.images import load_array
from dermsynth.data.splits import Split, refuse_held_out
from dermsynth.data.synthetic_store import write_training_ids
from dermsynth.errors import DataError
from dermsynth.generate.methods import centre_square_mask, prompt_for


@dataclass
class DreamBoothConfig:
    lr: float = 5e-6
    batch_size: int = 4
    epochs: int = 4
    max_steps: int | None = None
    resolution: int = 512
    grad_clip: float = 1.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    weight_decay: float = 1e-2
    prior_preservation: bool = False
    prior_weight: float = 1.0
    lora: bool = False
    lora_rank: int = 4
    seed: int = 0


def _load_components(model: str):
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    path = Path(model)
    local = path.exists()
    try:
        kw = {"local_files_only": True} if local else {}
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
    """Denoising loss for a batch; for an inpainting UNet the masked-image latents are inputs."""
    with torch.no_grad():
        z = _latents(vae, x, gen)
    noise = torch.randn(z.shape, generator=gen)
    t = torch.randint(0, sched.config.num_train_timesteps, (len(z),), generator=gen)
    zt = sched.add_noise(z, noise, t)
    if unet.config.in_channels == 9:
        with torch.no_grad():
            masked = _latents(vae, x * (1 - masks), None)
        small = F.interpolate(masks, size=z.shape[-2:], mode="nearest")
        zt = torch.cat([zt, small, masked], 1)
    pred = unet(zt, t, encoder_hidden_states=cond).sample
    target = noise if sched.config.prediction_type == "epsilon" else sched.get_velocity(z, noise, t)
    return F.mse_loss(pred.float(), target.float())


def finetune(model: str, images: np.ndarray, prompts: list[str], out_dir: str | Path,
             cfg: DreamBoothConfig | None = None, prior_images: np.ndarray | None = None,
             prior_prompts: list[str] | None = None, training_ids=None, progress: bool = True) -> dict:
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
    if cfg.lora:
        from peft import LoraConfig

        unet.requires_grad_(False)
        unet.add_adapter(LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_rank, init_lora_weights="gaussian",
                                    target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
    params = [p for p in unet.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2), weight_decay=cfg.weight_decay)
    x_all = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1
    cond_all = _encode_prompts(tokenizer, text_encoder, prompts)
    px = torch.from_numpy(prior_images).permute(0, 3, 1, 2).float() / 127.5 - 1 if cfg.prior_preservation and \
        prior_images is not None else None
    pcond = _encode_prompts(tokenizer, text_encoder, prior_prompts) if px is not None else None
    inner = torch.from_numpy(centre_square_mask(x_all.shape[-1]))[None, None]

    def masks_for(n, g):
        kind = torch.randint(0, 3, (n,), generator=g)
        return torch.stack([torch.ones_like(inner[0]) if k == 0 else inner[0] if k == 1 else 1 - inner[0]
                            for k in kind])

    def held_loss():
        g = torch.Generator().manual_seed(1234)
        n = min(len(x_all), 4)
        with torch.no_grad():
            return float(_loss(unet, vae, sched, x_all[:n], cond_all[:n], g, masks_for(n, g)))

    before = held_loss()
    gen = torch.Generator().manual_seed(cfg.seed)
    steps_per_epoch = max(1, int(np.ceil(len(x_all) / cfg.batch_size)))
    total = cfg.max_steps or cfg.epochs * steps_per_epoch
    losses, t0, step = [], time.perf_counter(), 0
    unet.train()
    bar = tqdm(total=total, desc="dreambooth", disable=not progress)
    while step < total:
        perm = torch.randperm(len(x_all), generator=gen)
        for i in range(0, len(perm), cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            loss = _loss(unet, vae, sched, x_all[idx], cond_all[idx], gen, masks_for(len(idx), gen))
            if px is not None:
                j = torch.randint(0, len(px), (len(idx),), generator=gen)
                loss = loss + cfg.prior_weight * _loss(unet, vae, sched, px[j], pcond[j], gen,
                                                       masks_for(len(idx), gen))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            losses.append(float(loss.item()))
            step += 1
            bar.update(1)
            if step >= total:
                break
    bar.close()
    unet.eval()
    after = held_loss()
    out_dir = Path(out_dir)
    _save(model, unet, out_dir, cfg)
    summary = {"steps": step, "seconds": time.perf_counter() - t0, "held_loss_before": before,
               "held_loss_after": after, "train_losses": losses, "config": asdict(cfg), "base_model": model,
               "n_images": int(len(images))}
    if training_ids is not None:  # before dreambooth.json, which marks the folder complete
        write_training_ids(out_dir, training_ids)
    io.write_json(out_dir / "dreambooth.json", summary)
    return summary


def _save(model: str, unet, out_dir: Path, cfg: DreamBoothConfig) -> None:
    """Save a complete pipeline folder (LoRA weights fused) that SDBackend can load."""
    from diffusers import DiffusionPipeline

    if cfg.lora:
        unet.fuse_lora()
        unet.unload_lora()
    pipe = DiffusionPipeline.from_pretrained(model, unet=unet, safety_checker=None, requires_safety_checker=False,
                                             local_files_only=Path(model).exists())
    with io.atomic_path(out_dir) as tmp:
        pipe.save_pretrained(tmp)


def finetune_from_split(model: str, split: Split, out_dir: str | Path, label: str | None = None,
                        ids: list[str] | None = None, cfg: DreamBoothConfig | None = None,
                        with_skin_type: bool = False, progress: bool = True) -> dict:
    """DreamBooth on training-pool images only (one class, all classes, or given ids)."""
    cfg = cfg or DreamBoothConfig()
    table = split.table
    if ids is not None:
        chosen = table[table["id"].isin(ids)]
        refuse_held_out(chosen, split, "DreamBooth")
    else:
        chosen = split.pool if label is None else split.pool[split.pool["label"] == label]
    if chosen.empty:
        raise DataError(f"no training-pool images{' of class ' + repr(label) if label else ''} to fine-tune on")
    images = np.stack([load_array(p, cfg.resolution) for p in chosen["path"]])
    prompts = [prompt_for(lab, st, with_skin_type=with_skin_type) for lab, st in
               zip(chosen["label"], chosen["skin_type"], strict=True)]
    return finetune(model, images, prompts, out_dir, cfg, training_ids=list(chosen["id"]), progress=progress)
