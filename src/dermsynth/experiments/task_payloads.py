"""What each kind of task of a study's graph takes and returns, as types.

In a dict payload (some holding JSON strings of pydantic models for each task to parse back) a
renamed key fails inside the task, at run time, on whichever machine runs it. So a payload is a
frozen model built where the task is planned (a wrong field fails there), shipped as is to a
local call or a Ray worker (pydantic models pickle), and checked against the task's signature at
the boundary (task_contract.py).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from dermsynth.data.splits import SplitSpec
from dermsynth.experiments.spec import GeneratorSpec
from dermsynth.train.spec import RunSpec


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GeneratorPayload(Payload):
    """Shared by the generator's tasks: its settings, the run whose split it learns from, where
    its models go and the store family (backend : variant : pool or subset)."""

    gen: GeneratorSpec
    base: RunSpec
    out: str
    family: str


class TrainGeneratorPayload(GeneratorPayload):
    pool: list[str]  # ids of the training-pool images the built-in generator learns from


class FinetunePayload(GeneratorPayload):
    rows: list[str]  # ids of the images it fine-tunes on
    label: str | None  # the class of a per-class model; None: one model for all classes


class GeneratePayload(GeneratorPayload):
    refs: list[str]  # reference image ids (one class's)
    methods: list[str]
    k: int  # images per reference and method
    store: str
    # {method: {reference id: images}} when a balancing allocation sizes them per reference (else k for each)
    counts: dict[str, dict[str, int]] | None = None


class GeneratorModels(Payload):
    """The model folders a generation task uses: the built-in model, or Stable Diffusion's
    text-to-image and inpainting models (fine-tuned or given)."""

    builtin: str | None = None
    t2i: str | None = None
    inpaint: str | None = None


class Generated(Payload):
    images: dict[str, int]  # method → images made now (0 when the store already held them)


class CleanPayload(Payload):
    split: SplitSpec
    record: str  # where the cleaning summary is written


class StoreRunsPayload(Payload):
    """The runs that draw from one store (the filter, and the recognisability check with ``folder``)."""

    runs: list[RunSpec]
    store: str


class RecognisabilityPayload(StoreRunsPayload):
    folder: str


class AuditPayload(Payload):
    runs: list[RunSpec]
    folder: str = ""  # where the stores' provenance accounts go (analysis/synthetic_provenance.json)


class CellPayload(Payload):
    run: RunSpec
    rdir: str
