"""High-level features against values computed by hand on a tiny geometry, and on the real ones."""

from __future__ import annotations

import math

import numpy as np
import pytest

from calo_ablate.errors import DataError
from calo_ablate.evaluation.features import (
    apply_threshold,
    compute_features,
    default_threshold_mev,
    feature_names,
)
from calo_ablate.geometry import Geometry, Layer, load_geometry

# layer 0: 2 r bins (mids 2, 5 mm), 1 alpha bin; layer 7: 2 r bins (mids 1, 3 mm) x 4 alpha bins
# centred at -3pi/4, -pi/4, pi/4, 3pi/4. Flat order: alpha outer, r inner.
TINY = Geometry(
    name="tiny",
    particle="photon",
    layers=(
        Layer(0, np.array([1.0, 3.0, 7.0]), 1, slice(0, 2)),
        Layer(7, np.array([0.0, 2.0, 4.0]), 4, slice(2, 10)),
    ),
)


def _tiny_showers() -> tuple[np.ndarray, np.ndarray]:
    showers = np.zeros((2, 10), dtype=np.float32)
    showers[0, 0] = 0.5   # layer 0, r mid 2: below the 1 MeV threshold
    showers[0, 1] = 3.0   # layer 0, r mid 5
    showers[0, 2 + 2 * 2 + 0] = 2.0  # layer 7, alpha pi/4, r mid 1
    showers[0, 2 + 3 * 2 + 1] = 6.0  # layer 7, alpha 3pi/4, r mid 3
    return np.array([10.0, 20.0], dtype=np.float32), showers  # the second shower is empty


def test_feature_names_use_xml_layer_ids_and_alpha_binned_layers_only() -> None:
    names = feature_names(TINY)
    assert names[:2] == ["e_ratio", "e_tot"]
    assert {"e_layer_0", "e_layer_7", "centre_eta_7", "width_phi_7", "centre_r_0", "width_r_7",
            "sparsity_0"} <= set(names)
    assert "centre_eta_0" not in names and "width_phi_0" not in names


def test_features_match_hand_computed_values() -> None:
    energies, showers = _tiny_showers()
    f = compute_features(energies, showers, TINY, threshold_mev=1.0)
    s = math.sqrt(0.5)
    eta = np.array([1 * s, -3 * s])   # r cos(alpha) of the two hit voxels of layer 7
    phi = np.array([1 * s, 3 * s])    # r sin(alpha)
    r = np.array([1.0, 3.0])
    w = np.array([2.0, 6.0]) / 8.0
    expected = {
        "e_tot": 11.0, "e_ratio": 1.1, "e_layer_0": 3.0, "e_layer_7": 8.0,
        "centre_r_0": 5.0, "width_r_0": 0.0, "sparsity_0": 0.5, "sparsity_7": 0.75,
        "centre_eta_7": w @ eta, "width_eta_7": math.sqrt(w @ eta**2 - (w @ eta) ** 2),
        "centre_phi_7": w @ phi, "width_phi_7": math.sqrt(w @ phi**2 - (w @ phi) ** 2),
        "centre_r_7": w @ r, "width_r_7": math.sqrt(w @ r**2 - (w @ r) ** 2),  # 2.5 and sqrt(0.75)
    }
    for name, value in expected.items():
        assert f[name][0] == pytest.approx(value, abs=1e-9), name
    assert set(f) == set(feature_names(TINY))


def test_empty_layers_get_zero_centre_and_width_and_full_sparsity() -> None:
    energies, showers = _tiny_showers()
    f = compute_features(energies, showers, TINY, threshold_mev=1.0)
    for name in feature_names(TINY):
        if name.startswith("sparsity"):
            assert f[name][1] == 1.0
        else:
            assert f[name][1] == 0.0, name
    assert all(np.isfinite(v).all() for v in f.values())


def test_chunked_computation_equals_one_pass() -> None:
    geometry = load_geometry("1-photons")
    rng = np.random.default_rng(1)
    showers = (rng.exponential(5.0, (50, geometry.n_voxels)) * (rng.random((50, geometry.n_voxels)) < 0.4))
    energies = rng.uniform(500.0, 5000.0, 50)
    whole = compute_features(energies, showers, geometry, 1.0)
    chunked = compute_features(energies, showers, geometry, 1.0, chunk_events=7)
    for name in whole:
        np.testing.assert_allclose(chunked[name], whole[name], rtol=1e-12, err_msg=name)


def test_threshold_zeroes_voxels_below_it_and_keeps_the_dtype() -> None:
    showers = np.array([[0.5, 1.0, 2.0, -3.0]])
    np.testing.assert_array_equal(apply_threshold(showers, 1.0), [[0.0, 1.0, 2.0, 0.0]])  # 1.0 itself stays
    assert apply_threshold(showers, 1.0).dtype == np.float64
    assert apply_threshold(showers.astype(np.float32), 1.0).dtype == np.float32
    assert default_threshold_mev("1") == 1.0
    assert default_threshold_mev("3") == pytest.approx(0.01515, rel=1e-3)


def test_wrong_shape_names_the_geometry() -> None:
    with pytest.raises(DataError, match="tiny"):
        compute_features(np.ones(3), np.ones((3, 11)), TINY, 1.0)


def test_every_dataset_geometry_gives_finite_features() -> None:
    rng = np.random.default_rng(0)
    for dataset in ("1-pions", "2"):
        geometry = load_geometry(dataset)
        showers = rng.exponential(1.0, (4, geometry.n_voxels)) * (rng.random((4, geometry.n_voxels)) < 0.3)
        f = compute_features(np.full(4, 1000.0), showers, geometry, default_threshold_mev(dataset))
        assert len(f) == len(feature_names(geometry))
        assert all(np.isfinite(v).all() and v.shape == (4,) for v in f.values())
