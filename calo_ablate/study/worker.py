"""Workers: take units from the study queue and run their cells until none waits; the progress display.

`ablate --workers 1` runs the loop in its own process; with more, it forks worker processes (each with
cores // workers torch threads; study/forked.py) in its process group and shows progress until they
exit. `calo-ablate worker --study S --storage URL` joins a study from any machine.

A unit's cells run in plan order, each in its own MLflow run, opened when the cell starts and closed
once: FINISHED after its evaluation, FAILED with the error otherwise. A failure is recorded per cell
and never raised: the study goes on.

Before each unit a worker compares the study's recorded code version (a digest of the package's source
files, provenance.code_digest) and config hash
(every cell's config as its code validates the plan) with its own and refuses to go on when they differ: a worker on
another machine with other code could train something else into the study's runs. Every worker reaps dead
workers (StudyQueue.reap) when it finds nothing waiting, and waits for claims not yet judged.

A derived unit (train.teacher, a registry `from:`) waits while another worker trains its teacher, and
is handed back behind the teacher's unit when that unit still waits in the queue (study/cell.py:
wait_for_teacher): one worker, or several, train a teacher once and before its students.

SIGTERM (scancel, a preemption, the end of a time limit) and SIGUSR2 (the `--signal` SLURM sends before
the time limit) stop a worker between epochs: it finishes the epoch in progress (whose checkpoint and
metrics are written as every epoch's are), hands its unit back to the queue (the unit's cells run
again from that checkpoint into the same MLflow runs, by whichever worker takes it) and exits with
EXIT_STOPPED. During a fit, Lightning ends the epoch at the next batch on SIGTERM instead (its own
handler): the unit then resumes from the previous epoch's checkpoint. A stop that comes too late (the
SIGKILL after the grace) is a kill: the unit is reaped.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from calo_ablate.errors import CaloAblateError, ConfigError, TrainingError
from calo_ablate.runs.devices import visible_gpus, worker_gpu_environment
from calo_ablate.runs.generate import TrainedModel, load_run
from calo_ablate.runs.names import REFERENCE, TAG_CELL, TAG_ERROR, TAG_SHARES_TRAINING_RUN, VAL_LOSS
from calo_ablate.runs.provenance import code_digest
from calo_ablate.runs.tracker import Tracker
from calo_ablate.runs.train import TrainResult
from calo_ablate.study.cell import (
    TeacherPending,
    evaluate_cell,
    open_cell_run,
    run_reference,
    teacher_train_seconds,
    train_cell,
    training_metrics,
    wait_for_teacher,
)
from calo_ablate.study.context import CALL_ENV, THREADS_ENV, WORKERS_HERE_ENV, StudyContext
from calo_ablate.study.forked import ForkedWorker, threads_survive_fork
from calo_ablate.study.plan import Cell
from calo_ablate.study.queue import Claim, Progress, StudyQueue, requeue_unfinished
from calo_ablate.study.search import run_search_cell

POLL_S = 2.0
PLAN_WAIT_S = 600.0  # how long a worker started by `ablate` waits for the study to be planned
EXIT_STOPPED = 75  # a worker stopped by a signal, its unit handed back (EX_TEMPFAIL: run it again)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR2)


class WorkerStopped(Exception):
    """A stop signal reached the worker: its unit goes back to the queue."""


class StopRequest:
    """The stop signals' handler: notes the first one; the worker acts on it between epochs and units."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def __bool__(self) -> bool:
        return self.signal_name is not None

    def _note(self, signum: int, frame: Any) -> None:
        if self.signal_name is None:
            self.signal_name = signal.Signals(signum).name
            print(f"calo-ablate worker {os.getpid()}: {self.signal_name}: stopping after the epoch in progress",
                  file=sys.stderr, flush=True)

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
            self._previous = {s: signal.signal(s, self._note) for s in STOP_SIGNALS}

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def check(self, where: str) -> None:
        if self.signal_name is not None:
            raise WorkerStopped(f"{self.signal_name} {where}")


class StopBetweenEpochs(Callback):
    """Raises WorkerStopped at the start of an epoch once a stop signal came (the last one is checkpointed)."""

    def __init__(self, stop: StopRequest) -> None:
        self.stop = stop

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.stop.check(f"before epoch {trainer.current_epoch + 1}")


@dataclass(frozen=True)
class WorkerEnd:
    """How one worker (a process or a job) ended: `how` in words, for the study's last line; died: it did
    not end by itself (exit 1 means it ran out of work with failed cells, which the study names)."""

    name: str
    code: int | None
    how: str
    died: bool


def describe_process_end(proc: ForkedWorker) -> WorkerEnd:
    code = proc.returncode
    if code is not None and code < 0:
        how = f"killed by {signal.Signals(-code).name}"
    elif code == EXIT_STOPPED:
        how = "stopped by a signal (its unit handed back)"
    else:
        how = f"exited {code}"
    return WorkerEnd(f"worker pid {proc.pid}", code, f"worker pid {proc.pid} {how}", died=code not in (0, 1))


@dataclass
class UnitOutcome:
    ok: bool
    value: float | None  # the unit's final validation loss


def _error_text(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}".strip()


def _fail(ctx: StudyContext, queue: StudyQueue, claim: Claim, cell: Cell, run_id: str, error: str,
          err: BaseException) -> None:
    ctx.log(f"FAILED {cell.name}: {error}")
    if not isinstance(err, CaloAblateError):  # an unexpected error: its traceback helps
        ctx.log("".join(traceback.format_exception(err)).rstrip())
    ctx.tracker.close_run(run_id, error)
    queue.cell_failed(claim, cell.name, error)


def _run_reference_unit(ctx: StudyContext, queue: StudyQueue, claim: Claim) -> UnitOutcome:
    try:
        run_reference(ctx, queue, claim)
    except Exception as err:  # noqa: BLE001 (a failed unit is recorded, the study goes on)
        ctx.log(f"FAILED reference vs reference: {_error_text(err)}")
        queue.cell_failed(claim, REFERENCE, _error_text(err))
        return UnitOutcome(False, None)
    return UnitOutcome(True, None)


def run_unit(ctx: StudyContext, queue: StudyQueue, claim: Claim, stop: StopRequest | None = None) -> UnitOutcome:
    """Run every cell of the claimed unit; a failure is recorded per cell and never raised. A stop
    signal raises WorkerStopped between cells and epochs, and a derived unit whose teacher's unit still
    waits in the queue raises TeacherPending (either way, the claim is the caller's to hand back)."""
    stop = stop if stop is not None else StopRequest()
    if claim.unit == REFERENCE:
        return _run_reference_unit(ctx, queue, claim)
    training: TrainResult | None = None
    train_seconds: float | None = None
    trained_model: TrainedModel | None = None
    training_error: str | None = None
    ok = True
    for cell in (ctx.plan.cell(name) for name in claim.cells):
        stop.check(f"before {cell.name}")
        run_id = open_cell_run(ctx, cell)
        ctx.tracker.log_config(run_id, cell.config,
                               skip_param=cell.ablation.search.param if cell.ablation.search else None)
        if training_error is not None:
            _fail(ctx, queue, claim, cell, run_id, training_error, TrainingError(training_error))
            ok = False
            continue
        try:
            if cell.ablation.search:
                run_search_cell(ctx, queue, claim, cell, run_id)
                ctx.tracker.close_run(run_id)
                queue.cell_done(claim, cell.name)
                continue
            ctx.log(f"cell {cell.name}: {cell.ablation.title} (train key {cell.train_key})")
            if training is None:
                wait_for_teacher(ctx, queue, claim, cell, partial(stop.check, f"{cell.name} waiting"))
                owns = ctx.plan.training_owner(cell).name == cell.name  # its run is open already: not looked up again
                training, train_seconds = train_cell(ctx, queue, claim, cell, run_id=run_id if owns else None,
                                                     extra_callbacks=[StopBetweenEpochs(stop)])
            metrics = training_metrics(training, train_seconds if training.run_id == run_id else 0.0)
            if training.run_id != run_id:
                ctx.tracker.set_tags(run_id, {TAG_SHARES_TRAINING_RUN: training.run_id})
            else:  # the training run has the per-epoch values already; a copy at step 0 would join its curve
                metrics = {k: v for k, v in metrics.items() if k not in training.metrics}
            metrics.update(teacher_train_seconds(ctx, cell))
            if cell.config.evaluate.enabled:
                if trained_model is None:
                    trained_model = load_run(training.run_id, ctx.tracker)
                metrics.update(evaluate_cell(ctx, queue, claim, cell, trained_model))
            ctx.tracker.log_metrics(run_id, metrics)
            ctx.tracker.close_run(run_id)
            queue.cell_done(claim, cell.name)
            ctx.log(f"done {cell.name}: {VAL_LOSS} {training.metrics[VAL_LOSS]:.4f}")
        except (WorkerStopped, TeacherPending):
            raise
        except Exception as err:  # noqa: BLE001 (a failed cell is recorded, the study goes on)
            error = _error_text(err)
            _fail(ctx, queue, claim, cell, run_id, error, err)
            ok = False
            if training is None:
                training_error = f"training failed: {error}"
    value = training.metrics.get(VAL_LOSS) if training is not None else None
    return UnitOutcome(ok, value if value is not None and math.isfinite(value) else None)


def open_planned_study(storage: str, study: str, wait_s: float = 0.0, call_id: str = "") -> StudyQueue:
    """The study's queue once `ablate` has stored its settings and enqueued its units, waiting up to
    `wait_s` seconds for that; raises ConfigError when the study is still not planned then.

    call_id: wait for the settings of this `ablate` call (a worker it started before planning must not
    take an earlier call's plan)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            queue = StudyQueue(storage, study, create=False)
            settings = queue.settings()  # ConfigError until `ablate` saves them, after queuing its units
            if call_id and settings.get("call_id") != call_id:
                msg = f"study '{study}' in {storage}: the `ablate` call {call_id} did not plan it within {wait_s:.0f} s"
                raise ConfigError(msg)
            if queue.trials() or time.monotonic() >= deadline:
                return queue
        except ConfigError:
            if time.monotonic() >= deadline:
                raise
        time.sleep(POLL_S / 2)


def check_same_study(queue: StudyQueue, mine: dict[str, str]) -> None:
    """Raise when the study was planned with another code version or config hash than this worker's."""
    recorded = queue.settings()
    for key, value in mine.items():
        if recorded.get(key, value) != value:
            msg = (f"study '{queue.name}' in {queue.storage_url} was planned with {key} {recorded[key]}, "
                   f"but this worker has {value}: this worker refuses its units; run the package source the "
                   "study was planned with here (its code_version is a digest of calo_ablate/**/*.py), "
                   "or rerun `calo-ablate ablate` with this code to plan the study again")
            raise ConfigError(msg)


def hand_back(queue: StudyQueue, claim: Claim) -> list[str]:
    """Give a claimed unit back to the queue (as a reaped one: FAIL 'interrupted', not a failure of its
    cells); returns its cells enqueued again."""
    try:
        queue.storage.set_trial_user_attr(claim.trial_id, "interrupted", True)
        if not queue.storage.set_trial_state_values(claim.trial_id, TrialState.FAIL):
            return []
    except UpdateFinishedTrialError:  # reaped meanwhile (a beat missed during the stop): enqueued already
        return []
    return requeue_unfinished(queue.study, queue.storage.get_trial(claim.trial_id))


def run_worker(ctx: StudyContext, queue: StudyQueue, plan_cells: list[str], show_progress: bool = True) -> int:
    """Run units until the queue is empty or the study is stopped; returns the number of failed units.

    show_progress: print the study's progress after each unit (off when a parent `ablate` shows it).
    Raises WorkerStopped when a stop signal came while it held a unit (handed back first).
    """
    stop = StopRequest()
    stop.install()
    try:
        return _work(ctx, queue, plan_cells, show_progress, stop)
    finally:
        stop.restore()


def _work(ctx: StudyContext, queue: StudyQueue, plan_cells: list[str], show_progress: bool,
          stop: StopRequest) -> int:
    failures = 0
    # this process's code is the one it loaded now: later edits of the checkout do not change it
    mine = {"code_version": code_digest(), "config_hash": ctx.plan.config_hash()}
    while not queue.stop_reason() and not stop:
        check_same_study(queue, mine)
        claim = queue.take()
        if claim is None:
            if queue.reap():
                continue
            if queue.claims_pending_judgement():
                time.sleep(POLL_S)
                continue
            break
        try:
            with queue.heartbeat(claim):
                outcome = run_unit(ctx, queue, claim, stop)
        except TeacherPending as pending:
            ctx.log(f"{pending}: unit {claim.unit} handed back, behind it")
            hand_back(queue, claim)
            continue
        except (WorkerStopped, KeyboardInterrupt) as err:
            signal_name = stop.signal_name
            if signal_name is None:  # no stop request, so a Ctrl-C: the claim is reaped (its pid is gone)
                raise
            cells = hand_back(queue, claim)
            ctx.log(f"stopped by {err if isinstance(err, WorkerStopped) else signal_name + ' mid-epoch'}: "
                    f"{', '.join(cells) or 'nothing'} handed back to the queue (resumes from its checkpoint)")
            raise WorkerStopped(f"{signal_name}: unit {claim.unit} handed back") from None
        queue.finish(claim, outcome.value)
        if show_progress:
            ctx.log(format_progress(queue.progress(plan_cells)))
        if not outcome.ok:
            failures += 1
            if ctx.settings.fail_fast:
                queue.request_stop(f"--fail-fast: {', '.join(claim.cells)} failed")
                break
    return failures


def wait_for_others(queue: StudyQueue, plan_cells: list[str], log: Callable[[str], None] = print) -> None:
    """Show progress while workers elsewhere (other commands, machines or jobs) hold cells of the plan;
    reap the dead ones meanwhile (their cells are enqueued again for the next call or worker)."""
    shown = ""
    while not queue.stop_reason():
        queue.reap()
        progress = queue.progress(plan_cells)
        if not progress.running:
            return
        text = format_progress(progress)
        if text != shown:
            log(f"{text} (waiting for other workers)")
            shown = text
        time.sleep(POLL_S)


def mark_given_up(tracker: Tracker, parent_run_id: str, given_up: dict[str, int],
                  log: Callable[[str], None] = print) -> None:
    """Say which cells are given up (failed `--retries` times), in the log and in their runs' error tag
    (which the report's row shows)."""
    if not given_up:
        return
    log(f"given up (not run again until --retry-failed): "
        f"{', '.join(f'{c} after {n} failures' for c, n in sorted(given_up.items()))}")
    for run in tracker.child_runs(parent_run_id):
        cell = run.data.tags.get(TAG_CELL)
        error = run.data.tags.get(TAG_ERROR, "")
        if cell in given_up and "gave up" not in error:
            tracker.set_tags(run.info.run_id, {
                TAG_ERROR: f"{error}; gave up after {given_up[cell]} failures (--retry-failed)"})


def format_progress(p: Progress) -> str:
    text = f"progress: {p.done}/{p.total} cells done"
    if p.running:
        text += f", running: {'; '.join(p.running)}"
    if p.waiting:
        text += f", {p.waiting} waiting"
    if p.failed:
        text += f", {len(p.failed)} failed ({', '.join(sorted(p.failed))})"
    return text


def worker_argv(study: str, storage: str, results_dir: Path) -> list[str]:
    """`calo-ablate worker ...` as the job's command line (the interpreter that submitted it)."""
    return [sys.executable, "-m", "calo_ablate.cli", "worker", "--study", study, "--storage", storage,
            "--results-dir", str(results_dir)]


def spawn_workers(n: int, entry: Callable[[], int], call_id: str) -> list[ForkedWorker]:
    """Fork `n` workers running `entry` (each in this process group: a kill of the group ends them too)
    with cores // n torch threads (one where this process ran torch on several threads before); with
    GPUs, worker i sees only its own (CUDA_VISIBLE_DEVICES, round robin when there are more workers). Forked, they start with this process's imports done; they wait for the
    settings of the `ablate` call `call_id` (up to PLAN_WAIT_S, the entry's to apply), so they can start
    before the study is planned. See study/forked.py for what this process must not have done before."""
    threads = max(1, (os.cpu_count() or 1) // n)
    if threads > 1 and not threads_survive_fork():
        print(f"note: this process ran torch on several threads before forking its workers, so they run on one "
              f"thread each, not {threads} (GNU OpenMP's threads do not survive a fork); `calo-ablate ablate` "
              "started from a shell gives them every core", file=sys.stderr, flush=True)
        threads = 1
    environ = {THREADS_ENV: str(threads), WORKERS_HERE_ENV: str(n), CALL_ENV: call_id}
    gpus = visible_gpus()
    return [ForkedWorker(entry, {**environ, **worker_gpu_environment(i, n, gpus)}) for i in range(n)]


def wait_for_workers(procs: list[Any], queue: StudyQueue, plan_cells: list[str],
                     log: Callable[[str], None] = print, extra: Callable[[], str] | None = None) -> list[int]:
    """Show progress until every worker (a Popen, or a job with its interface) exits; on a stop request
    (--fail-fast) end them. extra: more for the progress line (the jobs' states). Exit codes."""
    shown = ""
    stopping = False
    try:
        # poll every worker each time (not any()'s first running one): a dead one is a zombie until it
        # is polled, and a zombie's pid still looks alive to the reaper
        while [p.poll() for p in procs].count(None):
            queue.reap()
            text = format_progress(queue.progress(plan_cells)) + (f"; {extra()}" if extra else "")
            if text != shown:
                log(text)
                shown = text
            reason = queue.stop_reason()
            if reason and not stopping:
                log(f"stopping the workers: {reason}")
                for p in procs:
                    if p.poll() is None:
                        p.terminate()
                stopping = True
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        raise
    finally:
        for p in procs:
            p.wait()
    return [p.returncode for p in procs]
