"""Workers: take units from the study queue and run their cells until none waits; the progress display.

`ablate --workers 1` runs the loop in its own process; with more, it starts `calo-ablate worker`
subprocesses (each with cores // workers torch threads) in its process group and shows progress
until they exit. `calo-ablate worker --study S --storage URL` joins a study from any machine.

A unit's cells run in plan order, each in its own MLflow run, opened when the cell starts and closed
once: FINISHED after its evaluation, FAILED with the error otherwise. A failure is recorded per cell
and never raised: the study goes on.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from calo_ablate.errors import CaloAblateError, TrainingError
from calo_ablate.runs import record
from calo_ablate.runs.generate import TrainedModel, load_run
from calo_ablate.runs.train import TrainResult
from calo_ablate.study.cell import (
    evaluate_cell,
    open_cell_run,
    run_reference,
    train_cell,
    training_metrics,
)
from calo_ablate.study.context import THREADS_ENV, WORKERS_HERE_ENV, StudyContext
from calo_ablate.study.plan import Cell
from calo_ablate.study.queue import REFERENCE_UNIT, Claim, Progress, StudyQueue
from calo_ablate.study.search import run_search_cell

POLL_S = 2.0


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
    record.close_run(ctx.tracking_uri, run_id, error)
    queue.cell_failed(claim, cell.name, error)


def _run_reference_unit(ctx: StudyContext, queue: StudyQueue, claim: Claim) -> UnitOutcome:
    try:
        run_reference(ctx, queue, claim)
    except Exception as err:  # noqa: BLE001 (a failed unit is recorded, the study goes on)
        ctx.log(f"FAILED reference vs reference: {_error_text(err)}")
        queue.cell_failed(claim, REFERENCE_UNIT, _error_text(err))
        return UnitOutcome(False, None)
    return UnitOutcome(True, None)


def run_unit(ctx: StudyContext, queue: StudyQueue, claim: Claim) -> UnitOutcome:
    """Run every cell of the claimed unit; a failure is recorded per cell and never raised."""
    if claim.unit == REFERENCE_UNIT:
        return _run_reference_unit(ctx, queue, claim)
    training: TrainResult | None = None
    train_seconds: float | None = None
    trained_model: TrainedModel | None = None
    training_error: str | None = None
    ok = True
    for cell in (ctx.plan.cell(name) for name in claim.cells):
        run_id = open_cell_run(ctx, cell)
        record.log_config(ctx.tracking_uri, run_id, cell.config,
                          skip_param=cell.ablation.search.param if cell.ablation.search else None)
        if training_error is not None:
            _fail(ctx, queue, claim, cell, run_id, training_error, TrainingError(training_error))
            ok = False
            continue
        try:
            if cell.ablation.search:
                run_search_cell(ctx, queue, claim, cell, run_id)
                record.close_run(ctx.tracking_uri, run_id)
                queue.cell_done(claim, cell.name)
                continue
            ctx.log(f"cell {cell.name}: {cell.ablation.title} (train key {cell.train_key})")
            if training is None:
                training, train_seconds = train_cell(ctx, queue, claim, cell)
            metrics = training_metrics(training, train_seconds if training.run_id == run_id else 0.0)
            if training.run_id != run_id:
                record.set_tags(ctx.tracking_uri, run_id, {record.TAG_SHARES_TRAINING_RUN: training.run_id})
            else:  # the training run has the per-epoch values already; a copy at step 0 would join its curve
                metrics = {k: v for k, v in metrics.items() if k not in training.metrics}
            if cell.config.evaluate.enabled:
                if trained_model is None:
                    trained_model = load_run(training.run_id, ctx.tracking_uri)
                metrics.update(evaluate_cell(ctx, queue, claim, cell, trained_model))
            record.log_metrics(ctx.tracking_uri, run_id, metrics)
            record.close_run(ctx.tracking_uri, run_id)
            queue.cell_done(claim, cell.name)
            ctx.log(f"done {cell.name}: {record.VAL_LOSS} {training.metrics[record.VAL_LOSS]:.4f}")
        except Exception as err:  # noqa: BLE001 (a failed cell is recorded, the study goes on)
            error = _error_text(err)
            _fail(ctx, queue, claim, cell, run_id, error, err)
            ok = False
            if training is None:
                training_error = f"training failed: {error}"
    value = training.metrics.get(record.VAL_LOSS) if training is not None else None
    return UnitOutcome(ok, value if value is not None and math.isfinite(value) else None)


def run_worker(ctx: StudyContext, queue: StudyQueue, plan_cells: list[str], show_progress: bool = True) -> int:
    """Run units until the queue is empty or the study is stopped; returns the number of failed units.

    show_progress: print the study's progress after each unit (off when a parent `ablate` shows it).
    """
    failures = 0
    while not queue.stop_reason():
        claim = queue.take()
        if claim is None:
            break
        with queue.heartbeat(claim):
            outcome = run_unit(ctx, queue, claim)
        queue.finish(claim, outcome.value)
        if show_progress:
            ctx.log(format_progress(queue.progress(plan_cells)))
        if not outcome.ok:
            failures += 1
            if ctx.settings.fail_fast:
                queue.request_stop(f"--fail-fast: {', '.join(claim.cells)} failed")
                break
    return failures


def format_progress(p: Progress) -> str:
    text = f"progress: {p.done}/{p.total} cells done"
    if p.running:
        text += f", running: {'; '.join(p.running)}"
    if p.waiting:
        text += f", {p.waiting} waiting"
    if p.failed:
        text += f", {len(p.failed)} failed ({', '.join(sorted(p.failed))})"
    return text


def spawn_workers(n: int, study: str, storage: str, results_dir: Path) -> list[subprocess.Popen]:
    """Start `n` worker processes in this process group (a kill of the group ends them too)."""
    threads = max(1, (os.cpu_count() or 1) // n)
    env = {**os.environ, THREADS_ENV: str(threads), WORKERS_HERE_ENV: str(n)}
    command = [sys.executable, "-m", "calo_ablate.cli", "worker", "--study", study, "--storage", storage,
               "--results-dir", str(results_dir)]
    return [subprocess.Popen(command, env=env) for _ in range(n)]


def wait_for_workers(procs: list[subprocess.Popen], queue: StudyQueue, plan_cells: list[str],
                     log: Callable[[str], None] = print) -> list[int]:
    """Show progress until every worker exits; on a stop request (--fail-fast) end them. Exit codes."""
    shown = ""
    stopping = False
    try:
        while any(p.poll() is None for p in procs):
            text = format_progress(queue.progress(plan_cells))
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
