"""Training objectives of CaloDiffusion and how each turns the network output into a noise estimate.

x_t = sqrt(alphabar_t) x_0 + sqrt(1 - alphabar_t) eps; F = network(x_t, sigma_t); s2 = 1 - alphabar_t.
- noise_pred (datasets 1 and 2): F estimates eps; loss = mean over all elements of (F - eps)^2.
- hybrid_weight (dataset 3): x0_hat = c_skip x_t + c_out F, c_skip = 1 / (1 + s2),
  c_out = sqrt(s2 / (1 + s2)); w = 1 + 1 / s2 per shower; loss = sum over showers and voxels of
  w (x0_hat - x_0)^2 / (mean(w) * voxels per shower). As in the reference it grows with the batch size.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from calo_ablate.errors import ConfigError
from calo_ablate.model.calodiffusion.schedule import DDPMSchedule

__all__ = ["OBJECTIVES", "eps_from_output", "training_loss"]

OBJECTIVES = ("noise_pred", "hybrid_weight")
Predictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]   # (x_t (B, D), sigma (B,)) -> F (B, D)


def _x0_estimate(output: torch.Tensor, x_t: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    return x_t / (1 + s2) + torch.sqrt(s2 / (1 + s2)) * output


def training_loss(objective: str, predict: Predictor, x0: torch.Tensor, t: torch.Tensor,
                  schedule: DDPMSchedule, noise: torch.Tensor) -> torch.Tensor:
    """Scalar loss of the showers x0 (B, D) at steps t (B,) with the noise (B, D)."""
    alphabar = schedule.at(schedule.alphabar, t, x0)                       # (B, 1)
    x_t = torch.sqrt(alphabar) * x0 + torch.sqrt(1 - alphabar) * noise
    output = predict(x_t, schedule.at(schedule.sigmas, t, x0).reshape(-1))
    if objective == "noise_pred":
        return torch.mean((output - noise) ** 2)
    if objective == "hybrid_weight":
        s2 = 1 - alphabar
        weight = 1 + 1 / s2                                                # (B, 1)
        squared = weight * (_x0_estimate(output, x_t, s2) - x0) ** 2
        return squared.sum() / (weight.mean() * x0.shape[1])
    msg = f"unknown CaloDiffusion objective {objective!r}: expected one of {', '.join(OBJECTIVES)}"
    raise ConfigError(msg)


def eps_from_output(objective: str, output: torch.Tensor, x_t: torch.Tensor,
                    alphabar: torch.Tensor) -> torch.Tensor:
    """The noise estimate implied by the network output F (alphabar (B, 1) or a scalar tensor)."""
    if objective == "noise_pred":
        return output
    if objective == "hybrid_weight":
        s2 = 1 - alphabar
        return (x_t - torch.sqrt(alphabar) * _x0_estimate(output, x_t, s2)) / torch.sqrt(s2)
    msg = f"unknown CaloDiffusion objective {objective!r}: expected one of {', '.join(OBJECTIVES)}"
    raise ConfigError(msg)
