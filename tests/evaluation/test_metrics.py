"""Separation power, binnings, Frechet distance, FPD and KPD: the official definitions, by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from calo_ablate.evaluation.features import compute_features
from calo_ablate.evaluation.metrics import (
    feature_bins,
    fpd,
    fpd_sizes,
    frechet_distance,
    kpd,
    mmd2_poly_unbiased,
    scale_by_reference_max,
    separation_power,
)
from calo_ablate.geometry import load_geometry


def test_separation_power_drops_out_of_range_values() -> None:
    edges = np.array([0.0, 1.0, 2.0])
    # sample 1: 5.0 dropped -> h1 = [1, 0]; sample 2: -3 dropped, 2.0 (the last edge) kept -> h2 = [1/3, 2/3]
    # S = 1/2 ((2/3)^2 / (4/3) + (2/3)^2 / (2/3)) = 1/2 (1/3 + 2/3) = 1/2
    s = separation_power(np.array([0.5, 0.5, 5.0]), np.array([0.5, 1.5, -3.0, 2.0]), edges)
    assert s == pytest.approx(0.5, abs=1e-15)


def test_separation_power_empty_bins_add_nothing_and_no_entry_is_nan() -> None:
    edges = np.array([0.0, 1.0, 2.0, 3.0])
    assert separation_power(np.array([0.5]), np.array([0.5, 9.0]), edges) == 0.0  # bins 2, 3 empty in both
    assert separation_power(np.array([0.5]), np.array([1.5]), edges) == pytest.approx(1.0)
    assert math.isnan(separation_power(np.array([0.5]), np.array([7.0]), edges))


def test_official_binnings() -> None:
    g1, gp, g2 = load_geometry("1-photons"), load_geometry("1-pions"), load_geometry("2")
    ref = np.array([0.0, 10.0, 1000.0])
    for geometry, dataset in ((g1, "1-photons"), (gp, "1-pions")):  # pions use the photon range
        e_ratio = feature_bins("e_ratio", ref, geometry, dataset, 1.0)
        assert (len(e_ratio), e_ratio[0], e_ratio[-1]) == (101, 0.5, 1.5)
    e_layer = feature_bins("e_layer_2", ref, g1, "1", 1.0)  # 40 edges = 39 log bins, threshold to max
    np.testing.assert_allclose(e_layer, np.logspace(0.0, 3.0, 40), rtol=1e-15)
    assert feature_bins("centre_eta_1", ref, g1, "1", 1.0)[[0, -1]].tolist() == [-100.0, 100.0]
    assert feature_bins("centre_eta_12", ref, gp, "1-pions", 1.0)[[0, -1]].tolist() == [-500.0, 500.0]
    assert feature_bins("width_eta_13", ref, gp, "1-pions", 1.0)[[0, -1]].tolist() == [0.0, 400.0]
    assert feature_bins("centre_phi_3", ref, g2, "2", 0.01515)[[0, -1]].tolist() == [-30.0, 30.0]
    assert feature_bins("width_phi_2", ref, g1, "1", 1.0)[[0, -1]].tolist() == [0.0, 100.0]
    assert len(feature_bins("width_phi_2", ref, g1, "1", 1.0)) == 101


def test_voxel_scaling_moves_e_ratio_and_leaves_phi_centres() -> None:
    geometry = load_geometry("1-photons")
    rng = np.random.default_rng(3)
    n = 3000
    energies = 2.0 ** rng.integers(10, 16, n)
    weights = rng.gamma(2.0, 1.0, (n, geometry.n_voxels)) * (rng.random((n, geometry.n_voxels)) < 0.5)
    showers = weights / weights.sum(axis=1, keepdims=True) * energies[:, None] * rng.normal(1.0, 0.02, (n, 1))
    ref = compute_features(energies, showers, geometry, 0.0)
    scaled = compute_features(energies, 1.15 * showers, geometry, 0.0)
    sep = {name: separation_power(ref[name], scaled[name], feature_bins(name, ref[name], geometry, "1", 0.0))
           for name in ("e_ratio", "centre_phi_1", "centre_phi_2")}
    assert sep["e_ratio"] > 0.9
    assert sep["centre_phi_1"] == 0.0 and sep["centre_phi_2"] == 0.0


def _with_moments(rng: np.random.Generator, mean: np.ndarray, cov: np.ndarray, n: int = 50) -> np.ndarray:
    """n points whose sample mean and (ddof 1) covariance are exactly `mean` and `cov`."""
    z = rng.normal(size=(n, len(mean)))
    z -= z.mean(axis=0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T  # sample covariance = identity
    return mean + z @ np.linalg.cholesky(cov).T


def test_frechet_distance_of_known_gaussians() -> None:
    rng = np.random.default_rng(0)
    x = _with_moments(rng, np.array([0.0, 0.0]), np.diag([1.0, 4.0]))
    y = _with_moments(rng, np.array([1.0, 2.0]), np.diag([4.0, 1.0]))
    # |dmu|^2 = 5; tr C1 + tr C2 = 10; tr sqrt(C1 C2) = tr sqrt(diag(4, 4)) = 4  ->  5 + 10 - 8 = 7
    assert frechet_distance(x, y) == pytest.approx(7.0, rel=1e-10)
    # non-commuting: C2 = [[2, 1], [1, 2]], C1 = I: tr sqrt(C2) = sqrt(3) + 1 (eigenvalues 3, 1)
    u = _with_moments(rng, np.zeros(2), np.eye(2))
    v = _with_moments(rng, np.zeros(2), np.array([[2.0, 1.0], [1.0, 2.0]]))
    assert frechet_distance(u, v) == pytest.approx(2.0 + 4.0 - 2.0 * (math.sqrt(3.0) + 1.0), rel=1e-10)


def test_scaling_divides_by_the_reference_max_abs() -> None:
    reference = np.array([[1.0, -4.0, 0.0], [2.0, 0.0, 0.0]])
    other = np.array([[4.0, 2.0, 3.0]])
    ref_scaled, other_scaled = scale_by_reference_max(reference, other)
    np.testing.assert_array_equal(ref_scaled, [[0.5, -1.0, 0.0], [1.0, 0.0, 0.0]])
    np.testing.assert_array_equal(other_scaled, [[2.0, 0.5, 3.0]])  # zero column: divided by 1


def test_fpd_sizes_are_the_jetnet_ones() -> None:
    assert fpd_sizes(10000, 50000).tolist() == [10000, 10975, 12162, 13636, 15517, 18000, 21428, 26470, 34615,
                                                49999]


def test_mmd_polynomial_kernel_degree_4_by_hand() -> None:
    x = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = np.array([[2.0, 0.0], [0.0, -1.0]])
    # k = (a.b / 2 + 1)^4. xx off-diagonal: 1, 1.5^4, 1.5^4 (x2) -> 22.25 / 6; yy: 1 (x2) -> 2 / 2;
    # xy: 1, 0.0625, 16, 1, 16, 0.0625 -> 34.125 / 6. MMD^2 = 89/24 + 1 - 2 * 91/16 = -20/3
    assert mmd2_poly_unbiased(x, y) == pytest.approx(-20.0 / 3.0, rel=1e-14)
    rng = np.random.default_rng(5)  # chunked sums equal the whole matrices
    a, b = rng.normal(size=(1100, 3)), rng.normal(size=(1030, 3))
    k = lambda p, q: (p @ q.T / 3 + 1.0) ** 4
    whole = ((k(a, a).sum() - np.trace(k(a, a))) / (1100 * 1099) + (k(b, b).sum() - np.trace(k(b, b))) / (1030 * 1029)
             - 2 * k(a, b).mean())
    assert mmd2_poly_unbiased(a, b) == pytest.approx(whole, rel=1e-10, abs=1e-13)


def test_fpd_and_kpd_follow_the_jetnet_draws() -> None:
    rng = np.random.default_rng(7)
    ref, gen = rng.normal(size=(40, 3)) + 2.0, rng.normal(size=(30, 3)) * 1.5
    x, y = scale_by_reference_max(ref, gen)
    draws = np.random.default_rng(42)
    sizes = fpd_sizes(10, 20, 3)
    means = []
    for size in sizes:
        means.append(np.mean([frechet_distance(x[draws.choice(40, size)], y[draws.choice(30, size)])
                              for _ in range(4)]))
    # a + b / N through the three points with a, b >= 0, by least squares
    slope, intercept = np.polyfit(1.0 / sizes, means, 1)
    value, error = fpd(ref, gen, min_samples=10, max_samples=20, num_points=3, num_batches=4)
    assert slope > 0 and intercept > 0 and value == pytest.approx(intercept, rel=1e-6) and error > 0
    batches = []
    for i in range(5):
        draws = np.random.default_rng(42 + 1000 * i)
        batches.append(mmd2_poly_unbiased(x[draws.choice(40, 8)], y[draws.choice(30, 8)]))
    low, high = np.percentile(batches, [16.275, 83.725])
    assert kpd(ref, gen, num_batches=5, batch_size=8) == pytest.approx((np.median(batches), (high - low) / 2))


def test_kpd_sees_a_shift_and_not_the_same_distribution() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(1000, 3)), rng.normal(size=(1000, 3))
    same, same_err = kpd(a, b, batch_size=500)
    moved, _ = kpd(a, b + 0.5, batch_size=500)
    assert abs(same) < 3 * same_err + 1e-3
    assert moved > 10 * same_err and moved > 0.01


def test_own_variant_draws_without_replacement() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(600, 4)), rng.normal(size=(600, 4))
    official, _ = fpd(x, y, min_samples=100, max_samples=500, num_batches=4)
    own, _ = fpd(x, y, replace=False, num_batches=4)  # sizes 120 .. 600, all distinct showers
    assert own != official and 0.0 <= own < 0.05
