"""The multiclass metric in the report (column, Findings line) and its stage on a study's cached samples:
the pool, the cache (nothing trained when nothing changed), the recorded seed, the parent run's tag."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from calo_ablate.report.multiclass import (
    SKIPPED,
    TAG,
    MulticlassSummary,
    findings_lines,
    multiclass_column,
    multiclass_of,
)
from calo_ablate.report.table import CellResult, Row, frame
from calo_ablate.runs.names import REFERENCE
from calo_ablate.runs.tracker import Tracker
from calo_ablate.study import multiclass as stage
from tests.report import stage_helpers as helpers


def _summary(**means: float) -> MulticlassSummary:
    return MulticlassSummary(means, dict.fromkeys(means, 0.05), len(means), 3, 2, [0, 1], "cls-low", 200, 200,
                             4.2, "key", {"broken": "no finished cell with a cached sample on this machine"})


def test_summary_column_and_findings_line() -> None:
    summary = _summary(base=-1.05, good=-0.5, bad=-2.0)
    table = helpers.table(helpers.rows(["base", "good", "bad", "broken"]), {**helpers.HEADER, TAG: summary.to_json()})
    assert multiclass_of(table) == summary
    assert summary.uniform == pytest.approx(math.log(1 / 3))
    column = multiclass_column(table)
    assert column is not None
    assert column.data["good"] == {"multiclass_mean": -0.5, "multiclass_std": 0.05, "multiclass_n": 2,
                                   "multiclass_uniform": pytest.approx(summary.uniform)}
    assert "broken" not in column.data and column.text["broken"]  # left out: said in its cell, no number
    assert column.data[REFERENCE] == {"multiclass_uniform": pytest.approx(summary.uniform)}
    data = frame(table, extra=[column]).set_index("row")
    assert data.loc["bad", "multiclass_mean"] == -2.0 and data.loc["bad", "multiclass_n"] == 2
    assert data.loc["good", "multiclass_uniform"] == pytest.approx(summary.uniform)
    assert math.isnan(data.loc["broken", "multiclass_mean"])
    assert len(findings_lines(table)) == 1  # one Findings line (its text: tests/report/golden/table.md)


def test_no_summary_no_column_and_the_skip_reason_in_findings() -> None:
    table = helpers.table(helpers.rows(["base"]), {**helpers.HEADER, SKIPPED: "1 row(s) with cached samples"})
    assert multiclass_column(table) is None
    lines = findings_lines(table)
    assert len(lines) == 1 and "1 row(s) with cached samples" in lines[0]  # the Findings say why


@pytest.mark.usefixtures("one_thread")
def test_stage_pools_caches_and_records_its_seed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tracker, parent = helpers.study_parent(tmp_path)
    helpers.write_base_and_scaled(tmp_path)
    rows = helpers.rows(["base", "scaled"]) + [Row("broken", "Broken", [CellResult(0, "FAILED", {}, {}, "b")])]
    table = helpers.table(rows, dict(helpers.HEADER), parent)
    said: list[str] = []
    stage.add_multiclass(table, tmp_path, tracker, said.append)
    summary = multiclass_of(table)
    assert summary is not None and summary.seed == stage.SEED and summary.seeds == [0, 1]
    assert summary.showers_per_class == 600 and summary.reference_showers == 600 and summary.trainings == 2
    assert summary.left_out == {"broken": "no finished cell with a cached sample on this machine"}
    assert summary.means["base"] > summary.uniform > summary.means["scaled"]
    stored = tracker.client.get_run(parent).data
    assert MulticlassSummary.from_json(stored.tags[TAG]) == summary
    assert stored.metrics["multiclass/base"] == pytest.approx(summary.means["base"])
    assert json.loads((tmp_path / stage.CACHE_FILE).read_text())["key"] == summary.key

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("trained again although nothing changed")

    monkeypatch.setattr(stage, "multiclass_scores", no_training)
    again = helpers.table(helpers.rows(["base", "scaled"]), dict(helpers.HEADER), parent)
    stage.add_multiclass(again, tmp_path, tracker, said.append)
    assert multiclass_of(again) == summary and "cached result" in said[-1]

    helpers.write_sample(tmp_path, "scaled", 1, scale=1.2)  # a changed sample: the key changes, so it trains again
    with pytest.raises(AssertionError, match="trained again"):
        stage.add_multiclass(helpers.table(helpers.rows(["base", "scaled"]), dict(helpers.HEADER), parent), tmp_path, tracker, said.append)


def test_stage_skips_without_two_rows_and_keeps_no_stale_result(tmp_path: Path) -> None:
    helpers.write_sample(tmp_path, REFERENCE, 0)
    helpers.write_sample(tmp_path, "base", 0)
    table = helpers.table(helpers.rows(["base", "other"], seeds=1), dict(helpers.HEADER))
    stage.add_multiclass(table, tmp_path, Tracker("unused://"), lambda s: None)
    assert multiclass_of(table) is None and "at least 2 needed" in table.header[SKIPPED]
    off = helpers.table(helpers.rows(["base", "other"], seeds=1), {**helpers.HEADER, "evaluate": "false"})
    stage.add_multiclass(off, tmp_path, Tracker("unused://"), lambda s: None)
    assert SKIPPED not in off.header
