"""Generation runner: K synthetic images per training-pool reference, batched, resumable.

Only training-pool images may be references (validation and test images never reach a
generator). Each image's seed derives from (reference, k, method, model fingerprint), so
a re-run skips what exists, regenerates identically what is missing, and ``shard=(i, n)``
lets n workers split the work without overlap.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from dermsynth.data.images import load_array
from dermsynth.errors import ConfigError, DermsynthError, LeakageError
from dermsynth.generate.methods import check_method, prompt_for
from dermsynth.generate.seeds import image_seed, synth_id
from dermsynth.generate.store import append_manifest, open_store, read_manifest, save_image_atomic


class Backend(Protocol):
    name: str
    model: str
    fingerprint: str
    size: int

    def params(self, method: str) -> dict: ...

    def generate(self, method: str, labels: list[str], prompts: list[str], refs: np.ndarray | None,
                 seeds: list[int]) -> np.ndarray: ...


def check_references(refs: pd.DataFrame) -> None:
    """Refuse held-out images as references (the leakage promise)."""
    if "split" in refs.columns:
        held = refs[refs["split"] != "pool"]
        if len(held):
            raise LeakageError(f"{len(held)} reference images are validation/test images (e.g. "
                               f"{held['id'].iloc[0]!r}); generate only from the training pool")


def run_generation(backend: Backend, refs: pd.DataFrame, method: str, per_image: int, store: str | Path,
                   batch_size: int = 16, shard: tuple[int, int] = (0, 1), with_skin_type: bool = False,
                   prompt_template: str | None = None, progress: bool = True) -> dict:
    """Generate ``per_image`` images of ``method`` for every row of ``refs`` into ``store``."""
    check_method(method)
    if per_image <= 0:
        raise ConfigError(f"per_image={per_image}: ask for at least 1 synthetic image per reference")
    i, n = shard
    if not (0 <= i < n):
        raise ConfigError(f"shard={i}/{n}: use i/n with 0 ≤ i < n")
    check_references(refs)
    store = open_store(store, backend.name, backend.model, backend.fingerprint)
    record_references(store, refs)
    done = set(read_manifest(store)["synth_id"])
    refs = refs.sort_values("id").reset_index(drop=True)
    jobs = [(r, k) for _, r in refs.iterrows() for k in range(per_image)]
    jobs = [j for idx, j in enumerate(jobs) if idx % n == i]
    todo = [j for j in jobs if synth_id(j[0]["id"], j[1], method) not in done]
    params = backend.params(method)
    t0, made = time.perf_counter(), 0
    bar = tqdm(total=len(todo), desc=f"generate {method}", unit="img", disable=not progress)
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        labels = [r["label"] for r, _ in batch]
        skin = [r.get("skin_type") for r, _ in batch]
        kw = {"template": prompt_template} if prompt_template else {}
        prompts = [prompt_for(lab, st, with_skin_type=with_skin_type, **kw)
                   for lab, st in zip(labels, skin, strict=True)]
        seeds = [image_seed(r["id"], k, method, backend.fingerprint) for r, k in batch]
        ref_arr = None
        if method != "text-to-image":
            ref_arr = np.stack([load_array(r["path"], backend.size) for r, _ in batch])
        images = backend.generate(method, labels, prompts, ref_arr, seeds)
        rows = []
        for (r, k), img, prompt, seed in zip(batch, images, prompts, seeds, strict=True):
            sid = synth_id(r["id"], k, method)
            rel = Path("images") / method / f"{sid}.png"
            save_image_atomic(img, store / rel)
            rows.append({"synth_id": sid, "ref_id": str(r["id"]), "label": r["label"],
                         "skin_type": None if pd.isna(r.get("skin_type")) else int(r["skin_type"]),
                         "method": method, "backend": backend.name, "model": backend.model,
                         "fingerprint": backend.fingerprint, "prompt": prompt, "seed": seed,
                         "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "path": str(rel), **params})
        append_manifest(store, rows)
        made += len(batch)
        bar.update(len(batch))
    bar.close()
    secs = time.perf_counter() - t0
    return {"method": method, "generated": made, "skipped": len(jobs) - len(todo), "seconds": secs,
            "images_per_second": made / secs if secs > 0 else 0.0, "store": str(store)}


def record_references(store: Path, refs: pd.DataFrame) -> None:
    """Keep id → path of every reference, so reports and audits can show real beside synthetic."""
    path = store / "references.parquet"
    cols = [c for c in ("id", "path", "label", "skin_type") if c in refs.columns]
    new = refs[cols].astype({"id": str, "path": str})
    if path.exists():
        new = pd.concat([pd.read_parquet(path), new]).drop_duplicates("id", keep="last")
    tmp = path.with_name(".references.tmp.parquet")
    new.to_parquet(tmp)
    tmp.replace(path)


class BuiltinBackend:
    """The built-in CPU diffusion model behind the Backend interface."""

    name = "builtin"

    def __init__(self, model_dir: str | Path, steps: int = 25, guidance: float = 3.0, strength_inpaint: float = 0.97,
                 strength_outpaint: float = 0.95, mask_fraction: float = 0.5, scheduler: str = "ddim"):
        from dermsynth.generate.builtin import load_builtin

        self.m = load_builtin(model_dir)
        self.model = str(model_dir)
        self.fingerprint = self.m.fingerprint
        self.size = self.m.cfg.size
        self.steps, self.guidance, self.scheduler = steps, guidance, scheduler
        self.s_in, self.s_out, self.fraction = strength_inpaint, strength_outpaint, mask_fraction

    def params(self, method: str) -> dict:
        strength = {"inpaint": self.s_in, "outpaint": self.s_out, "text-to-image": 1.0}.get(method, self.s_in)
        mask = "none" if method == "text-to-image" else f"centre-square-{self.fraction}"
        return {"steps": self.steps, "guidance": self.guidance, "strength": strength, "mask": mask}

    def generate(self, method, labels, prompts, refs, seeds) -> np.ndarray:
        from dermsynth.generate.builtin import generate_method

        return generate_method(self.m, method, labels, seeds, refs, self.steps, self.guidance, self.s_in, self.s_out,
                               self.fraction, scheduler=self.scheduler)


class PerClassBackend:
    """One model per class (DreamBooth per class) behind one Backend: batches are split by label."""

    def __init__(self, backends: dict[str, Backend]):
        import hashlib

        self.backends = backends
        first = next(iter(backends.values()))
        self.name, self.size = first.name, first.size
        self.model = "per-class:" + ",".join(f"{k}={b.model}" for k, b in sorted(backends.items()))
        self.fingerprint = hashlib.sha256("|".join(f"{k}:{b.fingerprint}" for k, b in sorted(backends.items()))
                                          .encode()).hexdigest()[:16]

    def params(self, method: str) -> dict:
        return next(iter(self.backends.values())).params(method)

    def generate(self, method, labels, prompts, refs, seeds) -> np.ndarray:
        out: list = [None] * len(labels)
        for label in sorted(set(labels)):
            if label not in self.backends:
                raise DermsynthError(f"no fine-tuned model for class {label!r}")
            idx = [i for i, lab in enumerate(labels) if lab == label]
            imgs = self.backends[label].generate(method, [labels[i] for i in idx], [prompts[i] for i in idx],
                                                 None if refs is None else refs[idx], [seeds[i] for i in idx])
            for i, img in zip(idx, imgs, strict=True):
                out[i] = img
        return np.stack(out)


def make_backend(backend: str, model: str | Path, **kwargs) -> Backend:
    if backend == "builtin":
        return BuiltinBackend(model, **kwargs)
    if backend == "sd":
        from dermsynth.generate.sd import SDBackend

        return SDBackend(str(model), **kwargs)
    raise DermsynthError(f"backend={backend!r}; choose builtin or sd")
