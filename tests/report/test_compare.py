"""A row against the row its `compare:` names (report/paired.py, verdicts.pair_verdicts) on hand-made tables,
the rows tag's `compare` read from an MLflow store, and the Stability line's unmeasurable ordering."""

from __future__ import annotations

import json
from pathlib import Path

from calo_ablate.report.findings import findings_lines, ordering_line, sections
from calo_ablate.report.multiclass import TAG, MulticlassSummary
from calo_ablate.report.paired import MULTICLASS_NO_TEST, paired_lines
from calo_ablate.report.table import CellResult, Row, StudyTable, build_table, frame, markdown
from calo_ablate.report.verdicts import NOT_COMPARABLE, pair_verdicts
from calo_ablate.runs.names import TAG_ROWS, TAG_SEEDS
from calo_ablate.runs.tracker import Tracker

HEADER = {"dataset": "1-photons", "data_source": "synthetic", "profile": "quick", "machine": "test cpu",
          "data_checksums": "{}", "git_revision": "abc", "workers": "1"}
COLUMNS = [("gen_ms_per_shower_b100", "Gen. ms / shower (batch 100)"), ("sep_mean", "Mean sep."),
           ("auc_low", "AUC low")]
SECTION = "## Paired with another row (the registry's `compare:`)"
JITTER = (-0.02, 0.01, -0.005, 0.015)  # per seed (mean 0), shared by every row (common random numbers)


def _row(name: str, auc: float, gen_ms: float = 50.0, compare: str | None = None,
         wobble: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0), comparable: str = "true",
         family: str = "caloscore_v2") -> Row:
    cells = [CellResult(s, "FINISHED",
                        {"val/loss": 1.0 + JITTER[s] + wobble[s], "gen_ms_per_shower_b100": gen_ms * (1 + JITTER[s]),
                         "sep_mean": auc / 4 + JITTER[s] / 10, "auc_low": auc + JITTER[s] + wobble[s]},
                        {"loss_comparable": comparable, "model_family": family}, f"{name}{s}")
             for s in range(len(JITTER))]
    return Row(name, name.replace("_", " ").title(), cells, {}, compare)


def _table(rows: list[Row]) -> StudyTable:
    return StudyTable("t", "parent", dict(HEADER), len(JITTER), rows, {"auc_low": 0.5}, COLUMNS, 60.0)


def _fewstep() -> StudyTable:
    """A base, a naive 8-step row and a distilled 8-step row compared with it (the distilled loss not comparable)."""
    return _table([_row("base", 0.6), _row("naive_8", 0.72, gen_ms=25.0),
                   _row("distilled_8", 0.61, gen_ms=25.0, compare="naive_8", wobble=(0.004, -0.003, 0.001, -0.002),
                        comparable="false")])


def _line(lines: list[str], start: str) -> str:
    return next(line for line in lines if line.startswith(start))


def test_a_row_clearly_below_its_compare_row_is_lower_with_an_interval_excluding_zero() -> None:
    table = _fewstep()
    verdict = pair_verdicts(table, "auc_low")["distilled_8"]
    d = verdict.difference
    assert verdict.word == "lower" and d is not None and d.paired and d.high < 0 and d.p < 0.05
    assert abs(d.mean - (0.61 - 0.72)) < 1e-3
    line = _line(paired_lines(table), "| Distilled 8 | Naive 8 | AUC low |")
    assert f"| {d.mean:+.3g} [{d.low:+.3g}, {d.high:+.3g}] | lower (paired p = {d.p:.2g}) |" in line
    assert "| 0.610 ± 0.0" in line and "| 0.720 ± 0.0" in line  # the two means side by side
    finding = _line(findings_lines(table), "- **Distilled 8 vs Naive 8**")
    assert "AUC low 0.61 vs 0.72, lower, -15 % [" in finding  # in % of the naive row's mean
    assert "loss not comparable" in finding


def test_identical_values_are_equivalent_and_the_loss_is_left_out_where_not_comparable() -> None:
    table = _fewstep()
    gen = pair_verdicts(table, "gen_ms_per_shower_b100")["distilled_8"]  # the same steps: the same times
    assert gen.word == "equivalent" and gen.ratio == 1.0
    lines = paired_lines(table)
    assert "equivalent (identical values on every seed)" in _line(lines, "| Distilled 8 | Naive 8 | Gen. ms")
    assert not any("| Loss |" in line for line in lines)
    assert "generation 1.00x (batch 100, equivalent, identical values on every seed)" in \
        _line(findings_lines(table), "- **Distilled 8 vs Naive 8**")


def test_a_pair_across_model_families_is_unpaired_and_leaves_the_loss_out() -> None:
    table = _table([_row("base", 0.6), _row("flow", 0.65, compare="base", family="caloflow")])
    auc = pair_verdicts(table, "auc_low")["flow"]
    assert auc.difference is not None and not auc.difference.paired
    assert pair_verdicts(table, "val/loss")["flow"].reason == NOT_COMPARABLE
    lines = paired_lines(table)
    assert "(Welch p = " in _line(lines, "| Flow | Base | AUC low |")
    assert not any("| Loss |" in line for line in lines)


def test_a_compare_naming_no_row_is_reported_not_measured() -> None:
    table = _table([_row("base", 0.6), _row("distilled_8", 0.61, compare="naive_9")])
    assert pair_verdicts(table, "auc_low")["distilled_8"].reason == "not measured: no row 'naive_9' in this study"
    assert "not measured: no row 'naive_9' in this study" in _line(paired_lines(table), "| Distilled 8 |")
    assert "- **Distilled 8 vs naive_9**: not measured: no row 'naive_9' in this study" in findings_lines(table)


def test_a_study_without_compare_has_no_section_and_an_unchanged_csv() -> None:
    table = _table([_row("base", 0.6), _row("naive_8", 0.72)])
    assert paired_lines(table) == []
    assert SECTION not in markdown(table, sections(table))
    assert [line.split("**")[1] for line in findings_lines(table) if line.startswith("- **")] == ["Naive 8"]
    compared = _fewstep()
    assert SECTION in markdown(compared, sections(compared))
    assert list(frame(compared).columns) == list(frame(_table(compared.rows[:2])).columns)


def test_holm_runs_across_the_pairs_of_a_metric() -> None:
    """A difference with p between alpha / 3 and alpha is lower as the only pair, undecided among three."""
    edge = {"auc": 0.686, "wobble": (0.006, -0.006, 0.006, -0.006)}
    alone = _table([_row("naive", 0.7), _row("edge", compare="naive", **edge)])
    verdict = pair_verdicts(alone, "auc_low")["edge"]
    assert verdict.difference is not None and 0.05 / 3 < verdict.difference.p < 0.05 and verdict.word == "lower"
    noisy = (0.1, -0.1, 0.1, -0.1)
    crowded = _table([_row("naive", 0.7), _row("edge", compare="naive", **edge),
                      _row("a", 0.8, compare="naive", wobble=noisy), _row("b", 0.8, compare="naive", wobble=noisy)])
    assert pair_verdicts(crowded, "auc_low")["edge"].word == "undecided"


def test_the_multiclass_scores_stand_side_by_side_without_a_test() -> None:
    table = _fewstep()
    summary = MulticlassSummary({"base": -1.4, "naive_8": -10.8, "distilled_8": -4.2}, {"base": 0.1, "naive_8": 1.5,
                                "distilled_8": 1.1}, 3, 3, 3, [0, 1], "cls-low", 400, 800, 1.0, "key")
    table.header[TAG] = summary.to_json()
    line = _line(paired_lines(table), "| Distilled 8 | Naive 8 | Row-pool classifier log p |")
    assert f"| -4.200 ± 1.100 | -10.800 ± 1.500 |  | {MULTICLASS_NO_TEST} |" in line
    assert f"row-pool classifier log p -4.200 ± 1.100 vs -10.800 ± 1.500 ({MULTICLASS_NO_TEST})" in \
        _line(findings_lines(table), "- **Distilled 8 vs Naive 8**")


def test_an_ordering_without_a_rank_correlation_is_not_called_settled() -> None:
    flat = {name: [2.0, 1.5, 1.2, 1.0 + i / 10] for i, name in enumerate("abc")}  # equal at 50 %: rho is nan
    line = ordering_line(flat)
    assert "could not be measured" in line and "settled" not in line


def test_the_rows_tag_carries_compare_into_the_table(tmp_path: Path) -> None:
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    c = tracker.client
    parent = c.create_run(c.create_experiment("t"), tags={
        TAG_SEEDS: "1", TAG_ROWS: json.dumps([{"name": "naive_8", "title": "Naive 8 steps"},
                                              {"name": "distilled_8", "title": "Distilled 8 steps",
                                               "compare": "naive_8"}])}).info.run_id
    table = build_table(tracker, parent)
    assert [(r.name, r.compare) for r in table.rows] == [("naive_8", None), ("distilled_8", "naive_8")]
