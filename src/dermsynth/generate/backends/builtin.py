"""The built-in CPU diffusion model behind the Backend interface."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from dermsynth.data.synthetic_store import read_training_ids
from dermsynth.generate.builtin.model import load_builtin
from dermsynth.generate.builtin.precision import choose_sampling_precision
from dermsynth.generate.builtin.sampling import generate_method, masked_copy_problem
from dermsynth.generate.methods import method_params

log = logging.getLogger(__name__)


class BuiltinBackend:
    name = "builtin"

    def __init__(self, model_dir: str | Path, steps: int = 25, guidance: float = 3.0, strength_inpaint: float = 0.97,
                 strength_outpaint: float = 0.95, mask_fraction: float = 0.5, scheduler: str = "ddim",
                 precision: str = "fp32"):
        self.m = load_builtin(model_dir)
        self.model = str(model_dir)
        self.size = self.m.cfg.size
        self.steps, self.guidance, self.scheduler = steps, guidance, scheduler
        self.s_in, self.s_out, self.fraction = strength_inpaint, strength_outpaint, mask_fraction
        self.precision, self.precision_reason = choose_sampling_precision(self.m.unet, precision)
        settings = [steps, guidance, strength_inpaint, strength_outpaint, mask_fraction, scheduler]
        if self.precision != "fp32":  # other images; fp32 leaves the fingerprints of earlier stores as they were
            settings.append(self.precision)
        self.fingerprint = hashlib.sha256(f"{self.m.fingerprint}|{json.dumps(settings)}".encode()).hexdigest()[:16]

    def copy_problem(self, method: str) -> str | None:
        """Why this backend's settings cannot change ``method``'s masked region (None: they can)."""
        return masked_copy_problem(self.m, method, self.steps, self.s_in, self.s_out, self.scheduler)

    def params(self, method: str) -> dict:
        problem = self.copy_problem(method)
        if problem:  # the library warns (tests use tiny settings); the CLI and the rehearsal refuse
            log.warning("%s", problem)
        return {**method_params(method, self.steps, self.guidance, self.s_in, self.s_out, self.fraction),
                "precision": self.precision}

    def training_ids(self) -> set[str]:
        return read_training_ids(self.m.path)

    def generate(self, method, labels, prompts, refs, seeds) -> np.ndarray:
        return generate_method(self.m, method, labels, seeds, refs, self.steps, self.guidance, self.s_in, self.s_out,
                               self.fraction, scheduler=self.scheduler, bf16=self.precision == "bf16")
