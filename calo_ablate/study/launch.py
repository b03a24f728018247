"""`ablate --launcher slurm|local`: the study's workers as batch jobs, submitted with submitit.

Each job runs the worker loop of the study (`calo-ablate worker --study S --storage URL`) with
CALO_ABLATE_THREADS set to its CPUs. `slurm` submits one job array of N tasks with sbatch (partition,
time limit, CPUs and GPUs per task from the options); `local` runs the same jobs as local processes
through submitit's LocalExecutor (the tested path, and a way to use one big node without SLURM).
Job logs and submitit's pickles go to results/<study>/jobs/, which must be on a filesystem that the
compute nodes share (as must the storage, unless it is a database URL, and the data files).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calo_ablate.errors import ConfigError
from calo_ablate.study.context import THREADS_ENV

JOB_LAUNCHERS = ("slurm", "local")
POLL_S = 2.0


@dataclass(frozen=True)
class JobResources:
    """What each worker job asks the batch system for."""

    partition: str | None
    time_min: int
    cpus: int
    gpus: int


def worker_argv(study: str, storage: str, results_dir: Path) -> list[str]:
    """`calo-ablate worker ...` as the job's command line (the interpreter that submitted it)."""
    return [sys.executable, "-m", "calo_ablate.cli", "worker", "--study", study, "--storage", storage,
            "--results-dir", str(results_dir)]


def worker_job(argv: list[str], threads: int) -> int:
    """The body of one job: the worker command, with `threads` torch threads; returns its exit code."""
    return subprocess.call(argv, env={**os.environ, THREADS_ENV: str(threads)})


class JobHandle:
    """A submitit job seen through the subset of subprocess.Popen that wait_for_workers uses."""

    def __init__(self, job: Any) -> None:
        self.job = job

    @property
    def returncode(self) -> int | None:
        return self.poll()

    def poll(self) -> int | None:
        if not self.job.done():
            return None
        if self.job.exception() is not None:
            return 1
        return int(self.job.result())

    def terminate(self) -> None:
        self.job.cancel(check=False)

    def wait(self) -> None:
        while self.poll() is None:
            time.sleep(POLL_S)


def submit_workers(launcher: str, n: int, study: str, storage: str, results_dir: Path,
                   resources: JobResources) -> list[JobHandle]:
    """Submit `n` worker jobs (a job array on SLURM); their logs go to results_dir/<study>/jobs/."""
    try:
        import submitit  # optional: pip install '.[slurm]'
    except ImportError as err:
        msg = f"--launcher {launcher} needs submitit: pip install 'calo-ablate[slurm]' (or pip install submitit)"
        raise ConfigError(msg) from err

    if launcher not in JOB_LAUNCHERS:
        msg = f"--launcher {launcher!r}: expected one of process, {', '.join(JOB_LAUNCHERS)}"
        raise ConfigError(msg)
    if "://" not in storage and launcher == "slurm":
        print(f"note: the storage {storage} is a journal file: every node must see it at this path "
              "(a shared filesystem); a postgresql:// storage needs none")
    executor = submitit.AutoExecutor(folder=results_dir / study / "jobs" / "%j", cluster=launcher)
    params: dict[str, Any] = {"name": f"calo-ablate-{study}", "timeout_min": resources.time_min,
                              "cpus_per_task": resources.cpus, "tasks_per_node": 1}
    if resources.gpus:
        params["gpus_per_node"] = resources.gpus
    if resources.partition:
        params["slurm_partition"] = resources.partition
    executor.update_parameters(**params)
    argv = worker_argv(study, storage, results_dir)
    with executor.batch():
        jobs = [executor.submit(worker_job, argv, resources.cpus) for _ in range(n)]
    return [JobHandle(job) for job in jobs]
