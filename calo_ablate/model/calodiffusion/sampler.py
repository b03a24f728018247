"""Samplers of CaloDiffusion on its discrete schedule.

Ancestral DDPM (Ho et al. 2020, algorithm 2), as CaloDiffusion's p_sample:
x_{t-1} = (x_t - beta_t / sqrt(1 - alphabar_t) eps) / sqrt(alpha_t) + sqrt(posterior variance_t) z, with
no noise added at t = 0. DDIM with eta 0 (Song et al. 2021), the layer model's sampler in
CaloDiffusion 2.0: x0 = (x_t - sqrt(1 - alphabar_t) eps) / sqrt(alphabar_t),
x_{t-1} = sqrt(alphabar_{t-1}) x0 + sqrt(1 - alphabar_{t-1}) eps, and x0 itself at t = 0.
Both start from unit noise at t = N - 1 - offset: `offset` drops the noisiest steps, so N - offset
network calls.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from calo_ablate.errors import ConfigError
from calo_ablate.model.calodiffusion.schedule import DDPMSchedule

__all__ = ["EpsModel", "ddim_sample", "ddpm_sample"]

EpsModel = Callable[[torch.Tensor, int], torch.Tensor]   # (x_t (B, D), step t) -> eps estimate (B, D)


def _check_offset(offset: int, schedule: DDPMSchedule) -> None:
    if not 0 <= offset < schedule.n_steps:
        msg = f"sample offset {offset} must lie in [0, {schedule.n_steps - 1}] for {schedule.n_steps} steps"
        raise ConfigError(msg)


def ddpm_sample(eps_model: EpsModel, noise: torch.Tensor, schedule: DDPMSchedule, offset: int = 0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """x_0 (B, D) from the unit noise (B, D); the per-step noise is drawn from `generator`."""
    _check_offset(offset, schedule)
    betas, alphas = schedule.betas.tolist(), schedule.alphas.tolist()
    sigmas, variances = schedule.sigmas.tolist(), schedule.posterior_variance.tolist()
    x = noise
    for t in reversed(range(schedule.n_steps - offset)):
        eps = eps_model(x, t)
        x = (x - betas[t] / sigmas[t] * eps) / alphas[t] ** 0.5
        if t > 0:
            z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = x + variances[t] ** 0.5 * z
    return x


def ddim_sample(eps_model: EpsModel, noise: torch.Tensor, schedule: DDPMSchedule, offset: int = 0) -> torch.Tensor:
    """x_0 (B, D) from the unit noise (B, D), deterministic (eta 0)."""
    _check_offset(offset, schedule)
    alphabar = schedule.alphabar.tolist()
    x = noise
    for t in reversed(range(schedule.n_steps - offset)):
        eps = eps_model(x, t)
        x0 = (x - (1 - alphabar[t]) ** 0.5 * eps) / alphabar[t] ** 0.5
        x = alphabar[t - 1] ** 0.5 * x0 + (1 - alphabar[t - 1]) ** 0.5 * eps if t > 0 else x0
    return x
