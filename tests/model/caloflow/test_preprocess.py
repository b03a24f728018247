"""CaloFlow preprocessing: unit space and per-layer normalisation, their inverses, renormalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from calo_ablate.errors import DataError
from calo_ablate.geometry import load_geometry
from calo_ablate.model.caloflow.config import CaloFlowConfig
from calo_ablate.model.caloflow.preprocess import (
    CaloFlowPreprocessor,
    flow1_features,
    flow2_features,
    from_unit_space,
    layer_energies,
    layer_slices,
    renormalise_layers,
    to_unit_space,
)

from .conftest import synthetic


@pytest.mark.parametrize("dataset", ["1-photons", "1-pions"])
def test_transform_then_inverse_gives_the_showers_back(dataset: str) -> None:
    energies, showers = synthetic(dataset, 64)
    config = CaloFlowConfig().resolved(dataset)
    geometry = load_geometry(dataset)
    pre = CaloFlowPreprocessor(geometry, config)
    e_inc, units = (torch.from_numpy(a).double() for a in pre.transform(energies, showers))
    slices = layer_slices(geometry)
    x1, _ = flow1_features(units, e_inc, slices, config)
    x2, _ = flow2_features(units, e_inc, slices, config)
    back = pre.inverse(energies, x1.numpy(), x2.numpy())
    expected = np.where(showers < config.sample_threshold_mev, 0.0, showers)
    assert back.shape == showers.shape
    # the logit's alpha leaves ~1e-6 of a layer's energy per voxel: within 1e-5 of the layer energy
    tolerance = 1e-5 * geometry.layer_energies(showers)[:, geometry.voxel_layer] + 1e-3
    assert np.all(np.abs(back - expected) <= tolerance)


def test_unit_space_round_trip_and_its_rescaling() -> None:
    layers = torch.tensor([[1.0, 2.0, 0.5, 0.0, 0.25]], dtype=torch.float64)
    e_inc = torch.tensor([[2.0]], dtype=torch.float64)
    u = to_unit_space(layers, e_inc, u0_scale=2.42)
    assert u[0, 0].item() == pytest.approx(3.75 / (2.42 * 2.0))
    assert u[0, 1].item() == pytest.approx(1.0 / 3.75)
    assert torch.allclose(from_unit_space(u, e_inc, 2.42), layers)
    assert to_unit_space(layers, e_inc, u0_scale=1.0)[0, 0].item() == 1.0  # E_tot / E_inc > 1 is clamped


def test_flow2_input_is_every_layer_normalised_to_one() -> None:
    dataset = "1-photons"
    _, showers = synthetic(dataset, 8)
    config = CaloFlowConfig().resolved(dataset)
    slices = layer_slices(load_geometry(dataset))
    units = torch.from_numpy(showers).double() / 1e5
    x2, cond = flow2_features(units, torch.ones(8, 1, dtype=torch.float64), slices, config)
    normed = (torch.sigmoid(x2) - config.logit_alpha) / (1 - 2 * config.logit_alpha)
    sums = layer_energies(normed, slices)
    occupied = layer_energies(units, slices) > 0
    assert torch.allclose(sums[occupied], torch.ones_like(sums[occupied]))
    assert cond.shape == (8, 1 + len(slices))


def test_renormalisation_makes_every_layer_sum_to_its_flow1_energy() -> None:
    slices = (slice(0, 3), slice(3, 5))
    voxels = torch.tensor([[0.2, -0.1, 0.3, 0.0, 0.0], [1.0, 1.0, 2.0, 3.0, 1.0]], dtype=torch.float64)
    layers = torch.tensor([[6.0, 2.0], [8.0, 4.0]], dtype=torch.float64)
    out = renormalise_layers(voxels, layers, slices)
    assert torch.allclose(out[0], torch.tensor([2.0, -1.0, 3.0, 0.0, 0.0], dtype=torch.float64))  # x / sum|x|
    assert torch.allclose(layer_energies(out, slices)[1], layers[1])


def test_wrong_voxel_count_is_refused() -> None:
    pre = CaloFlowPreprocessor(load_geometry("1-photons"), CaloFlowConfig().resolved("1-photons"))
    with pytest.raises(DataError, match="expected showers"):
        pre.transform(np.ones(3), np.ones((3, 533)))
