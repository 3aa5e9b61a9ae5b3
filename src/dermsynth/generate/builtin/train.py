"""Training the built-in generator: from scratch on the training pool, or continued on one
class (the built-in analogue of DreamBooth). Resumable from its last checkpoint."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from diffusers.training_utils import EMAModel

from dermsynth import files
from dermsynth.data.cache import cache_images
from dermsynth.data.synthetic_store import read_training_ids, write_training_ids
from dermsynth.errors import ConfigError, DataError
from dermsynth.generate.builtin.config import BuiltinConfig
from dermsynth.generate.builtin.model import ConditionedUNet, load_builtin
from dermsynth.generate.builtin.precision import choose_training_precision, step_autocast, training_arithmetic
from dermsynth.generate.methods import centre_square_mask
from dermsynth.progress import progress_bar

log = logging.getLogger(__name__)


def random_masks(b: int, size: int, gen: torch.Generator, fraction: float) -> torch.Tensor:
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
            y = int(torch.randint(0, size - h + 1, (1,), generator=gen))
            x = int(torch.randint(0, size - w + 1, (1,), generator=gen))
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


@dataclass
class _State:
    """Everything a resumed run needs: weights, optimiser, EMA, RNG, step, losses, and the
    arithmetic it trains in (a resumed "auto" run keeps the choice it started with)."""

    unet: ConditionedUNet
    opt: torch.optim.Optimizer
    ema: EMAModel
    gen: torch.Generator
    step: int = 0
    losses: list[float] = field(default_factory=list)
    precision: str | None = None

    def save(self, ckpt: Path) -> None:
        with files.atomic_path(ckpt / "state.pt") as tmp:
            torch.save({"unet": self.unet.state_dict(), "opt": self.opt.state_dict(), "ema": self.ema.state_dict(),
                        "gen": self.gen.get_state(), "step": self.step, "losses": self.losses,
                        "precision": self.precision}, tmp)

    def restore(self, ckpt: Path) -> None:
        if not (ckpt / "state.pt").exists():
            return
        state = torch.load(ckpt / "state.pt", weights_only=False)
        try:
            self.unet.load_state_dict(state["unet"])
        except RuntimeError:  # other classes, size or architecture: 50 lines of shape mismatches otherwise
            cfg_path = ckpt.parent / "model" / "config.json"
            was = ""
            if cfg_path.exists():
                old = files.read_json(cfg_path)
                was = f" (classes {old.get('classes')}, size {old.get('size')})"
            now = self.unet.config
            raise DataError(f"{ckpt.parent} holds a generator trained with other settings{was}, not classes "
                            f"{list(now.classes)} at size {now.size}; use another --out, or delete {ckpt.parent} "
                            "to start over") from None
        self.opt.load_state_dict(state["opt"])
        self.ema.load_state_dict(state["ema"])
        self.gen.set_state(state["gen"])
        self.step, self.losses = state["step"], state["losses"]
        self.precision = state.get("precision", "fp32")  # checkpoints from before the choice trained in fp32
        log.info("resumed generator training at step %d", self.step)


def _initial_model(labels: list[str], classes, init_from, config: BuiltinConfig | None) -> tuple:
    """A new model (from ``config``) or the one in ``init_from``, and the training settings."""
    cfg = config or BuiltinConfig()
    if init_from is None:  # a copy: the caller's config (an experiment's table) is left as it was
        cfg = cfg.model_copy(update={"classes": sorted(classes or set(labels))})
        return cfg.build(), cfg
    unet = load_builtin(init_from).unet
    unknown = sorted(set(labels) - set(unet.config.classes))
    if unknown:
        raise DataError(f"classes {unknown} are unknown to the model in {init_from}; it knows {unet.config.classes}")
    return unet, cfg


def _step(st: _State, cfg: BuiltinConfig, sched, x_all, y_all) -> float:
    """One optimisation step on a random batch with random masks and 10 % null class."""
    ucfg, gen = st.unet.config, st.gen
    idx = torch.randint(0, len(x_all), (cfg.batch_size,), generator=gen)
    x0, y = x_all[idx], y_all[idx].clone()
    flip = torch.rand(len(idx), generator=gen) < 0.5
    x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
    y[torch.rand(len(idx), generator=gen) < cfg.cond_dropout] = len(ucfg.classes)
    m = random_masks(len(idx), ucfg.size, gen, ucfg.mask_fraction)
    noise = torch.randn(x0.shape, generator=gen)
    t = torch.randint(0, ucfg.train_timesteps, (len(idx),), generator=gen)
    with step_autocast(st.precision):
        pred = st.unet(torch.cat([sched.add_noise(x0, noise, t), m, x0 * (1 - m)], 1), t, class_labels=y)
    loss = F.mse_loss(pred.float(), _target(sched, ucfg.prediction_type, x0, noise, t))
    if not torch.isfinite(loss):
        raise DataError(f"generator loss became {loss.item()} at step {st.step}; lower lr (now {cfg.lr})")
    for g in st.opt.param_groups:  # linear warm-up over 50 steps
        g["lr"] = cfg.lr * min(1.0, (st.step + 1) / 50)
    st.opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(st.unet.parameters(), 1.0)
    st.opt.step()
    st.ema.step(st.unet.parameters())
    st.step += 1
    st.losses.append(float(loss.item()))
    return st.losses[-1]


def train_builtin(images: np.ndarray, labels: list[str], out_dir: str | Path, *, classes: list[str] | None = None,
                  max_steps: int = 600, max_minutes: float | None = None, init_from: str | Path | None = None,
                  checkpoint_every: int = 100, seed: int = 0, config: BuiltinConfig | None = None) -> dict:
    """Train (or continue training ``init_from``) on uint8 images (N, S, S, 3) with labels.

    Stops at ``max_steps`` or after ``max_minutes``; checkpoints every ``checkpoint_every``
    steps and resumes from the checkpoint in ``out_dir`` after a crash. Saves the EMA weights
    to ``out_dir/model`` and returns a summary with the loss curve's ends.
    """
    out_dir = Path(out_dir)
    if len(images) == 0:
        raise DataError("no training images for the built-in generator")
    # seeded before the model is made: otherwise its random initial weights draw from whatever state
    # the global generator is in, and the same study run twice in one process trains other models
    torch.manual_seed(seed)
    unet, cfg = _initial_model(labels, classes, init_from, config)
    if images.shape[1] != unet.config.size:
        raise ConfigError(f"images are {images.shape[1]} px but the generator works at {unet.config.size} px")
    sched = DDPMScheduler(num_train_timesteps=unet.config.train_timesteps, beta_schedule=unet.config.beta_schedule,
                          prediction_type=unet.config.prediction_type)
    st = _State(unet, torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=1e-4),
                EMAModel(unet.parameters(), decay=cfg.ema_decay, use_ema_warmup=True, power=0.75),
                torch.Generator().manual_seed(seed))
    st.restore(out_dir / "checkpoint")
    asked = cfg.training_precision
    if st.precision is not None and asked in ("auto", st.precision):
        reason = f"kept from the checkpoint at step {st.step}"
    else:
        if st.precision is not None:
            log.warning("the checkpoint in %s trained in %s; continuing in %s, as the config says", out_dir,
                        st.precision, asked)
        st.precision, reason = choose_training_precision(unet, asked, cfg.batch_size)
    log.info("generator trains in %s (%s)", st.precision, reason)
    x_all = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1
    y_all = unet.class_index(list(labels))
    t0 = time.perf_counter()
    unet.train()
    with progress_bar(total=max_steps, initial=st.step, desc="train generator") as bar, \
            training_arithmetic(unet, st.precision):
        while st.step < max_steps and (max_minutes is None or time.perf_counter() - t0 <= 60 * max_minutes):
            _step(st, cfg, sched, x_all, y_all)
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(st.losses[-20:]):.4f}")
            if st.step % checkpoint_every == 0 or st.step == max_steps:
                st.save(out_dir / "checkpoint")
    st.ema.copy_to(unet.parameters())
    summary = {"steps": st.step, "seconds": time.perf_counter() - t0, "first_loss": float(np.mean(st.losses[:20])),
               "last_loss": float(np.mean(st.losses[-20:])), "n_images": int(len(images)),
               "init_from": str(init_from) if init_from else None, "precision": st.precision,
               "precision_reason": reason}
    with files.atomic_path(out_dir / "model") as tmp:
        unet.save_pretrained(tmp)
        files.write_json(tmp / "training.json", summary)
    summary["model_dir"] = str(out_dir / "model")
    return summary


def train_builtin_on(table: pd.DataFrame, out_dir: str | Path, *, size: int, cache_dir: str | Path,
                     classes: list[str] | None = None, init_from: str | Path | None = None,
                     **kwargs) -> dict:
    """Train on the images of an image table and record their ids as the model's training ids.

    A model continued from ``init_from`` learnt from both sets, so it records the union.
    """
    cached = cache_images(table, size, Path(cache_dir) / "images")
    labels = list(table.set_index("id").loc[cached.ids, "label"])
    summary = train_builtin(cached.array, labels, out_dir, classes=classes, init_from=init_from,
                            **kwargs)
    inherited = read_training_ids(load_builtin(init_from).path) if init_from else set()
    write_training_ids(summary["model_dir"], inherited | set(cached.ids))
    return summary
