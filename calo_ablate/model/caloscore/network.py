"""The two CaloScore v2 networks and the energy embedding they share.

- layer net: v(layer_t, t, E) over the L layer variables;
  conditioning = Linear(E)(concat[time emb, energy emb]) -> LayerResNet.
- voxel net: v(voxel_t, t, layer, E) over the V voxel variables;
  conditioning = Linear(E)(concat[time emb, layer emb, energy emb]) -> UNet1d.
Each net has its own time embedding; the energy embedding Linear(E) -> swish is one module used by
both (E = model.embed_dim). The networks know nothing of noise schedules: t is just an input in [0, 1].
Weights start as `model.init` says (calo_ablate/model/init.py; Keras's glorot-uniform by default). The
layer net's dropout acts only with `model.layer.dropout_in_training` (the published code never applies
it in training, nor does anyone at sampling).

Optimiser groups: layer_parameters() holds the layer net; voxel_parameters() holds the voxel net
and the shared energy embedding. With one backward pass of loss = voxel loss + layer loss, the
energy embedding's gradient is the sum of both losses' gradients and the voxel optimiser steps it
once (the Keras original applies the two gradients in two separate steps).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from calo_ablate.model.caloscore.config import CaloScoreConfig
from calo_ablate.model.caloscore.embeddings import DenseSwish, TimeEmbedding
from calo_ablate.model.caloscore.init import initialise
from calo_ablate.model.caloscore.layer_resnet import LayerResNet
from calo_ablate.model.caloscore.unet1d import UNet1d
from calo_ablate.model.interface import count_trainable

__all__ = ["CaloScoreNetwork", "LayerNet", "VoxelNet"]

_COND_FEATURES = 1  # the incident-energy condition is one number per shower


class LayerNet(nn.Module):
    """Layer-variable velocity net without the shared energy embedding."""

    def __init__(self, model_config: CaloScoreConfig, n_layers: int) -> None:
        super().__init__()
        e = model_config.embed_dim
        self.time_embedding = TimeEmbedding(model_config.num_frequencies, e)
        self.conditioning = nn.Linear(2 * e, e)
        cfg = model_config.layer
        # the published train step calls the net without training=True, so its Dropout never fires
        dropout = cfg.dropout if cfg.dropout_in_training else 0.0
        self.resnet = LayerResNet(n_layers, e, cfg.mlp_dim, cfg.num_layer, dropout)

    def forward(self, layer_t: torch.Tensor, t: torch.Tensor, energy_emb: torch.Tensor) -> torch.Tensor:
        # layer_t (B, L), t (B,), energy_emb (B, E) -> (B, L)
        cond = self.conditioning(torch.cat([self.time_embedding(t), energy_emb], dim=1))
        return self.resnet(layer_t, cond)


class VoxelNet(nn.Module):
    """Voxel velocity net without the shared energy embedding."""

    def __init__(self, model_config: CaloScoreConfig, n_layers: int) -> None:
        super().__init__()
        e = model_config.embed_dim
        self.time_embedding = TimeEmbedding(model_config.num_frequencies, e)
        self.layer_embedding = DenseSwish(n_layers, e)
        self.conditioning = nn.Linear(3 * e, e)
        cfg = model_config.voxel
        self.unet = UNet1d(cfg.lift_channels, list(cfg.widths), list(cfg.attention), cfg.block_depth,
                           cfg.kernel_size, e, cfg.dropout)

    def forward(self, voxel_t: torch.Tensor, t: torch.Tensor, layer: torch.Tensor,
                energy_emb: torch.Tensor) -> torch.Tensor:
        # voxel_t (B, V), t (B,), layer (B, L), energy_emb (B, E) -> (B, V)
        parts = [self.time_embedding(t), self.layer_embedding(layer), energy_emb]
        return self.unet(voxel_t, self.conditioning(torch.cat(parts, dim=1)))


class CaloScoreNetwork(nn.Module):
    """Both CaloScore v2 nets for a dataset with `n_voxels` voxels in `n_layers` layers.

    Inputs are the preprocessed (standardised) variables; cond is the incident-energy condition in
    [0, 1] (log-scaled, see the preprocessing); t is the diffusion time in [0, 1].
    """

    def __init__(self, model_config: CaloScoreConfig, n_voxels: int, n_layers: int) -> None:
        super().__init__()
        self.n_voxels = n_voxels
        self.n_layers = n_layers
        self.energy_embedding = DenseSwish(_COND_FEATURES, model_config.embed_dim)
        self.layer_net = LayerNet(model_config, n_layers)
        self.voxel_net = VoxelNet(model_config, n_layers)
        initialise(self, model_config.init)

    def layer_velocity(self, layer_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Predicted v for noisy layer variables: layer_t (B, L), t (B,), cond (B, 1) -> (B, L)."""
        return self.layer_net(layer_t, t, self.energy_embedding(cond))

    def voxel_velocity(self, voxel_t: torch.Tensor, t: torch.Tensor, layer: torch.Tensor,
                       cond: torch.Tensor) -> torch.Tensor:
        """Predicted v for noisy voxels given clean layer variables: (B, V), (B,), (B, L), (B, 1) -> (B, V)."""
        return self.voxel_net(voxel_t, t, layer, self.energy_embedding(cond))

    def layer_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters stepped by the layer optimiser: the layer net."""
        yield from self.layer_net.parameters()

    def voxel_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters stepped by the voxel optimiser: the voxel net and the shared energy embedding."""
        yield from self.voxel_net.parameters()
        yield from self.energy_embedding.parameters()

    def parameter_breakdown(self) -> dict[str, int]:
        """Trainable parameters per part; 'total' is their sum (no parameter counted twice)."""
        parts = {
            "voxel_net": count_trainable(self.voxel_net),
            "layer_net": count_trainable(self.layer_net),
            "energy_embedding": count_trainable(self.energy_embedding),
        }
        parts["total"] = sum(parts.values())
        return parts
