"""The reference log-likelihood ratio (own procedure, not a CaloChallenge metric): is a row's sample closer
to the reference than the base's?

For one study seed: the row's showers R, the base's showers B and the reference showers of that seed
(shower i of each shares its incident energy and, for R and B, its initial sampling noise) are split
into `folds` disjoint folds by one permutation of the shower index, so a shower's partners stay in its
fold. On fold t a binary classifier learns to tell the fold's R from its B showers and is evaluated on
the fold's reference showers x:

    Delta_t = mean over x of logit p(R | x) = mean log p(R | x) - mean log p(B | x)

With balanced classes and a calibrated classifier, logit p(R | x) estimates log p_R(x) / p_B(x), so
Delta_t estimates KL(ref || B) - KL(ref || R) in nats: positive when R is closer to the reference than
B (better), negative when it is further (worse). The classifier is the multiclass metric's
(multiclass.mean_log_posteriors with two classes): the official DNN on standardised cls-low inputs,
80 % / 20 % train / validation per class inside the fold, the epoch with the lowest validation
cross-entropy, one temperature fitted on the validation split; fold t uses seed + t. The reference
showers are never trained on.

The folds hold disjoint showers and their classifiers are fitted separately, so given the generators
the Delta_t are independent replicates (report/llr.py tests them). A classifier that misses a
difference shrinks Delta towards 0; one evaluated on reference showers far outside both samples
extrapolates, which makes the replicates heavy-tailed (wide intervals), not biased: with R and B of one
distribution, the training is symmetric in the two labels, so Delta_t has mean 0.
"""

from __future__ import annotations

import numpy as np
import torch

from calo_ablate.config import ClassifierConfig
from calo_ablate.errors import DataError
from calo_ablate.evaluation.multiclass import mean_log_posteriors, multiclass_inputs

__all__ = ["MIN_FOLD_SHOWERS", "Sample", "fold_deltas", "llr_replicates"]

Sample = tuple[np.ndarray, np.ndarray]  # (incident energies (N,) MeV, showers (N, V) MeV)
MIN_FOLD_SHOWERS = 5  # per sample and fold: at least one validation shower per class after the 80 % split


def fold_deltas(row: np.ndarray, base: np.ndarray, reference: np.ndarray, settings: ClassifierConfig, folds: int,
                seed: int, device: str | None = None) -> np.ndarray:
    """Delta_t in nats for t = 0 .. folds - 1, (folds,), from input vectors (N, D) of equal N, row i of each
    sample belonging together (see the module docstring)."""
    if not len(row) == len(base) == len(reference):
        msg = (f"llr: {len(row)} row, {len(base)} base and {len(reference)} reference showers, expected the same "
               "number (shower i of each shares its incident energy)")
        raise DataError(msg)
    if len(row) < folds * MIN_FOLD_SHOWERS:
        msg = (f"llr: {len(row)} showers per sample are too few for {folds} folds of at least "
               f"{MIN_FOLD_SHOWERS}")
        raise DataError(msg)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    parts = np.array_split(np.random.default_rng(seed).permutation(len(row)), folds)
    deltas = [mean_log_posteriors([row[i], base[i]], reference[i], settings, seed + t, device)
              for t, i in enumerate(parts)]
    return np.array([float(d[0] - d[1]) for d in deltas])


def llr_replicates(row: Sample, base: Sample, reference: Sample, dataset: str, settings: ClassifierConfig, *,
                   seed: int, threshold_mev: float | None = None, device: str | None = None) -> np.ndarray:
    """fold_deltas of one study seed's samples on their cls-low input vectors; settings.trainings folds."""
    if not (np.array_equal(row[0], base[0]) and np.array_equal(row[0], reference[0])):
        msg = "llr: the row's, the base's and the reference's incident energies differ, expected the same draw"
        raise DataError(msg)
    row_x, base_x, ref_x = (multiclass_inputs(s, dataset, "cls-low", threshold_mev) for s in (row, base, reference))
    return fold_deltas(row_x, base_x, ref_x, settings, settings.trainings, seed, device)
