"""Workers: take units from the study queue until none waits; the parent's progress display.

`ablate --workers 1` runs the loop in its own process; with more, it starts `calo-ablate worker`
subprocesses (each with cores // workers torch threads) in its process group and shows progress
until they exit. `calo-ablate worker --study S --storage URL` joins a study from any machine.

Before each unit a worker compares the study's recorded code version (git revision) and config hash
(every cell's resolved config) with its own and refuses to go on when they differ: a worker on
another machine builds its cells from its own checkout and YAML files. Every worker reaps dead
workers (StudyQueue.reap) when it finds nothing waiting, and waits for claims not yet judged.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from calo_ablate.config import digest
from calo_ablate.errors import ConfigError
from calo_ablate.study import tracking
from calo_ablate.study.cell import run_unit
from calo_ablate.study.context import StudyContext
from calo_ablate.study.plan import Plan
from calo_ablate.study.queue import Progress, StudyQueue
from calo_ablate.train import git_revision

POLL_S = 2.0


def config_hash(plan: Plan) -> str:
    """Digest of every cell's resolved config (as this process resolves it from its own YAML files)."""
    return digest({cell.name: cell.config.model_dump(mode="json") for cell in plan.cells})


def open_planned_study(storage: str, study: str, wait_s: float = 0.0) -> StudyQueue:
    """The study's queue once `ablate` has stored its settings and enqueued its units, waiting up to
    `wait_s` seconds for that; raises ConfigError when the study is still not planned then."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            queue = StudyQueue(storage, study, create=False)
            queue.settings()
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
                   f"but this worker has {value}: this worker refuses its units; run the study's code "
                   f"version {recorded.get('code_version')} here (same checkout and experiments/ YAML files), "
                   "or rerun `calo-ablate ablate` with this code to plan the study again")
            raise ConfigError(msg)


def run_worker(ctx: StudyContext, queue: StudyQueue, plan_cells: list[str], show_progress: bool = True) -> int:
    """Run units until the queue is empty or the study is stopped; returns the number of failed units.

    show_progress: print the study's progress after each unit (off when a parent `ablate` shows it).
    """
    failures = 0
    # this process's code is the one it loaded now: later edits of the checkout do not change it
    mine = {"code_version": git_revision(), "config_hash": config_hash(ctx.plan)}
    while not queue.stop_reason():
        check_same_study(queue, mine)
        claim = queue.take()
        if claim is None:
            if queue.reap():
                continue
            if queue.claims_pending_judgement():
                time.sleep(POLL_S)
                continue
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


def mark_given_up(tracking_uri: str, parent_run_id: str, given_up: dict[str, int],
                  log: Callable[[str], None] = print) -> None:
    """Say which cells are given up (failed `--retries` times), in the log and in their runs' error tag
    (which the report's row shows)."""
    if not given_up:
        return
    log(f"given up (not run again until --retry-failed): "
        f"{', '.join(f'{c} after {n} failures' for c, n in sorted(given_up.items()))}")
    for run in tracking.child_runs(tracking_uri, parent_run_id):
        cell = run.data.tags.get(tracking.CELL_TAG)
        error = run.data.tags.get(tracking.ERROR_TAG, "")
        if cell in given_up and "gave up" not in error:
            tracking.set_tags(tracking_uri, run.info.run_id, {
                tracking.ERROR_TAG: f"{error}; gave up after {given_up[cell]} failures (--retry-failed)"})


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
    env = {**os.environ, "CALO_ABLATE_THREADS": str(threads), "CALO_ABLATE_WORKERS_HERE": str(n)}
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
            queue.reap()
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
