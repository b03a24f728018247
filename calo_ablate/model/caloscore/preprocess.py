"""CaloScore v2 preprocessing as one fitted, invertible object: showers (MeV) <-> network features.

Forward, per shower, in GeV (E_inc the incident energy, E_l the energy of non-empty layer l = 0..L-1):
  layer variables  u_0 = sum_l E_l / (max_deposit * E_inc),
                   u_i = E_{i-1} / (E_{i-1} + ... + E_{L-1})   for i = 1..L-1  (0 where that sum is 0);
  voxel variables  f_v = e_v / E_{layer(v)}                     (0 in an empty layer);
  each set, per feature: x = clip((f - min) / (max - min), 0, 1)  (min, max fitted; max - min = 0 -> 1),
                         y = logit(alpha + (1 - 2 alpha) x),      alpha = 1e-6,
                         z = (y - mean) / std                     (mean, std fitted; std < 1e-6 -> 1);
  condition        c = log10(E_inc / energy_min) / log10(energy_max / energy_min).
Inverse: undo the standardisation and the logit, clip x to [0, 1], undo the min-max; rebuild the layer
energies from u; renormalise each layer's voxel fractions to sum to 1 (generated fractions do not by
themselves) and scale them by the layer energy; zero voxels below voxel_cut_gev; return MeV.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import expit

from calo_ablate.config import DataConfig
from calo_ablate.data.preprocessing import Preprocessing, float_matrix
from calo_ablate.errors import DataError
from calo_ablate.geometry import Geometry, load_geometry

__all__ = ["ALPHA", "CaloScorePreprocessor", "Features", "caloscore_preprocessing"]

ALPHA = 1e-6            # logit regulariser: x -> alpha + (1 - 2 alpha) x keeps the logit finite
_MIN_STD = 1e-6         # a feature whose logit spreads less than this is constant: divide by 1
_CHUNK_EVENTS = 16384   # events per chunk: float64 temporaries stay bounded for datasets 2 and 3
_FORMAT = "calo_ablate.preprocessor/1"
_CONFIG_KEYS = ("max_deposit", "energy_min_gev", "energy_max_gev", "voxel_cut_gev")
_STAT_NAMES = ("low", "span", "mean", "std")


@dataclass(frozen=True)
class Features:
    """Network inputs of N showers: condition (N, 1), layer variables (N, L), voxel variables (N, V)."""

    cond: np.ndarray
    layer: np.ndarray
    voxel: np.ndarray

    def __len__(self) -> int:
        return len(self.cond)

    def __iter__(self) -> Iterator[np.ndarray]:
        """cond, layer, voxel: the arrays in the order of a batch."""
        return iter((self.cond, self.layer, self.voxel))


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator where denominator > 0, else 0."""
    out = np.zeros(np.broadcast(numerator, denominator).shape)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _chunks(n_events: int, size: int) -> Iterator[slice]:
    for start in range(0, n_events, size):
        yield slice(start, min(start + size, n_events))


@dataclass
class _LogitScaler:
    """Per-feature min-max to [0, 1], logit, standardisation; all statistics float64, shape (F,)."""

    low: np.ndarray
    span: np.ndarray    # max - min, 0 for a constant feature
    mean: np.ndarray
    std: np.ndarray

    def _logit(self, raw: np.ndarray) -> np.ndarray:
        x = np.clip(_safe_divide(raw - self.low, np.where(self.span > 0, self.span, 1.0)), 0.0, 1.0)
        x = ALPHA + (1.0 - 2.0 * ALPHA) * x
        return np.log(x / (1.0 - x))

    def forward(self, raw: np.ndarray) -> np.ndarray:
        return (self._logit(raw) - self.mean) / self.std

    def inverse(self, z: np.ndarray) -> np.ndarray:
        x = (expit(z * self.std + self.mean) - ALPHA) / (1.0 - 2.0 * ALPHA)
        return self.low + np.clip(x, 0.0, 1.0) * self.span


def _fit_scalers(passes: Callable[[], Iterator[tuple[np.ndarray, ...]]]) -> list[_LogitScaler]:
    """Fit one scaler per feature set, streaming: min and max, then the logit mean, then its std.

    `passes()` starts a new pass over the data, yielding per chunk one raw (n, F_k) array per set.
    """
    n_events, low, high = 0, None, None
    for sets in passes():
        n_events += len(sets[0])
        low = [s.min(axis=0) if low is None else np.minimum(low[k], s.min(axis=0)) for k, s in enumerate(sets)]
        high = [s.max(axis=0) if high is None else np.maximum(high[k], s.max(axis=0)) for k, s in enumerate(sets)]
    if low is None or high is None:
        msg = "cannot fit CaloScorePreprocessor on zero showers"
        raise DataError(msg)
    scalers = [_LogitScaler(lo, hi - lo, np.zeros_like(lo), np.ones_like(lo)) for lo, hi in zip(low, high)]
    sums = [np.zeros_like(lo) for lo in low]
    for sets in passes():
        sums = [total + scaler.forward(s).sum(axis=0) for total, scaler, s in zip(sums, scalers, sets)]
    for scaler, total in zip(scalers, sums):
        scaler.mean = total / n_events
    squares = [np.zeros_like(lo) for lo in low]
    for sets in passes():
        squares = [total + (scaler.forward(s) ** 2).sum(axis=0)     # forward = logit - mean while std is 1
                   for total, scaler, s in zip(squares, scalers, sets)]
    for scaler, total in zip(scalers, squares):
        std = np.sqrt(total / n_events)
        scaler.std = np.where(std < _MIN_STD, 1.0, std)
    return scalers


class CaloScorePreprocessor:
    """The CaloScore v2 transforms of one dataset, fitted on training showers (see the module docstring).

    Public arrays are in MeV (energies (N,), showers (N, V)); features are float32 unless asked otherwise.
    """

    def __init__(self, geometry: Geometry, data_config: DataConfig, chunk_events: int = _CHUNK_EVENTS) -> None:
        """chunk_events: showers transformed at a time (bounds the float64 temporaries)."""
        self.geometry = geometry
        self._chunk_events = chunk_events
        self.max_deposit = data_config.max_deposit
        self.energy_min_gev = data_config.energy_min_gev
        self.energy_max_gev = data_config.energy_max_gev
        self.voxel_cut_gev = data_config.voxel_cut_gev
        if self.energy_max_gev <= self.energy_min_gev:
            msg = f"data.energy_max_gev={self.energy_max_gev} must exceed data.energy_min_gev={self.energy_min_gev}"
            raise DataError(msg)
        self._voxel_layer = geometry.voxel_layer          # (V,) layer index of each voxel
        self._layer_scaler: _LogitScaler | None = None
        self._voxel_scaler: _LogitScaler | None = None

    @property
    def n_layers(self) -> int:
        return self.geometry.n_layers

    @property
    def n_voxels(self) -> int:
        return self.geometry.n_voxels

    # ---- checks -------------------------------------------------------------------------------
    def _energies_gev(self, energies_mev: npt.ArrayLike, n_events: int | None = None) -> np.ndarray:
        energies = np.asarray(energies_mev, dtype=np.float64).reshape(-1) / 1000.0   # (N,)
        if n_events is not None and len(energies) != n_events:
            msg = f"got {len(energies)} incident energies for {n_events} showers: expected one per shower"
            raise DataError(msg)
        if np.any(~np.isfinite(energies)) or np.any(energies <= 0):
            bad = energies[~(np.isfinite(energies) & (energies > 0))][0] * 1000.0
            msg = f"incident energies must be finite and positive, got {bad} MeV"
            raise DataError(msg)
        return energies

    def _matrix(self, values: npt.ArrayLike, width: int, what: str) -> np.ndarray:
        return float_matrix(values, width, what, f"geometry {self.geometry.name!r}")

    def _require_fitted(self) -> tuple[_LogitScaler, _LogitScaler]:
        if self._layer_scaler is None or self._voxel_scaler is None:
            msg = "CaloScorePreprocessor is not fitted: call fit(energies_mev, showers_mev) first, or restore a saved " \
                  "one (from_arrays)"
            raise DataError(msg)
        return self._layer_scaler, self._voxel_scaler

    # ---- raw variables ------------------------------------------------------------------------
    def _raw(self, energies_gev: np.ndarray, showers_gev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(u (N, L), voxel fractions (N, V)) in float64 from GeV arrays."""
        layer_e = self.geometry.layer_energies(showers_gev)                       # (N, L)
        remaining = np.cumsum(layer_e[:, ::-1], axis=1)[:, ::-1]                  # (N, L): sum_{j>=l} E_j
        u = np.empty_like(layer_e)
        u[:, 0] = remaining[:, 0] / (self.max_deposit * energies_gev)
        u[:, 1:] = _safe_divide(layer_e[:, :-1], remaining[:, :-1])
        fractions = _safe_divide(showers_gev, layer_e[:, self._voxel_layer])      # (N, V)
        return u, fractions

    def _raw_chunks(self, energies_mev: npt.ArrayLike, showers_mev: npt.ArrayLike) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        showers = np.asarray(showers_mev)
        if showers.ndim != 2 or showers.shape[1] != self.n_voxels:
            msg = f"showers have shape {showers.shape}, expected (N, {self.n_voxels}) for geometry " \
                  f"{self.geometry.name!r}"
            raise DataError(msg)
        energies_gev = self._energies_gev(energies_mev, len(showers))
        for part in _chunks(len(showers), self._chunk_events):
            yield self._raw(energies_gev[part], showers[part].astype(np.float64) / 1000.0)

    def _layer_energies(self, energies_gev: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Invert the layer variables: (N, L) layer energies in GeV."""
        layer_e = np.empty_like(u)
        remaining = u[:, 0] * self.max_deposit * energies_gev
        for i in range(1, self.n_layers):
            layer_e[:, i - 1] = u[:, i] * remaining
            remaining = remaining * (1.0 - u[:, i])
        layer_e[:, -1] = remaining
        return layer_e

    # ---- public API ---------------------------------------------------------------------------
    def condition(self, energies_mev: npt.ArrayLike) -> np.ndarray:
        """The network condition c = log10(E_inc / E_min) / log10(E_max / E_min), shape (N, 1) float32."""
        return self._condition(self._energies_gev(energies_mev)).astype(np.float32)

    def _condition(self, energies_gev: np.ndarray) -> np.ndarray:
        scale = np.log10(self.energy_max_gev / self.energy_min_gev)
        return (np.log10(energies_gev / self.energy_min_gev) / scale)[:, None]               # (N, 1)

    def fit(self, energies_mev: npt.ArrayLike, showers_mev: npt.ArrayLike) -> CaloScorePreprocessor:
        """Fit min, max, mean and std of both feature sets on these (training) showers, MeV; returns self."""
        self._layer_scaler, self._voxel_scaler = _fit_scalers(lambda: self._raw_chunks(energies_mev, showers_mev))
        return self

    def transform(self, energies_mev: npt.ArrayLike, showers_mev: npt.ArrayLike,
                  dtype: npt.DTypeLike = np.float32) -> Features:
        """Showers (N, V) MeV with energies (N,) MeV -> Features; dtype float64 keeps the exact round trip."""
        layer_scaler, voxel_scaler = self._require_fitted()
        n_events = np.shape(showers_mev)[0]
        layer = np.empty((n_events, self.n_layers), dtype=dtype)
        voxel = np.empty((n_events, self.n_voxels), dtype=dtype)
        for part, (u, fractions) in zip(_chunks(n_events, self._chunk_events), self._raw_chunks(energies_mev, showers_mev)):
            layer[part] = layer_scaler.forward(u)
            voxel[part] = voxel_scaler.forward(fractions)
        return Features(self._condition(self._energies_gev(energies_mev)).astype(dtype), layer, voxel)

    def inverse(self, energies_mev: npt.ArrayLike, layer: npt.ArrayLike, voxel: npt.ArrayLike) -> np.ndarray:
        """Features (N, L) and (N, V) with energies (N,) MeV -> showers (N, V) in MeV, float32.

        Each layer's voxel fractions are renormalised to sum to 1 before they are scaled by the layer
        energy; a layer whose generated fractions are all 0 stays empty (its energy is dropped).
        """
        layer_scaler, voxel_scaler = self._require_fitted()
        layer = self._matrix(layer, self.n_layers, "layer features")
        voxel = self._matrix(voxel, self.n_voxels, "voxel features")
        if len(layer) != len(voxel):
            msg = f"got {len(layer)} layer rows and {len(voxel)} voxel rows: expected one of each per shower"
            raise DataError(msg)
        energies_gev = self._energies_gev(energies_mev, len(voxel))
        showers = np.empty(voxel.shape, dtype=np.float32)
        for part in _chunks(len(voxel), self._chunk_events):
            layer_e = self._layer_energies(energies_gev[part], layer_scaler.inverse(layer[part]))  # (n, L)
            fractions = voxel_scaler.inverse(voxel[part])                                         # (n, V)
            scale = _safe_divide(layer_e, self.geometry.layer_energies(fractions))               # (n, L)
            chunk = fractions * scale[:, self._voxel_layer]
            chunk[chunk < self.voxel_cut_gev] = 0.0
            showers[part] = chunk * 1000.0
        return showers

    # ---- persistence --------------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        """The fitted state as named arrays, with a JSON `meta` entry (geometry name, config values)."""
        layer_scaler, voxel_scaler = self._require_fitted()
        meta = {"format": _FORMAT, "geometry": self.geometry.name, "n_layers": self.n_layers,
                "n_voxels": self.n_voxels, **{key: getattr(self, key) for key in _CONFIG_KEYS}}
        arrays = {"meta": np.array(json.dumps(meta, sort_keys=True))}
        for prefix, scaler in (("layer", layer_scaler), ("voxel", voxel_scaler)):
            arrays.update({f"{prefix}_{name}": getattr(scaler, name) for name in _STAT_NAMES})
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], geometry: Geometry | None = None,
                    data_config: DataConfig | None = None, source: str = "preprocessor state") -> CaloScorePreprocessor:
        """Rebuild from to_arrays(); a given geometry or data config must match the stored one."""
        try:
            meta = json.loads(str(arrays["meta"]))
            stats = {f"{p}_{n}": np.asarray(arrays[f"{p}_{n}"], dtype=np.float64)
                     for p in ("layer", "voxel") for n in _STAT_NAMES}
        except (KeyError, ValueError) as err:
            msg = f"{source}: not a saved CaloScorePreprocessor ({err})"
            raise DataError(msg) from err
        if meta.get("format") != _FORMAT:
            msg = f"{source}: format {meta.get('format')!r}, expected {_FORMAT!r}"
            raise DataError(msg)
        if geometry is None:
            geometry = load_geometry(meta["geometry"])
        elif geometry.name != meta["geometry"]:
            msg = f"{source}: fitted for geometry {meta['geometry']!r}, but geometry {geometry.name!r} was given"
            raise DataError(msg)
        stored = {key: meta[key] for key in _CONFIG_KEYS}
        if data_config is None:
            data_config = DataConfig(dataset=meta["geometry"], **stored)
        else:
            given = {key: getattr(data_config, key) for key in _CONFIG_KEYS}
            wrong = [f"data.{k}: stored {stored[k]}, config {given[k]}" for k in _CONFIG_KEYS
                     if not np.isclose(stored[k], given[k], rtol=1e-12, atol=0.0)]
            if wrong:
                msg = f"{source}: fitted with other data settings ({'; '.join(wrong)})"
                raise DataError(msg)
        expected = {"layer": geometry.n_layers, "voxel": geometry.n_voxels}
        for name, array in stats.items():
            if array.shape != (expected[name.split("_")[0]],):
                msg = f"{source}: {name} has shape {array.shape}, expected ({expected[name.split('_')[0]]},)"
                raise DataError(msg)
        pre = cls(geometry, data_config)
        pre._layer_scaler = _LogitScaler(*(stats[f"layer_{n}"] for n in _STAT_NAMES))
        pre._voxel_scaler = _LogitScaler(*(stats[f"voxel_{n}"] for n in _STAT_NAMES))
        return pre


def caloscore_preprocessing(data_config: DataConfig) -> Preprocessing:
    """CaloScore v2's fitted preprocessing; its settings are data.* keys, already in the cache key."""
    geometry = load_geometry(data_config.dataset)
    return Preprocessing(
        family="caloscore_v2", settings={},
        new=lambda: CaloScorePreprocessor(geometry, data_config),
        restore=lambda arrays, source: CaloScorePreprocessor.from_arrays(arrays, geometry, data_config, source),
        pack=Features)
