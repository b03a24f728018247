"""LayerDiffusion (CaloDiffusion 2.0, models/layerdiffusion.py of the authors' later code): the layer model.

A diffusion model of its own for the layer vector [u_tot, fractions] (n_layers + 1 numbers, preprocess.py),
on the family's cosine schedule and objective: Linear(n + 1 -> hidden), `blocks` residual dense blocks,
Linear(hidden -> n + 1). A block: h1 = GELU(Linear(h)) + Linear(GELU(cond)); out = GELU(Linear(h1)) + h.
cond is [time MLP(sigma), energy MLP(c)] as in the U-Net (2 x embed_dim). With the published sizes
(hidden 256, 4 blocks, embeddings 32 / 64) it has 674,438 parameters for dataset 1 photons, 675,464 for
pions and 694,958 for dataset 2, the reference's counts. Sampled with DDIM (eta 0), the reference's
default layer sampler.
"""

from __future__ import annotations

import torch
from torch import nn

from calo_ablate.model.calodiffusion.config import CaloDiffusionConfig
from calo_ablate.model.calodiffusion.unet import embedding_mlp

__all__ = ["LayerResNet"]


class _DenseBlock(nn.Module):
    def __init__(self, hidden: int, cond_dim: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(hidden, hidden)
        self.cond = nn.Linear(cond_dim, hidden)
        self.linear2 = nn.Linear(hidden, hidden)
        self.act = nn.GELU()

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h1 = self.act(self.linear1(h)) + self.cond(self.act(cond))
        return self.act(self.linear2(h1)) + h


class LayerResNet(nn.Module):
    """forward(z_t (B, n), sigma (B,), energy (B,)) -> network output (B, n); n = n_layers + 1."""

    def __init__(self, config: CaloDiffusionConfig, n_features: int) -> None:
        super().__init__()
        hidden = config.layer_diffusion.hidden
        self.n_features = n_features
        self.time_mlp = embedding_mlp(config.embed_hidden, config.embed_dim)
        self.energy_mlp = embedding_mlp(config.embed_hidden, config.embed_dim)
        self.input = nn.Linear(n_features, hidden)
        self.blocks = nn.ModuleList(_DenseBlock(hidden, 2 * config.embed_dim)
                                    for _ in range(config.layer_diffusion.blocks))
        self.output = nn.Linear(hidden, n_features)

    def forward(self, z_t: torch.Tensor, sigma: torch.Tensor, energy: torch.Tensor) -> torch.Tensor:
        b = z_t.shape[0]
        cond = torch.cat([self.time_mlp(sigma.reshape(b, 1)), self.energy_mlp(energy.reshape(b, 1))], dim=1)
        h = self.input(z_t)
        for block in self.blocks:
            h = block(h, cond)
        return self.output(h)
