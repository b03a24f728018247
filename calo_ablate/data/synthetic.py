"""The synthetic stand-in for the CaloChallenge Geant4 files: parametrised showers written in the official layout.

A GFlash-style fast simulation (see calo_ablate.data.gflash), NOT Geant4: it gives the pipeline files with
the right names, shapes, incident energies and shower-like statistics (depth growing with log E, lateral
core and tail, sampling fluctuations, sparsity, correlated layer energies) when the real files are absent.

Per event: (1) an incident energy (the official dataset-1 energies and counts, or log-uniform 1 GeV - 1 TeV
for datasets 2 and 3); (2) an expected visible energy per voxel, mu (MeV): the longitudinal gamma profile
with event-by-event fluctuations integrated over each layer's depth range in sub-steps, times the radial
core-plus-tail profile at each sub-step's depth integrated over each radial bin, spread uniformly over the
alpha bins; (3) energy spots: the number of spots in a voxel is Poisson(mu / eps) and each spot's energy is
Gamma(k, eps / k), so a voxel holds Gamma(k n, eps / k) (eps: mean spot energy). Independent Poisson counts
per voxel are the same law as a Poisson count per layer split by a multinomial over the (r, alpha) bin
probabilities. The spot energy sets the stochastic term: sigma / E = sqrt((1 + 1 / k) eps / 1 GeV) /
sqrt(E / GeV); (4) a per-event constant-term factor.

Units: MeV in files and at the interface; depths in X0 (electromagnetic) or interaction lengths lambda
(the pion model); radii in mm in the geometry, in R_M inside the GFlash formulas.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from calo_ablate.config import canonical_dataset
from calo_ablate.data.calochallenge import ShowerWriter
from calo_ablate.data.gflash import (
    Medium,
    depth_fractions,
    radial_bin_probabilities,
    radial_parameters,
    sample_longitudinal,
)
from calo_ablate.errors import ConfigError
from calo_ablate.geometry import Geometry, load_geometry

__all__ = [
    "CHUNK_BYTES",
    "DS1_ENERGIES_MEV",
    "DS1_PHOTON_COUNTS",
    "DS1_PION_COUNTS",
    "SPECS",
    "WORK_ARRAYS",
    "DatasetSpec",
    "EMCalorimeter",
    "PionCalorimeter",
    "Sampling",
    "incident_energies",
    "scaled_counts",
    "simulate",
    "synthesise",
]

# Dataset-1 incident energies (MeV) and their per-energy counts in the official files.
DS1_ENERGIES_MEV = tuple(float(2**k) for k in range(8, 23))
DS1_PHOTON_COUNTS = (10_000,) * 11 + (5_000, 3_000, 2_000, 1_000)       # 121,000


def scaled_counts(counts: Sequence[int], total: int) -> tuple[int, ...]:
    """Split `total` events over the energies in proportion to `counts` (largest remainder).

    Every energy gets at least one event when total >= len(counts).
    """
    weights = np.asarray(counts, dtype=np.float64)
    exact = weights / weights.sum() * total
    result = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - result), kind="stable")
    result[order[: total - int(result.sum())]] += 1
    if total >= len(counts):
        while (result == 0).any():
            result[int(np.argmax(result))] -= 1
            result[int(np.argmin(result))] += 1
    return tuple(int(c) for c in result)


# The official pion file holds 120,230 events, 770 fewer than the photon file. Which energies miss them
# is not documented; the shortfall is spread over the energies in proportion to the photon counts.
DS1_PION_COUNTS = scaled_counts(DS1_PHOTON_COUNTS, 120_230)


@dataclass(frozen=True)
class Sampling:
    """Sampling fluctuations: sigma / E = stochastic / sqrt(E / GeV) (+) constant.

    The stochastic part comes from energy spots of mean energy eps = 1 GeV * stochastic^2 / (1 + 1 / k)
    whose energies are Gamma(k)-distributed (small k: a broad spread of spot energies).
    """

    stochastic: float   # c in c / sqrt(E / GeV)
    constant: float     # relative, per event
    spot_shape: float   # k

    @property
    def spot_mev(self) -> float:
        return 1000.0 * self.stochastic**2 / (1.0 + 1.0 / self.spot_shape)

    def deposit(self, mu_mev: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Expected voxel energies (N, V) MeV -> sampled voxel energies (N, V) MeV, float32."""
        counts = rng.poisson(mu_mev / self.spot_mev)                                  # (N, V)
        hit = np.nonzero(counts)                                                      # sparse: gamma draws only there
        scale = np.maximum(1.0 + self.constant * rng.standard_normal(len(mu_mev)), 0.0)  # (N,)
        energies = np.zeros(mu_mev.shape, dtype=np.float32)
        energies[hit] = (rng.standard_gamma(self.spot_shape * counts[hit])
                         * (self.spot_mev / self.spot_shape) * scale[hit[0]])
        return energies


@dataclass(frozen=True)
class EMCalorimeter:
    """An electromagnetic shower (GFlash) read out in the layers of a geometry.

    layer_depths_x0[i] = (start, end) of geometry layer i in X0 from the shower start; energy outside
    every layer (upstream material, dead gaps, longitudinal and lateral leakage) is lost. Stored energies
    are calibrated to the deposited energy (sampling fraction divided out), so E_tot / E_inc is 1 less
    the losses.
    """

    medium: Medium
    layer_depths_x0: tuple[tuple[float, float], ...]
    sampling: Sampling
    substep_x0: float = 1.0   # depth step over which the radial profile is taken as constant

    def expected(self, geometry: Geometry, energies_mev: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Expected visible energy per voxel (N, V), MeV, with event-by-event profile fluctuations."""
        t_max, alpha = sample_longitudinal(energies_mev, self.medium, rng)          # (N,), (N,)
        mu = np.zeros((len(energies_mev), geometry.n_voxels))
        for layer, (start, end) in zip(geometry.layers, self.layer_depths_x0, strict=True):
            steps = max(1, math.ceil((end - start) / self.substep_x0 - 1e-9))
            edges = np.linspace(start, end, steps + 1)                              # (S + 1,)
            frac = depth_fractions(t_max, alpha, edges)                              # (N, S)
            tau = 0.5 * (edges[1:] + edges[:-1])[None, :] / t_max[:, None]           # (N, S)
            r_core, r_tail, p = radial_parameters(tau, energies_mev[:, None], self.medium.z_eff)
            probs = radial_bin_probabilities(
                layer.r_edges_mm / self.medium.moliere_radius_mm, r_core, r_tail, p)  # (N, S, R)
            per_r = np.einsum("ns,nsr->nr", frac, probs) * (energies_mev / layer.n_alpha)[:, None]  # (N, R)
            mu[:, layer.voxel_slice] = np.tile(per_r, (1, layer.n_alpha))
        return mu


@dataclass(frozen=True)
class PionCalorimeter:
    """A crude charged-pion shower in interaction lengths lambda (GFlash itself is electromagnetic only).

    - The pion travels as a MIP up to its first interaction at depth t0 ~ Exp(1 lambda), losing
      mip_mev_per_lambda (at most its whole energy), left in the central radial bin of one random alpha
      bin of each layer it crosses; a pion that does not interact before the last layer punches through.
    - The rest of its energy showers from t0 in two parts. The electromagnetic fraction f_em is drawn
      from a Beta law (concentration em_fraction_concentration) around 1 - (E / GeV)^(-0.18); it
      develops like a GFlash shower of energy f_em E in em_medium (depths in X0 converted with
      x0_per_lambda). The hadronic part, seen with response h_over_e, follows a gamma profile with depth
      of maximum T_h = (0.2 ln(E / GeV) + 0.7) lambda and shape alpha_h = 2 + 0.25 ln(E / GeV), each
      with a log-normal fluctuation (correlation 0.5).
    - Lateral: r^2 / (r^2 + R^2) profiles (the GFlash form), R = em_radius_mm for the electromagnetic
      part and hadron_radius_mm for the hadronic part, both growing as (1 + 0.5 tau), tau = (t - t0) / T_h.
    """

    layer_depths_lambda: tuple[tuple[float, float], ...]
    sampling: Sampling
    em_medium: Medium
    x0_per_lambda: float
    h_over_e: float = 0.6
    em_fraction_concentration: float = 6.0
    mip_mev_per_lambda: float = 200.0
    sigma_ln_depth: float = 0.3
    sigma_ln_shape: float = 0.3
    em_radius_mm: float = 20.0
    hadron_radius_mm: float = 100.0
    substep_lambda: float = 0.05   # depth step over which the lateral profile is taken as constant,
    max_substeps: int = 16         # but at most this many steps per layer

    def expected(self, geometry: Geometry, energies_mev: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Expected visible energy per voxel (N, V), MeV."""
        n = len(energies_mev)
        e_gev = energies_mev / 1000.0
        t0 = rng.exponential(1.0, n)                                                  # (N,) lambda
        depth_end = self.layer_depths_lambda[-1][1]
        track = np.minimum(t0, depth_end)
        mip_loss = np.minimum(self.mip_mev_per_lambda * track, energies_mev)         # (N,) MeV
        mip_rate = mip_loss / np.maximum(track, 1e-12)                                # (N,) MeV / lambda
        mip_alpha = rng.random(n)                                                     # which alpha bin the track hits

        mean_f_em = np.clip(1.0 - e_gev ** -0.18, 0.05, 0.95)
        f_em = rng.beta(mean_f_em * self.em_fraction_concentration, (1 - mean_f_em) * self.em_fraction_concentration)
        em_mev = (energies_mev - mip_loss) * f_em                                     # (N,) visible
        hadron_mev = (energies_mev - mip_loss) * (1.0 - f_em) * self.h_over_e        # (N,) visible
        em_t_x0, em_alpha = sample_longitudinal(np.maximum(em_mev, 1.0), self.em_medium, rng)
        em_t = em_t_x0 / self.x0_per_lambda                                           # (N,) lambda
        z1, z2 = rng.standard_normal(n), rng.standard_normal(n)
        hadron_t = (0.2 * np.log(e_gev) + 0.7) * np.exp(self.sigma_ln_depth * z1)
        hadron_alpha = np.maximum(
            (2.0 + 0.25 * np.log(e_gev)) * np.exp(self.sigma_ln_shape * (0.5 * z1 + 0.866 * z2)), 1.2)

        mu = np.zeros((n, geometry.n_voxels))
        for layer, (start, end) in zip(geometry.layers, self.layer_depths_lambda, strict=True):
            steps = min(self.max_substeps, max(1, math.ceil((end - start) / self.substep_lambda)))
            edges = np.linspace(start, end, steps + 1)[None, :] - t0[:, None]        # (N, S + 1) from t0
            tau = np.maximum(0.5 * (edges[:, 1:] + edges[:, :-1]), 0.0) / hadron_t[:, None]  # (N, S)
            per_r = 0.0
            for energy, t_max, alpha, radius in (
                (em_mev, em_t, em_alpha, self.em_radius_mm),
                (hadron_mev, hadron_t, hadron_alpha, self.hadron_radius_mm),
            ):
                frac = depth_fractions(t_max, alpha, edges)                            # (N, S)
                r = radius * (1.0 + 0.5 * tau)
                probs = radial_bin_probabilities(layer.r_edges_mm, r, r, np.ones_like(r))  # (N, S, R)
                per_r = per_r + np.einsum("ns,nsr->nr", frac, probs) * energy[:, None]
            block = np.tile(per_r / layer.n_alpha, (1, layer.n_alpha))                  # (N, A * R)
            crossed = np.clip(np.minimum(t0, end) - start, 0.0, None) * mip_rate
            hit = (mip_alpha * layer.n_alpha).astype(np.int64) * layer.n_r           # flat index of (alpha, r=0)
            block[np.arange(n), hit] += crossed
            mu[:, layer.voxel_slice] = block
        return mu


Calorimeter = EMCalorimeter | PionCalorimeter


@dataclass(frozen=True)
class DatasetSpec:
    """Official file names, event counts and the detector model of one dataset."""

    train_files: tuple[str, ...]
    eval_files: tuple[str, ...]
    events_per_file: int
    calorimeter: Calorimeter
    energy_counts: tuple[int, ...] | None = None   # dataset 1: events per DS1_ENERGIES_MEV entry; None: log-uniform

    @property
    def files(self) -> tuple[str, ...]:
        return self.train_files + self.eval_files


# Dataset 1 (ATLAS barrel, Pb / LAr, tile behind). Depths in X0 from the shower start: 1.5 X0 of upstream
# material (lost), presampler 1.5-2.0, strips 2.0-6.3 (4.3 X0), middle 6.3-22.3 (16 X0), back 22.3-24.3,
# 1.2 X0 of cryostat (lost), first tile layer 25.5-60 (catches the leakage). Effective medium: Z 65,
# E_c 10 MeV, R_M 30 mm (a lead/argon mixture: "a few cm"); design resolution 10% / sqrt(E) (+) 0.7%.
_ATLAS_EM = Medium(z_eff=65.0, critical_energy_mev=10.0, moliere_radius_mm=30.0)
_PHOTON_DEPTHS_X0 = ((1.5, 2.0), (2.0, 6.3), (6.3, 22.3), (22.3, 24.3), (25.5, 60.0))
# Pions: the same boundaries in interaction lengths (lambda ~ 18 X0 in the EM barrel), then the tile
# layers A (1.5 lambda), BC (4.1 lambda) and D (1.8 lambda).
_X0_PER_LAMBDA = 18.0
_PION_DEPTHS_LAMBDA = tuple((a / _X0_PER_LAMBDA, b / _X0_PER_LAMBDA) for a, b in _PHOTON_DEPTHS_X0[:4]) + (
    (1.45, 2.95), (2.95, 7.05), (7.05, 8.85))
# Datasets 2 and 3: 45 layers of 0.8 X0 (two 1.4 mm W + 0.3 mm Si pairs), tungsten R_M 9.3 mm, E_c 8 MeV.
# Stored energies are silicon deposits divided by the sampling fraction, so E_tot / E_inc is ~1 less leakage.
_TUNGSTEN = Medium(z_eff=74.0, critical_energy_mev=8.0, moliere_radius_mm=9.3)
_SIW_DEPTHS_X0 = tuple((0.8 * i, 0.8 * (i + 1)) for i in range(45))

SPECS: dict[str, DatasetSpec] = {
    "1-photons": DatasetSpec(
        ("dataset_1_photons_1.hdf5",), ("dataset_1_photons_2.hdf5",), sum(DS1_PHOTON_COUNTS),
        EMCalorimeter(_ATLAS_EM, _PHOTON_DEPTHS_X0, Sampling(stochastic=0.10, constant=0.007, spot_shape=1.0)),
        DS1_PHOTON_COUNTS),
    "1-pions": DatasetSpec(
        ("dataset_1_pions_1.hdf5",), ("dataset_1_pions_2.hdf5",), sum(DS1_PION_COUNTS),
        PionCalorimeter(_PION_DEPTHS_LAMBDA, Sampling(stochastic=0.35, constant=0.03, spot_shape=0.5),
                        _ATLAS_EM, _X0_PER_LAMBDA),
        DS1_PION_COUNTS),
    "2": DatasetSpec(
        ("dataset_2_1.hdf5",), ("dataset_2_2.hdf5",), 100_000,
        EMCalorimeter(_TUNGSTEN, _SIW_DEPTHS_X0, Sampling(stochastic=0.12, constant=0.01, spot_shape=0.5),
                      substep_x0=0.8)),
    "3": DatasetSpec(
        ("dataset_3_1.hdf5", "dataset_3_2.hdf5"), ("dataset_3_3.hdf5", "dataset_3_4.hdf5"), 50_000,
        EMCalorimeter(_TUNGSTEN, _SIW_DEPTHS_X0, Sampling(stochastic=0.12, constant=0.01, spot_shape=0.5),
                      substep_x0=0.8)),
}

_DATASET_CODES = {"1-photons": 1, "1-pions": 2, "2": 3, "3": 4}
CHUNK_BYTES = 256 * 2**20   # bound on one chunk's float64 working arrays
WORK_ARRAYS = 6             # (N, V) float64 arrays alive at once in a chunk


def incident_energies(dataset: str, n_events: int, rng: np.random.Generator) -> np.ndarray:
    """(n_events,) incident energies in MeV, shuffled.

    Dataset 1: the 15 official energies 2^8..2^22 MeV in the official proportions (scaled_counts);
    datasets 2 and 3: log-uniform between 1 GeV and 1 TeV.
    """
    spec = SPECS[canonical_dataset(dataset)]
    if spec.energy_counts is None:
        return 1000.0 * 1000.0 ** rng.random(n_events)
    counts = scaled_counts(spec.energy_counts, n_events)
    return rng.permutation(np.repeat(np.asarray(DS1_ENERGIES_MEV), counts))


def simulate(dataset: str, energies_mev: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Showers (N, n_voxels) in MeV, float32, for the given incident energies (N,) MeV."""
    dataset = canonical_dataset(dataset)
    calorimeter = SPECS[dataset].calorimeter
    mu = calorimeter.expected(load_geometry(dataset), np.asarray(energies_mev, dtype=np.float64), rng)
    return calorimeter.sampling.deposit(mu, rng)


def _write_file(dataset: str, path: Path, n_events: int, seed: np.random.SeedSequence, bar: tqdm,
                chunk_bytes: int) -> None:
    rng = np.random.default_rng(seed)
    n_voxels = load_geometry(dataset).n_voxels
    chunk = max(1, min(10_000, chunk_bytes // (8 * WORK_ARRAYS * n_voxels)))
    energies = incident_energies(dataset, n_events, rng)
    with ShowerWriter(path, n_voxels) as writer:
        for start in range(0, n_events, chunk):
            batch = energies[start:start + chunk]
            writer.append(batch, simulate(dataset, batch, rng))
            bar.update(len(batch))


def synthesise(
    dataset: str, out_dir: str | Path, *, events: int | None = None, seed: int = 0, progress: bool = True,
    chunk_bytes: int = CHUNK_BYTES,
) -> list[Path]:
    """Write the synthetic train and evaluation files of `dataset` into out_dir under the official names.

    events: showers per file (None: the official count, 121,000 / 120,230 / 100,000 / 50,000); seed: the
    files are a deterministic function of (dataset, seed, events), each file from its own spawned seed.
    Each file is written under a temporary name and renamed when complete, simulated in chunks whose float64
    working arrays take at most chunk_bytes. Returns the paths, training files first.
    """
    dataset = canonical_dataset(dataset)
    spec = SPECS[dataset]
    n_events = spec.events_per_file if events is None else events
    if isinstance(n_events, bool) or not isinstance(n_events, int) or n_events < 1:
        msg = f"synthesise: events must be a positive integer or None, got {events!r}"
        raise ConfigError(msg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seeds = np.random.SeedSequence([seed, _DATASET_CODES[dataset]]).spawn(len(spec.files))
    paths = [out_dir / name for name in spec.files]
    show = progress and sys.stderr.isatty()
    with tqdm(total=n_events * len(paths), desc=f"synthesising {dataset}", unit="shower", disable=not show) as bar:
        for path, file_seed in zip(paths, seeds, strict=True):
            _write_file(dataset, path, n_events, file_seed, bar, chunk_bytes)
    return paths
