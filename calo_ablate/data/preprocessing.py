"""What the data layer needs of a model family's preprocessing: the Preprocessor protocol and its recipe.

A model family (calo_ablate/model/interface.py) hands the data module a `Preprocessing`: a name and the
settings that shape its features (both enter the feature cache's key), a factory of unfitted
preprocessors and a loader of saved ones. The data module fits the preprocessor on the training part
only, transforms both parts to float32 feature arrays (the condition first) and caches them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from calo_ablate.atomic import atomic_write
from calo_ablate.errors import DataError

__all__ = ["FeatureArrays", "Preprocessing", "Preprocessor", "float_matrix", "write_npz_atomic"]

# A family's feature arrays of N showers in batch order, the condition first: a tuple, or a class of the
# family's that iterates over its arrays in that order (CaloScore's Features).
FeatureArrays = Iterable[np.ndarray]


def write_npz_atomic(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write an uncompressed .npz next to `path` and rename it into place: readers never see half a file."""
    path = Path(path)
    named: dict[str, Any] = arrays  # as Any: numpy's savez also has a keyword allow_pickle, which mypy
    with atomic_write(path, binary=True) as handle:  # would otherwise see as a target of **arrays
        np.savez(handle, **named)
    return path


def float_matrix(values: npt.ArrayLike, width: int, what: str, owner: str) -> np.ndarray:
    """`values` as a float64 (N, width) array; DataError naming `what` and `owner` (e.g. its geometry) if not."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != width:
        msg = f"{what} has shape {array.shape}, expected (N, {width}) for {owner}"
        raise DataError(msg)
    return array



class Preprocessor(Protocol):
    """Showers (N, V) MeV with incident energies (N,) MeV <-> a family's feature arrays."""

    def fit(self, energies_mev: np.ndarray, showers_mev: np.ndarray) -> Any:
        """Fit any statistics on the training showers (a no-op for a fixed transform)."""

    def transform(self, energies_mev: np.ndarray, showers_mev: np.ndarray) -> FeatureArrays:
        """Feature arrays, float32, one row per shower; the first is the condition (N, C)."""

    def condition(self, energies_mev: np.ndarray) -> np.ndarray:
        """The condition (N, C) float32 of these incident energies: what sampling starts from."""

    @property
    def inverse(self) -> Callable[..., np.ndarray]:
        """inverse(energies_mev, *sampled): showers (N, V) MeV from the arrays the family's sampler returns (all
        but the condition). A property here only so that a method naming its arrays, inverse(energies_mev,
        layer, voxel), satisfies the protocol."""

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The fitted state as named arrays (empty when nothing is fitted)."""


@dataclass(frozen=True)
class Preprocessing:
    """A family's preprocessing recipe.

    family: its name (in the cache key); settings: JSON-able values that change the features (in the
    cache key); new: an unfitted preprocessor; restore: one rebuilt from `to_arrays()` and a source
    name for messages; pack: the type the cached arrays are handed back as (a tuple unless the family says otherwise).
    """

    family: str
    settings: dict[str, Any]
    new: Callable[[], Preprocessor]
    restore: Callable[[Mapping[str, np.ndarray], str], Preprocessor]
    pack: Callable[..., FeatureArrays] = field(default=lambda *parts: tuple(parts))

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
