"""The study runner's own cost: study wall time against the time spent inside cells.

In-cell time of a study = the sum over its cells of train_seconds (the run_training call that
trained, 0 for a reused training) and eval_seconds (generation, metrics, timing), plus the reference
noise floor's reference_seconds. With w workers the runner overhead is
1 - in-cell time / (w x wall time): process start-up, imports, data checks, MLflow and Optuna
bookkeeping, the report, and workers idling at the end of the queue.

The timeline of a measured study (`phases`) comes from its stores alone: the parent run's start (the
`ablate` set-up done: imports, registry, data, MLflow and Optuna stores), each unit's claim and end
(its Optuna trial, with the claiming worker's pid), each cell run's start and end and its in-cell
seconds (MLflow). Per worker, the command's wall time splits into: start (command start to its first
claim: the parent's set-up, the worker's interpreter, imports, data check and queue), in cells (train
and eval seconds), in units outside cells (MLflow and Optuna bookkeeping, model loading, data loading
before the first epoch), between units, and end (last unit's end to the command's exit: waiting for the
other workers, the report, exits).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from optuna.trial import FrozenTrial

from calo_ablate.runs.names import (
    EVAL_SECONDS,
    INVOCATION_SECONDS,
    REFERENCE,
    REFERENCE_SECONDS,
    TAG_CELL,
    TRAIN_SECONDS,
)
from calo_ablate.runs.tracker import Tracker
from calo_ablate.study.queue import StudyQueue, default_storage

SMALL_STUDY = "higher_lr,fewer_steps"  # with the base: the study of the earlier figures (docs/performance/runner.md)


@dataclass(frozen=True)
class Overhead:
    """Seconds: wall = the study's `ablate` calls; in_cell = the cells' own work, summed over workers."""

    workers: int
    wall_seconds: float
    in_cell_seconds: float

    @property
    def fraction(self) -> float:
        return 1.0 - self.in_cell_seconds / (self.workers * self.wall_seconds)


def study_overhead(tracker: Tracker, study: str, workers: int) -> Overhead:
    """The overhead of a finished study, read from its MLflow parent and cell runs."""
    parent = tracker.find_parent(study)
    if parent is None:
        msg = f"no study '{study}' in {tracker.uri}"
        raise LookupError(msg)
    c = tracker.client
    wall = sum(m.value for m in c.get_metric_history(parent, INVOCATION_SECONDS))
    in_cell = c.get_run(parent).data.metrics.get(REFERENCE_SECONDS, 0.0)
    for run in tracker.child_runs(parent):
        metrics = run.data.metrics
        in_cell += metrics.get(TRAIN_SECONDS, 0.0) + metrics.get(EVAL_SECONDS, 0.0)
    return Overhead(workers, wall, in_cell)


@dataclass
class WorkerSplit:
    """One worker's share of the command's wall time, in seconds (they add up to the wall time)."""

    worker: str
    start: float
    in_cells: float = 0.0
    in_units: float = 0.0  # in its units, outside the cells' train and eval seconds
    between: float = 0.0
    end: float = 0.0

    def line(self, wall: float) -> str:
        parts = {"start": self.start, "in cells": self.in_cells, "in units outside cells": self.in_units,
                 "between units": self.between, "end": self.end}
        return f"  {self.worker}: " + ", ".join(f"{k} {v:.1f} s ({100 * v / wall:.0f} %)" for k, v in parts.items())


@dataclass(frozen=True)
class BenchStudy:
    """A measured study: its overhead, the command's wall time (seconds), its timeline and workers' splits."""

    overhead: Overhead
    elapsed: float
    timeline: list[str]
    splits: list[WorkerSplit]


def _unit_seconds(trial: FrozenTrial) -> tuple[float, float]:
    """(claim, end) of a finished unit as POSIX seconds."""
    if trial.datetime_start is None or trial.datetime_complete is None:
        msg = f"unit {trial.user_attrs.get('unit')} (trial {trial.number}) did not finish"
        raise LookupError(msg)
    return trial.datetime_start.timestamp(), trial.datetime_complete.timestamp()


def phases(tracker: Tracker, study_dir: Path, study: str, started: float,
           ended: float) -> tuple[list[str], list[WorkerSplit]]:
    """The timeline of a finished study whose command ran from `started` to `ended` (POSIX seconds): its
    lines (seconds after `started`) and each worker's split of the wall time (see the module docstring)."""
    parent_id = tracker.find_parent(study)
    if parent_id is None:
        msg = f"no study '{study}' in {tracker.uri}"
        raise LookupError(msg)
    parent = tracker.client.get_run(parent_id)
    in_cell = {run.data.tags[TAG_CELL]: run.data.metrics.get(TRAIN_SECONDS, 0.0)
               + run.data.metrics.get(EVAL_SECONDS, 0.0) for run in tracker.child_runs(parent_id)}
    in_cell[REFERENCE] = parent.data.metrics.get(REFERENCE_SECONDS, 0.0)
    claimed = [t for t in StudyQueue(default_storage(study_dir), study, create=False).trials() if "pid" in t.user_attrs]
    lines = [f"  {parent.info.start_time / 1000 - started:6.1f} s  set-up done (the study's parent run created)"]
    splits: dict[str, WorkerSplit] = {}
    last_end: dict[str, float] = {}
    for trial in sorted(claimed, key=lambda t: _unit_seconds(t)[0]):
        worker = f"worker {trial.user_attrs['pid']}"
        claim, end = _unit_seconds(trial)
        cells = sum(in_cell.get(name, 0.0) for name in trial.user_attrs.get("cells_done", []))
        lines.append(f"  {claim - started:6.1f} s  {worker} claims {', '.join(trial.user_attrs['cells'])}: "
                     f"done at {end - started:.1f} s ({end - claim:.1f} s, {cells:.1f} s of it in cells)")
        split = splits.setdefault(worker, WorkerSplit(worker, start=claim - started))
        split.in_cells += cells
        split.in_units += end - claim - cells
        split.between += claim - last_end.get(worker, claim)
        last_end[worker] = end
    for worker, split in splits.items():
        split.end = ended - last_end[worker]
    lines += [f"  {max(last_end.values()) - started:6.1f} s  last unit done",
              f"  {parent.info.end_time / 1000 - started:6.1f} s  report written (the parent run ended)",
              f"  {ended - started:6.1f} s  command exited"]
    return lines, list(splits.values())


def measure(workers: int, *, dataset: str = "1", profile: str = "smoke", seeds: int = 2,
            only: str | None = None, data_dir: str = "data", extra_sets: tuple[str, ...] = ()) -> BenchStudy:
    """Run a fresh study (`calo-ablate ablate` in a subprocess, its log kept in a temporary folder) and
    measure it. only: comma-separated rows (None: every row of the shipped registry)."""
    with tempfile.TemporaryDirectory(prefix="calo-ablate-bench-") as tmp:
        command = [sys.executable, "-m", "calo_ablate.cli", "ablate", "--dataset", dataset, "--profile", profile,
                   "--seeds", str(seeds), "--workers", str(workers), "--study", "bench",
                   "--results-dir", tmp, "--set", f"data.data_dir={Path(data_dir).resolve()}"]
        if only is not None:
            command += ["--only", only]
        for item in extra_sets:
            command += ["--set", item]
        log = Path(tmp) / "ablate.log"
        started = time.time()
        with log.open("w") as out:
            code = subprocess.call(command, stdout=out, stderr=subprocess.STDOUT)
        ended = time.time()
        if code != 0:
            tail = "\n".join(log.read_text().splitlines()[-20:])
            msg = f"the bench study failed (exit {code}):\n{tail}"
            raise RuntimeError(msg)
        tracker = Tracker(f"sqlite:///{Path(tmp) / 'bench' / 'mlflow.db'}")
        timeline, splits = phases(tracker, Path(tmp) / "bench", "bench", started, ended)
        return BenchStudy(study_overhead(tracker, "bench", workers), ended - started, timeline, splits)
