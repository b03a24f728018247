"""Training noise keyed by (seed, optimizer step, rank): common random numbers across a study's rows.

A family draws its diffusion times and noise for one training batch from `step_generator(seed, step,
rank)` instead of torch's global stream. The global stream is shifted by everything drawn before the
batch (a model with more parameters draws more numbers at initialisation, dropout draws per call), so
two rows of one seed would otherwise see different noise; keyed by the step, every row of a seed sees
the same times and the same noise at the same step, whatever its architecture or optimizer. The draws
are made on the CPU (the same numbers on every device) and moved by the caller. Validation draws from
`validation_generator(batch index)`, the same in every run.
"""

from __future__ import annotations

import torch

__all__ = ["VALIDATION_SEED", "step_generator", "validation_generator"]

VALIDATION_SEED = 20230807  # validation's times and noise: the same for every run, per batch index

# mixes (seed, step, rank) into one 63-bit torch seed; distinct odd multipliers keep nearby keys apart
_SEED_MIX = 0x9E3779B97F4A7C15
_STEP_MIX = 0xBF58476D1CE4E5B9
_RANK_MIX = 0x94D049BB133111EB
_MASK = (1 << 63) - 1


def step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """A CPU generator whose stream depends only on the run's seed, the optimizer step and the process rank."""
    if step < 0 or rank < 0:
        msg = f"step_generator: step and rank must be >= 0, got step={step}, rank={rank}"
        raise ValueError(msg)
    key = (seed * _SEED_MIX + (step + 1) * _STEP_MIX + (rank + 1) * _RANK_MIX) & _MASK
    key ^= key >> 31
    return torch.Generator().manual_seed(key)


def validation_generator(batch_idx: int) -> torch.Generator:
    """A CPU generator for validation batch `batch_idx`: a model always gets the same validation loss."""
    return torch.Generator().manual_seed(VALIDATION_SEED + batch_idx)
