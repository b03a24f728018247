"""The official CaloChallenge 2022 files: names, roles, Zenodo records, checksums, sizes, energy ranges.

Facts from the CaloChallenge homepage and the Zenodo records. MD5s that are not listed here are read
from the Zenodo record (its JSON lists an md5 per file) when the files are downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from calo_ablate.config import canonical_dataset
from calo_ablate.errors import ConfigError

__all__ = [
    "CATALOGUE",
    "ENERGY_TOLERANCE",
    "DatasetRecord",
    "OfficialFile",
    "Role",
    "energy_range_mev",
    "official_files",
    "record_of",
]

Role = Literal["train", "eval"]

# Incident energies a little outside the nominal range still pass validation (relative).
ENERGY_TOLERANCE = 0.01


@dataclass(frozen=True)
class OfficialFile:
    """One published file of a dataset."""

    name: str          # e.g. "dataset_1_photons_1.hdf5"
    dataset: str       # canonical dataset name
    role: Role         # "train" or "eval"
    events: int        # showers in the published file
    md5: str | None    # published MD5, None where it is read from Zenodo at download time


@dataclass(frozen=True)
class DatasetRecord:
    """A dataset's Zenodo record and files."""

    dataset: str
    zenodo_record: str           # numeric record id, e.g. "8099322"
    energy_min_mev: float        # nominal incident-energy range of the files
    energy_max_mev: float
    files: tuple[OfficialFile, ...]

    @property
    def doi(self) -> str:
        return f"10.5281/zenodo.{self.zenodo_record}"


def _files(dataset: str, stems: list[tuple[str, Role]], events: int,
           md5s: dict[str, str] | None = None) -> tuple[OfficialFile, ...]:
    md5s = md5s or {}
    return tuple(OfficialFile(f"{stem}.hdf5", dataset, role, events, md5s.get(stem)) for stem, role in stems)


CATALOGUE: dict[str, DatasetRecord] = {
    "1-photons": DatasetRecord(
        "1-photons", "8099322", 256.0, 4194304.0,
        _files("1-photons", [("dataset_1_photons_1", "train"), ("dataset_1_photons_2", "eval")], 121_000,
               {"dataset_1_photons_1": "005d2adeda7db034b388112661265656",
                "dataset_1_photons_2": "4767715ed56e99565fd9c67340661e70"})),
    "1-pions": DatasetRecord(
        "1-pions", "8099322", 256.0, 4194304.0,
        _files("1-pions", [("dataset_1_pions_1", "train"), ("dataset_1_pions_2", "eval")], 120_230)),
    "2": DatasetRecord(
        "2", "6366270", 1.0e3, 1.0e6,
        _files("2", [("dataset_2_1", "train"), ("dataset_2_2", "eval")], 100_000)),
    "3": DatasetRecord(
        "3", "6366323", 1.0e3, 1.0e6,
        _files("3", [("dataset_3_1", "train"), ("dataset_3_2", "train"),
                     ("dataset_3_3", "eval"), ("dataset_3_4", "eval")], 50_000)),
}


def record_of(dataset: str) -> DatasetRecord:
    """The catalogue entry of a dataset ('1' is '1-photons')."""
    return CATALOGUE[canonical_dataset(dataset)]


def official_files(dataset: str, role: Role | str = "all") -> list[OfficialFile]:
    """The published files of a dataset for one role ('train', 'eval') or both ('all'), in order."""
    if role not in ("train", "eval", "all"):
        msg = f"unknown file role {role!r}: expected train, eval or all"
        raise ConfigError(msg)
    return [f for f in record_of(dataset).files if role == "all" or f.role == role]


def energy_range_mev(dataset: str) -> tuple[float, float]:
    """Nominal (min, max) incident energy of a dataset's files, MeV."""
    record = record_of(dataset)
    return record.energy_min_mev, record.energy_max_mev
