"""CaloChallenge high-level features of showers, after the readout threshold.

Definitions (as the official CaloChallenge helper computes them; energies in MeV, lengths in mm):
- e_tot: sum of all voxels; e_ratio: e_tot / E_inc.
- e_layer_<id>: energy of each non-empty layer (<id> is the layer id of the binning XML).
- centre_eta_<id>, centre_phi_<id>: energy-weighted mean of the eta-like (r cos alpha) and phi-like
  (r sin alpha) voxel coordinates, only for layers binned in alpha (n_alpha > 1);
  width_eta_<id>, width_phi_<id>: sqrt(<x^2> - <x>^2), clipped at 0 before the root.
- centre_r_<id>, width_r_<id>: the same in r (middle of the radial bin), for every layer.
- sparsity_<id>: fraction of the layer's voxels with no energy (<= 0 after the threshold).
A layer without energy in a shower gets centre and width 0 (what the official helper's 1e-16 in the
denominator yields).

The readout threshold zeroes every voxel below it (1 MeV for dataset 1, 15.15 keV for 2 and 3)
before anything is computed; apply it to both samples of a comparison.
"""

from __future__ import annotations

import numpy as np

from calo_ablate.config import canonical_dataset
from calo_ablate.errors import DataError
from calo_ablate.geometry import Geometry, Layer

__all__ = [
    "READOUT_THRESHOLD_MEV",
    "apply_threshold",
    "compute_features",
    "default_threshold_mev",
    "feature_names",
]

# ds1: 1 MeV; ds2/3: 0.5 keV / 0.033 sampling fraction = 15.15 keV
READOUT_THRESHOLD_MEV = {"1-photons": 1.0, "1-pions": 1.0, "2": 0.5e-3 / 0.033, "3": 0.5e-3 / 0.033}


def default_threshold_mev(dataset: str) -> float:
    """The dataset's readout threshold in MeV."""
    return READOUT_THRESHOLD_MEV[canonical_dataset(dataset)]


def apply_threshold(showers_mev: np.ndarray, threshold_mev: float) -> np.ndarray:
    """A copy of (N, V) showers with every voxel below `threshold_mev` (negatives too) set to 0.

    Keeps the input's floating dtype (float32 files stay float32, as the official script keeps them).
    """
    showers = np.asarray(showers_mev)
    if not np.issubdtype(showers.dtype, np.floating):
        showers = showers.astype(np.float64)
    return np.where(showers < threshold_mev, showers.dtype.type(0.0), showers)


def feature_names(geometry: Geometry) -> list[str]:
    """The feature names in their fixed order (all layers' E first, then centres, widths, sparsity)."""
    ids = [layer.layer_id for layer in geometry.layers]
    alpha_ids = [layer.layer_id for layer in geometry.layers if layer.n_alpha > 1]
    names = ["e_ratio", "e_tot"]
    names += [f"e_layer_{i}" for i in ids]
    for kind in ("centre_eta", "centre_phi", "width_eta", "width_phi"):
        names += [f"{kind}_{i}" for i in alpha_ids]
    names += [f"centre_r_{i}" for i in ids] + [f"width_r_{i}" for i in ids]
    names += [f"sparsity_{i}" for i in ids]
    return names


def _moments(energy: np.ndarray, e_sum: np.ndarray, coord: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Energy-weighted centre and width of `coord` (V,) for showers `energy` (n, V); 0 where e_sum is 0."""
    safe = np.where(e_sum > 0, e_sum, 1.0)
    mean = np.where(e_sum > 0, energy @ coord / safe, 0.0)
    second = np.where(e_sum > 0, energy @ (coord * coord) / safe, 0.0)
    return mean, np.sqrt(np.clip(second - mean * mean, 0.0, None))


def _layer_features(layer: Layer, energy: np.ndarray, out: dict[str, np.ndarray], rows: slice) -> None:
    """Fill rows of `out` with one layer's features; energy (n, n_alpha * n_r) float64 MeV."""
    i = layer.layer_id
    e_sum = energy.sum(axis=1)  # (n,)
    out[f"e_layer_{i}"][rows] = e_sum
    r_mid = np.tile(layer.r_mid_mm, layer.n_alpha)  # (V_layer,), alpha outer, r inner
    out[f"centre_r_{i}"][rows], out[f"width_r_{i}"][rows] = _moments(energy, e_sum, r_mid)
    out[f"sparsity_{i}"][rows] = (energy <= 0).mean(axis=1)
    if layer.n_alpha > 1:
        alpha = np.repeat(layer.alpha_centres_rad, layer.n_r)
        eta, phi = r_mid * np.cos(alpha), r_mid * np.sin(alpha)
        out[f"centre_eta_{i}"][rows], out[f"width_eta_{i}"][rows] = _moments(energy, e_sum, eta)
        out[f"centre_phi_{i}"][rows], out[f"width_phi_{i}"][rows] = _moments(energy, e_sum, phi)


def compute_features(
    energies_mev: np.ndarray,
    showers_mev: np.ndarray,
    geometry: Geometry,
    threshold_mev: float,
    chunk_events: int = 10000,
) -> dict[str, np.ndarray]:
    """High-level features {name: (N,) float64} of showers (N, V) MeV with incident energies (N,) MeV.

    Voxels below `threshold_mev` count as 0. Work is done `chunk_events` showers and one layer at a
    time, so dataset 3 (40,500 voxels) needs little memory beyond its input.
    """
    energies = np.asarray(energies_mev, dtype=np.float64).reshape(-1)
    n = len(energies)
    if showers_mev.ndim != 2 or showers_mev.shape != (n, geometry.n_voxels):
        msg = (f"showers of shape {showers_mev.shape} with {n} incident energies: expected "
               f"({n}, {geometry.n_voxels}) for the {geometry.name} geometry")
        raise DataError(msg)
    if not np.all(energies > 0):
        msg = f"incident energies must be > 0 MeV (E_tot / E_inc); smallest given: {energies.min()}"
        raise DataError(msg)
    out = {name: np.zeros(n) for name in feature_names(geometry)}
    for start in range(0, n, chunk_events):
        rows = slice(start, min(start + chunk_events, n))
        for layer in geometry.layers:
            energy = np.asarray(showers_mev[rows, layer.voxel_slice], dtype=np.float64)
            energy = np.where(energy < threshold_mev, 0.0, energy)
            _layer_features(layer, energy, out, rows)
    out["e_tot"] = sum((out[f"e_layer_{layer.layer_id}"] for layer in geometry.layers), np.zeros(n))
    out["e_ratio"] = out["e_tot"] / energies
    return out
