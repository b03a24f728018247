"""Separation power, binnings, Frechet distance, FPD and KPD."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import linalg

from calo_ablate.evaluation.features import compute_features
from calo_ablate.evaluation.metrics import (
    _mmd2_unbiased,
    feature_bins,
    fpd,
    frechet_distance,
    kpd,
    separation_power,
)
from calo_ablate.geometry import load_geometry


def test_separation_power_hand_computed() -> None:
    edges = np.array([0.0, 1.0, 2.0])
    # h1 = [1, 0], h2 = [1/2, 1/2]: S = 1/2 (0.25 / 1.5 + 0.25 / 0.5) = 1/3
    assert separation_power(np.array([0.5, 0.5]), np.array([0.5, 1.5]), edges) == pytest.approx(1 / 3)


def test_separation_power_identical_near_zero_disjoint_one() -> None:
    rng = np.random.default_rng(0)
    edges = np.linspace(-4, 4, 41)
    a, b = rng.normal(size=20000), rng.normal(size=20000)
    assert separation_power(a, a, edges) == 0.0
    assert separation_power(a, b, edges) < 0.005
    assert separation_power(a, b + 20.0, edges) == pytest.approx(1.0, abs=1e-3)  # overflow in the last bin


def test_official_binnings() -> None:
    g1, gp, g2 = load_geometry("1-photons"), load_geometry("1-pions"), load_geometry("2")
    ref = np.array([0.0, 10.0, 1000.0])
    e_ratio = feature_bins("e_ratio", ref, g1, "1", 1.0)
    assert (len(e_ratio), e_ratio[0], e_ratio[-1]) == (101, 0.5, 1.5)
    assert feature_bins("e_ratio", ref, gp, "1-pions", 1.0)[0] == 0.0
    assert feature_bins("centre_eta_1", ref, g1, "1", 1.0)[[0, -1]].tolist() == [-100.0, 100.0]
    assert feature_bins("centre_eta_12", ref, gp, "1-pions", 1.0)[[0, -1]].tolist() == [-500.0, 500.0]
    assert feature_bins("centre_phi_3", ref, g2, "2", 0.01515)[[0, -1]].tolist() == [-30.0, 30.0]
    assert feature_bins("width_phi_2", ref, g1, "1", 1.0)[[0, -1]].tolist() == [0.0, 100.0]
    e_layer = feature_bins("e_layer_2", ref, g1, "1", 1.0)
    assert len(e_layer) == 41 and e_layer[0] == pytest.approx(1.0) and e_layer[-1] == pytest.approx(1000.0)
    assert np.allclose(np.diff(np.log(e_layer)), np.log(e_layer[1] / e_layer[0]))
    sparsity = feature_bins("sparsity_3", ref, g1, "1", 1.0)  # 5 voxels: one bin per k / 5
    assert len(sparsity) == 7 and np.all(np.histogram(np.arange(6) / 5, sparsity)[0] == 1)


def test_voxel_scaling_moves_e_ratio_and_leaves_phi_centres() -> None:
    geometry = load_geometry("1-photons")
    rng = np.random.default_rng(3)
    n = 3000
    energies = 2.0 ** rng.integers(10, 16, n)
    weights = rng.gamma(2.0, 1.0, (n, geometry.n_voxels)) * (rng.random((n, geometry.n_voxels)) < 0.5)
    showers = weights / weights.sum(axis=1, keepdims=True) * energies[:, None] * rng.normal(1.0, 0.03, (n, 1))
    ref = compute_features(energies, showers, geometry, 0.0)
    scaled = compute_features(energies, 1.15 * showers, geometry, 0.0)
    sep = {name: separation_power(ref[name], scaled[name], feature_bins(name, ref[name], geometry, "1", 0.0))
           for name in ("e_ratio", "centre_phi_1", "centre_phi_2")}
    assert sep["e_ratio"] > 0.9
    assert sep["centre_phi_1"] == 0.0 and sep["centre_phi_2"] == 0.0
    np.testing.assert_allclose(scaled["centre_phi_2"], ref["centre_phi_2"], atol=1e-9)


def test_frechet_distance_one_dimension_by_hand() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(0.0, 1.0, (500, 1)), rng.normal(0.7, 2.0, (500, 1))
    by_hand = (x.mean() - y.mean()) ** 2 + (x.std(ddof=1) - y.std(ddof=1)) ** 2
    assert frechet_distance(x, y) == pytest.approx(by_hand, rel=1e-6)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_matches_the_general_matrix_square_root() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 5)) @ rng.normal(size=(5, 5))
    y = rng.normal(size=(300, 5)) @ rng.normal(size=(5, 5)) + 0.3
    c_x, c_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    diff = x.mean(axis=0) - y.mean(axis=0)
    general = diff @ diff + np.trace(c_x + c_y - 2 * linalg.sqrtm(c_x @ c_y).real)
    assert frechet_distance(x, y) == pytest.approx(general, rel=1e-8)


def test_fpd_near_zero_for_one_distribution_and_mean_shift_squared_otherwise() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(1500, 4)), rng.normal(size=(1500, 4))
    shifted = y + np.array([0.5, 0.0, 0.0, 0.0])
    same, same_err = fpd(x, y, num_batches=5)
    moved, _ = fpd(x, shifted, num_batches=5)
    assert 0.0 <= same < 0.03 and same_err >= 0.0
    mean_term = np.sum(((shifted.mean(axis=0) - x.mean(axis=0)) / x.std(axis=0)) ** 2)  # about 0.25
    assert moved == pytest.approx(mean_term, abs=0.03)  # equal covariances: only the mean term is left


def test_kpd_unbiased_estimator_by_hand_and_sensitivity() -> None:
    x = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = np.array([[2.0, 0.0], [0.0, -1.0]])
    k = lambda a, b: (a @ b / 2 + 1.0) ** 3
    xx = sum(k(x[i], x[j]) for i in range(3) for j in range(3) if i != j) / 6
    yy = sum(k(y[i], y[j]) for i in range(2) for j in range(2) if i != j) / 2
    xy = sum(k(a, b) for a in x for b in y) / 6
    assert _mmd2_unbiased(x, y, 3) == pytest.approx(xx + yy - 2 * xy)
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(1000, 3)), rng.normal(size=(1000, 3))
    same, same_err = kpd(a, b)
    moved, _ = kpd(a, b + 0.5)
    assert abs(same) < 3 * same_err + 1e-3
    assert moved > 10 * same_err and moved > 0.05
