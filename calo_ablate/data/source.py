"""Which files a run uses: the real CaloChallenge files when present, else the synthetic stand-in.

Layout of a data folder (default `data/`):

    data/dataset_1_photons_1.hdf5, ...      real files, under their official names
    data/synthetic/dataset_1_photons_1.hdf5  the synthetic stand-in (same names, same layout)
    <file>.meta.json                         cached md5 and validation verdict of <file>

Every file used is validated (streamed) once; the verdict and md5 are cached beside it while the
file's size and modification time stay the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from calo_ablate.config import canonical_dataset
from calo_ablate.data.calochallenge import count_events, validate_file
from calo_ablate.data.catalogue import OfficialFile, official_files
from calo_ablate.data.synthetic import synthesise
from calo_ablate.errors import DataError

__all__ = ["SYNTHETIC_DIR", "DataFiles", "ensure_data"]

SYNTHETIC_DIR = "synthetic"
_RULE = "=" * 100


@dataclass
class DataFiles:
    """The files of one dataset a run uses (energies in MeV inside them)."""

    train: list[Path]
    eval: list[Path]
    source: Literal["real", "synthetic"]
    checksums: dict[str, str] = field(default_factory=dict)   # file name -> md5

    def lines(self) -> list[str]:
        """One line per file: role, path, md5."""
        return [f"  {role:<5} {path}  md5 {self.checksums.get(path.name, '?')}"
                for role, paths in (("train", self.train), ("eval", self.eval)) for path in paths]


def _checked(files: list[tuple[OfficialFile, Path]], dataset: str, source: Literal["real", "synthetic"],
             ) -> DataFiles:
    checksums = {path.name: validate_file(path, dataset) for _, path in files}
    return DataFiles(train=[p for f, p in files if f.role == "train"],
                     eval=[p for f, p in files if f.role == "eval"], source=source, checksums=checksums)


def _real_notes(files: list[tuple[OfficialFile, Path]], checksums: dict[str, str]) -> list[str]:
    """Differences from the published files (md5, event count); a note, not an error."""
    notes = []
    for official, path in files:
        if official.md5:
            same = checksums[path.name] == official.md5
            notes.append(f"  {path.name}: {'matches' if same else 'DOES NOT MATCH'} the published md5 "
                         f"{official.md5}")
        events = count_events(path)
        if events != official.events:
            notes.append(f"  {path.name}: {events} showers, the published file has {official.events}")
    return notes


def ensure_data(dataset: str, data_dir: str | Path = "data", *,
                log: Callable[[str], None] = print) -> DataFiles:
    """The validated files of `dataset`: the real official files in `data_dir` if they are there,
    else the synthetic stand-in in `data_dir/synthetic/` (synthesised first if missing). Says which,
    loudly, through `log`. DataError if only some real files are present or a file is invalid."""
    dataset = canonical_dataset(dataset)
    data_dir = Path(data_dir)
    wanted = official_files(dataset)
    real = [(f, data_dir / f.name) for f in wanted]
    present = [p.name for _, p in real if p.exists()]
    if present and len(present) < len(real):
        missing = [p.name for _, p in real if not p.exists()]
        msg = (f"{data_dir}: found the real file(s) {', '.join(present)} but not {', '.join(missing)} of "
               f"dataset {dataset}: fetch them with `calo-ablate data download --dataset {dataset} "
               f"--data-dir {data_dir}`, or move the real files away to use the synthetic stand-in")
        raise DataError(msg)
    if present:
        files = _checked(real, dataset, "real")
        log(_RULE)
        log(f"using REAL CaloChallenge files (Geant4) for dataset {dataset} from {data_dir}/")
        for line in files.lines() + _real_notes(real, files.checksums):
            log(line)
        log(_RULE)
        return files

    synthetic_dir = data_dir / SYNTHETIC_DIR
    stand_in = [(f, synthetic_dir / f.name) for f in wanted]
    if not all(p.exists() for _, p in stand_in):
        log(f"synthesising the stand-in for dataset {dataset} into {synthetic_dir}/ (done once)")
        synthesise(dataset, synthetic_dir)
    files = _checked(stand_in, dataset, "synthetic")
    log(_RULE)
    log(f"!!! using the SYNTHETIC stand-in, not Geant4, for dataset {dataset}: {synthetic_dir}/")
    log(f"!!! real files not found in {data_dir}/ ({', '.join(f.name for f in wanted)}); "
        f"fetch them with `calo-ablate data download --dataset {dataset} --data-dir {data_dir}`")
    partial = [p.name + ".part" for _, p in real if p.with_name(p.name + ".part").exists()]
    if partial:
        log(f"!!! an unfinished download is there ({', '.join(partial)}): the same download command resumes it")
    for line in files.lines():
        log(line)
    log(_RULE)
    return files
