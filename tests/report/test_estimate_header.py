"""The report's header sets the study's measured wall time beside the estimate made before its start (the
parent run's tags estimated_seconds and estimate_basis), with the CPU and matmul rate it came from."""

from __future__ import annotations

import json
from pathlib import Path

from calo_ablate.report.table import build_table, markdown
from calo_ablate.runs.names import (
    INVOCATION_SECONDS,
    TAG_ESTIMATE_BASIS,
    TAG_ESTIMATED_SECONDS,
    TAG_ROWS,
    TAG_SEEDS,
    TAG_STUDY,
)
from calo_ablate.runs.tracker import Tracker, default_tracking_uri


def _parent(tmp_path: Path, tags: dict[str, str]) -> tuple[Tracker, str]:
    tracker = Tracker(default_tracking_uri(tmp_path))
    tracker.ensure_experiment("s")
    parent = tracker.find_or_create_parent("s", {
        TAG_STUDY: "s", TAG_ROWS: json.dumps([{"name": "base", "title": "Base"}]),
        TAG_SEEDS: "1", **tags})
    tracker.client.log_metric(parent, INVOCATION_SECONDS, 1038.0)
    return tracker, parent


def _wall_line(tmp_path: Path, tags: dict[str, str]) -> str:
    table = build_table(*_parent(tmp_path, tags))
    return next(line for line in markdown(table).splitlines() if line.startswith("- Total wall time"))


def test_the_header_shows_the_estimate_beside_the_wall_time(tmp_path: Path) -> None:
    basis = "AMD EPYC, 2 cores, 1 thread per worker, 82 GFLOP/s matmul; rates cached 2026-12-07"
    line = _wall_line(tmp_path, {TAG_ESTIMATED_SECONDS: "1260", TAG_ESTIMATE_BASIS: basis})
    assert line == (f"- Total wall time: 17.3 min (all `ablate` calls of this study; estimated before the start: "
                    f"21.0 min from {basis})")


def test_a_study_without_an_estimate_shows_the_wall_time_alone(tmp_path: Path) -> None:
    assert _wall_line(tmp_path, {}) == "- Total wall time: 17.3 min (all `ablate` calls of this study)"
