"""The Optuna-backed queue on its default storage (a journal file): no unit is ever taken twice, dead
workers' units are re-enqueued, done cells are not, failed cells are retried."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from pathlib import Path

from calo_ablate.study.queue import StudyQueue

UNITS = [(f"unit{i}", [f"cell{i}/s0"]) for i in range(24)]


def _drain(storage: str, out: str) -> None:
    queue = StudyQueue(storage, "q", create=False)
    taken = []
    while (claim := queue.take()) is not None:
        taken.append(claim.unit)
        queue.cell_done(claim, claim.cells[0])
        queue.finish(claim, 0.0)
    Path(out).write_text(json.dumps(taken))


def _claim_and_die(storage: str) -> None:
    queue = StudyQueue(storage, "q", create=False)
    queue.take()
    os._exit(0)  # like kill -9: the trial stays RUNNING


def test_four_processes_never_take_the_same_unit(tmp_path: Path) -> None:
    storage = str(tmp_path / "optuna.journal")
    queue = StudyQueue(storage, "q", create=True)
    assert queue.sync(UNITS) == len(UNITS)
    ctx = mp.get_context("spawn")
    outs = [str(tmp_path / f"taken{i}.json") for i in range(4)]
    procs = [ctx.Process(target=_drain, args=(storage, out)) for out in outs]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    taken = [unit for out in outs for unit in json.loads(Path(out).read_text())]
    assert sorted(taken) == sorted(key for key, _ in UNITS)  # each exactly once
    assert queue.sync(UNITS) == 0  # all done: nothing to enqueue again


def test_dead_worker_is_detected_and_failed_cells_retried(tmp_path: Path) -> None:
    storage = str(tmp_path / "optuna.journal")
    queue = StudyQueue(storage, "q", create=True)
    units = [("a", ["a/s0"]), ("b", ["b/s0", "b2/s0"]), ("c", ["c/s0"])]
    queue.sync(units)
    # a dies holding its unit; b finishes one cell and fails the other; c finishes
    proc = mp.get_context("spawn").Process(target=_claim_and_die, args=(storage,))
    proc.start()
    proc.join(60)
    claim_b = queue.take()
    assert claim_b is not None and claim_b.unit == "b"
    queue.cell_done(claim_b, "b/s0")
    queue.cell_failed(claim_b, "b2/s0", "TrainingError: boom")
    queue.finish(claim_b, None)
    claim_c = queue.take()
    assert claim_c is not None and claim_c.unit == "c"
    queue.cell_done(claim_c, "c/s0")
    queue.finish(claim_c, 1.0)
    progress = queue.progress(["a/s0", "b/s0", "b2/s0", "c/s0"])
    assert progress.done == 2 and progress.failed == {"b2/s0": "TrainingError: boom"}
    assert len(progress.running) == 1  # the dead worker's claim, until the next sync

    assert queue.sync(units) == 1  # b2 (failed) again; a (interrupted) was enqueued by the reaper in sync;
    # nothing for b/s0 and c
    again = {queue.take().cells for _ in range(2)}
    assert again == {("a/s0",), ("b2/s0",)}
    assert queue.take() is None
