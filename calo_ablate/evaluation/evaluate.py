"""All sample-quality metrics of one generated sample against a reference sample, as a flat dict.

Keys (dimensionless unless said), official ones named after the official script's outputs:
- `hist-chi/<name>`: the official separation powers in the official order (separation.py);
- `fpd_kpd/FPD (x10^3)`, `fpd_kpd/FPD (x10^3) error`, `fpd_kpd/KPD (x10^3)`, `fpd_kpd/KPD (x10^3) error`
  (JetNet 0.2.5 as the script calls it, metrics.py);
- `prdc/precision`, `prdc/recall`, `prdc/density`, `prdc/coverage`;
- `<mode>/AUC`, `<mode>/AUC std`, `<mode>/JSD`, `<mode>/JSD std` for mode cls-low, cls-low-normed,
  cls-high (official), cls-resnet (own network); mean and ddof-0 std over the trainings.
Own (not in the official output): `sep_<feature>` for E_tot, sparsity, EC_r, width_r; `sep_mean`
(mean of the official separation powers, NaN skipped); `<mode> (standardised)/...` with
evaluate.classifier.standardise_inputs; `cls-high-z/...` (the classifier mode cls-high-z): the
cls-high inputs standardised by the training split's mean and std, always (alias auc_high_z), for
small classifiers that cannot learn from the official unstandardised inputs; `fpd_kpd without replacement/...` with evaluate.own_fpd_kpd;
`seconds/<group>`: wall time of each metric group.
Aliases kept for the study report (same numbers as the official keys they name): see ALIASES.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch

from calo_ablate.config import EvaluateConfig, canonical_dataset
from calo_ablate.errors import DataError
from calo_ablate.evaluation.classifier import classifier_scores, split_counts
from calo_ablate.evaluation.features import apply_threshold, compute_features, default_threshold_mev
from calo_ablate.evaluation.inputs import cls_high_inputs, cls_low_inputs, cls_low_normed_inputs
from calo_ablate.evaluation.metrics import fpd, kpd
from calo_ablate.evaluation.prdc_metric import prdc_scores
from calo_ablate.evaluation.resnet import RESNET_SHAPES, ShowerResNet
from calo_ablate.evaluation.separation import official_separation_powers, own_separation_powers
from calo_ablate.geometry import Geometry, load_geometry

__all__ = ["ALIASES", "OFFICIAL_GROUPS", "classifier_split_note", "equal_sizes", "evaluate_samples", "metric_kind", "reference_noise_floor",
           "threshold_for"]

Sample = tuple[np.ndarray, np.ndarray]  # (incident energies (N,) MeV, showers (N, V) MeV)
Report = Callable[[str, dict[str, float], float], None]  # (group, its metrics, seconds)

FPD_KEYS = ("FPD (x10^3)", "FPD (x10^3) error", "KPD (x10^3)", "KPD (x10^3) error")
ALIASES = {
    "sep_e_ratio": "hist-chi/Etot / Einc",
    **{f"{name}_{level}{std}": f"cls-{level}/{name.upper()}{' std' if std else ''}"
       for level in ("low", "high") for name in ("auc", "jsd") for std in ("", "_std")},
    "fpd": "fpd_kpd/FPD (x10^3)", "fpd_err": "fpd_kpd/FPD (x10^3) error",
    "kpd": "fpd_kpd/KPD (x10^3)", "kpd_err": "fpd_kpd/KPD (x10^3) error",
    "auc_high_z": "cls-high-z/AUC",
}
STANDARDISED_MODE = "cls-high-z"  # cls-high inputs, standardised whatever classifier.standardise_inputs says
OFFICIAL_GROUPS = ("hist-chi", "fpd_kpd", "prdc", "cls-low", "cls-low-normed", "cls-high")


def metric_kind(key: str) -> str:
    """'official' (the official script's number), 'alias' (a second name of one) or 'own'."""
    if key in ALIASES:
        return "alias"
    group, _, _ = key.partition("/")
    return "official" if group in OFFICIAL_GROUPS else "own"


def threshold_for(dataset: str, settings: EvaluateConfig) -> float:
    """The readout threshold in MeV: settings.threshold_mev, or the dataset's when None."""
    return default_threshold_mev(dataset) if settings.threshold_mev is None else settings.threshold_mev


def _kept_rows(length: int, n: int, seed: int) -> slice | np.ndarray:
    """All rows when length == n, else a fixed random subset of n rows in their order."""
    if length == n:
        return slice(None)
    return np.sort(np.random.default_rng(seed).choice(length, n, replace=False))


def equal_sizes(first: Sample, second: Sample, seed: int = 0) -> tuple[Sample, Sample]:
    """Both samples cut to the smaller size: the larger keeps a fixed random subset (order kept)."""
    n = min(len(first[0]), len(second[0]))
    keep = [_kept_rows(len(sample[0]), n, seed) for sample in (first, second)]
    return (first[0][keep[0]], first[1][keep[0]]), (second[0][keep[1]], second[1][keep[1]])


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


class _Groups:
    """Runs metric groups in order, timing each, and collects their prefixed metrics."""

    def __init__(self, report: Report | None) -> None:
        self.metrics: dict[str, float] = {}
        self.report = report

    def run(self, group: str, compute: Callable[[], dict[str, float]]) -> dict[str, float]:
        started = time.perf_counter()
        values = compute()
        seconds = time.perf_counter() - started
        self.metrics.update({f"{group}/{k}": v for k, v in values.items()})
        self.metrics[f"seconds/{group}"] = seconds
        if self.report:
            self.report(group, values, seconds)
        return values


def _fpd_kpd(high_ref: np.ndarray, high_gen: np.ndarray, replace: bool) -> dict[str, float]:
    values = [*fpd(high_ref, high_gen, replace=replace), *kpd(high_ref, high_gen, replace=replace)]
    return dict(zip(FPD_KEYS, (1e3 * v for v in values), strict=True))


def _classifier_inputs(mode: str, sample: Sample, thresholded: np.ndarray, features: dict[str, np.ndarray],
                       geometry: Geometry) -> np.ndarray:
    if mode == "cls-low-normed":
        return cls_low_normed_inputs(sample[0], sample[1], features, geometry)
    if mode in ("cls-high", STANDARDISED_MODE):
        return cls_high_inputs(sample[0], features, geometry)
    return cls_low_inputs(sample[0], thresholded)  # cls-low and cls-resnet


def evaluate_samples(
    reference: Sample,
    generated: Sample,
    dataset: str,
    settings: EvaluateConfig,
    seed: int = 0,
    *,
    report: Report | None = None,
    device: str | None = None,
) -> dict[str, float]:
    """Every metric of `generated` against `reference` (each (energies (N,) MeV, showers (N, V) MeV)).

    Both samples get the readout threshold first. Histograms, FPD/KPD and PRDC use every shower;
    the classifiers need equal sizes, so the larger sample is cut (equal_sizes, `seed`). The groups
    run cheapest first; `report(group, metrics, seconds)` is called after each. Deterministic for a
    given seed (FPD/KPD use JetNet's fixed seeds whatever `seed` is). device: where the classifiers train
    (default: cuda if available, else cpu).
    """
    dataset = canonical_dataset(dataset)
    geometry = load_geometry(dataset)
    threshold = threshold_for(dataset, settings)
    raw_ref = _checked(reference, geometry.n_voxels, "reference")
    raw_gen = _checked(generated, geometry.n_voxels, "generated")
    s_ref, s_gen = apply_threshold(raw_ref[1], threshold), apply_threshold(raw_gen[1], threshold)
    f_ref = compute_features(raw_ref[0], s_ref, geometry, threshold)
    f_gen = compute_features(raw_gen[0], s_gen, geometry, threshold)

    groups = _Groups(report)
    official = groups.run("hist-chi", lambda: official_separation_powers(
        (raw_ref[0], s_ref, f_ref), (raw_gen[0], s_gen, f_gen), geometry, dataset, threshold))
    own = own_separation_powers(f_ref, f_gen, geometry, dataset, threshold)
    groups.metrics.update({f"sep_{name}": value for name, value in own.items()})
    groups.metrics["sep_mean"] = float(np.nanmean(list(official.values())))

    high_ref, high_gen = cls_high_inputs(raw_ref[0], f_ref, geometry), cls_high_inputs(raw_gen[0], f_gen, geometry)
    if settings.fpd_kpd:
        groups.run("fpd_kpd", lambda: _fpd_kpd(high_ref, high_gen, replace=True))
    if settings.own_fpd_kpd:
        groups.run("fpd_kpd without replacement", lambda: _fpd_kpd(high_ref, high_gen, replace=False))
    if settings.prdc:
        groups.run("prdc", lambda: prdc_scores(s_ref, s_gen, settings.prdc_k))

    n = min(len(raw_ref[0]), len(raw_gen[0]))
    samples = [(raw, s, f, _kept_rows(len(raw[0]), n, seed)) for raw, s, f in ((raw_ref, s_ref, f_ref),
                                                                                (raw_gen, s_gen, f_gen))]
    cls = settings.classifier
    suffix = " (standardised)" if cls.standardise_inputs else ""
    for mode in settings.classifiers:
        if mode == "cls-resnet" and dataset not in RESNET_SHAPES:
            continue
        build = (lambda n_inputs: ShowerResNet(dataset, cls.resnet_channels)) if mode == "cls-resnet" else None
        inputs = [_classifier_inputs(mode, (raw[0][rows], raw[1][rows]), s[rows], {k: v[rows] for k, v in f.items()},
                                     geometry) for raw, s, f, rows in samples]
        dtype = torch.float32 if mode == "cls-resnet" else torch.float64  # float64 conv3d: ~10x slower on CPU
        mode_cls = cls.model_copy(update={"standardise_inputs": True}) if mode == STANDARDISED_MODE else cls
        name = mode if mode == STANDARDISED_MODE else mode + suffix
        groups.run(name, partial(classifier_scores, inputs[0], inputs[1], mode_cls, dataset, build=build, seed=seed,
                                 dtype=dtype, device=device))

    metrics = groups.metrics
    metrics.update({alias: metrics[key] for alias, key in ALIASES.items() if key in metrics})
    return metrics


def classifier_split_note(dataset: str, n_per_class: int) -> str:
    """How the classifier splits n showers per class (official fixed counts or their proportions)."""
    n_train, n_test, official = split_counts(dataset, n_per_class)
    how = "the official fixed counts" if official else "the official proportions: samples smaller than the official files"
    return (f"classifier split per class: train {n_train}, test {n_test}, validation "
            f"{n_per_class - n_train - n_test} ({how})")


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
