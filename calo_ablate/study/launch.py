"""`ablate --launcher slurm|local`: the study's workers as batch jobs, submitted with submitit.

Each job runs the worker loop of the study (`calo-ablate worker --study S --storage URL`) with
CALO_ABLATE_THREADS set to its CPUs. `slurm` submits one job array of N tasks with sbatch (partition,
time limit, CPUs and GPUs per task, extra sbatch options from the options) and `--signal=USR2@<lead>`;
`local` runs the same jobs as local processes through submitit's LocalExecutor (a way to use one big
node without SLURM). Job logs and submitit's pickles go to results/<study>/jobs/, which must be on a
filesystem that the compute nodes share (as must the storage, unless it is a database URL, and the data).

Faults (every one leaves the study resumable; see worker.py for the worker's side):
- the time limit: SLURM sends SIGUSR2 `signal_s` seconds before it; the worker finishes the epoch in
  progress (its checkpoint), hands its unit back to the queue and exits; the job then requeues itself
  (`scontrol requeue`, at most `requeues` times) and, started again, resumes the unit;
- preemption (a partition with PreemptMode=REQUEUE and a GraceTime): SIGTERM; the worker stops at the
  next batch (Lightning's handler), hands its unit back, and the job requeues itself as above;
- scancel, or a job killed outright (node failure, out of memory): its unit is handed back or reaped,
  and a running job takes it; when every job has ended with work left, `run_jobs` submits new ones.
The jobs' states come from sacct (slurmdbd) and are shown in the progress line.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calo_ablate.errors import ConfigError
from calo_ablate.study.context import THREADS_ENV
from calo_ablate.study.queue import StudyQueue
from calo_ablate.study.worker import EXIT_STOPPED, WorkerEnd, wait_for_workers, worker_argv

JOB_LAUNCHERS = ("slurm", "local")
POLL_S = 2.0
SACCT_POLL_S = 5.0  # sacct asks slurmdbd: not more often than this
JOB_ROUNDS = 3  # submissions of worker jobs per `ablate` call while work waits and no job runs
# sacct states after which a job will not run again (a requeued job shows PENDING or REQUEUED)
ENDED_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
                "DEADLINE", "REVOKED")
REQUEUE_SIGNAL = signal.SIGUSR2  # what `--signal` asks SLURM to send before the time limit


@dataclass(frozen=True)
class JobResources:
    """What each worker job asks the batch system for."""

    partition: str | None
    time_min: int
    cpus: int
    gpus: int
    signal_s: int = 300  # SIGUSR2 this long before the time limit (SLURM may send it up to 60 s earlier)
    requeues: int = 3  # how often a job that reached its time limit requeues itself
    options: dict[str, str] = field(default_factory=dict)  # more sbatch options (account, qos, constraint)


def parse_sbatch_options(items: list[str]) -> dict[str, str]:
    """`--slurm-option KEY=VALUE` items as sbatch options (KEY without the leading dashes)."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip("-"):
            msg = f"--slurm-option {item!r}: expected KEY=VALUE, an sbatch option such as account=hep or qos=long"
            raise ConfigError(msg)
        options[key.strip("-").replace("-", "_")] = value
    return options


def _slurm_job_id() -> str | None:
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")


def worker_job(argv: list[str], threads: int, requeues: int = 0) -> int:
    """The body of one job: the worker command, with `threads` torch threads; returns its exit code.

    SIGUSR2 (the time limit's `--signal`) replaces submitit's handler while the worker runs and is passed
    on to it. A worker stopped by a signal (EXIT_STOPPED: the time limit, a preemption, scancel) has
    handed its unit back; under SLURM the job then requeues itself, at most `requeues` times
    (SLURM_RESTART_COUNT): a job ending by itself within a preemption's grace time would otherwise count
    as COMPLETED. A cancelled job (scancel) is not requeued."""
    child = subprocess.Popen(argv, env={**os.environ, THREADS_ENV: str(threads)})

    def pass_on(signum: int, frame: Any) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    previous = signal.signal(REQUEUE_SIGNAL, pass_on)
    try:
        code = child.wait()
    finally:
        signal.signal(REQUEUE_SIGNAL, previous)
    job_id = _slurm_job_id()
    if code == EXIT_STOPPED and job_id:
        restarts = int(os.environ.get("SLURM_RESTART_COUNT") or 0)
        state = _job_state(job_id)
        if state != "RUNNING":  # scancel (COMPLETING at once): the user's word, not undone
            print(f"job {job_id}: {state}, not requeued (a running or new job takes the unit)", flush=True)
            return code
        if restarts >= requeues:
            print(f"job {job_id}: not requeued, it ran {restarts + 1} times (--slurm-requeues {requeues})", flush=True)
            return code
        result = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True, check=False)
        print(f"job {job_id}: {'requeued' if result.returncode == 0 else 'not requeued: ' + result.stderr.strip()}",
              flush=True)
    return code


def _job_state(job_id: str) -> str:
    """The job's state as slurmctld has it now: RUNNING while preempted (its grace time) or signalled
    before its time limit, COMPLETING once cancelled."""
    result = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, check=False)
    found = re.search(r"\bJobState=(\S+)", result.stdout)
    return found.group(1) if found else "UNKNOWN"


def _expand(job_id: str) -> list[str]:
    """sacct's `123_[0-2,5]` (array tasks not started yet) as 123_0, 123_1, 123_2, 123_5."""
    if "_[" not in job_id:
        return [job_id]
    base, ranges = job_id.split("_[", 1)
    ids = []
    for part in ranges.rstrip("]").split("%")[0].split(","):
        first, _, last = part.partition("-")
        ids += [f"{base}_{i}" for i in range(int(first), int(last or first) + 1)]
    return ids


def sacct_states(job_ids: list[str]) -> dict[str, tuple[str, str]]:
    """{job id: (state, exit code)} of the jobs' allocations from sacct (empty when it cannot answer)."""
    arrays = sorted({j.split("_")[0] for j in job_ids})
    command = ["sacct", "-X", "-n", "-P", "-o", "JobID,State,ExitCode", "-j", ",".join(arrays)]
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    states = {}
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) >= 3:
            for job_id in _expand(parts[0]):
                states[job_id] = (parts[1].split()[0], parts[2])  # "CANCELLED by 0" -> CANCELLED
    return states


class SacctView:
    """The SLURM jobs' states, read with one sacct call per SACCT_POLL_S."""

    def __init__(self, job_ids: list[str]) -> None:
        self.job_ids = list(job_ids)
        self._states: dict[str, tuple[str, str]] = {}
        self._read_at = -SACCT_POLL_S

    def states(self) -> dict[str, tuple[str, str]]:
        if time.monotonic() - self._read_at >= SACCT_POLL_S:
            self._states = {**self._states, **sacct_states(self.job_ids)}
            self._read_at = time.monotonic()
        return self._states

    def line(self) -> str:
        """'jobs: 12_0 RUNNING, 12_1 PENDING' for the progress display."""
        states = self.states()
        return "jobs: " + ", ".join(f"{j} {states.get(j, ('SUBMITTED',))[0]}" for j in self.job_ids)


class JobHandle:
    """A submitit job seen through the subset of subprocess.Popen that wait_for_workers uses. A SLURM
    job is judged by sacct (a requeued job is not done, whatever its first run left behind)."""

    def __init__(self, job: Any, sacct: SacctView | None) -> None:
        self.job = job
        self.sacct = sacct

    @property
    def name(self) -> str:
        return f"job {self.job.job_id}"

    @property
    def returncode(self) -> int | None:
        return self.poll()

    def _slurm_state(self) -> tuple[str, str] | None:
        return self.sacct.states().get(self.job.job_id) if self.sacct else None

    def poll(self) -> int | None:
        """None while the job may still run; 0 when it completed (its worker's own exit code is in its log:
        failed cells are the study's to say), else 1."""
        if self.sacct is not None:
            state = self._slurm_state()
            if state is None or state[0] not in ENDED_STATES:
                return None
            return 0 if state[0] == "COMPLETED" and state[1] == "0:0" else 1
        if not self.job.done():
            return None
        if self.job.exception() is not None:
            return 1
        return int(self.job.result())

    def died(self) -> bool:
        """It did not end by itself: a SLURM job not COMPLETED, a local job that raised or whose worker
        was killed (a worker's exit 1, failed cells, is the study's to say)."""
        if self.sacct is not None:
            return self.poll() != 0
        return self.job.exception() is not None or self.poll() not in (0, 1)

    def describe_end(self) -> str:
        state = self._slurm_state()
        if state is None:
            return f"{self.name} exited {self.poll()}"
        how = {"CANCELLED": " (scancel, or its time limit reached while it held no unit)",
               "TIMEOUT": " (its time limit)", "OUT_OF_MEMORY": " (the node's memory limit)"}.get(state[0], "")
        return f"{self.name} ended {state[0]}{how}, exit code {state[1]}"

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
    if launcher == "slurm":
        params["slurm_signal_delay_s"] = resources.signal_s
        if resources.partition:
            params["slurm_partition"] = resources.partition
        if resources.options:
            params["slurm_additional_parameters"] = dict(resources.options)
    executor.update_parameters(**params)
    argv = worker_argv(study, storage, results_dir)
    with executor.batch():
        jobs = [executor.submit(worker_job, argv, resources.cpus, resources.requeues) for _ in range(n)]
    sacct = SacctView([job.job_id for job in jobs]) if launcher == "slurm" else None
    return [JobHandle(job, sacct) for job in jobs]


def run_jobs(launcher: str, n: int, study: str, storage: str, results_dir: Path, resources: JobResources,
             queue: StudyQueue, plan_cells: list[str], log: Callable[[str], None], *,
             wait: bool = True) -> list[WorkerEnd]:
    """Submit `n` worker jobs and show progress (with their sacct states) until they ended; while units
    wait (handed back or reaped from jobs that ended) and no job runs, submit again, JOB_ROUNDS times
    in all. Returns how every job ended; nothing when not waiting (the jobs were submitted)."""
    ends: list[WorkerEnd] = []
    for round_number in range(1, JOB_ROUNDS + 1):
        jobs = submit_workers(launcher, n, study, storage, results_dir, resources)
        word = "submitted" if round_number == 1 else "resubmitted (work was left when every job had ended)"
        log(f"{word} {len(jobs)} worker jobs ({launcher}): {', '.join(j.job.job_id for j in jobs)}; "
            f"logs in {results_dir / study / 'jobs'}")
        if not wait:
            return []
        sacct = jobs[0].sacct
        codes = wait_for_workers(jobs, queue, plan_cells, log, extra=sacct.line if sacct else None)
        ends += [WorkerEnd(j.name, code, j.describe_end(), died=j.died()) for j, code in zip(jobs, codes, strict=True)]
        queue.reap()
        waiting = queue.progress(plan_cells).waiting  # cells
        if not waiting or queue.stop_reason():
            break
        n = min(n, waiting)
    return ends
