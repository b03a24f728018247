"""CaloDiffusion preprocessing: showers (MeV) <-> the diffusion space, with one global standardisation.

Forward, in GeV: condition c = log10(E_inc / E_min) / log10(E_max / E_min); voxels x = e / (MAXDEP E_inc),
clipped to [0, 1]; with GLaM fixed on an irregular geometry the fixed bin-overlap map C takes x to the
regular grid here (on energies, before the logit: an area split that keeps the energy); then
y = alpha + (1 - 2 alpha) x, z = (ln(y / (1 - y)) - mean) / std with alpha = 1e-6 and ONE mean and std for
all voxels, from the reference table (nothing is fitted).
Inverse: z std + mean, sigmoid, (y - alpha) / (1 - 2 alpha), the fixed pseudo-inverse of C when it was
applied, times MAXDEP E_inc; voxels below ECUT (GeV) zeroed, negatives included; times 1000 (MeV).

LayerDiffusion (model.layer_diffusion.enabled) adds the layer vector, between the condition and the
voxels: from x (per-layer sums in the official flat order, before any GLaM map) u_tot = sum of x, i.e.
E_dep / (MAXDEP E_inc), standardised; fractions f_l = E_l / E_dep (0 for an empty shower), logit with
alpha and standardised with one mean and std for all layers (the reference's table, or the config's).
Its inverse renormalises the voxels (ReverseNormCaloChall): voxels to x as above; layer energies =
u_tot x (inverse-logit fractions / their sum); negative voxels set to 0; each layer's voxels times
target / (current sum + 1e-10), the factor left at 1 where either is below 1e-6; then times
MAXDEP E_inc and the ECUT.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from calo_ablate.config import canonical_dataset
from calo_ablate.data.preprocessing import float_matrix
from calo_ablate.errors import ConfigError, DataError
from calo_ablate.geometry import load_geometry
from calo_ablate.model.calodiffusion.config import CaloDiffusionConfig
from calo_ablate.model.calodiffusion.geometry_map import GeometryLatentMap, regular_grid

__all__ = ["ALPHA", "PUBLISHED_CONSTANTS", "PUBLISHED_LAYER_STANDARDISATION", "CaloDiffusionPreprocessor",
           "DatasetConstants", "LayerStandardisation", "layer_features", "layer_sums", "layer_targets",
           "published_standardisation",
           "renormalise_layers"]

ALPHA = 1e-6
RENORM_FLOOR = 1e-6      # below it (units of MAXDEP E_inc) a layer's target or sum leaves its factor at 1
RENORM_EPSILON = 1e-10   # added to a layer's generated sum before dividing


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


@dataclass(frozen=True)
class LayerStandardisation:
    """Means and stds of the layer vector: u_tot = E_dep / (MAXDEP E_inc), and the logit fractions."""

    energy_mean: float
    energy_std: float
    fraction_mean: float
    fraction_std: float


# consts.py of CaloDiffusion 2.0 (SHOWERMAP layer-logit-norm); none is published for dataset 3
PUBLISHED_LAYER_STANDARDISATION = {
    "1-photons": LayerStandardisation(0.3123, 0.02872, -4.9023, 5.17364),
    "1-pions": LayerStandardisation(0.2359, 0.08255, -4.9742, 4.89629),
    "2": LayerStandardisation(0.3926, 0.05546, -6.35551, 3.90699),
}


def _logit(x: np.ndarray) -> np.ndarray:
    y = ALPHA + (1.0 - 2.0 * ALPHA) * x
    return np.log(y / (1.0 - y))


def _inverse_logit(z: np.ndarray) -> np.ndarray:
    return (0.5 * (1.0 + np.tanh(0.5 * z)) - ALPHA) / (1.0 - 2.0 * ALPHA)   # sigmoid without overflow


def layer_features(layer_energies: np.ndarray, standard: LayerStandardisation) -> np.ndarray:
    """(N, L + 1) float64 [u_tot, fractions] standardised, from layer energies (N, L) in MAXDEP E_inc units."""
    total = layer_energies.sum(axis=1)
    safe = np.where(total > 0, total, 1.0)
    fractions = np.where(total[:, None] > 0, layer_energies / safe[:, None], 0.0)
    u = (total - standard.energy_mean) / standard.energy_std
    f = (_logit(fractions) - standard.fraction_mean) / standard.fraction_std
    return np.concatenate([u[:, None], f], axis=1)


def layer_targets(features: np.ndarray, standard: LayerStandardisation) -> np.ndarray:
    """(N, L) float64 layer energies in MAXDEP E_inc units from the layer vector (N, L + 1): u_tot times
    the inverse-logit fractions divided by their sum (all zero where that sum is 0)."""
    features = np.asarray(features, dtype=np.float64)
    total = features[:, 0] * standard.energy_std + standard.energy_mean
    fractions = _inverse_logit(features[:, 1:] * standard.fraction_std + standard.fraction_mean)
    norm = fractions.sum(axis=1, keepdims=True)
    return total[:, None] * np.divide(fractions, norm, out=np.zeros_like(fractions), where=norm > 0)


def layer_sums(x: np.ndarray, voxel_layer: np.ndarray, n_layers: int) -> np.ndarray:
    """(N, n_layers): the sum of each layer's voxels of x (N, V); voxel_layer (V,) the layer of each voxel."""
    return x @ (voxel_layer[:, None] == np.arange(n_layers)[None, :]).astype(x.dtype)


def renormalise_layers(x: np.ndarray, targets: np.ndarray, voxel_layer: np.ndarray) -> np.ndarray:
    """Voxels x (N, V) with negatives set to 0 and each layer's voxels scaled to its target (N, L):
    factor target / (sum + RENORM_EPSILON), 1 where the target or the sum is below RENORM_FLOOR.
    voxel_layer (V,): each voxel's layer index."""
    x = np.maximum(x, 0.0)
    sums = layer_sums(x, voxel_layer, targets.shape[1])
    factor = targets / (sums + RENORM_EPSILON)
    factor[(targets < RENORM_FLOOR) | (sums < RENORM_FLOOR)] = 1.0
    return x * factor[:, voxel_layer]


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
        self.layers = self._layer_standardisation(config) if config.layer_diffusion.enabled else None
        self.voxel_layer = self.geometry.voxel_layer

    def _layer_standardisation(self, config: CaloDiffusionConfig) -> LayerStandardisation:
        c = config.layer_diffusion
        if c.energy_mean is not None and c.energy_std is not None and c.fraction_mean is not None \
                and c.fraction_std is not None:
            return LayerStandardisation(c.energy_mean, c.energy_std, c.fraction_mean, c.fraction_std)
        if self.dataset not in PUBLISHED_LAYER_STANDARDISATION:
            msg = f"model.layer_diffusion on dataset {self.dataset!r}: the reference publishes no layer " \
                  "standardisation for it; set model.layer_diffusion.energy_mean, energy_std, fraction_mean " \
                  "and fraction_std"
            raise ConfigError(msg)
        return PUBLISHED_LAYER_STANDARDISATION[self.dataset]

    @property
    def n_layer_features(self) -> int:
        """Length of the layer vector (n_layers + 1), 0 without LayerDiffusion."""
        return self.geometry.n_layers + 1 if self.layers is not None else 0

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

    def forward(self, energies_mev: np.ndarray, showers_mev: np.ndarray) -> tuple[np.ndarray, ...]:
        """(condition (N, 1), features (N, n_features)), float32; with LayerDiffusion
        (condition, layer vector (N, n_layers + 1), features)."""
        showers = self._matrix(showers_mev, self.geometry.n_voxels, "showers_mev") / 1000.0
        energies = self._energies_gev(energies_mev, len(showers))
        x = np.clip(showers / (self.constants.max_deposit * energies[:, None]), 0.0, 1.0)
        layers = None
        if self.layers is not None:
            sums = layer_sums(x, self.voxel_layer, self.geometry.n_layers)
            layers = layer_features(sums, self.layers).astype(np.float32)
        if self.map is not None:
            with torch.no_grad():
                x = self.map.encode(torch.from_numpy(x)).flatten(1).numpy()
        y = ALPHA + (1.0 - 2.0 * ALPHA) * x
        z = (np.log(y / (1.0 - y)) - self.mean) / self.std
        if layers is None:
            return self.condition(energies_mev), z.astype(np.float32)
        return self.condition(energies_mev), layers, z.astype(np.float32)

    def inverse(self, features: np.ndarray, energies_mev: np.ndarray,
                layers: np.ndarray | None = None) -> np.ndarray:
        """Showers (N, V) float64 in MeV from features (N, n_features); with LayerDiffusion the layer
        vector (N, n_layers + 1) is required and every layer is renormalised to its energy."""
        z = self._matrix(features, self.n_features, "features")
        energies = self._energies_gev(energies_mev, len(z))
        x = _inverse_logit(z * self.std + self.mean)
        if self.map is not None:
            with torch.no_grad():
                grid = torch.from_numpy(x).reshape(len(x), *self.map.grid.shape)
                x = self.map.decode(grid).numpy()
        if self.layers is not None:
            if layers is None:
                msg = "model.layer_diffusion.enabled: the inverse needs the sampled layer vector, got none"
                raise DataError(msg)
            targets = layer_targets(self._matrix(layers, self.n_layer_features, "layers"), self.layers)
            x = renormalise_layers(x, targets, self.voxel_layer)
        showers_gev = x * self.constants.max_deposit * energies[:, None]
        showers_gev[showers_gev < self.constants.voxel_cut_gev] = 0.0
        return showers_gev * 1000.0
