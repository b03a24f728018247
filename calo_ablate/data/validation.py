"""Checks of a CaloChallenge file against the official layout, the geometry and the energy range.

`layout_problems` looks at the two HDF5 datasets (names, shapes, dtypes, sizes) without reading them;
`ContentCheck` is fed the file chunk by chunk and keeps counts (NaN or inf, negative values, incident
energies outside the range) and the statistics of the summary. Every problem is one message that
names the file. Energies in MeV.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from calo_ablate.data.catalogue import ENERGY_TOLERANCE
from calo_ablate.errors import DataError
from calo_ablate.geometry import Geometry

__all__ = ["DISTINCT_CAP", "ENERGIES", "SHOWERS", "ContentCheck", "FileSummary", "Inspection", "layout_problems"]

ENERGIES = "incident_energies"
SHOWERS = "showers"
DISTINCT_CAP = 64    # distinct incident energies counted up to this number; more reads as continuous


def layout_problems(f: h5py.File, path: Path, geometry: Geometry) -> tuple[list[str], bool]:
    """Names, shapes, dtypes and sizes of the two datasets, without reading them. Returns (problems,
    streamable): whether the content can still be checked (float energies (N,) or (N, 1), float
    showers (N, V), even with the wrong V or N)."""
    missing = [name for name in (ENERGIES, SHOWERS) if not isinstance(f.get(name), h5py.Dataset)]
    if missing:
        found = ", ".join(sorted(f.keys())) or "nothing"
        problem = (f"{path}: missing dataset {' and '.join(repr(m) for m in missing)} (expected "
                   f"'{ENERGIES}' (N, 1) and '{SHOWERS}' (N, {geometry.n_voxels}); found {found})")
        return [problem], False
    energies, showers = f[ENERGIES], f[SHOWERS]
    problems = [f"{path}: '{d.name.lstrip('/')}' has dtype {d.dtype}, expected float32 or float64"
                for d in (energies, showers) if d.dtype.kind != "f"]
    energies_ok = energies.ndim == 1 or (energies.ndim == 2 and energies.shape[1] == 1)
    streamable = not problems and energies_ok and showers.ndim == 2
    if not energies_ok:
        problems.append(f"{path}: '{ENERGIES}' has shape {energies.shape}, expected (N, 1)")
    if showers.ndim != 2:
        problems.append(f"{path}: '{SHOWERS}' has shape {showers.shape}, expected (N, {geometry.n_voxels})")
    elif showers.shape[1] != geometry.n_voxels:
        problems.append(f"{path}: '{SHOWERS}' has {showers.shape[1]} voxels per shower, dataset "
                        f"{geometry.name} expects {geometry.n_voxels}")
    if energies.ndim and showers.ndim and energies.shape[0] != showers.shape[0]:   # (scalars: reported above)
        problems.append(f"{path}: {energies.shape[0]} incident energies but {showers.shape[0]} showers: "
                        "the event counts must be equal")
    elif showers.ndim and showers.shape[0] == 0:
        problems.append(f"{path}: the file holds no events")
    return problems, streamable


@dataclass
class ContentCheck:
    """Running checks and statistics over the chunks of one file (all energies in MeV)."""

    path: Path
    geometry: Geometry
    e_range_mev: tuple[float, float]
    per_layer: bool = True      # False when the voxel count does not match the geometry
    events: int = 0
    bad: dict[str, list] = field(default_factory=dict)      # problem kind -> [count, first event, extreme]
    e_min: float = np.inf
    e_max: float = -np.inf
    distinct: set[float] = field(default_factory=set)
    zeros_per_layer: np.ndarray | None = None               # (n_layers,) zero voxels summed over events
    ratio_sum: float = 0.0
    ratio_sumsq: float = 0.0
    ratio_n: int = 0

    def _flag(self, kind: str, mask: np.ndarray, start: int, values: np.ndarray | None = None,
              lowest: bool = True) -> None:
        """Count the events' entries where `mask` holds; remember the first event and the extreme value."""
        count = int(mask.sum())
        if not count:
            return
        rows = np.nonzero(mask.any(axis=1) if mask.ndim == 2 else mask)[0]
        extreme = np.nan if values is None else float(values[mask].min() if lowest else values[mask].max())
        old = self.bad.setdefault(kind, [0, start + int(rows[0]), extreme])
        old[0] += count
        old[2] = min(old[2], extreme) if lowest else max(old[2], extreme)

    def add(self, start: int, energies: np.ndarray, showers: np.ndarray) -> None:
        """energies (n,), showers (n, n_voxels), as stored (float32 or float64)."""
        lo, hi = self.e_range_mev
        finite_e = np.isfinite(energies)
        self._flag("nonfinite_e", ~finite_e, start)
        self._flag("negative_e", finite_e & (energies < 0), start, energies)
        outside = finite_e & (energies >= 0) & ((energies < lo * (1 - ENERGY_TOLERANCE))
                                                 | (energies > hi * (1 + ENERGY_TOLERANCE)))
        self._flag("range_low", outside & (energies < lo), start, energies)
        self._flag("range_high", outside & (energies > hi), start, energies, lowest=False)
        finite_s = np.isfinite(showers)                      # (n, V) bool; no float copy of the chunk below
        self._flag("nonfinite_s", ~finite_s, start)
        self._flag("negative_s", finite_s & (showers < 0), start, showers)

        good_e = energies[finite_e]
        if good_e.size:
            self.e_min, self.e_max = min(self.e_min, float(good_e.min())), max(self.e_max, float(good_e.max()))
        if len(self.distinct) <= DISTINCT_CAP:
            self.distinct.update(np.unique(good_e).tolist()[: DISTINCT_CAP + 1])
        if self.per_layer:
            starts = [layer.voxel_slice.start for layer in self.geometry.layers]
            zeros = np.add.reduceat((showers == 0).sum(axis=0), starts)                # (n_layers,)
            self.zeros_per_layer = zeros if self.zeros_per_layer is None else self.zeros_per_layer + zeros
        use = finite_e & (energies > 0) & finite_s.all(axis=1)
        ratio = showers.sum(axis=1, dtype=np.float64)[use] / energies[use]      # E_tot / E_inc, (n_use,)
        self.ratio_sum += float(ratio.sum())
        self.ratio_sumsq += float((ratio**2).sum())
        self.ratio_n += int(use.sum())
        self.events += len(energies)

    def problems(self) -> list[str]:
        lo, hi = self.e_range_mev
        p, messages = self.path, []
        texts = {
            "nonfinite_e": "incident energies that are NaN or inf: {n} (first in event {first})",
            "negative_e": "negative incident energies: {n} (first in event {first}, lowest {x:.10g} MeV)",
            "range_low": f"incident energies below the dataset's range {lo:.10g}..{hi:.10g} MeV: {{n}} "
                         "(first in event {first}, lowest {x:.10g} MeV)",
            "range_high": f"incident energies above the dataset's range {lo:.10g}..{hi:.10g} MeV: {{n}} "
                          "(first in event {first}, highest {x:.10g} MeV)",
            "nonfinite_s": "voxel energies that are NaN or inf: {n} (first in event {first})",
            "negative_s": "negative voxel energies: {n} (first in event {first}, lowest {x:.10g} MeV)",
        }
        for kind, text in texts.items():
            if kind in self.bad:
                n, first, x = self.bad[kind]
                messages.append(f"{p}: " + text.format(n=n, first=first, x=x))
        return messages

    def summary(self, dtype: str, md5: str) -> FileSummary:
        """The summary of a file whose chunks have all been added (and that has no problem)."""
        if self.zeros_per_layer is None:  # per_layer False or no chunk: problems() has reported it
            msg = f"{self.path}: no per-layer counts (no events, or not the geometry's voxel count)"
            raise DataError(msg)
        n = max(self.ratio_n, 1)
        mean = self.ratio_sum / n
        std = float(np.sqrt(max(self.ratio_sumsq / n - mean**2, 0.0)))
        sparsity = {layer.layer_id: float(zeros) / (self.events * layer.n_voxels)
                    for layer, zeros in zip(self.geometry.layers, self.zeros_per_layer, strict=True)}
        return FileSummary(self.path, self.geometry.name, self.events, self.geometry.n_voxels, dtype,
                           self.e_min, self.e_max, len(self.distinct), sparsity, mean, std, md5)


@dataclass(frozen=True)
class FileSummary:
    """What a valid file holds (energies in MeV)."""

    path: Path
    dataset: str
    events: int
    n_voxels: int
    dtype: str
    energy_min_mev: float
    energy_max_mev: float
    distinct_energies: int               # capped: more than DISTINCT_CAP reads as "continuous"
    layer_sparsity: dict[int, float]     # layer id -> fraction of its voxels with zero energy
    etot_over_einc_mean: float
    etot_over_einc_std: float
    md5: str

    def lines(self) -> list[str]:
        distinct = (f"{self.distinct_energies} distinct values" if self.distinct_energies <= DISTINCT_CAP
                    else "continuous")
        sparsity = ", ".join(f"{k}: {v:.3f}" for k, v in self.layer_sparsity.items())
        return [
            f"file            {self.path}",
            f"dataset         {self.dataset} ({self.n_voxels} voxels, stored as {self.dtype})",
            f"events          {self.events}",
            f"E_inc           {self.energy_min_mev:.10g} .. {self.energy_max_mev:.10g} MeV ({distinct})",
            f"E_tot/E_inc     mean {self.etot_over_einc_mean:.4f}, std {self.etot_over_einc_std:.4f}",
            f"sparsity        per layer id (fraction of zero voxels): {sparsity}",
            f"md5             {self.md5}",
        ]


@dataclass(frozen=True)
class Inspection:
    """The outcome of checking a whole file: every problem, or a summary when there is none."""

    path: Path
    dataset: str
    problems: list[str]
    summary: FileSummary | None

    def valid_summary(self) -> FileSummary:
        """The summary of a file without problems; a DataError listing the problems otherwise."""
        if self.problems or self.summary is None:
            raise DataError("\n".join(self.problems) or f"{self.path}: no problem found, but no summary")
        return self.summary
