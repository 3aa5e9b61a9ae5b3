"""``precision = "auto"``: pick bf16 autocast only where it is faster on this machine.

Why a probe: on one development CPU bf16 convolutions ran 8× slower than fp32, on another
(AMD EPYC with AVX512-BF16) 1.65× faster at the same accuracy. A few optimisation steps of the
run's own model at its own image size decide, once per (machine, torch, model, size); the
answer is cached and every run record says which precision was used and why.
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dermsynth import files
from dermsynth.models.bf16_probe import MIN_SPEEDUP, best_seconds, faster_precision

# The probe's largest batch: the run's own batch size up to this (a CPU step of a large model at a
# large batch would make the probe cost more than it saves).
PROBE_MAX_BATCH = 64


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _seconds_per_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, bf16: bool, steps: int) -> float:
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0)
    model.train()

    def step() -> None:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return best_seconds(step, steps)


def choose_precision(model: nn.Module, backbone: str, image_size: int, num_classes: int, device: torch.device,
                     cache_dir: str | Path, batch: int = 8, steps: int = 3,
                     channels_last: bool = False) -> tuple[str, str]:
    """("fp32" | "bf16", why). CUDA: bf16 where supported. CPU: a timed probe, cached.

    The probe should run at the run's batch size (capped at PROBE_MAX_BATCH) and memory layout:
    at batch 8 resnet18 @ 64 px measured 1.12-1.28× for bf16 on the 2-core EPYC, where its
    batch-64 training ran 1.37-1.6× faster — a small probe batch chose fp32 for a run that bf16
    made faster."""
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        return ("bf16" if ok else "fp32"), f"CUDA device {'supports' if ok else 'lacks'} bf16"
    batch = max(1, min(batch, PROBE_MAX_BATCH))
    # the layout is not in the key: runs train channels-last unless told otherwise
    key = json.dumps([cpu_name(), torch.get_num_threads(), torch.__version__, backbone, image_size, batch])
    path = Path(cache_dir) / "precision_probe" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    if path.exists():
        found = files.read_json(path)
        return found["choice"], found["reason"] + " (cached probe)"
    # The probe must leave no trace: not in the weights (or batch-norm statistics), not in the
    # global random state — else a run would differ depending on whether the probe was cached.
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.random.fork_rng(devices=[]):
        x = torch.randn(batch, 3, image_size, image_size, device=device)
        y = torch.randint(0, num_classes, (batch,), device=device)
        if channels_last:  # as the run will train (fit converts the model the same way)
            model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        fp32 = _seconds_per_step(model, x, y, False, steps)
        bf16 = _seconds_per_step(model, x, y, True, steps)
    model.load_state_dict(state)
    choice = faster_precision(fp32, bf16)
    reason = (f"probe on {cpu_name()} ({torch.get_num_threads()} threads, batch {batch}): "
              f"{batch / fp32:.0f} img/s fp32, {batch / bf16:.0f} img/s bf16 ({fp32 / bf16:.2f}×; "
              f"bf16 needs ≥ {MIN_SPEEDUP}×)")
    files.write_json(path, {"choice": choice, "reason": reason, "key": key})
    return choice, reason
