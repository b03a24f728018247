"""Variance-preserving diffusion of CaloScore v2: cosine log-SNR schedule, v-prediction loss, DDIM sampler.

Networks never see the schedule: the loss and the sampler take a velocity function
`velocity_fn(x (B, ...), t (B,)) -> v (B, ...)`, with t the diffusion time in [0, 1].

Schedule (Kingma et al. 2021 "Variational Diffusion Models", cosine form):
  logsnr(t) = -2 ln tan(a t + b) - 2 ln(noise_scale),
  b = atan(exp(-logsnr_max / 2)), a = atan(exp(-logsnr_min / 2)) - b,
  alpha = sqrt(sigmoid(logsnr)), sigma = sqrt(sigmoid(-logsnr)) (so alpha^2 + sigma^2 = 1).
noise_scale multiplies the noise-to-signal ratio sigma / alpha at every t (the "shifted schedule"
of Hoogeboom et al. 2023, "simple diffusion"): noise_scale < 1 means less noise at every t. It
changes which noise levels training sees, so losses are not comparable across noise_scale values.

v-prediction (Salimans & Ho 2022): x_t = alpha x + sigma eps, v = alpha eps - sigma x,
x = alpha x_t - sigma v, eps = sigma x_t + alpha v.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import torch
from tqdm.auto import tqdm

from calo_ablate.errors import ConfigError
from calo_ablate.model.caloscore.config import DiffusionConfig

__all__ = [
    "CosineLogSNR",
    "Sampler",
    "VelocityFn",
    "ddim_sample",
    "ddim_step",
    "noisy_sample",
    "predict_x0",
    "sample_layers_then_voxels",
    "v_loss",
    "velocity_target",
]

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# Sampling starts from x_1 ~ N(0, I): that needs a negligible signal fraction alpha(1)^2 at t = 1.
_MAX_TERMINAL_LOGSNR = -10.0  # alpha(1)^2 = sigmoid(-10) = 4.5e-5


class CosineLogSNR:
    """The cosine log-SNR schedule, optionally shifted by noise_scale; t in [0, 1], t = 1 is pure noise."""

    def __init__(self, logsnr_min: float = -20.0, logsnr_max: float = 20.0, noise_scale: float = 1.0) -> None:
        if not logsnr_min < logsnr_max:
            msg = f"model.diffusion.logsnr_min={logsnr_min} must be below model.diffusion.logsnr_max={logsnr_max}"
            raise ConfigError(msg)
        if noise_scale <= 0:
            msg = f"model.diffusion.noise_scale={noise_scale}: expected a positive number"
            raise ConfigError(msg)
        self.logsnr_min = logsnr_min
        self.logsnr_max = logsnr_max
        self.noise_scale = noise_scale
        self.b = math.atan(math.exp(-logsnr_max / 2))
        self.a = math.atan(math.exp(-logsnr_min / 2)) - self.b
        self.shift = -2.0 * math.log(noise_scale)
        terminal = logsnr_min + self.shift
        if terminal > _MAX_TERMINAL_LOGSNR:
            msg = (f"model.diffusion.noise_scale={noise_scale} with logsnr_min={logsnr_min} leaves log-SNR {terminal:.2f} "
                   f"at t=1 (above {_MAX_TERMINAL_LOGSNR}): the N(0, I) start of sampling would not hold; "
                   f"use noise_scale >= {math.exp((logsnr_min - _MAX_TERMINAL_LOGSNR) / 2):.3g} or lower logsnr_min")
            raise ConfigError(msg)

    @classmethod
    def from_config(cls, config: DiffusionConfig) -> CosineLogSNR:
        return cls(config.logsnr_min, config.logsnr_max, config.noise_scale)

    def logsnr(self, t: torch.Tensor) -> torch.Tensor:
        """log(alpha^2 / sigma^2) at time t (any shape), computed in float64, returned in t's dtype."""
        t64 = t.to(torch.float64)
        return (-2.0 * torch.log(torch.tan(self.a * t64 + self.b)) + self.shift).to(t.dtype)

    def alpha_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha, sigma) at time t, each of t's shape."""
        logsnr = self.logsnr(t).to(torch.float64)
        alpha = torch.sigmoid(logsnr).sqrt().to(t.dtype)
        sigma = torch.sigmoid(-logsnr).sqrt().to(t.dtype)
        return alpha, sigma

    def __repr__(self) -> str:
        return (f"CosineLogSNR(logsnr_min={self.logsnr_min}, logsnr_max={self.logsnr_max}, "
                f"noise_scale={self.noise_scale})")


class Sampler(Protocol):
    """Every sampler: velocity_fn, x_init = x_1 ~ N(0, I), schedule, steps, progress -> x_0 estimate."""

    def __call__(self, velocity_fn: VelocityFn, x_init: torch.Tensor, schedule: CosineLogSNR, steps: int,
                 progress: bool = False) -> torch.Tensor: ...


def _per_sample(c: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) coefficient -> (B, 1, ..., 1) broadcastable against `like` (B, ...)."""
    return c.reshape(-1, *([1] * (like.dim() - 1))).to(like.dtype)


def noisy_sample(x: torch.Tensor, eps: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x_t = alpha x + sigma eps; x, eps (B, ...), alpha, sigma (B,)."""
    return _per_sample(alpha, x) * x + _per_sample(sigma, x) * eps


def velocity_target(x: torch.Tensor, eps: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """v = alpha eps - sigma x; x, eps (B, ...), alpha, sigma (B,)."""
    return _per_sample(alpha, x) * eps - _per_sample(sigma, x) * x


def predict_x0(x_t: torch.Tensor, v: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x = alpha x_t - sigma v; x_t, v (B, ...), alpha, sigma (B,)."""
    return _per_sample(alpha, x_t) * x_t - _per_sample(sigma, x_t) * v


def v_loss(velocity_fn: VelocityFn, x: torch.Tensor, t: torch.Tensor, schedule: CosineLogSNR,
           noise: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over all elements of (velocity_fn(x_t, t) - v)^2; x (B, ...) clean data, t (B,) in [0, 1].

    noise: eps (B, ...), drawn from N(0, I) when None. Pass the same t to both nets of a step.
    """
    eps = torch.randn_like(x) if noise is None else noise
    alpha, sigma = schedule.alpha_sigma(t)
    v_pred = velocity_fn(noisy_sample(x, eps, alpha, sigma), t)
    return torch.mean((v_pred - velocity_target(x, eps, alpha, sigma)) ** 2)


@torch.no_grad()
def ddim_sample(velocity_fn: VelocityFn, x_init: torch.Tensor, schedule: CosineLogSNR, steps: int,
                progress: bool = False) -> torch.Tensor:
    """Deterministic DDIM (Song et al. 2021) in v-form, t = 1 -> 0 in `steps` equal steps.

    Each step from t to s = t - 1/steps: x0 = alpha_t x - sigma_t v, eps = (x - alpha_t x0) / sigma_t,
    x <- alpha_s x0 + sigma_s eps. Returns the last x0 estimate (made at t = 1/steps); `steps`
    network evaluations. x_init (B, ...) is x_1 ~ N(0, I).
    """
    if steps < 1:
        msg = f"ddim_sample: steps={steps}, expected at least 1 (sample.steps in the config)"
        raise ConfigError(msg)
    x = x_init
    batch = x.shape[0]
    x0 = x
    bar = tqdm(range(steps, 0, -1), desc="DDIM", leave=False, disable=not progress)
    for i in bar:
        t = torch.full((batch,), i / steps, dtype=x.dtype, device=x.device)
        s = torch.full((batch,), (i - 1) / steps, dtype=x.dtype, device=x.device)
        x, x0 = ddim_step(velocity_fn, x, t, s, schedule)
    return x0


def ddim_step(velocity_fn: VelocityFn, x: torch.Tensor, t: torch.Tensor, s: torch.Tensor,
              schedule: CosineLogSNR) -> tuple[torch.Tensor, torch.Tensor]:
    """One deterministic DDIM step from time t to s (each (B,)): returns (x_s, the x0 estimate at t)."""
    alpha_t, sigma_t = schedule.alpha_sigma(t)
    alpha_s, sigma_s = schedule.alpha_sigma(s)
    x0 = predict_x0(x, velocity_fn(x, t), alpha_t, sigma_t)
    eps = (x - _per_sample(alpha_t, x) * x0) / _per_sample(sigma_t, x)
    return _per_sample(alpha_s, x) * x0 + _per_sample(sigma_s, x) * eps, x0


def sample_layers_then_voxels(
    layer_velocity: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    voxel_velocity: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    cond: torch.Tensor,
    n_layers: int,
    n_voxels: int,
    schedule: CosineLogSNR,
    steps: int,
    *,
    generator: torch.Generator | None = None,
    progress: bool = False,
    sampler: Sampler = ddim_sample,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CaloScore v2 generation: layer variables first, then voxels conditioned on them.

    layer_velocity(layer_t (B, L), t (B,), cond (B, 1)) and voxel_velocity(voxel_t (B, V), t (B,),
    layer (B, L), cond (B, 1)) are e.g. CaloScoreNetwork's methods. cond (B, 1) is the incident-energy
    condition. Returns (layer (B, L), voxel (B, V)) in preprocessed units; one batch, no splitting.
    """
    batch = cond.shape[0]
    layer_init = torch.randn(batch, n_layers, dtype=cond.dtype, device=cond.device, generator=generator)
    voxel_init = torch.randn(batch, n_voxels, dtype=cond.dtype, device=cond.device, generator=generator)
    layer = sampler(lambda x, t: layer_velocity(x, t, cond), layer_init, schedule, steps, progress)
    voxel = sampler(lambda x, t: voxel_velocity(x, t, layer, cond), voxel_init, schedule, steps, progress)
    return layer, voxel
