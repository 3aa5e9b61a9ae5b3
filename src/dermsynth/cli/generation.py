"""``dermsynth generator train|finetune|sample``: training or fine-tuning a generator, and sampling
synthetic images from it into a store."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer

from dermsynth.cli import common as c
from dermsynth.errors import ConfigError, DataError

app = typer.Typer(no_args_is_help=True)


@app.command("train")
@c.handles_errors
def generator_train(dataset: str = c.DatasetOpt, root: Path | None = c.RootOpt, classes: str | None = c.ClassesOpt,
                    n_test: int = c.NTestOpt, n_val: int = c.NValOpt, split_seed: int = c.SplitSeedOpt,
                    out: Path = typer.Option(Path("generator"), help="Folder for the model (OUT/model)."),
                    size: int = typer.Option(32, help="Image side in pixels the model generates (a multiple of 8)."),
                    steps: int = typer.Option(600, help="Training steps (the run stops at --steps or --minutes, "
                                              "whichever comes first)."),
                    minutes: float | None = typer.Option(None, help="Wall-clock budget in minutes."),
                    finetune_class: str | None = typer.Option(None, help="Continue training on one class."),
                    init_from: Path | None = typer.Option(None, help="Model to continue from."),
                    as_json: bool = c.JsonOpt):
    """Train the built-in generator on the training pool only (resumable)."""
    from dermsynth.data.splits import load_split
    from dermsynth.generate.builtin.train import BuiltinConfig, train_builtin_on

    c.require_positive(steps=steps, minutes=minutes)
    config = BuiltinConfig(size=size)  # checks the size before any data is read
    if init_from is not None:
        from dermsynth.generate.builtin.model import resolve_model_dir

        resolve_model_dir(init_from)  # a mistyped --init-from fails before the data is read
    split = load_split(c.split_spec(dataset, root, classes, n_test, n_val, split_seed))
    pool = split.pool if finetune_class is None else split.pool[split.pool["label"] == finetune_class]
    if pool.empty:
        raise DataError(f"no training-pool images of class {finetune_class!r}; classes: "
                        f"{sorted(split.pool['label'].unique())}" if finetune_class else
                        "the training pool is empty (every image went to the test and validation sets); lower "
                        "--n-test/--n-val or check --classes")
    res = train_builtin_on(pool, out, size=size, cache_dir=".dermsynth-cache",
                           classes=sorted(split.table["label"].unique()), max_steps=steps, max_minutes=minutes,
                           init_from=init_from, config=config)
    c.emit(res, as_json, f"{res['steps']} steps in {res['seconds']:.0f} s, loss {res['first_loss']:.4f} → "
                       f"{res['last_loss']:.4f}; model in {res['model_dir']}")


def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard {text!r}: use i/n, e.g. 0/4") from None
    return i, n


@app.command("sample")
@c.handles_errors
def generate(backend: c.BackendName = typer.Option("builtin", help="The generator backend."),
             model: str = typer.Option(..., help="Model folder (builtin) or hub id / folder (sd)."),
             inpaint_model: str | None = typer.Option(None, help="sd: the inpainting model."),
             method: c.MethodName = typer.Option("text-to-image", help="The generation method."),
             per_image: int = typer.Option(10, "--per-image", help="Synthetic images per reference."),
             dataset: str = c.DatasetOpt, root: Path | None = c.RootOpt, classes: str | None = c.ClassesOpt,
             n_test: int = c.NTestOpt, n_val: int = c.NValOpt, split_seed: int = c.SplitSeedOpt,
             n_real: int | None = typer.Option(None, help="Only references in this n_real subset (with --seed)."),
             seed: int = typer.Option(0, help="With --n-real: which subset (the run seed whose references to use)."),
             steps: int | None = typer.Option(None, help="Sampler steps (default 10 builtin, 50 sd)."),
             guidance: float = typer.Option(3.0, help="Classifier-free guidance scale: higher follows the class "
                                            "prompt more closely, with less variety."),
             batch_size: int = typer.Option(16, help="Images generated per forward pass."),
             shard: str = typer.Option("0/1", help="i/n: this worker's share."),
             channels_last: bool = typer.Option(False, help="sd: channels-last UNet/VAE (often faster)."),
             compile_unet: bool = typer.Option(False, help="sd: torch.compile the UNet (pays on long runs)."),
             out: Path = typer.Option(..., "--out", help="The synthetic store folder."),
             as_json: bool = c.JsonOpt):
    """Generate K images per training-pool reference into a store (resumable, shardable)."""
    from dermsynth.data.splits import load_split
    from dermsynth.generate.backends.registry import make_backend
    from dermsynth.generate.runner import run_generation

    c.require_positive(steps=steps, per_image=per_image, batch_size=batch_size)
    part = _shard(shard)
    kw: dict = {"guidance": guidance} | ({"steps": steps} if steps is not None else {})
    if backend == "sd":
        kw.update(channels_last=channels_last, compile_unet=compile_unet)
        if inpaint_model:
            kw["inpaint_model"] = inpaint_model
    gen = make_backend(backend, model, **kw)
    problem = gen.copy_problem(method) if hasattr(gen, "copy_problem") else None
    if problem:
        raise ConfigError(problem)
    split = load_split(c.split_spec(dataset, root, classes, n_test, n_val, split_seed))
    refs = split.pool if n_real is None else split.train_subset(n_real, seed)
    res = run_generation(gen, refs, method, per_image, out, split=split, batch_size=batch_size, shard=part)
    c.emit(res, as_json, f"{method}: generated {res.generated}, reused {res.skipped} → {res.store}")


@app.command("finetune")
@c.handles_errors
def finetune(model: str = typer.Option(..., help="Stable Diffusion (inpainting) model: hub id or folder."),
             out: Path = typer.Option(..., help="Folder for the fine-tuned pipeline."),
             dataset: str = c.DatasetOpt, root: Path | None = c.RootOpt, classes: str | None = c.ClassesOpt,
             n_test: int = c.NTestOpt, n_val: int = c.NValOpt, split_seed: int = c.SplitSeedOpt,
             label: str | None = typer.Option(None, "--class", help="One class (default: one model for all)."),
             lora: bool = typer.Option(False, help="Train LoRA adapters instead of the whole UNet (less memory)."),
             lora_rank: int = typer.Option(4, help="--lora: the adapters' rank."),
             lr: float = typer.Option(5e-6, help="Learning rate (the authors' DreamBooth value)."),
             epochs: int = typer.Option(4, help="Passes over the training-pool images."),
             batch_size: int = typer.Option(4, help="Images per step."),
             resolution: int = typer.Option(512, help="Training resolution in pixels."),
             prior_preservation: bool = typer.Option(False, help="Also train on images of the base model's own "
                                                     "class prompt, against language drift."),
             max_steps: int | None = typer.Option(None, help="Stop after this many steps (a trial run)."),
             mixed_precision: Literal["auto", "no", "bf16", "fp16"] = typer.Option(
                 "auto", help="Autocast dtype (auto: bf16 on a CUDA device that has it, else fp32)."),
             gradient_checkpointing: bool = typer.Option(False, help="Recompute activations: less GPU memory."),
             use_8bit_adam: bool = typer.Option(False, "--8bit-adam", help="8-bit AdamW (bitsandbytes, CUDA)."),
             device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N"),
             as_json: bool = c.JsonOpt):
    """DreamBooth (or LoRA) fine-tuning on training-pool images only (authors' defaults)."""
    from dermsynth.data.splits import load_split
    from dermsynth.generate.dreambooth import DreamBoothConfig, finetune_from_split

    cfg = DreamBoothConfig(lr=lr, epochs=epochs, batch_size=batch_size, resolution=resolution, lora=lora,
                           lora_rank=lora_rank, prior_preservation=prior_preservation, max_steps=max_steps,
                           mixed_precision=mixed_precision, gradient_checkpointing=gradient_checkpointing,
                           use_8bit_adam=use_8bit_adam, device=device)
    split = load_split(c.split_spec(dataset, root, classes, n_test, n_val, split_seed))
    res = finetune_from_split(model, split, out, label=label, cfg=cfg)
    res = {k: v for k, v in res.items() if k != "train_losses"}
    c.emit(res, as_json, f"{res['steps']} steps; held-out loss {res['held_loss_before']:.4f} → "
                       f"{res['held_loss_after']:.4f}; pipeline in {out}")
