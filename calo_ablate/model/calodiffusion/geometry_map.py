"""GLaM, the geometry latent mapping of CaloDiffusion: irregular layers <-> one regular (z, alpha, r) grid.

Regular grid: every layer gets the largest alpha count and the union of all layers' radial edges
(dataset 1 photons: 5 x 10 x 30 from 368 voxels; pions: 7 x 10 x 23 from 533). Datasets 2 and 3 are
regular already: the map is the identity there.

Encoder, per layer i, one bias-free linear map C_i (n_grid_r, n_i) on the radial axis, the same for each
of the layer's alpha bins. Initialised from bin overlaps: C_i[j, k] = (r_{j+1}^2 - r_j^2) /
(R_{k+1}^2 - R_k^2) when grid bin j lies inside layer bin k, else 0 (area split: columns sum to 1).
Decoder D_i = pinv(C_i). A single-alpha layer's encoded row is divided by n_alpha and copied into every
alpha bin; its decoded alpha bins are summed (fixed, no parameters), so D C = identity.
Learned: C_i and D_i are trainable, with init_noise * N(0, 1) added at construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from calo_ablate.errors import DataError
from calo_ablate.geometry import Geometry

__all__ = ["GeometryLatentMap", "RegularGrid", "coordinate_channels", "overlap_encoder", "regular_grid"]


@dataclass(frozen=True, eq=False)
class RegularGrid:
    """The (z, alpha, r) grid the U-Net works on."""

    n_layers: int
    n_alpha: int
    r_edges_mm: np.ndarray   # (n_r + 1,)
    identity: bool           # True when every layer already has these edges and alpha bins

    @property
    def n_r(self) -> int:
        return len(self.r_edges_mm) - 1

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.n_layers, self.n_alpha, self.n_r

    @property
    def n_voxels(self) -> int:
        return self.n_layers * self.n_alpha * self.n_r

    @property
    def r_mid_mm(self) -> np.ndarray:
        return 0.5 * (self.r_edges_mm[1:] + self.r_edges_mm[:-1])


def regular_grid(geometry: Geometry) -> RegularGrid:
    """The grid of `geometry`: largest alpha count, union of radial edges; one z slice per layer."""
    n_alpha = max(layer.n_alpha for layer in geometry.layers)
    odd = [layer.layer_id for layer in geometry.layers if layer.n_alpha not in (1, n_alpha)]
    if odd:
        msg = f"geometry {geometry.name!r}: layers {odd} have neither 1 nor {n_alpha} alpha bins; " \
              "GLaM maps only those two cases onto the regular grid"
        raise DataError(msg)
    edges = np.unique(np.concatenate([layer.r_edges_mm for layer in geometry.layers]))
    identity = all(layer.n_alpha == n_alpha and np.array_equal(layer.r_edges_mm, edges)
                   for layer in geometry.layers)
    return RegularGrid(geometry.n_layers, n_alpha, edges, identity)


def overlap_encoder(layer_edges_mm: np.ndarray, grid_edges_mm: np.ndarray) -> np.ndarray:
    """C (n_grid_r, n_layer_r): area share of each grid bin in the layer bin that contains it."""
    if not np.all(np.isin(layer_edges_mm, grid_edges_mm)):
        msg = f"layer edges {layer_edges_mm} are not all grid edges: the grid must refine every layer"
        raise DataError(msg)
    grid_lo, grid_hi = grid_edges_mm[:-1], grid_edges_mm[1:]
    n_layer = len(layer_edges_mm) - 1
    owner = np.searchsorted(layer_edges_mm, grid_lo, side="right") - 1      # (n_grid_r,)
    inside = (owner >= 0) & (owner < n_layer) & (grid_hi <= layer_edges_mm[-1])
    encoder = np.zeros((len(grid_lo), n_layer))
    rows = np.flatnonzero(inside)
    cols = owner[rows]
    layer_area = layer_edges_mm[cols + 1] ** 2 - layer_edges_mm[cols] ** 2
    encoder[rows, cols] = (grid_hi[rows] ** 2 - grid_lo[rows] ** 2) / layer_area
    return encoder


def coordinate_channels(grid: RegularGrid, rz: bool, phi: bool) -> torch.Tensor:
    """(n_channels, z, alpha, r) float32: R = r midpoint / last midpoint, Z = layer / n_layers,
    phi = linspace(0, 1, n_alpha); R and Z when rz, phi when phi (0 channels when both are off)."""
    n_z, n_alpha, n_r = grid.shape
    channels = []
    if rz:
        r = torch.tensor(grid.r_mid_mm / grid.r_mid_mm[-1], dtype=torch.float32)
        z = torch.arange(n_z, dtype=torch.float32) / n_z
        channels += [r.expand(n_z, n_alpha, n_r), z[:, None, None].expand(n_z, n_alpha, n_r)]
    if phi:
        channels.append(torch.linspace(0.0, 1.0, n_alpha)[None, :, None].expand(n_z, n_alpha, n_r))
    if not channels:
        return torch.zeros(0, n_z, n_alpha, n_r)
    return torch.stack(channels).contiguous()


class GeometryLatentMap(nn.Module):
    """encode: flat voxels (B, V) -> grid (B, z, alpha, r); decode: the way back.

    learned: C_i, D_i are trainable parameters with init_noise * N(0, 1) added (torch's global RNG);
    otherwise they are frozen at the exact overlap map and its pseudo-inverse (computed in float64, stored
    as `dtype`).
    """

    def __init__(self, geometry: Geometry, learned: bool, init_noise: float = 1e-5,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.grid = regular_grid(geometry)
        self.slices = [layer.voxel_slice for layer in geometry.layers]
        self.layer_alpha = [layer.n_alpha for layer in geometry.layers]
        exact = [torch.tensor(overlap_encoder(layer.r_edges_mm, self.grid.r_edges_mm), dtype=torch.float64)
                 for layer in geometry.layers]
        encoders = [c.to(dtype) for c in exact]
        decoders = [torch.linalg.pinv(c).to(dtype) for c in exact]
        if learned:
            encoders = [c + init_noise * torch.randn_like(c) for c in encoders]
            decoders = [d + init_noise * torch.randn_like(d) for d in decoders]
        self.encoders = nn.ParameterList([nn.Parameter(c, requires_grad=learned) for c in encoders])
        self.decoders = nn.ParameterList([nn.Parameter(d, requires_grad=learned) for d in decoders])

    def encode(self, flat: torch.Tensor) -> torch.Tensor:
        """(B, V) -> (B, z, alpha, r)."""
        n_alpha = self.grid.n_alpha
        slices = []
        for piece, layer_alpha, encoder in zip(self.slices, self.layer_alpha, self.encoders, strict=True):
            x = flat[:, piece].reshape(flat.shape[0], layer_alpha, -1)      # (B, a_i, n_i)
            g = x @ encoder.T                                               # (B, a_i, n_grid_r)
            if layer_alpha == 1:
                g = (g / n_alpha).expand(-1, n_alpha, -1)
            slices.append(g)
        return torch.stack(slices, dim=1)

    def decode(self, grid: torch.Tensor) -> torch.Tensor:
        """(B, z, alpha, r) -> (B, V)."""
        pieces = []
        for i, (layer_alpha, decoder) in enumerate(zip(self.layer_alpha, self.decoders, strict=True)):
            x = grid[:, i] @ decoder.T                                      # (B, alpha, n_i)
            if layer_alpha == 1:
                x = x.sum(dim=1, keepdim=True)
            pieces.append(x.flatten(1))
        return torch.cat(pieces, dim=1)
