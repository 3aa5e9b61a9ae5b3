"""Stable Diffusion through diffusers: the paper's generator, on a GPU or (slowly) a CPU.

Text-to-image with ``StableDiffusionPipeline`` (default ``stabilityai/stable-diffusion-2-1-base``),
the masked methods with ``StableDiffusionInpaintPipeline`` (default
``runwayml/stable-diffusion-inpainting``), the authors' defaults (DPM-Solver multistep,
guidance 3.0, 50 steps, strength 0.97 / 0.95, 512 px, fp16 on CUDA). Model ids or local
folders; offline, a missing model is a clear error naming it — never random weights.
Attention runs through PyTorch's SDPA (diffusers' default processor on torch ≥ 2);
``channels_last`` and ``compile_unet`` are opt-in speed options (bench/generation_speed.py
measures what they buy on the machine at hand).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dermsynth.data.synthetic_store import read_training_ids
from dermsynth.errors import DataError
from dermsynth.generate.methods import method_masks, method_params

DEFAULT_T2I = "stabilityai/stable-diffusion-2-1-base"
DEFAULT_INPAINT = "runwayml/stable-diffusion-inpainting"


def load_pipeline(kind: str, model: str, dtype: torch.dtype, device: torch.device, lora: str | None = None):
    """Load a text-to-image or inpainting pipeline with the DPM-Solver multistep scheduler."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionInpaintPipeline, StableDiffusionPipeline

    from dermsynth.models.hub import hub_load_kwargs

    cls = StableDiffusionPipeline if kind == "t2i" else StableDiffusionInpaintPipeline
    what = f"the {'text-to-image' if kind == 't2i' else 'inpainting'} model"
    kwargs = hub_load_kwargs(model, what, "--model DIR (and --inpaint-model DIR)", "model_index.json")
    try:
        pipe = cls.from_pretrained(model, torch_dtype=dtype, safety_checker=None, requires_safety_checker=False,
                                   **kwargs)
    except (OSError, ValueError) as exc:
        raise DataError(
            f"could not load the {'text-to-image' if kind == 't2i' else 'inpainting'} model {model!r} "
            f"({type(exc).__name__}: {str(exc)[:200]}). Without internet, download it elsewhere "
            "(`huggingface-cli download MODEL --local-dir DIR`) and pass the folder with --model / inpaint_model."
        ) from None
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    if lora:
        pipe.load_lora_weights(lora)
        pipe.fuse_lora()
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def fingerprint_of(model: str, extra: str = "") -> str:
    """Hash of a model: a hub id (and ``extra``), or a local folder's configs and weights.

    Weight files are hashed by size and their first and last MiB — a retrained or swapped
    UNet changes them — so a multi-GB pipeline is fingerprinted in milliseconds.
    """
    h = hashlib.sha256((model + extra).encode())
    path = Path(model)
    if path.exists():
        for f in sorted(path.rglob("*")):
            if not f.is_file():
                continue
            h.update(f"{f.relative_to(path)}:{f.stat().st_size}".encode())
            if f.suffix in (".json", ".txt"):
                h.update(f.read_bytes())
            elif f.suffix in (".safetensors", ".bin", ".ckpt", ".pt"):
                with open(f, "rb") as fh:
                    h.update(fh.read(1 << 20))
                    fh.seek(max(0, f.stat().st_size - (1 << 20)))
                    h.update(fh.read())
    return h.hexdigest()[:16]


class SDBackend:
    """Stable Diffusion behind the generation runner's Backend interface."""

    name = "sd"

    def __init__(self, model: str = DEFAULT_T2I, inpaint_model: str | None = None, steps: int = 50,
                 guidance: float = 3.0, strength_inpaint: float = 0.97, strength_outpaint: float = 0.95,
                 size: int = 512, mask_fraction: float = 0.5, feather: float = 0.0, device: str | None = None,
                 lora: str | None = None, channels_last: bool = False, compile_unet: bool = False):
        self.model = model
        self.inpaint_model = inpaint_model or model
        self.steps, self.guidance, self.size = steps, guidance, size
        self.s_in, self.s_out, self.fraction, self.feather = strength_inpaint, strength_outpaint, mask_fraction, feather
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.lora = lora
        # speed options; they change the last bits of the arithmetic, so they are part of the fingerprint
        self.channels_last, self.compile_unet = channels_last, compile_unet
        settings = json.dumps([steps, guidance, strength_inpaint, strength_outpaint, size, mask_fraction, feather]
                              + (["channels_last"] if channels_last else []) + (["compile"] if compile_unet else []))
        self.fingerprint = fingerprint_of(model, "|".join(["", fingerprint_of(self.inpaint_model),
                                                          fingerprint_of(lora) if lora else "", settings]))
        self._pipes: dict[str, object] = {}

    def pipe(self, kind: str):
        if kind not in self._pipes:
            model = self.model if kind == "t2i" else self.inpaint_model
            lora = self.lora if kind == "t2i" else None
            pipe = load_pipeline(kind, model, self.dtype, self.device, lora)
            if self.channels_last:
                pipe.unet.to(memory_format=torch.channels_last)
                pipe.vae.to(memory_format=torch.channels_last)
            if self.compile_unet:
                pipe.unet = torch.compile(pipe.unet)
            self._pipes[kind] = pipe
        return self._pipes[kind]

    def params(self, method: str) -> dict:
        return method_params(method, self.steps, self.guidance, self.s_in, self.s_out, self.fraction)

    def training_ids(self) -> set[str]:
        """Images a fine-tuned pipeline learnt from (recorded by DreamBooth); none for a pretrained one."""
        folders = [m for m in (self.model, self.inpaint_model, self.lora) if m and Path(m).exists()]
        return set().union(*(read_training_ids(m) for m in folders)) if folders else set()

    def _generators(self, seeds, offset=0):
        return [torch.Generator(device="cpu").manual_seed(int(s) + offset) for s in seeds]

    def generate(self, method, labels, prompts, refs, seeds) -> np.ndarray:
        if method == "text-to-image":
            out = self.pipe("t2i")(prompt=prompts, num_inference_steps=self.steps, guidance_scale=self.guidance,
                                   height=self.size, width=self.size, generator=self._generators(seeds),
                                   output_type="np").images
            return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)
        if refs is None:
            raise DataError(f"method {method!r} needs reference images")
        cur = refs
        for i, m in enumerate(method_masks(method, self.size, self.fraction, self.feather)):
            strength = self.s_out if (method == "outpaint" or i == 1) else self.s_in
            cur = self.generate_masked(prompts, cur, m, seeds, strength, offset=7919 * i)
        return cur

    def generate_masked(self, prompts: list[str], refs: np.ndarray, mask: np.ndarray, seeds: list[int],
                        strength: float | None = None, offset: int = 0) -> np.ndarray:
        """One inpainting pass: regenerate where ``mask`` is 1, keep the rest of each reference."""
        images = [Image.fromarray(r).resize((self.size, self.size), Image.Resampling.BICUBIC) for r in refs]
        mask_img = Image.fromarray((mask * 255).astype(np.uint8), mode="L")
        out = self.pipe("inpaint")(prompt=prompts, image=images, mask_image=[mask_img] * len(images),
                                   strength=self.s_in if strength is None else strength,
                                   num_inference_steps=self.steps, guidance_scale=self.guidance, height=self.size,
                                   width=self.size, generator=self._generators(seeds, offset), output_type="pil").images
        return np.stack([np.asarray(im.convert("RGB")) for im in out])

