"""Everything a worker needs to run a study's cells, stored in the study (Optuna user attrs) as JSON.

The `ablate` command writes StudySettings once it has validated the registry and made the data; a
`calo-ablate worker` on any machine reads them back, makes (or finds) the same data, checks its
checksums and rebuilds the identical plan.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calo_ablate.errors import ConfigError
from calo_ablate.study.plan import Plan, make_plan
from calo_ablate.study.registry import Ablation, Registry, Search


@dataclass(frozen=True)
class StudySettings:
    """What defines a study's cells and where it logs (JSON-serialisable)."""

    study: str
    dataset: str
    profile: str
    seeds: int
    cli_set: list[str]
    registry_path: str
    ablations: list[dict[str, Any]]  # the selected, resolved registry entries in order
    checksums: dict[str, str]  # data file name -> md5
    data_source: str  # "real" or "synthetic"
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    fail_fast: bool
    code_version: str = ""  # git revision of the `ablate` that planned the study (workers must match)
    config_hash: str = ""  # digest of every cell's resolved config (calo_ablate.study.worker.config_hash)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StudySettings:
        return cls(**data)

    def registry(self) -> Registry:
        ablations = []
        for entry in self.ablations:
            search = Search(**entry["search"]) if entry.get("search") else None
            ablations.append(Ablation(entry["name"], entry["title"], entry["why"], entry["overrides"], search))
        return Registry(Path(self.registry_path), ablations)


def serialise_registry(registry: Registry) -> list[dict[str, Any]]:
    return [dataclasses.asdict(a) for a in registry.ablations]


@dataclass
class StudyContext:
    """A study as one process sees it: settings, its plan, its data files and its local folder."""

    settings: StudySettings
    plan: Plan
    files: Any  # calo_ablate.data.source.DataFiles
    study_dir: Path
    threads: int
    log: Any = print

    @property
    def name(self) -> str:
        return self.settings.study

    @property
    def tracking_uri(self) -> str:
        return self.settings.tracking_uri

    @property
    def runs_dir(self) -> Path:
        return self.study_dir / "runs"

    @property
    def samples_dir(self) -> Path:
        return self.study_dir / "samples"



def build_context(settings: StudySettings, files: Any, study_dir: Path, workers_here: int,
                  log: Any = print) -> StudyContext:
    """The context of a worker on this machine; raises when its data differ from the study's."""
    if dict(files.checksums) != settings.checksums:
        msg = (f"study '{settings.study}' was planned on data with checksums {settings.checksums}, "
               f"but this machine's files have {dict(files.checksums)}: use the same data files")
        raise ConfigError(msg)
    plan = make_plan(settings.registry(), dataset=settings.dataset, profile=settings.profile,
                     seeds=settings.seeds, checksums=settings.checksums, cli_set=settings.cli_set)
    threads = int(os.environ.get("CALO_ABLATE_THREADS", "0")) or max(1, (os.cpu_count() or 1) // max(1, workers_here))
    return StudyContext(settings, plan, files, Path(study_dir), threads, log)
