"""CaloDiffusionNetwork: GLaM (when learned), coordinate channels and the U-Net, on flat diffusion vectors.

The diffusion space is the flat voxel vector with GLaM learned (noise, loss and sampling there; the
U-Net sees C x_t and its output goes through D), else the regular grid flattened in (z, alpha, r) order
(GLaM fixed: the preprocessing already applied the fixed map; datasets 2 and 3 need none).
With LayerDiffusion the U-Net's condition is [energy c, layer vector] (n_cond = n_layers + 2).
"""

from __future__ import annotations

import torch
from torch import nn

from calo_ablate.geometry import Geometry
from calo_ablate.model.calodiffusion.config import CaloDiffusionConfig
from calo_ablate.model.calodiffusion.geometry_map import GeometryLatentMap, coordinate_channels, regular_grid
from calo_ablate.model.calodiffusion.unet import CondUnet

__all__ = ["CaloDiffusionNetwork"]


class CaloDiffusionNetwork(nn.Module):
    """forward(x_t (B, D), sigma (B,), energy (B,) or (B, n_cond)) -> network output (B, D); D = n_features."""

    def __init__(self, config: CaloDiffusionConfig, geometry: Geometry) -> None:
        super().__init__()
        self.grid = regular_grid(geometry)
        self.glam = GeometryLatentMap(geometry, learned=True, init_noise=config.glam_init_noise) \
            if config.glam == "learned" else None
        self.n_features = geometry.n_voxels if self.glam is not None else self.grid.n_voxels
        coords = coordinate_channels(self.grid, rz=config.rz_channels, phi=config.phi_channel)
        n_cond = 1 + (geometry.n_layers + 1 if config.layer_diffusion.enabled else 0)
        self.unet = CondUnet(config, coords, n_cond)

    def forward(self, x_t: torch.Tensor, sigma: torch.Tensor, energy: torch.Tensor) -> torch.Tensor:
        b = x_t.shape[0]
        grid = self.glam.encode(x_t) if self.glam is not None else x_t.reshape(b, *self.grid.shape)
        out = self.unet(grid[:, None], sigma, energy)[:, 0]                    # (B, z, alpha, r)
        return self.glam.decode(out) if self.glam is not None else out.reshape(b, -1)
