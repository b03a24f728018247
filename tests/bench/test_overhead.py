"""The bench's study timeline: each worker's split adds up to the command's wall time, and its in-cell part
is the cells' logged train and eval seconds."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from calo_ablate.bench.overhead import phases
from calo_ablate.runs import record
from calo_ablate.study.queue import StudyQueue, default_storage


def test_each_worker_split_adds_up_to_the_wall_time(tmp_path: Path) -> None:
    started = time.time()
    uri = record.default_tracking_uri(tmp_path)
    exp_id = record.ensure_experiment(uri, "s")
    parent = record.find_or_create_parent(uri, exp_id, "s", {})
    record.log_metrics(uri, parent, {record.REFERENCE_SECONDS: 0.5})
    base = record.open_child_run(uri, exp_id, parent, "base/s0", {})
    record.log_metrics(uri, base, {record.TRAIN_SECONDS: 0.25, record.EVAL_SECONDS: 0.125})
    queue = StudyQueue(default_storage(tmp_path), "s", create=True)
    queue.sync([(record.REFERENCE, [record.REFERENCE]), ("unit", ["base/s0"])])
    while (claim := queue.take()) is not None:
        queue.cell_done(claim, claim.cells[0])
        queue.finish(claim, None)
    record.close_run(uri, parent)  # the report written
    ended = time.time() + 1.0
    lines, splits = phases(uri, tmp_path, "s", started, ended)
    assert len(splits) == 1 and len(lines) == 6  # one worker (this process), two units
    split = splits[0]
    assert split.in_cells == pytest.approx(0.875)
    assert split.start + split.in_cells + split.in_units + split.between + split.end == \
        pytest.approx(ended - started, abs=1e-3)
