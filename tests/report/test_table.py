"""The report's statistics and layout, on hand-made runs (no MLflow needed)."""

from __future__ import annotations

import math

import pytest

from calo_ablate.report.table import (
    CellResult,
    ExtraColumn,
    Row,
    StudyTable,
    display_headers,
    display_rows,
    frame,
    not_measured,
    summarise,
)
from calo_ablate.report.verdicts import table_marks
from calo_ablate.runs.names import REFERENCE

HEADER = {"dataset": "1-photons", "data_source": "synthetic", "profile": "quick", "machine": "test cpu",
          "data_checksums": "{}", "git_revision": "abc", "workers": "1"}


def _cell(seed: int, loss: float, **tags: str) -> CellResult:
    metrics = {"val/loss": loss, "val/voxel_loss": loss / 2, "val/layer_loss": loss / 2, "n_params": 1000,
               "seconds_per_epoch": 2.0, "auc_low": 0.6 + loss / 100}
    return CellResult(seed, "FINISHED", metrics, {"loss_comparable": "true", **tags}, f"run{seed}{loss}")


LOSSES = [("val/loss", "Loss"), ("val/voxel_loss", "Voxel Loss"), ("val/layer_loss", "Layer Loss")]


def _table(rows: list[Row], columns: list[tuple[str, str]]) -> StudyTable:
    return StudyTable("t", "parent", HEADER, len(rows[0].cells), rows, {"auc_low": 0.51}, columns, 120.0, {}, LOSSES)


def test_summaries_have_a_spread_only_with_two_values_of_a_noisy_metric() -> None:
    assert summarise([1.50, 1.51, 1.49]).std == pytest.approx(0.01)
    one = summarise([1.5])
    assert one is not None and math.isnan(one.std)  # one seed: no std
    assert summarise([]) is None
    exact = summarise([1000, 1000], exact=True)
    assert exact is not None and math.isnan(exact.std)


def test_rows_carry_their_verdicts_intervals_and_notes() -> None:
    rows = [
        Row("base", "Base", [_cell(0, 1.00), _cell(1, 1.01), _cell(2, 0.99)]),
        Row("lr", "Increased learning rate", [_cell(0, 0.80), _cell(1, 0.81), _cell(2, 0.79)]),
        Row("noise", "Decrease noise", [_cell(s, 2.4, loss_comparable="false") for s in range(3)]),
        Row("steps", "Fewer time steps", [_cell(s, 1.0 + s / 100 - 0.01, shares_training_of="base")
                                          for s in range(3)]),
        Row("bad", "Broken", [CellResult(0, "FAILED", {}, {"calo_ablate.error": "TrainingError: nan"}, "r"),
                              CellResult(1, "not run", {}, {}, None), CellResult(2, "not run", {}, {}, None)]),
    ]
    table = _table(rows, [("n_params", "Parameters"), ("auc_low", "AUC low")])
    marks = table_marks(table)
    assert marks["lr", "val/loss"].verdict == "lower" and marks["lr", "val/loss"].high < 0  # the interval excludes 0
    assert marks["lr", "val/loss"].low == pytest.approx(-0.2, abs=0.05)
    assert marks["noise", "val/loss"].verdict == "undecided" and math.isnan(marks["noise", "val/loss"].p)  # no test
    assert marks["steps", "val/loss"].verdict == "equivalent"  # the base's very values: the same training
    data = frame(table, marks).set_index("row")
    assert list(data.index) == ["reference", "base", "lr", "noise", "steps", "bad"]  # the noise floor first
    assert data.loc["reference", "auc_low_mean"] == 0.51
    assert (data.loc["base", "val/loss_mean"], data.loc["base", "val/loss_std"]) == (pytest.approx(1.0),
                                                                                     pytest.approx(0.01))
    assert data.loc["base", "n_params_mean"] == 1000 and math.isnan(data.loc["base", "n_params_std"])  # exact
    assert data.loc["lr", "val/loss_mean"] == pytest.approx(0.80)
    assert data.loc["lr", "val/loss_verdict"] == "lower" and data.loc["lr", "val/loss_diff_high"] < 0
    assert not data.loc["noise", "loss_comparable"] and data.loc["noise", "change_vs_base"] == "not comparable"
    assert data.loc["steps", "val/loss_verdict"] == "equivalent"
    assert "shares the base's training" in data.loc["steps", "note"]
    assert data.loc["bad", "failed"] == 1 and data.loc["bad", "finished"] == 0 and data.loc["base", "finished"] == 3
    assert "s0 failed: TrainingError: nan" in data.loc["bad", "note"] and "s1 not run" in data.loc["bad", "note"]
    assert [r["Ablation"] for r in display_rows(table, marks)] == [  # table.md shows the same rows in this order
        "reference vs reference", "Base", "Increased learning rate", "Decrease noise", "Fewer time steps", "Broken"]
    assert not any("spread over seeds" in line for line in not_measured(table))  # three seeds were run


def test_quality_columns_absent_without_evaluation() -> None:
    rows = [Row("base", "Base", [_cell(0, 1.0)])]
    table = _table(rows, [("n_params", "Parameters")])
    table.reference = {}
    assert not any("AUC" in header for header in display_headers(table))
    assert [r["Ablation"] for r in display_rows(table)] == ["Base"]  # no noise-floor row
    assert any("one seed, so no std and no test" in line for line in not_measured(table))
    csv = frame(table)
    assert list(csv["row"]) == ["base"] and csv.loc[0, "val/loss_mean"] == 1.0


def test_the_noise_floor_shows_its_spread_over_draws() -> None:
    rows = [Row("base", "Base", [_cell(0, 1.0), _cell(1, 1.0)])]
    table = _table(rows, [("auc_low", "AUC low")])
    table.reference_std = {"auc_low": 0.02}
    reference = display_rows(table)[0]
    assert reference["AUC low"] == "0.510 ± 0.020" and "mean ± std over independent draws" in reference["Note"]


def test_extra_columns_reach_the_display_and_the_csv() -> None:
    rows = [Row("base", "Base", [_cell(0, 1.0), _cell(1, 1.0)]), Row("lr", "LR", [_cell(0, 0.8), _cell(1, 0.8)])]
    table = _table(rows, [("auc_low", "AUC low")])
    extra = ExtraColumn("Score", {REFERENCE: "floor", "lr": "x"}, {"lr": {"score_mean": 2.5}})
    shown = display_rows(table, extra=[extra])
    assert list(shown[0])[-2:] == ["Score", "Note"]
    assert [r["Score"] for r in shown] == ["floor", "", "x"]
    data = frame(table, extra=[extra]).set_index("row")
    assert data.loc["lr", "score_mean"] == 2.5 and math.isnan(data.loc["base", "score_mean"])


def test_the_change_vs_base_is_the_tested_difference_on_the_seeds_both_have() -> None:
    """--seeds auto gives the base more seeds than a decided row: the change shown is the paired difference
    (seeds 0-2: -0.10, -0.09, -0.10, mean -9.2 % of the base's mean 1.05), inside its interval, not the ratio
    of the means over different seeds (0.903 / 1.05: -14 %)."""
    rows = [Row("base", "Base", [_cell(0, 1.00), _cell(1, 1.01), _cell(2, 0.99), _cell(3, 1.20)]),
            Row("lr", "Increased learning rate", [_cell(0, 0.90), _cell(1, 0.92), _cell(2, 0.89)])]
    table = _table(rows, [])
    shown = display_rows(table, table_marks(table))[-1]
    change = shown["Change vs base [95 % CI]"]
    assert change.startswith("-9.2 % [") and "-14" not in change
