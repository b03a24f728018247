"""The official list of separation powers: names, order, per-energy intervals, voxel spectrum."""

from __future__ import annotations

import numpy as np
import pytest

from calo_ablate.evaluation.features import apply_threshold, compute_features, default_threshold_mev
from calo_ablate.evaluation.metrics import log_edges, separation_power
from calo_ablate.evaluation.separation import official_separation_powers, own_separation_powers, voxel_edges
from calo_ablate.geometry import load_geometry

COUNTS = {"1-photons": 30, "1-pions": 40, "2": 227, "3": 227}


def _sample(dataset: str, n: int, seed: int, scale: float = 1.0):
    geometry = load_geometry(dataset)
    rng = np.random.default_rng(seed)
    energies = 2.0 ** rng.integers(8, 23, n) if dataset.startswith("1") else 10 ** rng.uniform(3, 6, n)
    raw = rng.exponential(1.0, (n, geometry.n_voxels)) * (rng.random((n, geometry.n_voxels)) < 0.3)
    raw *= energies[:, None] / geometry.n_voxels * 3.0 * scale
    threshold = default_threshold_mev(dataset)
    showers = apply_threshold(raw, threshold)
    return energies, showers, compute_features(energies, showers, geometry, threshold)


@pytest.mark.parametrize("dataset", ["1-photons", "1-pions", "2"])
def test_official_names_order_and_count(dataset: str) -> None:
    geometry = load_geometry(dataset)
    seps = official_separation_powers(_sample(dataset, 60, 0), _sample(dataset, 60, 1), geometry, dataset,
                                      default_threshold_mev(dataset))
    names = list(seps)
    assert len(names) == COUNTS[dataset]
    assert names[0] == "Etot / Einc" and names[-1] == "Voxel distribution"
    assert names[1:1 + geometry.n_layers] == [f"E layer {layer.layer_id}" for layer in geometry.layers]
    alpha = [layer.layer_id for layer in geometry.layers if layer.n_alpha > 1]
    start = 1 + geometry.n_layers
    assert names[start:start + len(alpha)] == [f"EC Eta layer {i}" for i in alpha]
    assert names[start + 3 * len(alpha):start + 4 * len(alpha)] == [f"Width Phi layer {i}" for i in alpha]
    if dataset.startswith("1"):
        assert names[-16] == "Etot / Einc at E = 256.0" and names[-2] == "Etot / Einc at E = 4194304.0"


def test_per_energy_interval_selects_by_each_samples_own_energy() -> None:
    geometry = load_geometry("1-photons")
    ref, gen = _sample("1-photons", 300, 0), _sample("1-photons", 300, 1)
    seps = official_separation_powers(ref, gen, geometry, "1-photons", 1.0)
    in_ref, in_gen = ref[0] == 8192.0, gen[0] == 8192.0
    edges = np.linspace(0.9, 1.1, 21)  # photons from 4096 MeV
    expected = separation_power(ref[2]["e_ratio"][in_ref], gen[2]["e_ratio"][in_gen], edges)
    assert seps["Etot / Einc at E = 8192.0"] == expected


def test_voxel_spectrum_drops_zeros_and_uses_the_reference_max() -> None:
    ref = np.array([[0.0, 1.0, 100.0], [0.0, 0.0, 10.0]])
    np.testing.assert_allclose(voxel_edges(ref, 1.0), np.logspace(0.0, 2.0, 50), rtol=1e-15)
    assert log_edges(1.0, 0.5, 3).tolist() == pytest.approx([1.0, np.sqrt(10.0), 10.0])  # nothing above


def test_scaled_showers_separate_and_own_powers_are_separate_names() -> None:
    geometry = load_geometry("1-photons")
    ref, same, scaled = _sample("1-photons", 400, 0), _sample("1-photons", 400, 1), _sample("1-photons", 400, 1, 1.3)
    alike = official_separation_powers(ref, same, geometry, "1-photons", 1.0)
    moved = official_separation_powers(ref, scaled, geometry, "1-photons", 1.0)
    assert moved["Etot / Einc"] > alike["Etot / Einc"] + 0.3
    assert moved["Voxel distribution"] > alike["Voxel distribution"]
    own = own_separation_powers(ref[2], scaled[2], geometry, "1-photons", 1.0)
    assert set(own) == {"e_tot"} | {f"{k}_{i}" for k in ("sparsity", "centre_r", "width_r") for i in (0, 1, 2, 3, 12)}
