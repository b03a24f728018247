"""CaloDiffusion preprocessing: showers (MeV) <-> the diffusion space, with one global standardisation.

Forward, in GeV: condition c = log10(E_inc / E_min) / log10(E_max / E_min); voxels x = e / (MAXDEP E_inc),
clipped to [0, 1]; with GLaM fixed on an irregular geometry the fixed bin-overlap map C takes x to the
regular grid here (on energies, before the logit: an area split that keeps the energy); then
y = alpha + (1 - 2 alpha) x, z = (ln(y / (1 - y)) - mean) / std with alpha = 1e-6 and ONE mean and std for
all voxels, from the reference table (nothing is fitted).
Inverse: z std + mean, sigmoid, (y - alpha) / (1 - 2 alpha), the fixed pseudo-inverse of C when it was
applied, times MAXDEP E_inc; voxels below ECUT (GeV) zeroed, negatives included; times 1000 (MeV).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from calo_ablate.config import canonical_dataset
from calo_ablate.data.preprocessing import float_matrix
from calo_ablate.errors import DataError
from calo_ablate.geometry import load_geometry
from calo_ablate.model.calodiffusion.config import CaloDiffusionConfig
from calo_ablate.model.calodiffusion.geometry_map import GeometryLatentMap, regular_grid

__all__ = ["ALPHA", "PUBLISHED_CONSTANTS", "CaloDiffusionPreprocessor", "DatasetConstants",
           "published_standardisation"]

ALPHA = 1e-6


@dataclass(frozen=True)
class DatasetConstants:
    max_deposit: float       # MAXDEP
    energy_min_gev: float
    energy_max_gev: float
    voxel_cut_gev: float     # ECUT


PUBLISHED_CONSTANTS = {
    "1-photons": DatasetConstants(3.1, 0.256, 4194.304, 1e-7),
    "1-pions": DatasetConstants(3.1, 0.256, 4194.304, 1e-7),
    "2": DatasetConstants(2.0, 1.0, 1000.0, 1.51e-5),
    "3": DatasetConstants(2.0, 1.0, 1000.0, 1.51e-5),
}

# (mean, std) of the logit voxels, consts.py of the reference: flat voxels with GLaM learned, the
# regular grid with GLaM fixed; datasets 2 and 3 are regular, so one table serves both settings.
_STANDARDISATION = {
    ("1-photons", "learned"): (-9.9807, 3.14168),
    ("1-pions", "learned"): (-11.7610, 2.84317),
    ("1-photons", "fixed"): (-12.1444, 2.45056),
    ("1-pions", "fixed"): (-12.4783, 2.21267),
    ("2", "learned"): (-12.8564, 1.9123),
    ("2", "fixed"): (-12.8564, 1.9123),
    ("3", "learned"): (-13.4753, 1.1070),
    ("3", "fixed"): (-13.4753, 1.1070),
}


def published_standardisation(dataset: str, glam: str) -> tuple[float, float]:
    """(mean, std) of the reference for `dataset` with GLaM 'learned' or 'fixed'."""
    return _STANDARDISATION[(canonical_dataset(dataset), glam)]


class CaloDiffusionPreprocessor:
    """The transforms of one dataset and config (see the module docstring); nothing to fit.

    Energies are (N,) MeV, showers (N, V) MeV in the official flat order; features are float32.
    """

    def __init__(self, dataset: str, config: CaloDiffusionConfig,
                 constants: DatasetConstants | None = None) -> None:
        self.dataset = canonical_dataset(dataset)
        self.geometry = load_geometry(self.dataset)
        self.constants = constants or PUBLISHED_CONSTANTS[self.dataset]
        if config.voxel_mean is not None and config.voxel_std is not None:
            self.mean, self.std = config.voxel_mean, config.voxel_std
        else:
            self.mean, self.std = published_standardisation(self.dataset, config.glam)
        grid = regular_grid(self.geometry)
        self.map = GeometryLatentMap(self.geometry, learned=False, dtype=torch.float64) \
            if config.glam == "fixed" and not grid.identity else None
        self.n_features = grid.n_voxels if self.map is not None else self.geometry.n_voxels

    def _energies_gev(self, energies_mev: np.ndarray, n_events: int) -> np.ndarray:
        energies = np.asarray(energies_mev, dtype=np.float64).reshape(-1) / 1000.0
        if len(energies) != n_events or not np.all(np.isfinite(energies) & (energies > 0)):
            msg = f"expected {n_events} finite positive incident energies in MeV, got {len(energies)} " \
                  f"(smallest {energies.min() * 1000.0 if len(energies) else None} MeV)"
            raise DataError(msg)
        return energies

    def _matrix(self, values: np.ndarray, width: int, what: str) -> np.ndarray:
        return float_matrix(values, width, what, f"dataset {self.dataset!r}")

    def condition(self, energies_mev: np.ndarray) -> np.ndarray:
        """(N, 1) float32: log10(E_inc / E_min) / log10(E_max / E_min)."""
        energies = self._energies_gev(energies_mev, len(np.asarray(energies_mev).reshape(-1)))
        c = self.constants
        return (np.log10(energies / c.energy_min_gev) / np.log10(c.energy_max_gev / c.energy_min_gev)
                ).astype(np.float32)[:, None]

    def forward(self, energies_mev: np.ndarray, showers_mev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(condition (N, 1), features (N, n_features)), both float32."""
        showers = self._matrix(showers_mev, self.geometry.n_voxels, "showers_mev") / 1000.0
        energies = self._energies_gev(energies_mev, len(showers))
        x = np.clip(showers / (self.constants.max_deposit * energies[:, None]), 0.0, 1.0)
        if self.map is not None:
            with torch.no_grad():
                x = self.map.encode(torch.from_numpy(x)).flatten(1).numpy()
        y = ALPHA + (1.0 - 2.0 * ALPHA) * x
        z = (np.log(y / (1.0 - y)) - self.mean) / self.std
        return self.condition(energies_mev), z.astype(np.float32)

    def inverse(self, features: np.ndarray, energies_mev: np.ndarray) -> np.ndarray:
        """Showers (N, V) float64 in MeV from features (N, n_features)."""
        z = self._matrix(features, self.n_features, "features")
        energies = self._energies_gev(energies_mev, len(z))
        y = 0.5 * (1.0 + np.tanh(0.5 * (z * self.std + self.mean)))     # sigmoid without overflow
        x = (y - ALPHA) / (1.0 - 2.0 * ALPHA)
        if self.map is not None:
            with torch.no_grad():
                grid = torch.from_numpy(x).reshape(len(x), *self.map.grid.shape)
                x = self.map.decode(grid).numpy()
        showers_gev = x * self.constants.max_deposit * energies[:, None]
        showers_gev[showers_gev < self.constants.voxel_cut_gev] = 0.0
        return showers_gev * 1000.0
