"""Faults: liveness of workers judged without comparing clocks, a claim killed before its stamp, given-up
cells, unreadable files; and kill -9 of a two-worker smoke study's process group at real points
(CALO_ABLATE_FAULT), rerun after each, then every number checked."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import torch
from mlflow.tracking import MlflowClient

from calo_ablate.runs.faults import POINTS
from calo_ablate.runs.names import REFERENCE
from calo_ablate.runs.resume import EpochClock, RunLogger, read_json_or_discard, resume_checkpoint
from calo_ablate.runs.tracker import Tracker
from calo_ablate.study import queue as queue_module
from calo_ablate.study.queue import StudyQueue
from calo_ablate.study.search import _counted, _open_search, search_study_name
from calo_ablate.study.wallclock import InvocationClock
from tests.study.helpers import REGISTRY, ablate_args, all_finished, child_runs, report_rows, stamps, trials

CLAIM_AND_TAKE = "from calo_ablate.study.queue import StudyQueue; StudyQueue({path!r}, 'q', create=False).take()"


class FakeClock:
    """A monotonic clock the test advances by hand: liveness judged without real waiting on any CPU."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_claim_killed_before_its_stamp_is_reaped_after_the_claim_grace(tmp_path: Path) -> None:
    storage = str(tmp_path / "optuna.journal")
    clock = FakeClock()
    queue = StudyQueue(storage, "q", create=True, clock=clock)
    queue.sync([("a", ["a/s0"])])
    env = {**os.environ, "CALO_ABLATE_FAULT": "claim"}
    proc = subprocess.run([sys.executable, "-c", CLAIM_AND_TAKE.format(path=storage)], env=env,
                          start_new_session=True, check=False, timeout=600)
    assert proc.returncode == -9  # killed itself (its process group) between the claim and the stamp
    assert [t.state.name for t in queue.trials()] == ["RUNNING"]
    assert queue.claims_pending_judgement()
    assert queue.reap() == []  # first observation
    clock.now += queue_module.CLAIM_GRACE_S - 0.1
    assert queue.reap() == []  # not yet unchanged for the whole grace period
    clock.now += 0.2
    assert queue.reap() == ["a/s0"]  # unchanged for the grace period on our clock: enqueued again
    claim = queue.take()
    assert claim is not None and claim.cells == ("a/s0",)


def test_a_worker_elsewhere_is_judged_by_its_beat_changing_not_by_clocks(tmp_path: Path) -> None:
    clock = FakeClock()
    queue = StudyQueue(str(tmp_path / "optuna.journal"), "q", create=True, clock=clock)
    queue.sync([("a", ["a/s0"])])
    claim = queue.take()
    assert claim is not None
    # as if stamped on another machine (another pid namespace) whose clock is a day off: no time is compared
    queue.storage.set_trial_user_attr(claim.trial_id, "worker", {"host": "far", "pid": 1, "ns": "other/1"})
    queue.storage.set_trial_user_attr(claim.trial_id, "beat", 7)
    grace = queue.heartbeat_grace_s
    assert queue.reap() == []  # first observation
    clock.now += 0.6 * grace
    queue.storage.set_trial_user_attr(claim.trial_id, "beat", 8)  # it is alive: its beat moved
    assert queue.reap() == []
    clock.now += 0.6 * grace
    assert queue.reap() == []  # 1.2 graces since the first look, but only 0.6 since the beat moved
    clock.now += 0.6 * grace
    assert queue.reap() == ["a/s0"]  # unchanged for longer than the grace: gone
    assert queue.trials()[0].user_attrs["interrupted"]


def test_a_cell_that_failed_retries_times_is_given_up_until_retry_failed(tmp_path: Path) -> None:
    queue = StudyQueue(str(tmp_path / "optuna.journal"), "q", create=True)
    queue.set_retries(2)
    units = [("a", ["a/s0"])]
    for _ in range(2):
        assert queue.sync(units) == 1
        claim = queue.take()
        queue.cell_failed(claim, "a/s0", "TrainingError: non-finite training loss")
        queue.finish(claim, None)
    assert queue.given_up() == {"a/s0": 2}
    assert queue.sync(units) == 0  # not retried again
    queue.set_retries(2, reset=True)  # --retry-failed
    assert queue.given_up() == {}
    assert queue.sync(units) == 1


def test_unreadable_result_and_truncated_checkpoint_are_set_aside(tmp_path: Path) -> None:
    messages: list[str] = []
    result = tmp_path / "result.json"
    result.write_text('{"run_id": "abc", "metr')  # cut short
    assert read_json_or_discard(result, messages.append) is None
    assert not result.exists() and "unreadable" in messages[-1]

    torch.save({"epoch": 0}, tmp_path / "best-epoch=0.ckpt")
    torch.save({"epoch": 1}, tmp_path / "last.ckpt")
    assert resume_checkpoint(tmp_path, "last.ckpt", messages.append) == tmp_path / "last.ckpt"
    data = (tmp_path / "last.ckpt").read_bytes()
    (tmp_path / "last.ckpt").write_bytes(data[: len(data) // 2])  # truncated by a kill or a full disk
    assert resume_checkpoint(tmp_path, "last.ckpt", messages.append) == tmp_path / "best-epoch=0.ckpt"
    assert (tmp_path / "last.ckpt.corrupt").is_file() and "resuming from best-epoch=0.ckpt" in messages[-1]
    (tmp_path / "best-epoch=0.ckpt").write_bytes(b"")
    (tmp_path / "last.ckpt").write_bytes(b"\x00")
    assert resume_checkpoint(tmp_path, "last.ckpt", messages.append) is None
    assert "training starts again" in messages[-1]


def test_epoch_times_and_train_seconds_survive_a_checkpoint_round_trip() -> None:
    first = EpochClock()
    first.on_fit_start(None, None)
    for _ in range(2):
        first.on_train_epoch_start(None, None)
        time.sleep(0.01)
        first.on_train_epoch_end(None, None)
    first.on_train_epoch_start(None, None)
    time.sleep(0.01)
    state = first.state_dict()  # ModelCheckpoint saving during the third epoch's end
    assert len(state["epoch_seconds"]) == 3 and all(s >= 0.01 for s in state["epoch_seconds"])
    resumed = EpochClock()  # a new process after a kill, restored from that checkpoint
    resumed.load_state_dict(state)
    resumed.on_fit_start(None, None)  # no epoch left to run
    assert resumed.mean_epoch_seconds() == pytest.approx(sum(state["epoch_seconds"]) / 3)  # never 0
    assert resumed.train_seconds >= state["train_seconds"] >= sum(state["epoch_seconds"])


def test_a_rerun_epoch_logs_no_second_value_at_its_step(tmp_path: Path) -> None:
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri)
    client.create_experiment("e")
    run_id = client.create_run(client.get_experiment_by_name("e").experiment_id).info.run_id
    client.log_metric(run_id, "val/loss", 1.5, step=20)  # logged by the killed call
    logger = RunLogger(experiment_name="e", tracking_uri=tracking_uri, run_id=run_id)
    logger.log_metrics({"val/loss": 1.4, "epoch_seconds": 3.0}, step=20)  # the re-run epoch
    logger.log_metrics({"val/loss": 1.3}, step=40)
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "val/loss")] == [(20, 1.5), (40, 1.3)]
    assert [m.step for m in client.get_metric_history(run_id, "epoch_seconds")] == [20]


KILLED_CLOCK = ("import time; from pathlib import Path; from calo_ablate.study.wallclock import InvocationClock; "
                "clock = InvocationClock(Path({folder!r})); time.sleep(60)")


def test_the_wall_time_of_a_killed_call_is_counted(tmp_path: Path) -> None:
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri)
    run_id = client.create_run(client.create_experiment("e")).info.run_id
    proc = subprocess.Popen([sys.executable, "-c", KILLED_CLOCK.format(folder=str(tmp_path))])
    deadline = time.monotonic() + 120
    while not any(json.loads(p.read_text())["seconds"] >= 4 for p in (tmp_path / "invocations").glob("*.json")):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    proc.kill()  # SIGKILL: the call cannot log its own time
    proc.wait()
    clock = InvocationClock(tmp_path)
    mine = clock.record(Tracker(tracking_uri), run_id)
    calls = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "invocation_seconds"))
    assert [step for step, _ in calls] == [0, 1]
    assert calls[0][1] >= 4.0 and calls[1][1] == pytest.approx(mine)
    clock.record(Tracker(tracking_uri), run_id)  # a second record logs nothing twice
    assert len(client.get_metric_history(run_id, "invocation_seconds")) == 2


# kill -9 at real points --------------------------------------------------------------------------
SETS = ["train.max_epochs=3"]
CELLS = ["base/s0", "fewer_steps/s0", "less_noise/s0"]
OWNERS = ["base/s0", "less_noise/s0"]  # fewer_steps shares the base's training


def run_killed_study(tmp: Path, data: Path, study: str, points: tuple[str, ...]) -> dict:
    """One call per point with CALO_ABLATE_FAULT set (each must die by SIGKILL), then a clean call."""
    (tmp / "ablations.yaml").write_text(REGISTRY)
    args = ablate_args(tmp, data, study, "fewer_steps,less_noise", "--workers", "2", sets=SETS)
    study_dir = tmp / "results" / study
    finished: dict[str, float] = {}
    for point in (*points, None):
        env = {k: v for k, v in os.environ.items() if k != "CALO_ABLATE_FAULT"}
        if point:
            env["CALO_ABLATE_FAULT"] = point
        proc = subprocess.run([sys.executable, "-m", "calo_ablate.cli", *args], env=env, start_new_session=True,
                              capture_output=True, text=True, check=False, timeout=900)
        if point:
            assert proc.returncode == -9, f"{point}: not killed ({proc.returncode}):\n{proc.stdout[-3000:]}"
        else:
            assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        now = stamps(study_dir)
        assert {k: now[k] for k in finished} == finished, f"a finished training was redone after {point}"
        finished = now
    return {"dir": study_dir, "calls": len(points) + 1}


def check_numbers(study: dict) -> None:
    study_dir = study["dir"]
    client = MlflowClient(f"sqlite:///{study_dir / 'mlflow.db'}")
    runs = child_runs(study_dir)
    assert sorted(r.data.tags["calo_ablate.cell"] for r in runs) == CELLS  # one run per cell
    exp = client.get_experiment_by_name(study_dir.name)
    assert not client.search_runs([exp.experiment_id], filter_string="attributes.status = 'RUNNING'")
    for run in runs:
        metrics = run.data.metrics
        # an official separation power is NaN by definition when a sample has no shower inside its histogram
        # (at 50 showers, often one of the 15 per-energy E_tot/E_inc histograms)
        bad = [k for k, v in metrics.items() if not math.isfinite(v) and not k.startswith("hist-chi/")]
        assert not bad, f"{run.data.tags['calo_ablate.cell']}: {bad}"
        assert metrics["epochs"] == 3 and metrics["seconds_per_epoch"] > 0
        assert "fpd" in metrics or any(k.startswith("auc") for k in metrics)  # evaluated
        for name in metrics:
            steps = [m.step for m in client.get_metric_history(run.info.run_id, name)]
            assert len(steps) == len(set(steps)), f"{run.data.tags['calo_ablate.cell']}: {name} has two values at one step"
        if run.data.tags["calo_ablate.cell"] in OWNERS:  # the training's own run: its time, whichever call trained it
            assert metrics["train_seconds"] >= 0.99 * metrics["seconds_per_epoch"] * metrics["epochs"]
    done = [c for t in trials(study_dir) for c in t.user_attrs.get("cells_done", [])]
    assert sorted(done) == sorted(["reference", *CELLS])  # no unit completed twice
    rows = report_rows(study_dir)
    assert list(rows.index) == [REFERENCE, "base", "fewer_steps", "less_noise"] and all_finished(rows, seeds=1)
    parent = client.search_runs([exp.experiment_id], filter_string="tags.`calo_ablate.role` = 'study'")[0]
    calls = client.get_metric_history(parent.info.run_id, "invocation_seconds")
    assert len(calls) == study["calls"] and all(m.value > 0 for m in calls)  # killed calls counted too


def test_kill_9_at_three_points_then_resume(tmp_path: Path, photon_dir: Path) -> None:
    check_numbers(run_killed_study(tmp_path, photon_dir, "kill3", ("claim", "after-checkpoint", "mid-report")))


@pytest.mark.slow
def test_kill_9_at_every_point_then_resume(tmp_path: Path, photon_dir: Path) -> None:
    check_numbers(run_killed_study(tmp_path, photon_dir, "kill6", POINTS))


def test_a_killed_search_trial_is_replaced_and_its_run_closed(tmp_path: Path) -> None:
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri)
    run_id = client.create_run(client.create_experiment("s")).info.run_id  # RUNNING, as a kill leaves it
    queue = StudyQueue(str(tmp_path / "optuna.journal"), "s", create=True)
    ctx = SimpleNamespace(name="s", tracker=Tracker(tracking_uri))
    cell = SimpleNamespace(ablation=SimpleNamespace(name="lr_search"), seed=0)
    killed = optuna.create_study(storage=queue.storage, study_name=search_study_name(ctx, cell)).ask()
    killed.set_user_attr("run_id", run_id)

    study = _open_search(ctx, queue, cell)
    assert [t.state.name for t in study.get_trials()] == ["FAIL"]
    assert _counted(study, (optuna.trial.TrialState.FAIL,)) == []  # not counted against the trial budget
    assert client.get_run(run_id).info.status == "KILLED"


def test_on_rdb_storage_optunas_heartbeat_reaps_a_worker_elsewhere(tmp_path: Path) -> None:
    # Optuna's grace period, whole seconds, on the database's clock: long enough that a loaded slow machine
    # makes its first look well inside it
    queue = StudyQueue(f"sqlite:///{tmp_path / 'optuna.db'}", "q", create=True, heartbeat_grace_s=3.0)
    queue.sync([("a", ["a/s0"])])
    claim = queue.take()
    assert claim is not None
    queue.storage.set_trial_user_attr(claim.trial_id, "worker", {"host": "far", "pid": 1, "ns": "other/1"})
    assert queue.reap() == []  # its heartbeat (stamped by the database's clock at the claim) is fresh
    time.sleep(4.5)  # no beat since: stale by the database's clock
    assert queue.reap() == ["a/s0"]
    assert [t.state.name for t in queue.trials()] == ["FAIL", "WAITING"]
