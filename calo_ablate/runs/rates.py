"""This machine's measured rates, cached: the one home of the rates file's name and format.

The benchmark (calo_ablate/bench/rates.py) writes it, the study's estimate (calo_ablate/study/estimate.py)
reads it. One JSON file, by default ~/.cache/calo-ablate/machine-rates.json ($XDG_CACHE_HOME is
honoured; CALO_ABLATE_RATES names another file):

    {"machines": [{"cpu": "AMD EPYC", "threads": 1, "torch": "2.13.0", "measured": "2026-12-07 16:50 UTC",
                   "clock": "cpu", "matmul_gflop_per_s": 91.0,
                   "families": {"caloscore_v2/1-photons": {"train_seconds_per_shower": ..., ...}}}, ...],
     "flops": {"<architecture digest>": {"train_gflop_per_shower": ..., "gen_gflop_per_shower": ...}}}

A machine entry is found by its key (CPU name, torch threads per worker, torch version): another CPU,
another thread count or another torch has no entry, and is measured anew. Its families are measured on
demand, each on the bench's own case of that family on the dataset (the full profile's architecture);
a row of another architecture is scaled by its FLOPs (`flops`, counted once per architecture and
machine-independent).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from calo_ablate.atomic import atomic_write
from calo_ablate.errors import ConfigError
from calo_ablate.model.precision import cpu_model

__all__ = ["RATES_ENV", "FamilyRates", "MachineKey", "MachineRates", "RatesCache", "RowFlops", "cache_dir",
           "rates_path"]

RATES_ENV = "CALO_ABLATE_RATES"  # the rates file (default under ~/.cache/calo-ablate/)
RATES_FILE = "machine-rates.json"


def cache_dir() -> Path:
    """calo-ablate's cache folder on this machine: $XDG_CACHE_HOME (default ~/.cache)/calo-ablate (not created
    here). It holds the rates file and the MLflow store template (runs/mlflow_store.py)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "calo-ablate"


def rates_path() -> Path:
    """The rates file: $CALO_ABLATE_RATES, else $XDG_CACHE_HOME (default ~/.cache)/calo-ablate/machine-rates.json."""
    if os.environ.get(RATES_ENV):
        return Path(os.environ[RATES_ENV])
    return cache_dir() / RATES_FILE


@dataclass(frozen=True)
class MachineKey:
    """What the rates depend on beyond the code: the CPU, the torch threads of one worker, torch's version."""

    cpu: str
    threads: int
    torch: str

    @classmethod
    def here(cls, threads: int) -> MachineKey:
        return cls(cpu_model(), threads, torch.__version__)


@dataclass(frozen=True)
class FamilyRates:
    """One family's rates, measured on the bench's case of the family (its architecture's FLOPs beside them).

    Training: seconds per training shower of Lightning steps at the case's batch size. Generation: seconds per
    shower of the whole sampling at batch 100 (`sampling_steps` network evaluations; None: one pass)."""

    train_seconds_per_shower: float
    train_gflop_per_shower: float
    gen_seconds_per_shower: float
    gen_gflop_per_shower: float
    sampling_steps: int | None

    @property
    def gen_seconds_per_shower_step(self) -> float:
        """Seconds per shower and network evaluation at batch 100 (the whole sampling for a one-pass family)."""
        return self.gen_seconds_per_shower / (self.sampling_steps or 1)


@dataclass(frozen=True)
class RowFlops:
    """FLOPs of one architecture (machine-independent): a training shower (forward and backward) and the
    generation of one shower (its whole sampling)."""

    train_gflop_per_shower: float
    gen_gflop_per_shower: float


@dataclass(frozen=True)
class MachineRates:
    """The rates of one machine key: the fp32 matmul rate and each measured family's rates ('family/dataset')."""

    key: MachineKey
    measured: str  # UTC date and time of the first measurement
    clock: str  # "cpu": process CPU time (one thread per worker); "wall": wall time
    matmul_gflop_per_s: float
    families: dict[str, FamilyRates] = field(default_factory=dict)

    def describe(self, cores: int | None = None) -> str:
        """'AMD EPYC, 2 cores, 1 thread per worker, 91 GFLOP/s matmul; rates cached 2026-12-07'."""
        where = f"{self.key.cpu}, {cores or os.cpu_count()} cores, {self.key.threads} thread" \
                f"{'s' if self.key.threads > 1 else ''} per worker"
        return f"{where}, {self.matmul_gflop_per_s:.0f} GFLOP/s matmul; rates cached {self.measured[:10]}"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self.key), "measured": self.measured, "clock": self.clock,
                "matmul_gflop_per_s": self.matmul_gflop_per_s,
                "families": {name: asdict(f) for name, f in self.families.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MachineRates:
        return cls(MachineKey(str(data["cpu"]), int(data["threads"]), str(data["torch"])), str(data["measured"]),
                   str(data["clock"]), float(data["matmul_gflop_per_s"]),
                   {str(name): FamilyRates(**f) for name, f in data["families"].items()})


def family_entry(family: str, dataset: str) -> str:
    """The name of a family's rates in MachineRates.families: 'caloscore_v2/1-photons'."""
    return f"{family}/{dataset}"


class RatesCache:
    """The rates file: read whole, changed in memory, written whole (atomically)."""

    def __init__(self, path: Path | None = None, *, read: bool = True) -> None:
        """The file's entries (none when it is missing, or with read=False: a fresh file over a corrupt one)."""
        self.path = path or rates_path()
        self.machines: list[MachineRates] = []
        self.flops: dict[str, RowFlops] = {}
        if read and self.path.is_file():
            self._read()

    def _read(self) -> None:
        """ConfigError naming the file when it is not a rates file this code wrote."""
        try:
            data = json.loads(self.path.read_text())
            machines = [MachineRates.from_json(m) for m in data["machines"]]
            flops = {str(k): RowFlops(**v) for k, v in data.get("flops", {}).items()}
        except (OSError, ValueError, KeyError, TypeError) as err:
            msg = f"{self.path}: not a readable rates file ({type(err).__name__}: {err}); delete it to measure again"
            raise ConfigError(msg) from err
        self.machines, self.flops = machines, flops

    def machine(self, key: MachineKey) -> MachineRates | None:
        """The entry of this key; None when this CPU, thread count or torch version was never measured."""
        return next((m for m in self.machines if m.key == key), None)

    def put(self, rates: MachineRates) -> None:
        self.machines = [m for m in self.machines if m.key != rates.key] + [rates]

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {"machines": [m.to_json() for m in self.machines],
                "flops": {k: asdict(v) for k, v in sorted(self.flops.items())}}
        with atomic_write(self.path) as f:
            f.write(json.dumps(data, indent=1) + "\n")
