"""GLaM: the regular grid, the bin-overlap encoder, its pseudo-inverse, the coordinate channels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from calo_ablate.errors import DataError
from calo_ablate.geometry import load_geometry
from calo_ablate.model.calodiffusion.geometry_map import (
    GeometryLatentMap,
    coordinate_channels,
    overlap_encoder,
    regular_grid,
)


@pytest.mark.parametrize(("dataset", "shape", "identity"), [
    ("1-photons", (5, 10, 30), False), ("1-pions", (7, 10, 23), False),
    ("2", (45, 16, 9), True), ("3", (45, 50, 18), True),
])
def test_regular_grid_takes_the_largest_alpha_count_and_the_union_of_edges(dataset, shape, identity) -> None:
    grid = regular_grid(load_geometry(dataset))
    assert (grid.shape, grid.identity) == (shape, identity)


def test_overlap_encoder_by_hand() -> None:
    # layer bins [0, 2], [2, 4]; grid bins [0, 1], [1, 2], [2, 4], [4, 6] (the last outside the layer)
    encoder = overlap_encoder(np.array([0.0, 2.0, 4.0]), np.array([0.0, 1.0, 2.0, 4.0, 6.0]))
    np.testing.assert_allclose(encoder, [[0.25, 0.0], [0.75, 0.0], [0.0, 1.0], [0.0, 0.0]])


def test_encoder_needs_a_refining_grid() -> None:
    with pytest.raises(DataError, match="not all grid edges"):
        overlap_encoder(np.array([0.0, 3.0]), np.array([0.0, 1.0, 2.0]))


@pytest.mark.parametrize("dataset", ["1-photons", "1-pions"])
def test_fixed_map_keeps_energy_and_decodes_exactly(dataset: str) -> None:
    geometry = load_geometry(dataset)
    glam = GeometryLatentMap(geometry, learned=False, dtype=torch.float64)
    for encoder in glam.encoders:   # area split: each layer bin's energy goes somewhere on the grid
        np.testing.assert_allclose(encoder.sum(dim=0).numpy(), 1.0, atol=1e-12)
    for layer, encoder, decoder in zip(geometry.layers, glam.encoders, glam.decoders, strict=True):
        assert encoder.shape == (glam.grid.n_r, layer.n_r)
        np.testing.assert_allclose((decoder @ encoder).detach().numpy(), np.eye(layer.n_r), atol=1e-10)
    showers = torch.rand(4, geometry.n_voxels, dtype=torch.float64)
    grid = glam.encode(showers)
    assert grid.shape == (4, *glam.grid.shape)
    np.testing.assert_allclose(grid.sum(dim=(1, 2, 3)).detach().numpy(), showers.sum(dim=1).numpy(), rtol=1e-12)
    torch.testing.assert_close(glam.decode(grid), showers)


def test_single_alpha_layer_is_spread_evenly_over_the_alpha_bins() -> None:
    geometry = load_geometry("1-photons")
    glam = GeometryLatentMap(geometry, learned=False)
    showers = torch.zeros(1, geometry.n_voxels)
    showers[0, 0] = 1.0   # layer 0 (one alpha bin), r bin [0, 5] mm = grid bins [0, 2], [2, 4], [4, 5]
    grid = glam.encode(showers)[0, 0]                        # (alpha, r)
    expected = torch.tensor([4.0, 12.0, 9.0]) / 25.0 / 10.0
    torch.testing.assert_close(grid[:, :3], expected.expand(10, 3))
    assert float(grid[:, 3:].abs().sum()) == 0.0


def test_learned_map_is_trainable_and_starts_near_the_overlap_map() -> None:
    geometry = load_geometry("1-photons")
    torch.manual_seed(0)
    learned, fixed = GeometryLatentMap(geometry, learned=True), GeometryLatentMap(geometry, learned=False)
    assert sum(p.numel() for p in learned.parameters() if p.requires_grad) == 3_180
    assert not any(p.requires_grad for p in fixed.parameters())
    gaps = [float((a - b).abs().max()) for a, b in zip(learned.parameters(), fixed.parameters(), strict=True)]
    assert 0.0 < max(gaps) < 1e-4


@pytest.mark.parametrize(("dataset", "last_mid_mm"), [
    ("1-photons", 1500.0), ("1-pions", 1500.0), ("2", 39.525), ("3", 40.6875),
])
def test_coordinate_channels(dataset: str, last_mid_mm: float) -> None:
    grid = regular_grid(load_geometry(dataset))
    assert grid.r_mid_mm[-1] == pytest.approx(last_mid_mm)
    r, z, phi = coordinate_channels(grid, rz=True, phi=True)
    n_z, n_alpha, n_r = grid.shape
    torch.testing.assert_close(r[0, 0], torch.tensor(grid.r_mid_mm / last_mid_mm, dtype=torch.float32))
    torch.testing.assert_close(z[:, 0, 0], torch.arange(n_z) / n_z)
    torch.testing.assert_close(phi[0, :, 0], torch.linspace(0, 1, n_alpha))
    assert coordinate_channels(grid, rz=False, phi=True).shape == (1, n_z, n_alpha, n_r)
    assert coordinate_channels(grid, rz=False, phi=False).shape == (0, n_z, n_alpha, n_r)
