"""The ``[slurm]`` table of an experiment config: how ``executor = "slurm"`` asks for resources.

    [slurm]
    partition = "gpu"
    gpus_per_task = 1                # tasks that use a GPU (fine-tunes, generation, checks, cells)
    cpus_per_task = 8
    mem_gb = 32
    time_minutes = 240               # per array task; checked against the plan and the partition
    array_parallelism = 16           # array tasks running at once
    sbatch_lines = ["--account=mylab", "--qos=normal"]
    setup = ["module load cuda/12.1", "source ~/venvs/dermsynth/bin/activate"]
    requeue = true                   # let Slurm requeue a preempted task itself

Like ``[tracking]``, these settings change where a study runs, not its results: they are left out
of the study's digest, so a study begun on a laptop can finish on a cluster in the same folder.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dermsynth.errors import ConfigError


class SlurmSpec(BaseModel):
    """Resources and submission settings of the Slurm executor (each a ``--slurm-*`` option too)."""

    model_config = ConfigDict(extra="forbid")

    partition: str | None = Field(None, description="The partition to submit to (default: the cluster's "
                                                    "default partition).")
    gpus_per_task: int = Field(0, ge=0, description="GPUs for each task that uses one (fine-tunes, generation, "
                                                    "recognisability, filter and classifier cells); the "
                                                    "cleaning and audit tasks ask for none.")
    cpus_per_task: int = Field(4, ge=1, description="CPUs of each array task (a cell trains with this many "
                                                    "threads).")
    mem_gb: float = Field(16.0, gt=0, description="Memory of each array task, in GB.")
    time_minutes: int = Field(240, ge=1, description="Time limit of each array task; refused when shorter than "
                                                     "a task's planned time or longer than the partition allows.")
    array_parallelism: int = Field(32, ge=1, description="How many tasks of one array run at once (sbatch "
                                                         "--array=0-N%P).")
    sbatch_lines: list[str] = Field(default_factory=list, description="Extra sbatch options, each as on the "
                                                                      "command line: \"--account=lab\", "
                                                                      "\"--qos=high\", \"--constraint=a100\".")
    setup: list[str] = Field(default_factory=list, description="Shell lines run before each task (module load, "
                                                               "source a virtual environment).")
    requeue: bool = Field(False, description="Submit with --requeue: Slurm puts a preempted or failed-node task "
                                             "back in the queue itself, under the same job id.")
    max_resubmits: int = Field(2, ge=0, description="How often a task that ended without a result (cancelled, "
                                                    "preempted, out of memory, node lost) is submitted again.")
    poll_seconds: float = Field(15.0, gt=0, description="How often the driver looks at the queue.")
    lost_after_seconds: float = Field(90.0, ge=0, description="How long a task may be out of the queue without "
                                                              "its result before it counts as lost (a shared "
                                                              "file system can show a new file late).")
    python: str | None = Field(None, description="The Python that runs tasks on the nodes (default: this "
                                                 "one; it must see the same installation and study folder).")

    @field_validator("sbatch_lines")
    @classmethod
    def _options(cls, lines: list[str]) -> list[str]:
        for line in lines:
            if not line.startswith("--") or line.strip() != line or "\n" in line:
                raise ValueError(f"sbatch line {line!r}: write one long option as on sbatch's command line, "
                                 "e.g. \"--account=mylab\" (no #SBATCH prefix, no spaces around it)")
        return lines

    def additional_parameters(self) -> dict[str, Any]:
        """The sbatch lines (and --requeue) as submitit's ``additional_parameters``."""
        extra: dict[str, Any] = {}
        for line in self.sbatch_lines:
            key, sep, value = line[2:].partition("=")
            extra[key] = value if sep else True
        if self.requeue:
            extra["requeue"] = True
        return extra

    def submitit_parameters(self, gpus: bool, name: str) -> dict[str, Any]:
        """``SlurmExecutor.update_parameters`` for a group of tasks (with or without GPUs)."""
        params: dict[str, Any] = {"job_name": name, "time": self.time_minutes, "cpus_per_task": self.cpus_per_task,
                                  "mem": f"{int(self.mem_gb * 1024)}MB", "array_parallelism": self.array_parallelism,
                                  "setup": list(self.setup), "additional_parameters": self.additional_parameters(),
                                  "signal_delay_s": 60}
        if self.partition:
            params["partition"] = self.partition
        if gpus and self.gpus_per_task:
            params["gpus_per_task"] = self.gpus_per_task
        return params


def with_overrides(spec: SlurmSpec | None, **options: Any) -> SlurmSpec:
    """The config's ``[slurm]`` table (or the defaults) with the command line's options on top;
    an option left at None keeps the config's value."""
    base = (spec or SlurmSpec()).model_dump()
    given = {k: v for k, v in options.items() if v is not None and v != [] and v != ()}
    try:
        return SlurmSpec.model_validate({**base, **given})
    except ValueError as exc:
        raise ConfigError(f"--slurm options: {exc}") from None
