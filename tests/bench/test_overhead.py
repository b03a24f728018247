"""The bench's study timeline: a worker's in-cell part is the cells' logged train and eval seconds (and the
noise floor's), one timeline line per unit and phase."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from calo_ablate.bench.overhead import phases
from calo_ablate.runs.names import EVAL_SECONDS, REFERENCE, REFERENCE_SECONDS, TRAIN_SECONDS
from calo_ablate.runs.tracker import Tracker, default_tracking_uri
from calo_ablate.study.queue import StudyQueue, default_storage


def test_a_workers_in_cell_time_is_its_cells_logged_seconds(tmp_path: Path) -> None:
    started = time.time()
    tracker = Tracker(default_tracking_uri(tmp_path))
    tracker.ensure_experiment("s")
    parent = tracker.find_or_create_parent("s", {})
    tracker.log_metrics(parent, {REFERENCE_SECONDS: 0.5})
    base = tracker.open_child_run("base/s0", {})
    tracker.log_metrics(base, {TRAIN_SECONDS: 0.25, EVAL_SECONDS: 0.125})
    queue = StudyQueue(default_storage(tmp_path), "s", create=True)
    queue.sync([(REFERENCE, [REFERENCE]), ("unit", ["base/s0"])])
    while (claim := queue.take()) is not None:
        queue.cell_done(claim, claim.cells[0])
        queue.finish(claim, None)
    tracker.close_run(parent)  # the report written
    ended = time.time() + 1.0
    lines, splits = phases(tracker, tmp_path, "s", started, ended)
    assert len(splits) == 1 and len(lines) == 6  # one worker (this process), two units
    split = splits[0]
    assert split.in_cells == pytest.approx(0.875)
