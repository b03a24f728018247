"""CaloScorePreprocessor: hand-computed variables, the round trip, empty layers and showers, persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calo_ablate.config import DataConfig
from calo_ablate.data.calochallenge import read_showers
from calo_ablate.errors import DataError
from calo_ablate.geometry import load_geometry
from calo_ablate.model.caloscore.preprocess import CaloScorePreprocessor, caloscore_preprocessing

GEOMETRY = load_geometry("1-photons")
CONFIG = DataConfig(dataset="1-photons")
CUT_MEV = CONFIG.voxel_cut_gev * 1000.0


@pytest.fixture(scope="module")
def train_events(photon_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    return read_showers(photon_dir / "synthetic" / "dataset_1_photons_1.hdf5", "1-photons")


@pytest.fixture(scope="module")
def fitted(train_events) -> CaloScorePreprocessor:
    return CaloScorePreprocessor(GEOMETRY, CONFIG).fit(*train_events)


def _with_empty(energies: np.ndarray, showers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Copies where shower 0 is all zero and shower 1 has its first and last layers empty."""
    showers = showers.copy()
    showers[0] = 0.0
    showers[1, GEOMETRY.layers[0].voxel_slice] = 0.0
    showers[1, GEOMETRY.layers[-1].voxel_slice] = 0.0
    return energies.copy(), showers


def test_layer_and_voxel_variables_match_hand_computation():
    showers_mev = np.zeros((1, GEOMETRY.n_voxels))
    layer_energies_gev = [1.0, 2.0, 0.0, 3.0, 4.0]
    for layer, energy in zip(GEOMETRY.layers, layer_energies_gev):
        showers_mev[0, layer.voxel_slice.start] = 0.25 * energy * 1000.0
        showers_mev[0, layer.voxel_slice.start + 1] = 0.75 * energy * 1000.0
    u, fractions = CaloScorePreprocessor(GEOMETRY, CONFIG)._raw(np.array([5.0]), showers_mev / 1000.0)
    expected_u = [10.0 / (3.1 * 5.0), 1 / 10, 2 / 9, 0 / 7, 3 / 7]
    np.testing.assert_allclose(u[0], expected_u, rtol=1e-12)
    first = GEOMETRY.layers[0].voxel_slice.start
    np.testing.assert_allclose(fractions[0, first:first + 2], [0.25, 0.75])
    assert np.all(fractions[0, GEOMETRY.layers[2].voxel_slice] == 0.0)   # the empty layer
    np.testing.assert_allclose(GEOMETRY.layer_energies(fractions)[0], [1, 1, 0, 1, 1])


def test_condition_maps_energy_range_to_unit_interval():
    cond = CaloScorePreprocessor(GEOMETRY, CONFIG).condition(np.array([256.0, 4194304.0, 65536.0]))
    # 65.536 GeV / 0.256 GeV = 2^8 of a 2^14 range
    assert cond.shape == (3, 1) and cond.dtype == np.float32
    np.testing.assert_allclose(cond[:, 0], [0.0, 1.0, 8 / 14], atol=1e-6)


def test_float64_round_trip_reproduces_voxels_above_the_cut(fitted, train_events):
    energies, showers = train_events
    features = fitted.transform(energies, showers, dtype=np.float64)
    assert features.voxel.dtype == np.float64 and features.layer.shape == (len(showers), GEOMETRY.n_layers)
    back = fitted.inverse(energies, features.layer, features.voxel)
    above = showers > CUT_MEV
    assert np.max(np.abs(back[above] - showers[above]) / showers[above]) < 1e-5
    assert np.all(back[~above] <= CUT_MEV * (1 + 1e-5))


def test_float32_round_trip_is_exact_but_for_the_tiniest_fractions(fitted, train_events):
    energies, showers = train_events
    features = fitted.transform(energies, showers)
    back = fitted.inverse(energies, features.layer, features.voxel)
    above = showers > CUT_MEV
    relative = np.abs(back - showers) / np.where(above, showers, 1.0)
    layer_mev = GEOMETRY.layer_energies(showers.astype(np.float64))[:, GEOMETRY.voxel_layer]
    visible = above & (showers >= 1e-6 * layer_mev)       # float32 logits resolve fractions down to ~1e-7
    assert relative[visible].max() < 1e-5 and relative[above].max() < 1e-4


def test_default_features_are_float32_and_standardised(fitted, train_events):
    features = fitted.transform(*train_events)
    for array in (features.cond, features.layer, features.voxel):
        assert array.dtype == np.float32 and np.isfinite(array).all()
    np.testing.assert_allclose(features.layer.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(features.layer.std(axis=0), 1.0, atol=1e-4)


def test_empty_showers_and_layers_give_finite_features_and_round_trip(train_events):
    energies, showers = _with_empty(*train_events)
    pre = CaloScorePreprocessor(GEOMETRY, CONFIG).fit(energies, showers)
    features = pre.transform(energies, showers)
    assert all(np.isfinite(a).all() for a in (features.cond, features.layer, features.voxel))
    exact = pre.transform(energies, showers, dtype=np.float64)
    back = pre.inverse(energies, exact.layer, exact.voxel)
    assert np.all(back[0] == 0.0)
    assert np.all(back[1, GEOMETRY.layers[0].voxel_slice] == 0.0)
    above = showers > CUT_MEV
    assert np.max(np.abs(back[above] - showers[above]) / showers[above]) < 1e-5


def test_constant_voxel_is_finite_and_stays_constant_when_generated(train_events):
    energies, showers = train_events
    showers = showers.copy()
    showers[:, 7] = 0.0                                   # a voxel that is always empty
    pre = CaloScorePreprocessor(GEOMETRY, CONFIG).fit(energies, showers)
    features = pre.transform(energies, showers)
    assert np.isfinite(features.voxel).all() and np.abs(features.voxel[:, 7]).max() < 1e-6
    rng = np.random.default_rng(1)
    generated = pre.inverse(energies[:50], rng.normal(size=(50, GEOMETRY.n_layers)),
                            rng.normal(size=(50, GEOMETRY.n_voxels)))
    assert np.isfinite(generated).all() and np.all(generated[:, 7] == 0.0)


def test_inverse_of_generated_features_keeps_the_layer_energies(fitted, train_events):
    energies = train_events[0][:64]
    rng = np.random.default_rng(2)
    layer, voxel = rng.normal(size=(64, GEOMETRY.n_layers)), 3 * rng.normal(size=(64, GEOMETRY.n_voxels))
    showers = fitted.inverse(energies, layer, voxel)
    assert showers.dtype == np.float32 and np.all(showers >= 0) and np.isfinite(showers).all()
    layer_mev = 1000.0 * fitted._layer_energies(energies / 1000.0, fitted._layer_scaler.inverse(layer))
    fraction_sums = GEOMETRY.layer_energies(fitted._voxel_scaler.inverse(voxel))          # (64, L)
    assert np.any(fraction_sums == 0.0)          # some layers have no generated voxel: their energy is dropped
    kept = np.where(fraction_sums > 0, layer_mev, 0.0)
    # renormalised fractions: each layer sums to its energy, less only the voxels zeroed by the cut
    lost = np.array([[layer.n_voxels * CUT_MEV for layer in GEOMETRY.layers]])
    difference = kept - GEOMETRY.layer_energies(showers.astype(np.float64))
    assert np.all(difference >= -1e-5 * kept) and np.all(difference <= lost + 1e-5 * kept)


def test_unseen_showers_are_clipped_not_nan(fitted, train_events):
    energies, showers = train_events
    features = fitted.transform(energies[:10] * 0.5, showers[:10] * 40.0)
    assert np.isfinite(features.layer).all() and np.isfinite(features.voxel).all()


def test_save_and_load_give_the_same_transform(fitted, train_events, tmp_path):
    preprocessing = caloscore_preprocessing(CONFIG)   # how a run saves and reloads its preprocessor
    path = preprocessing.save(fitted, tmp_path / "pre.npz")
    energies, showers = train_events
    expected = fitted.transform(energies[:20], showers[:20])
    loaded = preprocessing.load(path)
    got = loaded.transform(energies[:20], showers[:20])
    np.testing.assert_array_equal(got.voxel, expected.voxel)
    np.testing.assert_array_equal(got.layer, expected.layer)
    assert loaded.voxel_cut_gev == CONFIG.voxel_cut_gev


def test_load_refuses_another_geometry_or_data_setting(fitted, tmp_path):
    path = caloscore_preprocessing(CONFIG).save(fitted, tmp_path / "pre.npz")
    with pytest.raises(DataError, match="geometry '1-pions'"):
        caloscore_preprocessing(DataConfig(dataset="1-pions")).load(path)
    with pytest.raises(DataError, match="data.max_deposit: stored 3.1, config 2.0"):
        caloscore_preprocessing(CONFIG.model_copy(update={"max_deposit": 2.0})).load(path)
    (tmp_path / "junk.npz").write_bytes(b"not an npz")
    with pytest.raises(DataError, match="junk.npz"):
        caloscore_preprocessing(CONFIG).load(tmp_path / "junk.npz")


def test_misuse_raises_data_errors(train_events):
    energies, showers = train_events
    pre = CaloScorePreprocessor(GEOMETRY, CONFIG)
    with pytest.raises(DataError, match="not fitted"):
        pre.transform(energies, showers)
    with pytest.raises(DataError, match=r"expected \(N, 368\)"):
        pre.fit(energies, showers[:, :100])
    with pytest.raises(DataError, match="zero showers"):
        pre.fit(energies[:0], showers[:0])
    with pytest.raises(DataError, match="finite and positive"):
        pre.condition(np.array([0.0]))


def test_chunked_processing_gives_the_same_statistics_and_features(fitted, train_events):
    energies, showers = train_events
    chunked = CaloScorePreprocessor(GEOMETRY, CONFIG, chunk_events=97).fit(energies, showers)  # 7 uneven chunks
    np.testing.assert_allclose(chunked._voxel_scaler.mean, fitted._voxel_scaler.mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(chunked._voxel_scaler.std, fitted._voxel_scaler.std, rtol=1e-10)
    np.testing.assert_array_equal(chunked._layer_scaler.low, fitted._layer_scaler.low)
    features = chunked.transform(energies, showers, dtype=np.float64)
    reference = fitted.transform(energies, showers, dtype=np.float64)
    np.testing.assert_allclose(features.voxel, reference.voxel, atol=1e-9)
    np.testing.assert_array_equal(chunked.inverse(energies, features.layer, features.voxel),
                                  fitted.inverse(energies, features.layer, features.voxel))
