"""The generated samples a study keeps in its folder: results/<study>/samples/<entry>-s<seed>.npz.

The cells write them (and the seed's reference sample, entry `reference`); the report's histograms and
the multiclass metric read them back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from calo_ablate.data.preprocessing import write_npz_atomic

SAMPLES_DIR = "samples"  # in a study folder


def sample_path(study_dir: Path, entry: str, seed: int) -> Path:
    """results/<study>/samples/<entry>-s<seed>.npz: a cell's generated sample (or the seed's reference)."""
    return Path(study_dir) / SAMPLES_DIR / f"{entry}-s{seed}.npz"


def save_sample(path: Path, energies_mev: np.ndarray, showers_mev: np.ndarray) -> None:
    """A sample (incident energies (N,) MeV, showers (N, V) MeV) as .npz, written whole or not at all."""
    write_npz_atomic(path, {"energies_mev": energies_mev, "showers_mev": showers_mev})


def load_sample(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(incident energies (N,) MeV, showers (N, V) MeV) as `save_sample` wrote them."""
    with np.load(path) as f:
        return f["energies_mev"], f["showers_mev"]
