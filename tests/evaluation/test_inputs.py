"""The official classifier input vectors: length and column order for every dataset, transforms by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from calo_ablate.evaluation.features import apply_threshold, compute_features, default_threshold_mev
from calo_ablate.evaluation.inputs import (
    cls_high_columns,
    cls_high_inputs,
    cls_low_inputs,
    cls_low_normed_inputs,
)
from calo_ablate.geometry import load_geometry

# dataset: (cls-low, cls-low-normed, cls-high) widths without the label column
WIDTHS = {"1-photons": (369, 374, 30), "1-pions": (534, 541, 46), "2": (6481, 6526, 362), "3": (40501, 40546, 362)}


@pytest.mark.parametrize("dataset", list(WIDTHS))
def test_input_vectors_have_the_official_widths(dataset: str) -> None:
    geometry = load_geometry(dataset)
    rng = np.random.default_rng(0)
    raw = rng.exponential(2.0, (2, geometry.n_voxels)) * (rng.random((2, geometry.n_voxels)) < 0.3)
    energies = np.array([1000.0, 5000.0])
    threshold = default_threshold_mev(dataset)
    showers = apply_threshold(raw, threshold)
    features = compute_features(energies, showers, geometry, threshold)
    widths = (cls_low_inputs(energies, showers).shape[1],
              cls_low_normed_inputs(energies, raw, features, geometry).shape[1],
              cls_high_inputs(energies, features, geometry).shape[1])
    assert widths == WIDTHS[dataset]


def test_cls_high_column_order_for_photons() -> None:
    names = [name for name, _ in cls_high_columns(load_geometry("1-photons"))]
    layers, alpha = [0, 1, 2, 3, 12], [1, 2]
    expected = ([f"e_layer_{i}" for i in layers] + [f"centre_eta_{i}" for i in alpha]
                + [f"centre_phi_{i}" for i in alpha] + [f"width_eta_{i}" for i in alpha]
                + [f"width_phi_{i}" for i in alpha] + ["e_tot"] + [f"sparsity_{i}" for i in layers]
                + [f"centre_r_{i}" for i in layers] + [f"width_r_{i}" for i in layers])
    assert names == expected
    pion_alpha = [name for name, _ in cls_high_columns(load_geometry("1-pions")) if name.startswith("centre_eta")]
    assert pion_alpha == ["centre_eta_1", "centre_eta_2", "centre_eta_12", "centre_eta_13"]


def test_cls_high_transforms_by_hand() -> None:
    geometry = load_geometry("1-photons")
    features = {name: np.array([float(k + 1)]) for k, (name, _) in enumerate(cls_high_columns(geometry))}
    row = cls_high_inputs(np.array([1000.0]), features, geometry)[0]
    assert row[0] == 3.0  # log10 E_inc
    assert row[1] == pytest.approx(math.log10(1.0 + 1e-8))  # log10(E_layer 0 + 1e-8)
    assert row[6] == pytest.approx(6.0 / 100)  # EC_eta of layer 1 / 100
    assert row[14] == pytest.approx(math.log10(14.0 + 1e-8))  # log10(E_tot + 1e-8)
    assert row[15] == 15.0  # sparsity of layer 0, as it is
    assert len(row) == 30 and row[-1] == pytest.approx(29.0 / 100)  # width_r of layer 12 / 100


def test_cls_low_and_low_normed_by_hand() -> None:
    geometry = load_geometry("1-photons")  # layer 0: voxels 0..7, layer 1: 8..167, ...
    raw = np.zeros((1, geometry.n_voxels))
    raw[0, 0], raw[0, 1], raw[0, 8] = 3.0, 1.0, 0.5  # 0.5 MeV: below the 1 MeV threshold
    raw[0, 9] = -2.0
    showers = apply_threshold(raw, 1.0)
    features = compute_features(np.array([100.0]), showers, geometry, 1.0)
    low = cls_low_inputs(np.array([100.0]), showers)[0]
    assert (low[0], low[1], low[2], low[9]) == (2.0, 0.03, 0.01, 0.0)
    normed = cls_low_normed_inputs(np.array([100.0]), raw, features, geometry)[0]
    assert normed[1] == pytest.approx(0.75) and normed[2] == pytest.approx(0.25)
    assert normed[9] == pytest.approx(0.5 / 1e-16)  # not thresholded; layer 1's thresholded energy is 0
    assert normed[10] == 0.0  # negatives -> 0
    np.testing.assert_allclose(normed[-5:], np.log10(np.array([4.0, 0.0, 0.0, 0.0, 0.0]) + 1e-8))
    assert low.dtype == normed.dtype == np.float64
