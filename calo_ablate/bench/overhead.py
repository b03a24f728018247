"""The study runner's own cost: study wall time against the time spent inside cells.

In-cell time of a study = the sum over its cells of train_seconds (the run_training call that
trained, 0 for a reused training) and eval_seconds (generation, metrics, timing), plus the reference
noise floor's reference_seconds. With w workers the runner overhead is
1 - in-cell time / (w x wall time): process start-up, imports, data checks, MLflow and Optuna
bookkeeping, the report, and workers idling at the end of the queue.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from calo_ablate.runs.names import EVAL_SECONDS, INVOCATION_SECONDS, REFERENCE_SECONDS, TRAIN_SECONDS
from calo_ablate.runs.tracker import Tracker


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


def measure(workers: int, *, dataset: str = "1", profile: str = "smoke", seeds: int = 1,
            only: str = "higher_lr,fewer_steps", data_dir: str = "data",
            extra_sets: tuple[str, ...] = ()) -> tuple[Overhead, float]:
    """Run a fresh study (`calo-ablate ablate` in a subprocess, its log kept in a temporary folder);
    returns its overhead and the command's wall time in seconds."""
    with tempfile.TemporaryDirectory(prefix="calo-ablate-bench-") as tmp:
        command = [sys.executable, "-m", "calo_ablate.cli", "ablate", "--dataset", dataset, "--profile", profile,
                   "--seeds", str(seeds), "--workers", str(workers), "--only", only, "--study", "bench",
                   "--results-dir", tmp, "--set", f"data.data_dir={Path(data_dir).resolve()}"]
        for item in extra_sets:
            command += ["--set", item]
        log = Path(tmp) / "ablate.log"
        started = time.perf_counter()
        with log.open("w") as out:
            code = subprocess.call(command, stdout=out, stderr=subprocess.STDOUT)
        elapsed = time.perf_counter() - started
        if code != 0:
            tail = "\n".join(log.read_text().splitlines()[-20:])
            msg = f"the bench study failed (exit {code}):\n{tail}"
            raise RuntimeError(msg)
        uri = f"sqlite:///{Path(tmp) / 'bench' / 'mlflow.db'}"
        return study_overhead(Tracker(uri), "bench", workers), elapsed
