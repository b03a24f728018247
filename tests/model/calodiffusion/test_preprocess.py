"""CaloDiffusion preprocessing: the global standardisation, the fixed GLaM in preprocessing, round trips."""

from __future__ import annotations

import numpy as np
import pytest

from calo_ablate.errors import DataError
from calo_ablate.model.calodiffusion.config import CaloDiffusionConfig
from calo_ablate.model.calodiffusion.preprocess import CaloDiffusionPreprocessor, published_standardisation

from .conftest import published_config

EMPTY_LOGIT = -13.815510   # ln(1e-6 / (1 - 1e-6))


def _showers(n_voxels: int, n: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Incident energies (MeV) and showers (MeV) with a quarter of the voxels empty, none below 0.1 MeV."""
    rng = np.random.default_rng(seed)
    energies_mev = rng.uniform(1_000.0, 100_000.0, n)
    showers = rng.exponential(1.0, (n, n_voxels)) * (rng.random((n, n_voxels)) > 0.25)
    showers = showers / showers.sum(axis=1, keepdims=True) * energies_mev[:, None] * 0.5
    return energies_mev, np.where(showers < 0.1, 0.0, showers)


@pytest.mark.parametrize(("dataset", "glam"), [("1-photons", "learned"), ("1-pions", "learned"),
                                                ("2", "fixed"), ("3", "fixed")])
def test_round_trip_gives_back_the_showers(dataset: str, glam: str) -> None:
    pre = CaloDiffusionPreprocessor(dataset, published_config(dataset))
    energies, showers = _showers(pre.geometry.n_voxels, n=3)
    cond, features = pre.forward(energies, showers)
    assert features.dtype == np.float32 and features.shape == (3, pre.n_features) == showers.shape
    assert cond.shape == (3, 1) and np.all((cond > 0) & (cond < 1))
    # float32 features of logits hold about 7 digits
    np.testing.assert_allclose(pre.inverse(features, energies), showers, rtol=1e-4, atol=1e-3)


def test_empty_voxels_and_standardisation_use_the_reference_constants() -> None:
    pre = CaloDiffusionPreprocessor("1-photons", CaloDiffusionConfig())
    energies, showers = _showers(368)
    _, features = pre.forward(energies, showers)
    mean, std = published_standardisation("1-photons", "learned")
    assert (mean, std) == (-9.9807, 3.14168)
    np.testing.assert_allclose(features[showers == 0], (EMPTY_LOGIT - mean) / std, rtol=1e-6)
    assert showers[0, 0] > 0
    y = 1e-6 + (1 - 2e-6) * showers[0, 0] / (3.1 * energies[0])
    assert features[0, 0] == pytest.approx((np.log(y / (1 - y)) - mean) / std, rel=1e-5)


def test_condition_spans_zero_to_one_over_the_energy_range() -> None:
    pre = CaloDiffusionPreprocessor("2", published_config("2"))
    np.testing.assert_allclose(pre.condition(np.array([1_000.0, 31_622.7766, 1_000_000.0]))[:, 0],
                               [0.0, 0.5, 1.0], atol=1e-6)


def test_glam_fixed_maps_to_the_regular_grid_with_its_own_table() -> None:
    config = CaloDiffusionConfig(glam="fixed")
    pre = CaloDiffusionPreprocessor("1-photons", config)
    assert pre.n_features == 1_500 and (pre.mean, pre.std) == (-12.1444, 2.45056)
    energies, showers = _showers(368)
    _, features = pre.forward(energies, showers)
    assert features.shape == (6, 1_500)
    np.testing.assert_allclose(pre.inverse(features, energies), showers, rtol=1e-4, atol=1e-3)


def test_inverse_zeroes_voxels_below_the_cut_negative_ones_included() -> None:
    pre = CaloDiffusionPreprocessor("2", published_config("2"))
    energies = np.full(1, 10_000.0)
    features = np.full((1, 6480), 3.0, dtype=np.float32)
    features[0, :3] = [-30.0, -12.0, -6.0]   # sigmoid under alpha (a negative x), then tiny deposits
    showers = pre.inverse(features, energies)
    cut_mev = 1.51e-5 * 1000.0
    assert showers[0, 0] == 0.0 and np.all((showers == 0) | (showers >= cut_mev))
    assert np.all(showers[0, 3:] > 0)


def test_user_standardisation_overrides_the_table() -> None:
    pre = CaloDiffusionPreprocessor("3", published_config("3").model_copy(update={"voxel_mean": -1.0,
                                                                                 "voxel_std": 2.0}))
    assert (pre.mean, pre.std) == (-1.0, 2.0)


@pytest.mark.parametrize(("energies", "shape", "message"), [
    (np.full(2, 1000.0), (2, 367), "expected \\(N, 368\\)"),
    (np.array([1000.0, -1.0]), (2, 368), "positive incident energies"),
    (np.full(3, 1000.0), (2, 368), "expected 2"),
])
def test_bad_inputs_name_what_was_expected(energies: np.ndarray, shape: tuple, message: str) -> None:
    pre = CaloDiffusionPreprocessor("1-photons", CaloDiffusionConfig())
    with pytest.raises(DataError, match=message):
        pre.forward(energies, np.ones(shape))
