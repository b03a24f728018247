"""Separation powers: the official list (histogram_chi2 of the CaloChallenge script) and the project's own.

Official, names and order as the script writes them (30 values for dataset-1 photons, 40 pions,
227 datasets 2 and 3): `Etot / Einc`; `E layer <id>` per layer; `EC Eta layer <id>`,
`EC Phi layer <id>`, `Width Eta layer <id>`, `Width Phi layer <id>` (each kind over all alpha-binned
layers before the next); dataset 1 only, `Etot / Einc at E = <E>` for the 15 incident energies;
`Voxel distribution`. Edges in metrics.feature_bins and below; out-of-range values dropped.
Own (histograms the script defines but never reports): E_tot, sparsity, EC_r and width_r per layer.
"""

from __future__ import annotations

import numpy as np

from calo_ablate.config import canonical_dataset
from calo_ablate.evaluation.metrics import feature_bins, log_edges, separation_power
from calo_ablate.geometry import Geometry

__all__ = ["DS1_ENERGIES_MEV", "official_separation_powers", "own_separation_powers", "voxel_edges"]

DS1_ENERGIES_MEV = [2.0 ** k for k in range(8, 23)]  # 256 MeV .. 4,194,304 MeV
_OFFICIAL_KINDS = [("centre_eta", "EC Eta"), ("centre_phi", "EC Phi"), ("width_eta", "Width Eta"),
                   ("width_phi", "Width Phi")]


def _per_energy_edges(dataset: str, energy_mev: float) -> np.ndarray:
    """Photons up to 2048 MeV and pions: 21 edges on [0.4, 1.4]; photons from 4096 MeV: [0.9, 1.1]."""
    if dataset == "1-photons" and energy_mev >= 4096.0:
        return np.linspace(0.9, 1.1, 21)
    return np.linspace(0.4, 1.4, 21)


def voxel_edges(showers_ref_mev: np.ndarray, threshold_mev: float) -> np.ndarray:
    """50 log edges from the threshold (or the smallest positive voxel when it is 0) to the largest."""
    low = threshold_mev
    if low <= 0:
        positive = showers_ref_mev[showers_ref_mev > 0]
        low = float(positive.min()) if positive.size else 1e-3
    return log_edges(low, float(np.max(showers_ref_mev, initial=low)), 50)


def official_separation_powers(
    ref: tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]],
    gen: tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]],
    geometry: Geometry,
    dataset: str,
    threshold_mev: float,
) -> dict[str, float]:
    """{official name: S} in the official order; ref and gen are (E_inc (N,) MeV, thresholded showers
    (N, V) MeV, features of those showers)."""
    dataset = canonical_dataset(dataset)
    (e_ref, s_ref, f_ref), (e_gen, s_gen, f_gen) = ref, gen

    def sep(feature: str) -> float:
        edges = feature_bins(feature, f_ref[feature], geometry, dataset, threshold_mev)
        return separation_power(f_ref[feature], f_gen[feature], edges)

    out = {"Etot / Einc": sep("e_ratio")}
    out.update({f"E layer {layer.layer_id}": sep(f"e_layer_{layer.layer_id}") for layer in geometry.layers})
    alpha_ids = [layer.layer_id for layer in geometry.layers if layer.n_alpha > 1]
    for feature, label in _OFFICIAL_KINDS:
        out.update({f"{label} layer {i}": sep(f"{feature}_{i}") for i in alpha_ids})
    if dataset.startswith("1"):
        for energy in DS1_ENERGIES_MEV:
            in_ref = (e_ref >= energy) & (e_ref < 2 * energy)
            in_gen = (e_gen >= energy) & (e_gen < 2 * energy)
            out[f"Etot / Einc at E = {energy}"] = separation_power(
                f_ref["e_ratio"][in_ref], f_gen["e_ratio"][in_gen], _per_energy_edges(dataset, energy))
    edges = voxel_edges(s_ref, threshold_mev)
    out["Voxel distribution"] = separation_power(s_ref[s_ref > 0], s_gen[s_gen > 0], edges)
    return out


def own_separation_powers(
    f_ref: dict[str, np.ndarray],
    f_gen: dict[str, np.ndarray],
    geometry: Geometry,
    dataset: str,
    threshold_mev: float,
) -> dict[str, float]:
    """{feature name: S} for E_tot and, per layer, sparsity, EC_r and width_r (not in the official output)."""
    names = ["e_tot"]
    for kind in ("sparsity", "centre_r", "width_r"):
        names += [f"{kind}_{layer.layer_id}" for layer in geometry.layers]
    return {name: separation_power(f_ref[name], f_gen[name],
                                   feature_bins(name, f_ref[name], geometry, dataset, threshold_mev))
            for name in names}
