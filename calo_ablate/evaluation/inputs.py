"""The official classifier input vectors (one row per shower, float64, no label column).

As the CaloChallenge script prepares them (`prepare_low_data_for_classifier`,
`prepare_high_data_for_classifier`); energies in MeV, lengths in mm; nothing is standardised.
- cls-low: log10 E_inc, then every thresholded voxel / E_inc in file order (1 + V columns);
- cls-low-normed: log10 E_inc, every voxel (not thresholded, negatives set to 0) / (its layer's
  thresholded energy + 1e-16), then log10(E_layer + 1e-8) per layer (1 + V + L columns);
- cls-high: log10 E_inc; log10(E_layer + 1e-8) per layer; EC_eta / 100, EC_phi / 100,
  width_eta / 100, width_phi / 100, each over the alpha-binned layers; log10(E_tot + 1e-8);
  sparsity, EC_r / 100, width_r / 100, each over all layers (30 / 46 / 362 columns for dataset-1
  photons / pions / datasets 2 and 3). The same vector feeds FPD and KPD.
Layers are the non-empty ones in layer-id order.
"""

from __future__ import annotations

import numpy as np

from calo_ablate.geometry import Geometry

__all__ = ["cls_high_columns", "cls_high_inputs", "cls_low_inputs", "cls_low_normed_inputs"]


def _log_energies(energies_mev: np.ndarray) -> np.ndarray:
    return np.log10(np.asarray(energies_mev, dtype=np.float64).reshape(-1, 1))


def cls_low_inputs(energies_mev: np.ndarray, showers_thresholded_mev: np.ndarray) -> np.ndarray:
    """(N, 1 + V): log10 E_inc and the thresholded voxels / E_inc."""
    energies = np.asarray(energies_mev, dtype=np.float64).reshape(-1, 1)
    return np.concatenate([np.log10(energies), np.asarray(showers_thresholded_mev, np.float64) / energies], axis=1)


def cls_low_normed_inputs(
    energies_mev: np.ndarray,
    showers_raw_mev: np.ndarray,
    features: dict[str, np.ndarray],
    geometry: Geometry,
) -> np.ndarray:
    """(N, 1 + V + L): log10 E_inc, raw voxels (negatives -> 0) / (E_layer + 1e-16), log10(E_layer + 1e-8).

    `features` are those of the thresholded showers (features.compute_features), so E_layer is the
    thresholded layer energy, as in the official script.
    """
    voxels = np.clip(np.asarray(showers_raw_mev, dtype=np.float64), 0.0, None)
    layer_e = [features[f"e_layer_{layer.layer_id}"] for layer in geometry.layers]
    normed = [voxels[:, layer.voxel_slice] / (e[:, None] + 1e-16) for layer, e in zip(geometry.layers, layer_e,
                                                                                       strict=True)]
    logs = np.stack([np.log10(e + 1e-8) for e in layer_e], axis=1)
    return np.concatenate([_log_energies(energies_mev), *normed, logs], axis=1)


def cls_high_columns(geometry: Geometry) -> list[tuple[str, str]]:
    """The cls-high columns after log10 E_inc, in order: (feature name, transform 'log' or '/100' or '')."""
    ids = [layer.layer_id for layer in geometry.layers]
    alpha_ids = [layer.layer_id for layer in geometry.layers if layer.n_alpha > 1]
    columns = [(f"e_layer_{i}", "log") for i in ids]
    for kind in ("centre_eta", "centre_phi", "width_eta", "width_phi"):
        columns += [(f"{kind}_{i}", "/100") for i in alpha_ids]
    columns.append(("e_tot", "log"))
    columns += [(f"sparsity_{i}", "") for i in ids]
    columns += [(f"centre_r_{i}", "/100") for i in ids] + [(f"width_r_{i}", "/100") for i in ids]
    return columns


def cls_high_inputs(energies_mev: np.ndarray, features: dict[str, np.ndarray], geometry: Geometry) -> np.ndarray:
    """(N, 30 / 46 / 362): log10 E_inc, then the cls_high_columns transformed."""
    columns = [_log_energies(energies_mev)[:, 0]]
    for name, transform in cls_high_columns(geometry):
        values = np.asarray(features[name], dtype=np.float64)
        columns.append(np.log10(values + 1e-8) if transform == "log" else values / 100.0 if transform else values)
    return np.stack(columns, axis=1)
