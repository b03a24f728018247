"""Workers: take units from the study queue until none waits; the parent's progress display.

`ablate --workers 1` runs the loop in its own process; with more, it starts `calo-ablate worker`
subprocesses (each with cores // workers torch threads) in its process group and shows progress
until they exit. `calo-ablate worker --study S --storage URL` joins a study from any machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from calo_ablate.study.cell import run_unit
from calo_ablate.study.context import StudyContext
from calo_ablate.study.queue import Progress, StudyQueue

POLL_S = 2.0


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
