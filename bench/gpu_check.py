"""GPU check: the throughputs that decide a study's GPU-hours, on random weights, nothing downloaded.

Measures, on the current CUDA device (or the CPU with --tiny, a smoke run of the same code):
- EfficientNetV2-M training img/s at 224 px (fp16 autocast; the frozen-body protocol and full
  fine-tuning), batch 32;
- Stable Diffusion 2.1-base (text-to-image) and SD-Inpainting 1.5 images/s at 512 px, 50
  denoising steps with classifier-free guidance, fp16, batch 1 vs 8 vs 16 (UNet loop + VAE decode);
- DreamBooth steps/s (UNet forward + backward + AdamW, batch 4, 512 px).
Models are built from their published configs with random weights (speed does not depend on
the weights). Runs in ≤ 8 minutes on one modern GPU.

Output: a table, and with --out FILE a JSON that `dermsynth experiment plan --throughput FILE`
reads: {"device", "sd_img_s", "sd_inpaint_img_s", "dreambooth_steps_s", "classifier_img_s":
{"tf_efficientnetv2_m": …}, "by_batch": {...}} (rates at batch 8 feed the plan).

    python bench/gpu_check.py --out gpu_rates.json
    python bench/gpu_check.py --tiny          # CPU smoke run of the same code path
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
import torch.nn.functional as F

SD21_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=1024,
                 attention_head_dim=(5, 10, 20, 20), use_linear_projection=True,
                 down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
SD15_INPAINT_UNET = {**SD21_UNET, "in_channels": 9, "cross_attention_dim": 768, "attention_head_dim": 8,
                     "use_linear_projection": False}
VAE = dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
           down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
TINY_UNET = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
                 cross_attention_dim=32, attention_head_dim=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), norm_num_groups=8)
TINY_VAE = dict(block_out_channels=(32, 64), layers_per_block=1, latent_channels=4, norm_num_groups=8,
                down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def sd_images_per_second(unet_cfg: dict, vae_cfg: dict, batch: int, steps: int, size: int, text_len: int,
                         device, dtype) -> float:
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, UNet2DConditionModel

    unet = UNet2DConditionModel(**unet_cfg).to(device, dtype).eval()
    vae = AutoencoderKL(**vae_cfg).to(device, dtype).eval()
    sched = DPMSolverMultistepScheduler()
    latent = size // (2 ** (len(vae_cfg["block_out_channels"]) - 1))
    cond = torch.randn(2 * batch, text_len, unet_cfg["cross_attention_dim"], device=device, dtype=dtype)
    extra = unet_cfg["in_channels"] - 4
    masked = torch.randn(2 * batch, extra, latent, latent, device=device, dtype=dtype) if extra else None

    def one_batch():
        sched.set_timesteps(steps)  # the solver keeps a step index: reset it for every batch
        x = torch.randn(batch, 4, latent, latent, device=device, dtype=dtype)
        for t in sched.timesteps:
            inp = torch.cat([x, x])
            if masked is not None:
                inp = torch.cat([inp, masked], 1)
            uncond, text = unet(inp, t, encoder_hidden_states=cond).sample.chunk(2)
            x = sched.step(uncond + 3.0 * (text - uncond), t, x).prev_sample
        vae.decode(x / vae.config.scaling_factor)

    one_batch()  # warm-up: kernels, allocations
    sync(device)
    t0 = time.perf_counter()
    one_batch()
    sync(device)
    return batch / (time.perf_counter() - t0)


def dreambooth_steps_per_second(unet_cfg: dict, batch: int, size_latent: int, text_len: int, device, dtype,
                                steps: int = 5) -> float:
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(**unet_cfg).to(device).train()
    unet.enable_gradient_checkpointing()
    opt = torch.optim.AdamW(unet.parameters(), lr=5e-6)
    cond = torch.randn(batch, text_len, unet_cfg["cross_attention_dim"], device=device)
    times = []
    for _ in range(steps + 1):
        z = torch.randn(batch, unet_cfg["in_channels"], size_latent, size_latent, device=device)
        t = torch.randint(0, 1000, (batch,), device=device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda"):
            loss = F.mse_loss(unet(z, t, encoder_hidden_states=cond).sample.float(), z[:, :4].float())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync(device)
        times.append(time.perf_counter() - t0)
    return 1 / min(times[1:])


def classifier_images_per_second(name: str, size: int, batch: int, frozen: bool, device, dtype,
                                 steps: int = 5) -> float:
    import timm

    model = timm.create_model(name, pretrained=False, num_classes=9).to(device).train()
    if frozen:  # the authors' fastai protocol: body frozen, norm layers and head train
        for n, p in model.named_parameters():
            p.requires_grad_("bn" in n or "classifier" in n)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    model.to(memory_format=torch.channels_last)
    y = torch.randint(0, 9, (batch,), device=device)
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda"):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync(device)
        times.append(time.perf_counter() - t0)
    return batch / min(times[1:])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiny", action="store_true", help="CPU smoke run with tiny models (checks the code path)")
    ap.add_argument("--out", help="write the rates as JSON for `dermsynth experiment plan --throughput`")
    args = ap.parse_args()
    cuda = torch.cuda.is_available() and not args.tiny
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.float16 if cuda else torch.float32
    name = torch.cuda.get_device_name() if cuda else f"CPU {platform.processor() or platform.machine()}"
    print(f"device: {name}; torch {torch.__version__}; threads {torch.get_num_threads()}; dtype {dtype}")
    unet, inpaint, vae = ((SD21_UNET, SD15_INPAINT_UNET, VAE) if not args.tiny else
                          (TINY_UNET, {**TINY_UNET, "in_channels": 9}, TINY_VAE))
    size, steps, text_len = (512, 50, 77) if not args.tiny else (16, 3, 8)
    batches = (1, 8, 16) if not args.tiny else (1, 2)
    rates = {"device": name, "by_batch": {}}
    for label, cfg in (("sd_img_s", unet), ("sd_inpaint_img_s", inpaint)):
        for b in batches:
            r = sd_images_per_second(cfg, vae, b, steps, size, text_len, device, dtype)
            rates["by_batch"][f"{label}@{b}"] = r
            print(f"{label:<18} batch {b:>2}: {r:7.3f} images/s ({steps} steps, {size} px)")
        rates[label] = rates["by_batch"][f"{label}@{8 if not args.tiny else 2}"]
    latent = size // 8 if not args.tiny else size // 2
    rates["dreambooth_steps_s"] = dreambooth_steps_per_second(unet, 4 if not args.tiny else 2, latent, text_len,
                                                              device, torch.bfloat16 if cuda else torch.float32)
    print(f"dreambooth         batch  4: {rates['dreambooth_steps_s']:7.3f} steps/s")
    arch, csize, cbatch = ("tf_efficientnetv2_m", 224, 32) if not args.tiny else ("test_efficientnet", 32, 8)
    frozen = classifier_images_per_second(arch, csize, cbatch, True, device, dtype)
    full = classifier_images_per_second(arch, csize, cbatch, False, device, dtype)
    rates["classifier_img_s"] = {"tf_efficientnetv2_m" if not args.tiny else "test_": frozen}
    rates["by_batch"]["classifier_full_finetune"] = full
    print(f"{arch} {csize} px batch {cbatch}: {frozen:8.1f} img/s frozen body, {full:8.1f} img/s full fine-tune "
          f"({frozen / full:.2f}×)")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(rates, fh, indent=2)
        print(f"→ {args.out} (for `dermsynth experiment plan --throughput {args.out}`)")


if __name__ == "__main__":
    main()
