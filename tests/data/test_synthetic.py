"""The synthetic stand-in: files, incident energies, and the shower statistics it promises."""

from __future__ import annotations

import itertools

import h5py
import numpy as np
import pytest

from calo_ablate.data import gflash, synthetic
from calo_ablate.data.synthetic import (
    DS1_ENERGIES_MEV,
    DS1_PHOTON_COUNTS,
    DS1_PION_COUNTS,
    incident_energies,
    scaled_counts,
    simulate,
    synthesise,
)
from calo_ablate.errors import ConfigError
from calo_ablate.geometry import load_geometry

PHOTONS = load_geometry("1-photons")
PIONS = load_geometry("1-pions")


def _read(path):
    with h5py.File(path, "r") as f:
        return f["incident_energies"][:], f["showers"][:]


def _at(dataset: str, energy_mev: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    energies = np.full(n, energy_mev)
    return energies, simulate(dataset, energies, np.random.default_rng(seed))


@pytest.fixture(scope="module")
def photon_scan() -> dict[float, np.ndarray]:
    """400 photon showers at each of five energies (MeV)."""
    return {e: _at("1-photons", e, 400, i)[1] for i, e in enumerate((512.0, 4096.0, 16384.0, 262144.0, 2097152.0))}


# --- files -----------------------------------------------------------------------------------------

def test_fixture_files_have_official_names_and_layout(photon_dir):
    folder = photon_dir / "synthetic"
    assert sorted(p.name for p in folder.glob("*.hdf5")) == ["dataset_1_photons_1.hdf5", "dataset_1_photons_2.hdf5"]
    for path in folder.glob("*.hdf5"):
        energies, showers = _read(path)
        assert energies.shape == (600, 1) and showers.shape == (600, 368)
        assert set(np.unique(energies)) == set(DS1_ENERGIES_MEV)
        assert np.all(showers >= 0) and np.isfinite(showers).all()


@pytest.mark.parametrize(("dataset", "names", "n_voxels"), [
    ("1-pions", ["dataset_1_pions_1.hdf5", "dataset_1_pions_2.hdf5"], 533),
    ("2", ["dataset_2_1.hdf5", "dataset_2_2.hdf5"], 6480),
    ("3", ["dataset_3_1.hdf5", "dataset_3_2.hdf5", "dataset_3_3.hdf5", "dataset_3_4.hdf5"], 40500),
])
def test_other_datasets_written_under_official_names(tmp_path, dataset, names, n_voxels):
    paths = synthesise(dataset, tmp_path, events=4, seed=1, progress=False)
    assert [p.name for p in paths] == names
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    energies, showers = _read(paths[0])
    assert showers.shape == (4, n_voxels) and energies.shape == (4, 1)


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    a = synthesise("1-photons", tmp_path / "a", events=40, seed=3, progress=False)
    b = synthesise("1-photons", tmp_path / "b", events=40, seed=3, progress=False)
    c = synthesise("1-photons", tmp_path / "c", events=40, seed=4, progress=False)
    for pa, pb, pc in zip(a, b, c, strict=True):
        (ea, sa), (eb, sb), (_, sc) = _read(pa), _read(pb), _read(pc)
        np.testing.assert_array_equal(ea, eb)
        np.testing.assert_array_equal(sa, sb)
        assert not np.array_equal(sa, sc)


def test_train_and_eval_files_are_independent(photon_dir):
    (e1, s1), (e2, s2) = (_read(photon_dir / "synthetic" / f"dataset_1_photons_{i}.hdf5") for i in (1, 2))
    assert not np.array_equal(e1, e2)  # another shuffle
    # at equal incident energy the showers of the two files are not paired in any way
    order1, order2 = np.argsort(e1[:, 0], kind="stable"), np.argsort(e2[:, 0], kind="stable")
    both = (s1[order1] > 0) & (s2[order2] > 0)
    assert np.mean(s1[order1][both] == s2[order2][both]) < 0.01
    r1, r2 = s1[order1].sum(1) / e1[order1, 0], s2[order2].sum(1) / e2[order2, 0]
    low = e1[order1, 0] <= 65536
    assert abs(np.corrcoef(r1[low] - r1[low].mean(), r2[low] - r2[low].mean())[0, 1]) < 0.3


def test_written_in_chunks_and_atomically(tmp_path, monkeypatch):
    sizes = []
    real_simulate = synthetic.simulate

    def spy(dataset, energies, rng):
        sizes.append(len(energies))
        return real_simulate(dataset, energies, rng)

    monkeypatch.setattr(synthetic, "simulate", spy)
    seven_events = 8 * synthetic.WORK_ARRAYS * 6480 * 7  # bytes of seven showers' working arrays, dataset 2
    paths = synthesise("2", tmp_path, events=20, seed=0, progress=False, chunk_bytes=seven_events)
    assert sizes == [7, 7, 6] * 2
    assert _read(paths[1])[1].shape == (20, 6480)

    def failing(dataset, energies, rng):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(synthetic, "simulate", failing)
    with pytest.raises(RuntimeError):
        synthesise("2", tmp_path / "broken", events=20, seed=0, progress=False)
    assert list((tmp_path / "broken").iterdir()) == []


@pytest.mark.parametrize("events", [0, -3, 2.5, True])
def test_bad_event_count_is_refused(tmp_path, events):
    with pytest.raises(ConfigError, match="events"):
        synthesise("1-photons", tmp_path, events=events, progress=False)


# --- incident energies -----------------------------------------------------------------------------

def test_dataset1_counts_are_the_official_ones():
    assert DS1_ENERGIES_MEV == tuple(2.0**k for k in range(8, 23))
    assert DS1_PHOTON_COUNTS == (10_000,) * 11 + (5_000, 3_000, 2_000, 1_000)
    assert sum(DS1_PHOTON_COUNTS) == 121_000 and sum(DS1_PION_COUNTS) == 120_230
    assert scaled_counts(DS1_PHOTON_COUNTS, 121_000) == DS1_PHOTON_COUNTS
    assert all(abs(p - q * 120_230 / 121_000) < 1 for p, q in zip(DS1_PION_COUNTS, DS1_PHOTON_COUNTS, strict=True))
    energies = incident_energies("1-pions", 120_230, np.random.default_rng(0))
    values, counts = np.unique(energies, return_counts=True)
    assert tuple(values) == DS1_ENERGIES_MEV and tuple(counts) == DS1_PION_COUNTS


def test_smaller_samples_keep_proportions_and_every_energy():
    counts = scaled_counts(DS1_PHOTON_COUNTS, 600)
    assert sum(counts) == 600 and min(counts) >= 1
    assert counts[0] == pytest.approx(600 * 10_000 / 121_000, abs=1)
    assert counts[-1] == pytest.approx(600 * 1_000 / 121_000, abs=1)
    assert min(scaled_counts(DS1_PHOTON_COUNTS, 15)) == 1
    energies = incident_energies("1-photons", 600, np.random.default_rng(1))
    assert np.any(np.diff(energies) < 0), "events are shuffled"


def test_datasets_2_3_energies_log_uniform_1gev_to_1tev():
    energies = incident_energies("3", 20_000, np.random.default_rng(2))
    assert energies.min() >= 1_000 and energies.max() <= 1_000_000
    per_decade = np.histogram(np.log10(energies), bins=[3, 4, 5, 6])[0] / len(energies)
    np.testing.assert_allclose(per_decade, 1 / 3, atol=0.02)


# --- photon shower statistics ----------------------------------------------------------------------

def test_photon_response_and_resolution(photon_scan):
    ratios = {e: s.sum(1) / e for e, s in photon_scan.items()}
    mean = np.mean(np.concatenate(list(ratios.values())))
    assert 0.7 < mean < 1.0
    spreads = [r.std() / r.mean() for r in ratios.values()]
    assert all(a > b for a, b in itertools.pairwise(spreads)), spreads


def test_shower_depth_rises_with_log_energy(photon_scan):
    depth = []
    for s in photon_scan.values():
        layers = PHOTONS.layer_energies(s)
        depth.append(np.mean((layers * np.arange(PHOTONS.n_layers)).sum(1) / layers.sum(1)))
    assert all(a < b for a, b in itertools.pairwise(depth)), depth


def test_voxel_energies_span_four_orders_of_magnitude(photon_dir):
    _, showers = _read(photon_dir / "synthetic" / "dataset_1_photons_1.hdf5")
    nonzero = showers[showers > 0]
    assert nonzero.max() / nonzero.min() > 1e4
    assert np.percentile(nonzero, 99) / np.percentile(nonzero, 1) > 1e3


def test_sparsity_falls_with_energy(photon_scan):
    low, high = photon_scan[512.0], photon_scan[262144.0]
    for layer in PHOTONS.layers:
        zero_low = (low[:, layer.voxel_slice] == 0).mean()
        zero_high = (high[:, layer.voxel_slice] == 0).mean()
        assert zero_low > zero_high, layer.layer_id
    assert (low == 0).mean() > 0.5


def test_layer_energies_are_correlated(photon_scan):
    layers = PHOTONS.layer_energies(photon_scan[16384.0])          # fixed incident energy
    corr = np.corrcoef(layers.T)
    strips, middle, back = 1, 2, 3
    assert corr[strips, middle] < -0.3       # an early shower puts more in the strips, less in the middle
    assert corr[middle, back] < -0.1 or corr[strips, back] < -0.1
    assert np.abs(corr[np.triu_indices(PHOTONS.n_layers, 1)]).max() > 0.3


def test_showers_are_symmetric_in_phi(photon_scan):
    phi, eta = PHOTONS.voxel_phi_mm, PHOTONS.voxel_eta_mm
    showers = photon_scan[4096.0]
    for index in (1, 2):  # the layers with alpha bins
        sl = PHOTONS.layers[index].voxel_slice
        weight = showers[:, sl].sum(1)
        for coord in (phi[sl], eta[sl]):
            centre = showers[:, sl] @ coord / weight
            assert abs(centre.mean()) < 4 * centre.std() / np.sqrt(len(centre)) + 0.05


def test_dataset2_response_of_order_one_and_depth_rising():
    geometry = load_geometry("2")
    depth, ratios = [], []
    for i, energy in enumerate((2_000.0, 50_000.0, 500_000.0)):
        e, showers = _at("2", energy, 100, 20 + i)
        ratios.append(showers.sum(1) / e)
        layers = geometry.layer_energies(showers)
        depth.append(np.mean((layers * np.arange(geometry.n_layers)).sum(1) / layers.sum(1)))
    assert 0.85 < np.mean(ratios) < 1.05
    assert depth[0] < depth[1] < depth[2]


# --- pions versus photons --------------------------------------------------------------------------

@pytest.mark.parametrize("energy_mev", [4096.0, 65536.0])
def test_pions_deeper_wider_lower_broader(energy_mev):
    e, photons = _at("1-photons", energy_mev, 400, 11)
    _, pions = _at("1-pions", energy_mev, 400, 12)
    ratio_g, ratio_p = photons.sum(1) / e, pions.sum(1) / e
    assert ratio_p.mean() < ratio_g.mean() - 0.1
    assert ratio_p.std() > 2 * ratio_g.std()

    def behind_em(showers, geometry):  # share of the energy behind the EM middle layer (ids 3, 12, 13, 14)
        layers = geometry.layer_energies(showers)
        ids = np.array([layer.layer_id for layer in geometry.layers])
        return np.mean(layers[:, ids >= 3].sum(1) / np.maximum(layers.sum(1), 1e-9))

    assert behind_em(pions, PIONS) > behind_em(photons, PHOTONS) + 0.2

    def middle_mean_radius(showers, geometry):  # energy-weighted mean r (mm) in layer id 2, all events pooled
        sl = next(layer for layer in geometry.layers if layer.layer_id == 2).voxel_slice
        profile = showers[:, sl].sum(0)
        return profile @ geometry.voxel_r_mid_mm[sl] / profile.sum()

    assert middle_mean_radius(pions, PIONS) > 1.5 * middle_mean_radius(photons, PHOTONS)


# --- the GFlash formulas -----------------------------------------------------------------------------

LEAD = gflash.Medium(z_eff=82.0, critical_energy_mev=7.4, moliere_radius_mm=16.0)


def test_gflash_worked_example_50_gev_in_lead():
    t_max, alpha = gflash.mean_longitudinal(np.array([50_000.0]), LEAD)
    assert t_max[0] == pytest.approx(7.97, abs=0.02) and alpha[0] == pytest.approx(4.81, abs=0.02)
    t, a = gflash.sample_longitudinal(np.full(200_000, 50_000.0), LEAD, np.random.default_rng(0))
    assert np.log(t).std() == pytest.approx(0.103, abs=0.003)
    assert np.log(a).std() == pytest.approx(0.143, abs=0.003)
    assert np.corrcoef(np.log(t), np.log(a))[0, 1] == pytest.approx(0.50, abs=0.01)


def test_gflash_low_energy_fluctuations_are_floored():
    t, a = gflash.sample_longitudinal(np.full(50_000, 20.0), LEAD, np.random.default_rng(1))  # ln y < 1
    assert np.isfinite(t).all() and np.log(t).std() < 0.45 and a.min() >= gflash.ALPHA_FLOOR


def test_gflash_profiles_are_normalised():
    fractions = gflash.depth_fractions(np.array([7.0, 3.0]), np.array([4.0, 2.0]), np.array([0.0, 5.0, 1e4]))
    np.testing.assert_allclose(fractions.sum(1), 1.0)
    r_core, r_tail, p = gflash.radial_parameters(np.array([0.2, 1.0, 2.0]), np.array(50_000.0), 82.0)
    assert np.all(np.diff(r_core) > 0) and np.all((p >= 0) & (p <= 1))
    probs = gflash.radial_bin_probabilities(np.array([0.0, 0.5, 1.0, 1e6]), r_core, r_tail, p)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-6)
    assert np.all(probs[:, 0] > probs[:, 1])
