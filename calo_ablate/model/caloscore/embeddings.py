"""Conditioning embeddings of CaloScore v2: diffusion time, incident energy, layer variables.

The time embedding turns t in [0, 1] into `num_frequencies` sine and cosine features at fixed
log-spaced frequencies f_k = exp(-k ln(1e4) / (num_frequencies - 1)), angle = 1000 t f_k, then an
MLP: Linear(2 * embed_dim) -> swish -> Linear(embed_dim) (2 * 64 = 128 for the published model).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["DenseSwish", "TimeEmbedding"]

_MAX_PERIOD = 1e4     # the lowest frequency is 1 / 1e4 of the highest
_TIME_SCALE = 1000.0  # t in [0, 1] is stretched to [0, 1000] before the sinusoids


class TimeEmbedding(nn.Module):
    """t (B,) in [0, 1] -> (B, embed_dim): fixed sinusoidal features, then a two-layer swish MLP."""

    frequencies: torch.Tensor  # (F,) a buffer, registered in __init__

    def __init__(self, num_frequencies: int, embed_dim: int) -> None:
        super().__init__()
        k = torch.arange(num_frequencies, dtype=torch.float32)
        # not a parameter and not in the state dict: it is a pure function of num_frequencies
        self.register_buffer("frequencies", torch.exp(-k * math.log(_MAX_PERIOD) / (num_frequencies - 1)),
                             persistent=False)
        self.mlp = nn.Sequential(
            nn.Linear(2 * num_frequencies, 2 * embed_dim),
            nn.SiLU(),
            nn.Linear(2 * embed_dim, embed_dim),
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angle = _TIME_SCALE * t.reshape(-1, 1).to(self.frequencies.dtype) * self.frequencies  # (B, F)
        features = torch.cat([torch.sin(angle), torch.cos(angle)], dim=1)  # (B, 2F)
        return self.mlp(features.to(next(self.mlp.parameters()).dtype))  # the first Linear's weight dtype


class DenseSwish(nn.Sequential):
    """Linear(in_features -> out_features) then swish: the energy and layer-variable embeddings."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(nn.Linear(in_features, out_features), nn.SiLU())
