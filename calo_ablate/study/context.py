"""A study as one process sees it: its settings (stored in the study, JSON), its plan, data and folder.

The `ablate` command writes StudySettings, with the plan serialised, once it has validated the
registry, made the data, planned the cells and queued them; a `calo-ablate worker` on any machine reads them back,
makes (or finds) the same data, checks its checksums and takes the plan as it is.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from calo_ablate.data.source import DataFiles
from calo_ablate.errors import ConfigError
from calo_ablate.runs.tracker import Tracker
from calo_ablate.study.plan import Plan

Log = Callable[[str], None]
THREADS_ENV = "CALO_ABLATE_THREADS"  # torch threads of a worker (default: this machine's cores shared evenly)
WORKERS_HERE_ENV = "CALO_ABLATE_WORKERS_HERE"  # set by `ablate` for the workers it spawns on its machine
CALL_ENV = "CALO_ABLATE_CALL"  # set by `ablate` for its workers: the call_id of the settings they wait for


@dataclass(frozen=True)
class StudySettings:
    """What defines a study's cells and where it logs (JSON-serialisable)."""

    study: str
    plan: dict[str, Any]  # Plan.to_json()
    checksums: dict[str, str]  # data file name -> md5
    data_source: str  # "real" or "synthetic"
    data_dir: str  # where the planning machine found the data (a worker may use its own)
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    fail_fast: bool
    code_version: str = ""  # provenance.code_digest() of the `ablate` that planned the study (workers must match)
    config_hash: str = ""  # digest of every cell's config as validated by that code (plan.config_hash)
    call_id: str = ""  # the `ablate` call that saved these settings (its workers, started early, wait for them)

    @property
    def dataset(self) -> str:
        return str(self.plan["dataset"])

    @property
    def profile(self) -> str:
        return str(self.plan["profile"])

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StudySettings:
        return cls(**data)


@dataclass
class StudyContext:
    """A study as one process sees it: settings, its plan, its data files and its local folder."""

    settings: StudySettings
    plan: Plan
    files: DataFiles
    study_dir: Path
    threads: int
    log: Log = print

    @property
    def name(self) -> str:
        return self.settings.study

    @cached_property
    def tracker(self) -> Tracker:
        """The study's MLflow store, experiment and parent run (one client for this process's cells)."""
        return Tracker(self.settings.tracking_uri, self.settings.experiment_id, self.settings.parent_run_id)

    @property
    def runs_dir(self) -> Path:
        return self.study_dir / "runs"


def threads_per_worker(workers_here: int) -> int:
    """Torch threads of one worker: CALO_ABLATE_THREADS, else this machine's cores shared evenly."""
    return int(os.environ.get(THREADS_ENV, "0")) or max(1, (os.cpu_count() or 1) // max(1, workers_here))


def build_context(settings: StudySettings, files: DataFiles, study_dir: Path, workers_here: int,
                  log: Log = print, plan: Plan | None = None) -> StudyContext:
    """The context of a worker on this machine (the plan deserialised unless given); raises when its data
    differ from the study's."""
    if dict(files.checksums) != settings.checksums:
        msg = (f"study '{settings.study}' was planned on data with checksums {settings.checksums}, "
               f"but this machine's files have {dict(files.checksums)}: use the same data files")
        raise ConfigError(msg)
    plan = plan if plan is not None else Plan.from_json(settings.plan)
    return StudyContext(settings, plan, files, Path(study_dir), threads_per_worker(workers_here), log)
