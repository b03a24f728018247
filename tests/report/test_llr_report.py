"""The reference log-likelihood ratio in the report: the verdicts (Holm across rows, equivalence within the
margin), the column, the Findings' sample-quality text that it decides, and its stage on a study's cached
samples (the cache, the parent run's tag)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from calo_ablate.report.findings import FAR_BOTH, UNDERTRAINED, findings_lines, quality
from calo_ablate.report.llr import SKIPPED, TAG, LlrSummary, decide, llr_column, llr_of, llr_verdicts
from calo_ablate.report.table import CellResult, Row, StudyTable, frame
from calo_ablate.runs.names import REFERENCE
from calo_ablate.runs.tracker import Tracker
from calo_ablate.study import llr as stage
from tests.report import stage_helpers as helpers

REPLICATES = {
    "worse": [-2.0, -2.5, -1.8, -2.2, -2.1, -1.9],
    "better": [0.4, 0.5, 0.3, 0.45, 0.35, 0.5],
    "same": [0.01, -0.01, 0.005, -0.004, 0.0, 0.002],
    "noisy": [3.0, -4.0, 5.0, -2.0, 1.0, -3.0],
    "one": [-5.0],
}


def test_decide_marks_each_row_with_holm_across_the_tested_rows() -> None:
    found = decide(REPLICATES, margin=0.05)
    assert {name: v.word for name, v in found.items()} == {
        "worse": "worse", "better": "better", "same": "equivalent", "noisy": "undecided", "one": "undecided"}
    worse = found["worse"]
    assert worse.rows == 4 and worse.difference is not None and worse.difference.df == 5
    assert worse.difference.mean == pytest.approx(-2.0833, abs=1e-3)
    assert worse.difference.low < worse.difference.mean < worse.difference.high
    assert worse.text().startswith("reference log-likelihood ratio -2.08 nats [") and "Holm over 4 rows" in worse.text()
    assert found["one"].difference is None and "no test" in found["one"].text()
    # a margin smaller than the replicates' spread allows no equivalence
    assert decide(REPLICATES, margin=0.001)["same"].word == "undecided"
    # Holm: a p between alpha / 2 and alpha decides a row alone, not the smaller p of two rows
    borderline = [-1.0, -0.2, -1.5, 0.3, -0.9, -0.8]
    alone = decide({"a": borderline}, 0.05)["a"]
    assert alone.word == "worse" and alone.difference is not None and 0.025 < alone.difference.p < 0.05
    assert decide({"a": borderline, "b": REPLICATES["noisy"]}, 0.05)["a"].word == "undecided"


def _summary() -> LlrSummary:
    return LlrSummary({k: v for k, v in REPLICATES.items() if k != "one"}, [0, 1], 3, 0, "cls-low", 133, 25.0, "key",
                      {"broken": "no finished cell with a cached sample on this machine"})


def _cell(seed: int, auc: float) -> CellResult:
    return CellResult(seed, "FINISHED", {"auc_low": auc + seed / 100, "sep_mean": 0.3}, {}, f"r{seed}{auc}")


def _far_table(header: dict[str, str]) -> StudyTable:
    """Every row far from the reference (AUC about 0.95 against a noise floor of 0.5): undertrained."""
    names = ["base", "worse", "better", "same", "noisy", "broken"]
    rows = [Row(n, n.title(), [_cell(s, 0.95) for s in range(2)]) for n in names]
    return StudyTable("t", "parent", header, 2, rows, {"auc_low": 0.5}, [("auc_low", "AUC low")], 1.0)


def test_the_ratio_decides_sample_quality_where_both_are_far_from_the_reference() -> None:
    without = _far_table(dict(helpers.HEADER))
    assert quality(without, without.row("worse")) == ("undertrained", UNDERTRAINED)
    table = _far_table({**helpers.HEADER, TAG: _summary().to_json()})
    verdict, detail = quality(table, table.row("worse"))
    assert verdict == "worse" and detail.startswith("reference log-likelihood ratio -2.08 nats [")
    assert "AUC low 0.955 vs 0.955" in detail and FAR_BOTH in detail  # the metric's test and the remark stay
    assert [quality(table, table.row(n))[0] for n in ("better", "same", "noisy")] == ["better", "equivalent",
                                                                                       "undecided"]
    assert "within ±0.05 nats as this classifier resolves it" in quality(table, table.row("same"))[1]
    lines = findings_lines(table)
    worse_line = next(line for line in lines if line.startswith("- **Worse**"))
    assert "sample quality worse (reference log-likelihood ratio -2.08 nats" in worse_line
    assert UNDERTRAINED not in worse_line
    procedure = next(line for line in lines if line.startswith("- **Reference log-likelihood ratio**"))
    assert "3 disjoint folds of 133" in procedure and "6 replicates" in procedure and "(df 5)" in procedure
    assert "±0.05 nats" in procedure and "conditional on the trained models" in procedure
    assert "broken: no finished cell" in procedure


def test_column_csv_fields_and_the_registry_margin() -> None:
    table = _far_table({**helpers.HEADER, TAG: _summary().to_json()})
    assert llr_of(table) == _summary()
    column = llr_column(table)
    assert column is not None and column.label.startswith("LLR vs base (nats)")
    assert column.text["worse"].endswith(" worse") and column.text["worse"].startswith("-2.08 [")
    assert column.text["broken"] == "not computed" and "base" not in column.text
    data = frame(table, extra=[column]).set_index("row")
    assert data.loc["same", "llr_verdict"] == "equivalent" and data.loc["worse", "llr_n"] == 6
    table.margins = {"llr": 0.001}  # the registry's `margins: {llr: ...}`, in nats
    assert llr_verdicts(table)["same"].word == "undecided"


@pytest.mark.usefixtures("one_thread")
def test_stage_computes_caches_and_publishes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tracker, parent = helpers.study_parent(tmp_path)
    helpers.write_base_and_scaled(tmp_path)
    rows = helpers.rows(["base", "scaled"])
    for cell in rows[0].cells:
        cell.params["evaluate.classifier.trainings"] = "3"  # 3 folds per seed
    table = helpers.table(rows, dict(helpers.HEADER), parent)
    said: list[str] = []
    stage.add_llr(table, tmp_path, tracker, said.append)
    summary = llr_of(table)
    assert summary is not None and summary.seeds == [0, 1] and summary.folds == 3
    assert list(summary.replicates) == ["scaled"] and len(summary.replicates["scaled"]) == 6
    assert summary.showers_per_fold == 100
    assert sum(summary.replicates["scaled"]) < 0  # voxels x 1.3: further from the reference than the base
    stored = tracker.client.get_run(parent).data
    assert LlrSummary.from_json(stored.tags[TAG]) == summary
    assert stored.metrics["llr/scaled"] < 0
    assert json.loads((tmp_path / stage.CACHE_FILE).read_text())["key"] == summary.key

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("trained again although nothing changed")

    monkeypatch.setattr(stage, "llr_replicates", no_training)
    again = helpers.table(rows, dict(helpers.HEADER), parent)
    stage.add_llr(again, tmp_path, tracker, said.append)
    assert llr_of(again) == summary and "cached result" in said[-1]


def test_stage_skips_without_the_base(tmp_path: Path) -> None:
    for entry in (REFERENCE, "one", "two"):
        helpers.write_sample(tmp_path, entry, 0, n=30)
    table = helpers.table(helpers.rows(["one", "two"], seeds=1), dict(helpers.HEADER))
    stage.add_llr(table, tmp_path, Tracker("unused://"), lambda s: None)
    assert llr_of(table) is None and "the base has no cached sample" in table.header[SKIPPED]


@pytest.mark.usefixtures("one_thread")
def test_a_row_with_compare_is_also_compared_with_the_row_it_names(tmp_path: Path) -> None:
    tracker, parent = helpers.study_parent(tmp_path)
    for entry, scale in ((REFERENCE, 1.0), ("base", 1.0), ("naive", 1.6), ("student", 1.0)):
        helpers.write_sample(tmp_path, entry, 0, scale=scale)
    rows = helpers.rows(["base", "naive", "student"], seeds=1)
    rows[2].compare = "naive"
    table = helpers.table(rows, dict(helpers.HEADER), parent)
    stage.add_llr(table, tmp_path, tracker, lambda s: None)
    summary = llr_of(table)
    assert summary is not None and summary.pair_of == {"student": "naive"}
    assert len(summary.pairs["student"]) == 2  # 1 seed x the classifier's 2 trainings as folds
    assert sum(summary.pairs["student"]) > 0  # the student (voxels x 1) is closer to the reference than x 1.6
    assert tracker.client.get_run(parent).data.metrics["llr/student_vs_naive"] > 0
    rows[2].compare = None  # the pairs are part of the key: without them the ratio is computed again
    again = helpers.table(rows, dict(helpers.HEADER), parent)
    stage.add_llr(again, tmp_path, tracker, lambda s: None)
    assert (found := llr_of(again)) is not None and found.pairs == {} and found.key != summary.key
