"""The report's statistics and layout, on hand-made runs (no MLflow needed)."""

from __future__ import annotations

import math

import pytest

from calo_ablate.report.table import CellResult, Row, StudyTable, frame, markdown, summarise
from calo_ablate.report.verdicts import table_marks

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


def test_markdown_rows_deltas_marks_and_notes() -> None:
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
    text = markdown(table, marks=table_marks(table))
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| Ablation | Loss | Voxel Loss | Layer Loss | Change vs base [95 % CI] | Loss: power | "
                               "Parameters | AUC low")
    assert lines[1].startswith("| reference vs reference") and "0.510" in lines[1]
    base, lr, noise, steps, bad = lines[2:]
    assert "1.0000 ± 0.0100 |" in base
    assert "0.8000 ± 0.0100 ↓ |" in lr and "-20.0 % [-" in lr
    assert "not comparable" in noise and "2.4000 ↑" not in noise  # no test on an incomparable loss
    assert "1.0000 ± 0.0100 ≈ |" in steps  # the base's very values: the same training
    assert "shares the base's training" in steps
    assert "s0 failed: TrainingError: nan" in bad and "s1 not run" in bad
    assert "1,000 |" in base  # parameters without a spread
    assert "spread over seeds" not in text  # three seeds were run


def test_quality_columns_absent_without_evaluation() -> None:
    rows = [Row("base", "Base", [_cell(0, 1.0)])]
    table = _table(rows, [("n_params", "Parameters")])
    table.reference = {}
    text = markdown(table)
    assert "AUC" not in text and "reference vs reference" not in text
    assert "one seed, so no std and no test" in text
    csv = frame(table)
    assert list(csv["row"]) == ["base"] and csv.loc[0, "val/loss_mean"] == 1.0


def test_the_noise_floor_shows_its_spread_over_draws() -> None:
    rows = [Row("base", "Base", [_cell(0, 1.0), _cell(1, 1.0)])]
    table = _table(rows, [("auc_low", "AUC low")])
    table.reference_std = {"auc_low": 0.02}
    line = next(line for line in markdown(table).splitlines() if line.startswith("| reference vs reference"))
    assert "0.510 ± 0.020" in line and "mean ± std over independent draws" in line
