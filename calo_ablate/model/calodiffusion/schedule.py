"""The discrete cosine noise schedule of CaloDiffusion (Nichol and Dhariwal 2021, s = 0.008).

alphabar(t) = f(t) / f(0), f(t) = cos(((t / T) + s) / (1 + s) * pi / 2)^2 on t = 0..T;
beta_t = 1 - alphabar(t + 1) / alphabar(t), clipped to [1e-4, 0.9999], for the T steps t = 0..T-1; the
schedule's own alphabar is then the cumulative product of 1 - beta. The network is fed
sigma_t = sqrt(1 - alphabar_t), not t, so one trained network serves a schedule rebuilt at any T.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["BETA_MAX", "BETA_MIN", "COSINE_OFFSET", "DDPMSchedule", "cosine_betas"]

COSINE_OFFSET = 0.008
BETA_MIN, BETA_MAX = 1e-4, 0.9999


def cosine_betas(n_steps: int, offset: float = COSINE_OFFSET) -> torch.Tensor:
    """(n_steps,) float64 betas of the cosine schedule, clipped to [BETA_MIN, BETA_MAX]."""
    t = torch.linspace(0, n_steps, n_steps + 1, dtype=torch.float64)
    f = torch.cos(((t / n_steps) + offset) / (1 + offset) * math.pi / 2) ** 2
    alphabar = f / f[0]
    return (1 - alphabar[1:] / alphabar[:-1]).clamp(BETA_MIN, BETA_MAX)


@dataclass(frozen=True, eq=False)
class DDPMSchedule:
    """Per-step quantities of a discrete DDPM schedule; all (n_steps,) float64 on the CPU."""

    betas: torch.Tensor

    @classmethod
    def cosine(cls, n_steps: int) -> DDPMSchedule:
        return cls(cosine_betas(n_steps))

    @property
    def n_steps(self) -> int:
        return len(self.betas)

    @property
    def alphas(self) -> torch.Tensor:
        return 1 - self.betas

    @property
    def alphabar(self) -> torch.Tensor:
        return torch.cumprod(self.alphas, dim=0)

    @property
    def alphabar_prev(self) -> torch.Tensor:
        return torch.cat([torch.ones(1, dtype=self.betas.dtype), self.alphabar[:-1]])

    @property
    def sigmas(self) -> torch.Tensor:
        """sqrt(1 - alphabar_t): the noise level the network sees."""
        return torch.sqrt(1 - self.alphabar)

    @property
    def posterior_variance(self) -> torch.Tensor:
        """beta_t (1 - alphabar_{t-1}) / (1 - alphabar_t): the variance of q(x_{t-1} | x_t, x_0)."""
        return self.betas * (1 - self.alphabar_prev) / (1 - self.alphabar)

    def at(self, values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """values[t] as (B, 1, ..., 1) matching `like`'s rank, dtype and device; t (B,) step indices."""
        picked = values[t.cpu()].to(device=like.device, dtype=like.dtype)
        return picked.reshape(-1, *([1] * (like.dim() - 1)))
