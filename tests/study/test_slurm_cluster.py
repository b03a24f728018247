"""`ablate --launcher slurm` on a real single-node SLURM cluster (tests/study/slurm_cluster.py): a job array
run to its report with an MLflow server on PostgreSQL, and the faults of the real scheduler (scancel,
a preemption, the time limit), each counted: jobs submitted, killed, requeued, units finished,
duplicate MLflow runs (0) and damaged numbers (0). The counts are printed (pytest -s shows them)."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from calo_ablate.cli import main
from calo_ablate.runs.faults import MIN_EPOCH_ENV
from calo_ablate.runs.names import EPOCHS, TAG_CELL
from calo_ablate.study.queue import StudyQueue
from tests.study.helpers import NO_EVAL, REGISTRY, ablate_args, all_finished, report_rows, trials
from tests.study.servers import ClusterTracking
from tests.study.slurm_cluster import SlurmCluster

CLI = [sys.executable, "-m", "calo_ablate.cli"]
TIMEOUT_S = 900
SUBMITTED = re.compile(r"submitted \d+ worker jobs \(slurm\): ([\d_, ]+);")


def _wait_until(ready: Callable[[], object], what: str, proc: subprocess.Popen, log: Path,
                timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        if proc.poll() is not None:
            pytest.fail(f"ablate exited {proc.returncode} before {what}:\n{log.read_text()[-4000:]}")
        time.sleep(1)
    pytest.fail(f"not {what} after {timeout_s:.0f} s:\n{log.read_text()[-4000:]}")


def _job_ids(text: str) -> list[str]:
    return [j.strip() for line in SUBMITTED.findall(text) for j in line.split(",")]


def _records(cluster: SlurmCluster, job_ids: list[str]) -> list[tuple[str, str]]:
    """Every run of the jobs (sacct -D: a requeued job's earlier runs too) as (job id, state)."""
    arrays = sorted({j.split("_")[0] for j in job_ids})
    out = cluster.command("sacct", "-D", "-X", "-n", "-P", "-o", "JobID,State", "-j", ",".join(arrays))
    return [(line.split("|")[0], line.split("|")[1].split()[0]) for line in out.splitlines() if line]


def _study_runs(tracking_uri: str, study: str) -> dict[str, list]:
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(study)
    runs: dict[str, list] = {}
    for run in client.search_runs([exp.experiment_id], filter_string="tags.`calo_ablate.role` = 'cell'"):
        runs.setdefault(run.data.tags[TAG_CELL], []).append(run)
    return runs


def _damaged_numbers(tracking_uri: str, runs: dict[str, list]) -> int:
    """Non-finite metric values and steps logged twice, over every cell run's metric histories."""
    client = MlflowClient(tracking_uri)
    damaged = 0
    for run in (r for rs in runs.values() for r in rs):
        for name in run.data.metrics:
            history = client.get_metric_history(run.info.run_id, name)
            steps = [m.step for m in history]
            damaged += len(steps) - len(set(steps)) + sum(not math.isfinite(m.value) for m in history)
    return damaged


def _counts(cluster: SlurmCluster, job_ids: list[str], study_dir: Path, tracking_uri: str) -> dict[str, int]:
    records = _records(cluster, job_ids)
    runs = _study_runs(tracking_uri, study_dir.name)
    done = [c for t in trials(study_dir) for c in t.user_attrs.get("cells_done", [])]
    counts = {
        "jobs submitted": len(job_ids),
        "jobs killed": sum(state in ("CANCELLED", "TIMEOUT", "PREEMPTED") for _, state in records),
        "jobs requeued": sum(state in ("REQUEUED", "PREEMPTED") for _, state in records),
        "units finished": sum(1 for t in trials(study_dir) if t.state.name == "COMPLETE"),
        "cells done twice": len(done) - len(set(done)),
        "duplicate runs": sum(len(rs) - 1 for rs in runs.values()),
        "runs not FINISHED": sum(r.info.status != "FINISHED" for rs in runs.values() for r in rs),
        "damaged numbers": _damaged_numbers(tracking_uri, runs),
    }
    print(f"\n{study_dir.name}: {', '.join(f'{k} {v}' for k, v in counts.items())}")
    return counts


def _start_ablate(tmp_path: Path, args: list[str], **env: str) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / "ablate.log"
    with log.open("w") as out:
        proc = subprocess.Popen([*CLI, *args], stdout=out, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, **env})
    return proc, log


def _wait_lifting_requeue_holds(cluster: SlurmCluster, proc: subprocess.Popen, log: Path) -> None:
    """Wait for `ablate` to exit. SLURM holds a requeued job about 2 min (its BeginTime) before it may
    start again: each time a job of the study is requeued, this starts it as soon as the node is free."""
    deadline = time.monotonic() + TIMEOUT_S
    lifted: set[tuple[str, int]] = set()
    while proc.poll() is None and time.monotonic() < deadline:
        job_ids = _job_ids(log.read_text())
        records = _records(cluster, job_ids) if job_ids else []
        for job_id in job_ids:
            runs = [state for job, state in records if job == job_id]
            if len(runs) > 1 and runs[-1] == "PENDING" and (job_id, len(runs)) not in lifted:
                cluster.command("scontrol", "update", f"JobId={job_id}", "StartTime=now", check=False)
                lifted.add((job_id, len(runs)))
        time.sleep(2)
    proc.wait(timeout=max(1.0, deadline - time.monotonic()))


def _running_epoch(study_dir: Path, at_least: int) -> bool:
    """A unit of the study is training and has finished `at_least` epochs."""
    try:
        details = [t.user_attrs.get("detail", "") for t in trials(study_dir) if t.state.name == "RUNNING"]
    except Exception:  # noqa: BLE001 (the journal is not written yet)
        return False
    epochs = [int(m.group(1)) for d in details if (m := re.search(r"epoch (\d+)/", d))]
    return any(e >= at_least for e in epochs)


def test_a_study_runs_as_a_job_array_with_an_mlflow_server_on_postgresql(
        tmp_path: Path, photon_dir: Path, slurm_cluster: SlurmCluster, postgres_url: str,
        mlflow_postgres_server: ClusterTracking, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ablations.yaml").write_text(REGISTRY)
    tracking = mlflow_postgres_server.url
    args = ablate_args(tmp_path, photon_dir, "array", "less_noise", "--launcher", "slurm", "--workers", "2",
                       "--slurm-cpus", "1", "--storage", postgres_url, "--tracking-uri", tracking,
                       sets=[*NO_EVAL, "train.max_epochs=2"])
    proc, log = _start_ablate(tmp_path, args)
    proc.wait(timeout=TIMEOUT_S)
    out = log.read_text()
    assert proc.returncode == 0, out
    job_ids = _job_ids(out)
    assert len(job_ids) == 2 and job_ids[0].endswith("_0") and job_ids[1].endswith("_1")  # one array
    assert re.search(rf"jobs: {job_ids[0]} (RUNNING|PENDING), {job_ids[1]} (RUNNING|PENDING)", out)  # sacct
    assert sorted(_records(slurm_cluster, job_ids)) == [(j, "COMPLETED") for j in job_ids]  # one run each
    study_dir = tmp_path / "results" / "array"
    for job_id in job_ids:  # submitit's logs of each job
        assert list((study_dir / "jobs" / job_id).glob("*_log.out")), job_id
    assert not (study_dir / "mlflow.db").exists()  # the runs went to the server
    assert any(mlflow_postgres_server.artifacts.rglob("config.yaml"))  # written by the jobs, not the server

    queue = StudyQueue(postgres_url, "array", create=False)
    done = sorted(c for t in queue.trials() for c in t.user_attrs.get("cells_done", []))
    assert done == ["base/s0", "less_noise/s0"]
    runs = _study_runs(tracking, "array")
    assert sorted(runs) == ["base/s0", "less_noise/s0"] and all(len(r) == 1 for r in runs.values())
    assert _damaged_numbers(tracking, runs) == 0

    elsewhere = tmp_path / "elsewhere"  # the report from the server alone
    assert main(["report", "--study", "array", "--tracking-uri", tracking, "--results-dir", str(elsewhere)]) == 0
    pd.testing.assert_frame_equal(report_rows(elsewhere / "array"), report_rows(study_dir))
    assert all_finished(report_rows(study_dir), seeds=1)
    capsys.readouterr()


def test_a_cancelled_job_s_unit_is_finished_by_another_job(tmp_path: Path, photon_dir: Path,
                                                           slurm_cluster: SlurmCluster) -> None:
    (tmp_path / "ablations.yaml").write_text(REGISTRY)
    args = ablate_args(tmp_path, photon_dir, "cancel", "less_noise", "--launcher", "slurm", "--workers", "2",
                       "--slurm-cpus", "1", sets=[*NO_EVAL, "train.max_epochs=5"])
    proc, log = _start_ablate(tmp_path, args, **{MIN_EPOCH_ENV: "4"})
    study_dir = tmp_path / "results" / "cancel"
    _wait_until(lambda: _job_ids(log.read_text()), "submitted", proc, log)
    job_ids = _job_ids(log.read_text())
    _wait_until(lambda: _running_epoch(study_dir, 1), "training", proc, log)
    victim = next(t.user_attrs["pid"] for t in trials(study_dir) if t.state.name == "RUNNING")
    victim_job = next(j for j in job_ids if str(victim) in _job_log(study_dir, j))
    slurm_cluster.command("scancel", victim_job)
    proc.wait(timeout=TIMEOUT_S)
    out = log.read_text()
    assert proc.returncode == 0, out
    assert f"job {victim_job} ended CANCELLED" in out  # the one line that says which worker died, and how
    assert "complete: 2/2 cells done" in out
    assert "handed back to the queue" in _job_log(study_dir, victim_job)
    job_ids = _job_ids(out)  # with a resubmission, if the other job had ended first
    counts = _counts(slurm_cluster, job_ids, study_dir, f"sqlite:///{study_dir / 'mlflow.db'}")
    assert counts["jobs killed"] == 1 and counts["units finished"] == 2
    assert counts["cells done twice"] == counts["duplicate runs"] == counts["runs not FINISHED"] == 0
    assert counts["damaged numbers"] == 0


def _job_log(study_dir: Path, job_id: str) -> str:
    return "\n".join(p.read_text(errors="replace") for p in (study_dir / "jobs" / job_id).glob("*_log.*"))


def _node_cpus(cluster: SlurmCluster) -> str:
    return cluster.command("sinfo", "-h", "-N", "-o", "%c").split()[0]


def test_a_preempted_job_requeues_and_resumes_its_unit_into_the_same_run(tmp_path: Path, photon_dir: Path,
                                                                        slurm_cluster: SlurmCluster) -> None:
    (tmp_path / "ablations.yaml").write_text(REGISTRY)
    cpus = _node_cpus(slurm_cluster)  # the whole node: the high-priority job needs this job's CPUs
    args = ablate_args(tmp_path, photon_dir, "preempt", "base", "--launcher", "slurm", "--workers", "1",
                       "--slurm-cpus", cpus, "--slurm-partition", "low", sets=[*NO_EVAL, "train.max_epochs=5"])
    proc, log = _start_ablate(tmp_path, args, **{MIN_EPOCH_ENV: "4"})
    study_dir = tmp_path / "results" / "preempt"
    _wait_until(lambda: _running_epoch(study_dir, 2), "training", proc, log)
    job_ids = _job_ids(log.read_text())
    slurm_cluster.command("sbatch", "-p", "high", "-c", cpus, "-o", str(tmp_path / "high.out"), "--wrap", "sleep 5")
    _wait_lifting_requeue_holds(slurm_cluster, proc, log)
    out = log.read_text()
    assert proc.returncode == 0, out
    job_log = _job_log(study_dir, job_ids[0])
    assert "SIGTERM" in job_log and "handed back to the queue" in job_log and "requeued" in job_log
    counts = _counts(slurm_cluster, _job_ids(out), study_dir, f"sqlite:///{study_dir / 'mlflow.db'}")
    assert counts["jobs submitted"] == 1 and counts["jobs requeued"] >= 1 and counts["units finished"] == 1
    assert counts["cells done twice"] == counts["duplicate runs"] == counts["runs not FINISHED"] == 0
    assert counts["damaged numbers"] == 0
    run = _study_runs(f"sqlite:///{study_dir / 'mlflow.db'}", "preempt")["base/s0"][0]
    assert run.data.metrics[EPOCHS] == 5  # every epoch trained once, over both runs of the job


@pytest.mark.slow  # the time limit is in minutes: about 3 min here
def test_a_job_at_its_time_limit_checkpoints_requeues_and_resumes(tmp_path: Path, photon_dir: Path,
                                                                  slurm_cluster: SlurmCluster) -> None:
    (tmp_path / "ablations.yaml").write_text(REGISTRY)
    # a 2 min limit and SIGUSR2 30 s before it (SLURM sends it up to 60 s early: 30 to 90 s in); 12 epochs
    # of at least 10 s cannot finish in one job
    args = ablate_args(tmp_path, photon_dir, "timelimit", "base", "--launcher", "slurm", "--workers", "1",
                       "--slurm-cpus", "1", "--slurm-time", "2", "--slurm-signal", "30",
                       sets=[*NO_EVAL, "train.max_epochs=12"])
    proc, log = _start_ablate(tmp_path, args, **{MIN_EPOCH_ENV: "10"})
    _wait_lifting_requeue_holds(slurm_cluster, proc, log)
    out = log.read_text()
    assert proc.returncode == 0, out
    study_dir = tmp_path / "results" / "timelimit"
    job_ids = _job_ids(out)
    job_log = _job_log(study_dir, job_ids[0])
    assert "SIGUSR2" in job_log and "handed back to the queue" in job_log and "requeued" in job_log
    counts = _counts(slurm_cluster, job_ids, study_dir, f"sqlite:///{study_dir / 'mlflow.db'}")
    assert counts["jobs requeued"] >= 1 and counts["units finished"] == 1
    assert counts["cells done twice"] == counts["duplicate runs"] == counts["runs not FINISHED"] == 0
    assert counts["damaged numbers"] == 0
    run = _study_runs(f"sqlite:///{study_dir / 'mlflow.db'}", "timelimit")["base/s0"][0]
    assert run.data.metrics[EPOCHS] == 12
