"""CaloFlow's preprocessing: showers <-> the two flows' logit-space inputs and their conditions.

The data layer caches only what is fixed: (E_inc, showers) in units of 100 GeV (CaloFlowPreprocessor),
because the published noise U[0, a) is drawn afresh for every shower of every epoch and enters before
the layer energies are computed. The module turns a (noisy) batch into the flows' inputs with
`flow1_features` and `flow2_features`; sampling goes back with `layer_energies_from_flow1` and
`showers_from_flow2`. All functions work in the dtype of their inputs (torch), energies in units.
- flow-I: unit space u_0 = E_tot / (u0_max E_inc), u_i = E_{i-1} / sum_{j >= i-1} E_j (i = 1..N-1),
  clamped to [0, 1], then logit(alpha + (1 - 2 alpha) u); condition log10(3 E_inc).
- flow-II: every layer's voxels divided by the layer's energy (+1e-16), the same logit; condition
  [log10(3 E_inc), log10(E_k + offset) - 1 for every layer k].
- inverse: flow-I's u clamped to [0, 1] and turned into layer energies; flow-II's voxels (no clamp)
  renormalised per layer, x / sum |x| times the flow-I layer energy, to MeV, clamped to
  [0, sample_clip_mev], zeroed below sample_threshold_mev.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from calo_ablate.data.preprocessing import Preprocessing
from calo_ablate.errors import DataError
from calo_ablate.geometry import Geometry, load_geometry
from calo_ablate.model.caloflow.config import ENERGY_UNIT_MEV, CaloFlowConfig

__all__ = ["CaloFlowPreprocessor", "caloflow_preprocessing", "flow1_condition", "flow1_features",
           "flow2_condition", "flow2_features", "from_unit_space", "inverse_logit", "layer_energies",
           "layer_energies_from_flow1", "layer_slices", "logit", "renormalise_layers", "showers_from_flow2",
           "to_unit_space"]

LAYER_EPS = 1e-16  # the published L_norm's guard against an empty layer, in units


def logit(u: torch.Tensor, alpha: float) -> torch.Tensor:
    """logit(alpha + (1 - 2 alpha) u)."""
    x = alpha + (1.0 - 2.0 * alpha) * u
    return torch.log(x) - torch.log1p(-x)


def inverse_logit(s: torch.Tensor, alpha: float) -> torch.Tensor:
    """(sigmoid(s) - alpha) / (1 - 2 alpha): the inverse of `logit`, unclamped."""
    return (torch.sigmoid(s) - alpha) / (1.0 - 2.0 * alpha)


def layer_energies(showers: torch.Tensor, slices: tuple[slice, ...]) -> torch.Tensor:
    """(B, V) -> (B, N): each layer's energy, same units."""
    return torch.stack([showers[:, s].sum(dim=1) for s in slices], dim=1)


def _safe_divide(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den, 0 where den is 0 (an empty remainder of the calorimeter)."""
    return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(num))


def to_unit_space(layers: torch.Tensor, e_inc: torch.Tensor, u0_scale: float) -> torch.Tensor:
    """(B, N) layer energies, (B, 1) incident energies -> (B, N) u in [0, 1]."""
    remaining = torch.flip(torch.cumsum(torch.flip(layers, [1]), dim=1), [1])  # sum_{j >= i} E_j
    u0 = remaining[:, :1] / (u0_scale * e_inc)
    rest = _safe_divide(layers[:, :-1], remaining[:, :-1])
    return torch.cat([u0, rest], dim=1).clamp(0.0, 1.0)


def from_unit_space(u: torch.Tensor, e_inc: torch.Tensor, u0_scale: float) -> torch.Tensor:
    """The inverse of `to_unit_space` for u in [0, 1]: (B, N) layer energies, the last the remainder."""
    remaining = u[:, 0] * u0_scale * e_inc[:, 0]
    layers = []
    for i in range(1, u.shape[1]):
        layers.append(u[:, i] * remaining)
        remaining = remaining - layers[-1]
    layers.append(remaining)
    return torch.stack(layers, dim=1)


def flow1_condition(e_inc: torch.Tensor) -> torch.Tensor:
    """(B, 1) incident energies in units -> flow-I's condition log10(3 E_inc)."""
    return torch.log10(3.0 * e_inc)


def flow2_condition(e_inc: torch.Tensor, layers: torch.Tensor, offset: float) -> torch.Tensor:
    """(B, 1 + N): log10(3 E_inc) and log10(E_k + offset) - 1 per layer."""
    return torch.cat([flow1_condition(e_inc), torch.log10(layers + offset) - 1.0], dim=1)


def flow1_features(showers: torch.Tensor, e_inc: torch.Tensor, slices: tuple[slice, ...],
                   config: CaloFlowConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(flow-I input (B, N) in logit space, its condition (B, 1)) of showers (B, V) in units."""
    u = to_unit_space(layer_energies(showers, slices), e_inc, config.u0_scale)
    return logit(u, config.logit_alpha), flow1_condition(e_inc)


def flow2_features(showers: torch.Tensor, e_inc: torch.Tensor, slices: tuple[slice, ...],
                   config: CaloFlowConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(flow-II input (B, V) in logit space, its condition (B, 1 + N)) of showers (B, V) in units."""
    layers = layer_energies(showers, slices)
    normed = torch.cat([showers[:, s] / (layers[:, k:k + 1] + LAYER_EPS) for k, s in enumerate(slices)], dim=1)
    return logit(normed, config.logit_alpha), flow2_condition(e_inc, layers, config.layer_log_offset)


def layer_energies_from_flow1(sample: torch.Tensor, e_inc: torch.Tensor, config: CaloFlowConfig) -> torch.Tensor:
    """Flow-I's logit-space sample (B, N) -> layer energies (B, N) in units (u clamped to [0, 1])."""
    u = inverse_logit(sample, config.logit_alpha).clamp(0.0, 1.0)
    return from_unit_space(u, e_inc, config.u0_scale)


def renormalise_layers(voxels: torch.Tensor, layers: torch.Tensor, slices: tuple[slice, ...]) -> torch.Tensor:
    """Every layer's voxels scaled to sum |x| = its layer energy: x / sum |x| * E_k (0 for an all-zero layer)."""
    parts = []
    for k, s in enumerate(slices):
        part = voxels[:, s]
        parts.append(_safe_divide(part, part.abs().sum(dim=1, keepdim=True)) * layers[:, k:k + 1])
    return torch.cat(parts, dim=1)


def showers_from_flow2(sample: torch.Tensor, layers: torch.Tensor, slices: tuple[slice, ...],
                       config: CaloFlowConfig) -> torch.Tensor:
    """Flow-II's logit-space sample (B, V) and flow-I's layer energies (B, N) in units -> showers in MeV,
    clamped to [0, sample_clip_mev] and zeroed below sample_threshold_mev."""
    voxels = renormalise_layers(inverse_logit(sample, config.logit_alpha), layers, slices) * ENERGY_UNIT_MEV
    voxels = voxels.clamp(0.0, config.sample_clip_mev)
    return torch.where(voxels < config.sample_threshold_mev, torch.zeros_like(voxels), voxels)


def layer_slices(geometry: Geometry) -> tuple[slice, ...]:
    """Where each calorimeter layer's voxels sit in the flat shower vector."""
    return tuple(layer.voxel_slice for layer in geometry.layers)


class CaloFlowPreprocessor:
    """The data layer's Preprocessor for CaloFlow: nothing is fitted; features are (E_inc (N, 1), showers
    (N, V)) in units of 100 GeV, float32 (the noise and the flows' inputs are made per batch)."""

    def __init__(self, geometry: Geometry, config: CaloFlowConfig) -> None:
        self.geometry = geometry
        self.config = config
        self.slices = layer_slices(geometry)

    def fit(self, energies_mev: np.ndarray, showers_mev: np.ndarray) -> None:
        """Nothing is fitted: every constant of CaloFlow's preprocessing is published."""

    def transform(self, energies_mev: np.ndarray, showers_mev: np.ndarray) -> tuple[np.ndarray, ...]:
        showers = np.asarray(showers_mev)
        if showers.ndim != 2 or showers.shape[1] != self.geometry.n_voxels:
            msg = f"CaloFlow preprocessing of {self.geometry.name}: expected showers (N, " \
                  f"{self.geometry.n_voxels}), got {showers.shape}"
            raise DataError(msg)
        return self.condition(energies_mev), (showers / ENERGY_UNIT_MEV).astype(np.float32)

    def condition(self, energies_mev: np.ndarray) -> np.ndarray:
        return (np.asarray(energies_mev, dtype=np.float64).reshape(-1, 1) / ENERGY_UNIT_MEV).astype(np.float32)

    def inverse(self, energies_mev: np.ndarray, *sampled: np.ndarray) -> np.ndarray:
        """Showers (N, V) MeV from (flow-I sample (N, L), flow-II sample (N, V)), both in logit space."""
        if len(sampled) != 2:
            msg = f"CaloFlow inverse: expected the flow-I and flow-II samples, got {len(sampled)} arrays"
            raise DataError(msg)
        e_inc = torch.from_numpy(self.condition(energies_mev).astype(np.float64))
        flow1, flow2 = (torch.as_tensor(np.asarray(a), dtype=torch.float64) for a in sampled)
        layers = layer_energies_from_flow1(flow1, e_inc, self.config)
        return showers_from_flow2(flow2, layers, self.slices, self.config).numpy().astype(np.float32)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {}


def caloflow_preprocessing(dataset: str, config: CaloFlowConfig) -> Preprocessing:
    """The recipe for the data module; its features depend on nothing but the dataset (the settings
    {} keep one cache for every CaloFlow row)."""
    geometry = load_geometry(dataset)

    def restore(arrays: Mapping[str, np.ndarray], source: str) -> CaloFlowPreprocessor:
        return CaloFlowPreprocessor(geometry, config)

    return Preprocessing(family="caloflow", settings={}, new=lambda: CaloFlowPreprocessor(geometry, config),
                         restore=restore)
