"""All sample-quality metrics of one generated sample against a reference sample, as a flat dict.

Keys (dimensionless unless said):
- sep_<feature> for every high-level feature (features.py), sep_e_ratio among them, and sep_mean,
  the mean over all features;
- auc_low, auc_low_std, jsd_low, jsd_low_std: classifier on voxels; auc_high, auc_high_std,
  jsd_high, jsd_high_std: classifier on high-level features (mean and std over trainings);
- fpd, fpd_err, kpd, kpd_err: x 1e3, on the high-level classifier inputs (log10 E_inc, log10 E_layer,
  centres and widths in eta and phi), as the CaloChallenge evaluation feeds them to JetNet,
  standardised with the reference's mean and std.
"""

from __future__ import annotations

import numpy as np

from calo_ablate.config import EvaluateConfig, canonical_dataset
from calo_ablate.errors import DataError
from calo_ablate.evaluation.classifier import classifier_scores, high_level_inputs, low_level_inputs
from calo_ablate.evaluation.features import (
    apply_threshold,
    classifier_high_level_names,
    compute_features,
    default_threshold_mev,
    feature_names,
)
from calo_ablate.evaluation.metrics import feature_bins, fpd, kpd, separation_power
from calo_ablate.geometry import load_geometry

__all__ = ["evaluate_samples", "reference_noise_floor", "threshold_for"]

Sample = tuple[np.ndarray, np.ndarray]  # (incident energies (N,) MeV, showers (N, V) MeV)


def threshold_for(dataset: str, settings: EvaluateConfig) -> float:
    """The readout threshold in MeV: settings.threshold_mev, or the dataset's when None."""
    return default_threshold_mev(dataset) if settings.threshold_mev is None else settings.threshold_mev


def _checked(sample: Sample, n_voxels: int, which: str) -> Sample:
    energies, showers = np.asarray(sample[0]).reshape(-1), np.asarray(sample[1])
    if showers.ndim != 2 or showers.shape != (len(energies), n_voxels):
        msg = (f"{which} sample: showers of shape {showers.shape} with {len(energies)} incident "
               f"energies, expected ({len(energies)}, {n_voxels})")
        raise DataError(msg)
    if len(energies) < 10 or not np.all(energies > 0):
        msg = f"{which} sample: expected at least 10 showers with incident energies > 0 MeV"
        raise DataError(msg)
    return energies, showers


def evaluate_samples(
    reference: Sample,
    generated: Sample,
    dataset: str,
    settings: EvaluateConfig,
    seed: int = 0,
    device: str | None = None,
) -> dict[str, float]:
    """Every metric of `generated` against `reference` (each (energies (N,) MeV, showers (N, V) MeV)).

    Both samples get the readout threshold first. Deterministic for a given seed. device: where the
    classifier trains (default: cuda if available, else cpu).
    """
    dataset = canonical_dataset(dataset)
    geometry = load_geometry(dataset)
    threshold = threshold_for(dataset, settings)
    e_ref, s_ref = _checked(reference, geometry.n_voxels, "reference")
    e_gen, s_gen = _checked(generated, geometry.n_voxels, "generated")
    s_ref, s_gen = apply_threshold(s_ref, threshold), apply_threshold(s_gen, threshold)
    f_ref = compute_features(e_ref, s_ref, geometry, threshold)
    f_gen = compute_features(e_gen, s_gen, geometry, threshold)

    metrics: dict[str, float] = {}
    seps = {name: separation_power(f_ref[name], f_gen[name],
                                   feature_bins(name, f_ref[name], geometry, dataset, threshold))
            for name in feature_names(geometry)}
    metrics.update({f"sep_{name}": value for name, value in seps.items()})
    metrics["sep_mean"] = float(np.mean(list(seps.values())))

    names = classifier_high_level_names(geometry)
    high_ref, high_gen = high_level_inputs(e_ref, f_ref, names), high_level_inputs(e_gen, f_gen, names)
    metrics["fpd"], metrics["fpd_err"] = (1e3 * v for v in fpd(high_ref, high_gen, seed=seed))
    metrics["kpd"], metrics["kpd_err"] = (1e3 * v for v in kpd(high_ref, high_gen, seed=seed))

    for level, (ref_in, gen_in) in (("low", (low_level_inputs(e_ref, s_ref), low_level_inputs(e_gen, s_gen))),
                                    ("high", (high_ref, high_gen))):
        scores = classifier_scores(ref_in, gen_in, settings.classifier, seed=seed, device=device)
        for name in ("auc", "jsd"):
            metrics[f"{name}_{level}"], metrics[f"{name}_{level}_std"] = scores[name], scores[f"{name}_std"]
    return metrics


def reference_noise_floor(
    reference: Sample,
    dataset: str,
    settings: EvaluateConfig,
    seed: int = 0,
) -> dict[str, float]:
    """The metrics of two disjoint random halves of one reference sample ("reference vs reference").

    What a perfect generator would score with half as many showers: the noise floor of each metric.
    """
    energies, showers = np.asarray(reference[0]).reshape(-1), np.asarray(reference[1])
    order = np.random.default_rng(seed).permutation(len(energies))
    half = len(order) // 2
    first, second = np.sort(order[:half]), np.sort(order[half:2 * half])
    return evaluate_samples((energies[first], showers[first]), (energies[second], showers[second]),
                            dataset, settings, seed=seed)
