"""Precision, recall, density and coverage (mode 'prdc' of the CaloChallenge script), via the `prdc` package.

Inputs as the official script prepares them: the thresholded voxels of every shower, each exact 0
replaced by 0.1 MeV, then log10 (empty voxels -> -1); no other scaling. real = reference,
fake = generated, k nearest neighbours (official default 5). `prdc.compute_prdc` holds full N x N
Euclidean distance matrices (three of them) in memory: 8 N^2 bytes each, 3.2 GB at N = 20,000.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
from prdc import compute_prdc

__all__ = ["prdc_inputs", "prdc_scores"]


def prdc_inputs(showers_thresholded_mev: np.ndarray) -> np.ndarray:
    """(N, V) log10 of the voxels with 0 -> 0.1 MeV."""
    showers = np.asarray(showers_thresholded_mev, dtype=np.float64)
    return np.log10(np.where(showers == 0.0, 0.1, showers))


def prdc_scores(reference_mev: np.ndarray, generated_mev: np.ndarray, nearest_k: int = 5) -> dict[str, float]:
    """{"precision", "recall", "density", "coverage"} of thresholded (N, V) showers in MeV."""
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints the sample sizes
        scores = compute_prdc(prdc_inputs(reference_mev), prdc_inputs(generated_mev), nearest_k)
    return {name: float(scores[name]) for name in ("precision", "recall", "density", "coverage")}
