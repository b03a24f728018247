"""Which device a run uses, how study workers share the GPUs, and which precision a device allows.

- resolve_device(accelerator): the torch device of `trainer.accelerator` with Lightning's names
  ("auto", "cpu", "gpu"/"cuda", "mps"); "auto" is a CUDA GPU where one is visible, else the CPU, as
  Lightning picks it for training. Generation and the classifier use the same device as training.
- worker_gpu_environment(worker, workers, gpus): the CUDA_VISIBLE_DEVICES value that pins study
  worker `worker` of `workers` to one GPU (round robin over `gpus`: with more workers than GPUs,
  several workers, each with its cells, share a GPU); {} on a machine without GPUs.
Precision follows the device: calo_ablate.model.precision.check_precision refuses bf16-mixed where the
resolved device would only emulate it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import torch

from calo_ablate.errors import ConfigError

__all__ = ["resolve_device", "visible_gpus", "worker_gpu_environment"]

_CUDA_NAMES = ("gpu", "cuda")


def resolve_device(accelerator: str) -> torch.device:
    """The torch device for `trainer.accelerator`; ConfigError for an unknown name or an absent device."""
    name = accelerator.lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name in _CUDA_NAMES:
        if not torch.cuda.is_available():
            msg = f"trainer.accelerator={accelerator}: no CUDA GPU is visible (torch.cuda.is_available() is False)"
            raise ConfigError(msg)
        return torch.device("cuda")
    if name == "mps":
        if not torch.backends.mps.is_available():
            msg = f"trainer.accelerator={accelerator}: MPS is not available on this machine"
            raise ConfigError(msg)
        return torch.device("mps")
    msg = f"trainer.accelerator={accelerator!r}: expected one of auto, cpu, gpu, cuda, mps"
    raise ConfigError(msg)


def visible_gpus(environ: Mapping[str, str] | None = None, device_count: int | None = None) -> list[str]:
    """The GPU ids this process may hand to its workers: CUDA_VISIBLE_DEVICES's entries where it is set,
    else 0 .. torch.cuda.device_count() - 1."""
    environ = os.environ if environ is None else environ
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip() and g.strip() != "-1"]
    count = torch.cuda.device_count() if device_count is None else device_count
    return [str(i) for i in range(count)]


def worker_gpu_environment(worker: int, workers: int, gpus: Sequence[str]) -> dict[str, str]:
    """{"CUDA_VISIBLE_DEVICES": id} for worker `worker` (0-based) of `workers`; {} without GPUs.

    Up to len(gpus) workers each get a GPU of their own; beyond that they share round robin."""
    if not 0 <= worker < workers:
        msg = f"worker {worker} of --workers {workers}: expected 0 <= worker < {workers}"
        raise ConfigError(msg)
    if not gpus:
        return {}
    return {"CUDA_VISIBLE_DEVICES": gpus[worker % len(gpus)]}

