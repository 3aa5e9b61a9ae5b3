"""Generation speed: dermsynth's pipeline vs the authors' loop, side by side, same model, seeds and steps.

The authors' ``generate_synthetic_dataset`` is re-created: batches of 16 prompts through a
diffusers pipeline with DPM-Solver multistep, 50 steps, guidance 3, each image saved as PNG
inside the loop. dermsynth's runner is run on the same local pipeline folder with the same
per-image seeds, and the images are compared pixel for pixel. Then dermsynth's speed
options (channels-last, a compiled UNet) and fewer solver steps (20 vs 50: how far the
images move from the 50-step ones, as PSNR) are measured. Where the time goes (text
encoder, UNet, VAE decode, writing) is timed with forward hooks.

The model is a small Stable Diffusion built from a config with random weights (never
downloaded): a 4-level VAE (8× down-sampling like SD's) at 256 px, so the UNet/VAE
proportions resemble SD's; speed does not depend on the weights.

    python bench/generation_speed.py [--images 32] [--size 256] [--compile]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def build_small_sd(root: Path, size: int) -> Path:
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from tiny_sd import write_tokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1, sample_size=size // 8,
                                in_channels=4, out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=4, norm_num_groups=32)
    vae = AutoencoderKL(block_out_channels=[16, 32, 32, 32], down_block_types=["DownEncoderBlock2D"] * 4,
                        up_block_types=["UpDecoderBlock2D"] * 4, latent_channels=4, norm_num_groups=16,
                        sample_size=size)
    text = CLIPTextModel(CLIPTextConfig(bos_token_id=0, eos_token_id=2, hidden_size=32, intermediate_size=37,
                                        num_attention_heads=4, num_hidden_layers=5, pad_token_id=1, vocab_size=1000))
    tok = write_tokenizer(root.parent / "tokenizer-src")
    tokenizer = CLIPTokenizer(vocab=str(tok / "vocab.json"), merges=str(tok / "merges.txt"), model_max_length=77)
    sched = DPMSolverMultistepScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                        steps_offset=1)
    StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text, tokenizer=tokenizer, scheduler=sched,
                            safety_checker=None, feature_extractor=None,
                            requires_safety_checker=False).save_pretrained(root)
    return root


class StageTimer:
    """Wall time spent inside given modules' forward calls (hooks), plus named blocks."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)

    def hook(self, name: str, module: torch.nn.Module) -> None:
        start = {}
        module.register_forward_pre_hook(lambda *_: start.__setitem__("t", time.perf_counter()))
        module.register_forward_hook(lambda *_: self.seconds.__setitem__(
            name, self.seconds[name] + time.perf_counter() - start["t"]))


def authors_loop(model: Path, jobs: list[tuple[str, int]], out: Path, steps: int, timer: StageTimer) -> float:
    """The authors' generation loop: pipeline call per batch of 16, each image saved inside the loop."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(model, safety_checker=None, local_files_only=True)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    timer.hook("text encoder", pipe.text_encoder)
    timer.hook("UNet", pipe.unet)
    pipe.vae.decode = _timed(pipe.vae.decode, "VAE decode", timer)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for start in range(0, len(jobs), 16):
        batch = jobs[start:start + 16]
        gens = [torch.Generator().manual_seed(seed) for _, seed in batch]
        images = pipe([p for p, _ in batch], num_inference_steps=steps, guidance_scale=3.0,
                      generator=gens).images
        for i, image in enumerate(images):
            w = time.perf_counter()
            image.save(out / f"{start + i:05d}.png")
            timer.seconds["write"] += time.perf_counter() - w
    return time.perf_counter() - t0


def _timed(fn, name, timer):
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        result = fn(*args, **kwargs)
        timer.seconds[name] += time.perf_counter() - t
        return result
    return wrapper


def dermsynth_run(model: Path, refs: pd.DataFrame, split, store: Path, steps: int, size: int, timer: StageTimer,
                  seed_fingerprint: str, **options) -> tuple[float, pd.DataFrame]:
    from dermsynth.data.synthetic_store import read_manifest
    from dermsynth.generate.backends.sd import SDBackend
    from dermsynth.generate.runner import run_generation

    backend = SDBackend(model=str(model), steps=steps, guidance=3.0, size=size, **options)
    # seeds derive from the fingerprint; every variant keeps the 50-step one so images are comparable
    backend.fingerprint = seed_fingerprint
    pipe = backend.pipe("t2i")
    unet = getattr(pipe.unet, "_orig_mod", pipe.unet)
    timer.hook("text encoder", pipe.text_encoder)
    timer.hook("UNet", unet)
    pipe.vae.decode = _timed(pipe.vae.decode, "VAE decode", timer)
    t0 = time.perf_counter()
    res = run_generation(backend, refs, "text-to-image", 1, store, split=split, batch_size=16)
    secs = time.perf_counter() - t0
    assert res.generated == len(refs)
    return secs, read_manifest(store).sort_values("ref_id").reset_index(drop=True)


def load_pngs(paths) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--compile", action="store_true", help="also measure a torch.compile'd UNet")
    args = ap.parse_args()
    from dermsynth.data.splits import SplitSpec, load_split
    from dermsynth.generate.methods import prompt_for
    from dermsynth.generate.seeds import image_seed
    from dermsynth.models.precision_rule import cpu_name

    print(f"CPU: {cpu_name()}; torch threads {torch.get_num_threads()} of {os.cpu_count()} cores")
    tmp = Path(tempfile.mkdtemp(prefix="genspeed-"))
    model = build_small_sd(tmp / "sd", args.size)
    split = load_split(SplitSpec(dataset="demo", root=str(tmp / "demo"), demo_n_per_class=12, n_test=2, n_val=1))
    refs = split.pool.sort_values("id").head(args.images).reset_index(drop=True)

    from dermsynth.generate.backends.sd import SDBackend
    fingerprint = SDBackend(model=str(model), steps=50, guidance=3.0, size=args.size).fingerprint
    jobs = [(prompt_for(r["label"], None), image_seed(r["id"], 0, "text-to-image", fingerprint))
            for _, r in refs.iterrows()]

    rows, timers = [], {}
    timers["authors' loop"] = StageTimer()
    secs = authors_loop(model, jobs, tmp / "authors", 50, timers["authors' loop"])
    theirs = load_pngs(sorted((tmp / "authors").glob("*.png")))
    rows.append(("authors' loop (50 steps)", secs, "reference", ""))
    variants = [("dermsynth (50 steps)", 50, {}), ("dermsynth + channels-last (50 steps)", 50, {"channels_last": True}),
                ("dermsynth, 20 solver steps", 20, {})]
    if args.compile:
        variants.append(("dermsynth + compiled UNet (50 steps)", 50, {"compile_unet": True}))
    for name, steps, options in variants:
        timers[name] = StageTimer()
        secs, manifest = dermsynth_run(model, refs, split, tmp / name.replace(" ", "_"), steps, args.size,
                                       timers[name], fingerprint, **options)
        ours = load_pngs([tmp / name.replace(" ", "_") / p for p in manifest["path"]])
        identical = bool(np.array_equal(ours, theirs))
        diff = np.abs(ours.astype(int) - theirs.astype(int))
        rows.append((name, secs, "identical" if identical else
                     f"max |Δ| {diff.max()} levels, PSNR {psnr(ours, theirs):.1f} dB vs the authors' images", ""))

    base = rows[0][1]
    print(f"\n{args.images} text-to-image images, {args.size} px, batch 16, DPM-Solver, guidance 3")
    print(f"{'pipeline':40s} {'s':>7s} {'img/s':>7s} {'× authors':>10s}  images")
    for name, secs, same, note in rows:
        print(f"{name:40s} {secs:7.1f} {args.images / secs:7.2f} {base / secs:10.2f}  {same} {note}")
    print("\nwhere the time goes (s):")
    stages = ["text encoder", "UNet", "VAE decode", "write"]
    print(f"{'pipeline':40s} " + " ".join(f"{s:>12s}" for s in stages) + f" {'other':>8s}")
    for (name, secs, *_), timer in zip(rows, timers.values(), strict=True):
        shown = [timer.seconds.get(s, float("nan")) for s in stages]
        other = secs - sum(x for x in shown if x == x)
        print(f"{name:40s} " + " ".join(f"{x:12.2f}" for x in shown) + f" {other:8.2f}")
    print("\n(dermsynth writes on a background thread, so its 'write' is not on the critical path and shows as nan)")
    print("PSNR of fewer steps is the solver's deviation from the 50-step images of the same seeds; with random")
    print("weights it is not a quality measure — on a trained model, compare recognisability/FID at 20 vs 50 steps.")


if __name__ == "__main__":
    main()
