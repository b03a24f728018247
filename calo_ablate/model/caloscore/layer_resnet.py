"""The CaloScore v2 layer net: a residual MLP over the L layer variables with scale/shift conditioning.

embed = LeakyReLU(Linear(mlp_dim)(cond)); h = Linear(mlp_dim)(x); then num_layer - 1 blocks
  residual = Linear(mlp_dim)(h); scale, shift = Linear(2 mlp_dim)(embed);
  y = LeakyReLU((1 + scale) * Linear(mlp_dim)(LeakyReLU(h)) + shift); y = Linear(mlp_dim)(Dropout(y));
  h = y + residual;
and Linear(L)(h). LeakyReLU slope 0.01.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LayerResNet", "ScaleShiftBlock"]

_SLOPE = 0.01


class ScaleShiftBlock(nn.Module):
    """One residual block of the layer net: h (B, D), embed (B, D) -> (B, D)."""

    def __init__(self, mlp_dim: int, dropout: float) -> None:
        super().__init__()
        self.residual = nn.Linear(mlp_dim, mlp_dim)
        self.scale_shift = nn.Linear(mlp_dim, 2 * mlp_dim)
        self.inner = nn.Linear(mlp_dim, mlp_dim)
        self.dropout = nn.Dropout(dropout)
        self.outer = nn.Linear(mlp_dim, mlp_dim)

    def forward(self, h: torch.Tensor, embed: torch.Tensor) -> torch.Tensor:
        scale, shift = self.scale_shift(embed).chunk(2, dim=1)  # (B, D) each
        y = self.inner(F.leaky_relu(h, _SLOPE))
        y = F.leaky_relu((1 + scale) * y + shift, _SLOPE)
        return self.outer(self.dropout(y)) + self.residual(h)


class LayerResNet(nn.Module):
    """(B, L) layer variables and (B, cond_dim) condition -> (B, L) output (the predicted velocity)."""

    def __init__(self, n_layers: int, cond_dim: int, mlp_dim: int, num_layer: int, dropout: float) -> None:
        super().__init__()
        self.embed = nn.Linear(cond_dim, mlp_dim)
        self.input = nn.Linear(n_layers, mlp_dim)
        self.blocks = nn.ModuleList(ScaleShiftBlock(mlp_dim, dropout) for _ in range(num_layer - 1))
        self.output = nn.Linear(mlp_dim, n_layers)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        embed = F.leaky_relu(self.embed(cond), _SLOPE)  # (B, D)
        h = self.input(x)  # (B, D)
        for block in self.blocks:
            h = block(h, embed)
        return self.output(h)  # (B, L)
