"""What the data layer needs of a model family's preprocessing: the Preprocessor protocol and its recipe.

A model family (calo_ablate/model/family.py) hands the data module a `Preprocessing`: a name and the
settings that shape its features (both enter the feature cache's key), a factory of unfitted
preprocessors and a loader of saved ones. The data module fits the preprocessor on the training part
only, transforms both parts to float32 feature arrays (the condition first) and caches them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from calo_ablate.config import DataConfig
from calo_ablate.data.preprocess import CaloScorePreprocessor, Features, write_npz_atomic
from calo_ablate.errors import DataError
from calo_ablate.geometry import load_geometry

__all__ = ["Preprocessing", "Preprocessor", "caloscore_preprocessing"]


class Preprocessor(Protocol):
    """Showers (N, V) MeV with incident energies (N,) MeV <-> a family's feature arrays."""

    def fit(self, energies_mev: np.ndarray, showers_mev: np.ndarray) -> Any:
        """Fit any statistics on the training showers (a no-op for a fixed transform)."""

    def transform(self, energies_mev: np.ndarray, showers_mev: np.ndarray) -> tuple[np.ndarray, ...]:
        """Feature arrays, float32, one row per shower; the first is the condition (N, C)."""

    def condition(self, energies_mev: np.ndarray) -> np.ndarray:
        """The condition (N, C) float32 of these incident energies: what sampling starts from."""

    def inverse(self, energies_mev: np.ndarray, *sampled: np.ndarray) -> np.ndarray:
        """Showers (N, V) MeV from the arrays the family's sampler returns (all but the condition)."""

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The fitted state as named arrays (empty when nothing is fitted)."""


@dataclass(frozen=True)
class Preprocessing:
    """A family's preprocessing recipe.

    family: its name (in the cache key); settings: JSON-able values that change the features (in the
    cache key); new: an unfitted preprocessor; restore: one rebuilt from `to_arrays()` and a source
    name for messages; pack: the type the cached arrays are handed back as (CaloScore: Features).
    """

    family: str
    settings: dict[str, Any]
    new: Callable[[], Preprocessor]
    restore: Callable[[Mapping[str, np.ndarray], str], Preprocessor]
    pack: Callable[..., tuple[np.ndarray, ...]] = field(default=lambda *parts: tuple(parts))

    def save(self, preprocessor: Preprocessor, path: str | Path) -> Path:
        """The fitted state as an .npz file (written whole or not at all)."""
        return write_npz_atomic(path, preprocessor.to_arrays())

    def load(self, path: str | Path) -> Preprocessor:
        """A preprocessor saved by `save`."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as arrays:
                return self.restore(dict(arrays), str(path))
        except (OSError, ValueError) as err:
            msg = f"{path}: cannot read a saved {self.family} preprocessor ({err})"
            raise DataError(msg) from err


def caloscore_preprocessing(data_config: DataConfig) -> Preprocessing:
    """CaloScore v2's fitted preprocessing (data/preprocess.py); its settings are data.* keys, already in
    the cache key."""
    geometry = load_geometry(data_config.dataset)
    return Preprocessing(
        family="caloscore_v2", settings={},
        new=lambda: CaloScorePreprocessor(geometry, data_config),
        restore=lambda arrays, source: CaloScorePreprocessor.from_arrays(arrays, geometry, data_config, source),
        pack=Features)
