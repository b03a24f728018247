"""Quality against generation time: the non-dominated set on hand-made points, the table's front column, the
metric choice, the published markers' rule and the plot file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from calo_ablate.errors import ConfigError
from calo_ablate.report.multiclass import TAG, MulticlassSummary
from calo_ablate.report.pareto import (
    PLOT_FILE,
    choose_metric,
    front_column,
    front_rows,
    pareto_front,
    pareto_lines,
    pareto_points,
    published_reason,
)
from calo_ablate.report.plots import plot_pareto
from calo_ablate.report.published import PUBLISHED, published_points
from calo_ablate.report.table import CellResult, Row, StudyTable, frame

SYNTHETIC = {"dataset": "1-photons", "data_source": "synthetic", "profile": "smoke"}
REAL = {**SYNTHETIC, "data_source": "real"}


def test_front_is_the_non_dominated_set_lower_is_better() -> None:
    points = [(1.0, 0.9), (2.0, 0.7), (3.0, 0.8), (4.0, 0.6), (0.5, 0.95)]
    assert pareto_front(points) == [True, True, False, True, True]  # (3, 0.8) is beaten by (2, 0.7)


def test_ties_equal_points_stay_together_and_equal_coordinates_dominate() -> None:
    assert pareto_front([(1.0, 0.8), (1.0, 0.8)]) == [True, True]  # neither is strictly better
    assert pareto_front([(1.0, 0.8), (1.0, 0.9)]) == [True, False]  # as fast, worse
    assert pareto_front([(1.0, 0.8), (2.0, 0.8)]) == [True, False]  # as good, slower
    assert pareto_front([(1.0, 0.8), (1.0, 0.8), (0.5, 0.8)]) == [False, False, True]


def test_front_higher_is_better_for_the_multiclass_score() -> None:
    points = [(1.0, -3.0), (2.0, -2.0), (3.0, -2.5), (0.1, -5.0)]
    assert pareto_front(points, lower_is_better=False) == [True, True, False, True]
    assert pareto_front(points, lower_is_better=True) == [False, False, False, True]


def test_a_non_finite_point_is_refused() -> None:
    with pytest.raises(ValueError, match="not finite"):
        pareto_front([(1.0, float("nan")), (2.0, 0.5)])


def _row(name: str, times: list[float], aucs: list[float], **extra: float) -> Row:
    cells = [CellResult(s, "FINISHED", {"gen_ms_per_shower_b100": t, "auc_low": a, **extra}, {}, f"{name}{s}")
             for s, (t, a) in enumerate(zip(times, aucs, strict=True))]
    return Row(name, name.title(), cells)


def _table(header: dict[str, str], rows: list[Row] | None = None) -> StudyTable:
    rows = rows or [_row("base", [10.0, 12.0], [0.70, 0.72]), _row("fast", [2.0, 2.2], [0.80, 0.84]),
                    _row("slow_bad", [20.0, 22.0], [0.75, 0.77]), _row("best", [30.0, 30.0], [0.60, 0.62]),
                    Row("untimed", "Untimed", [CellResult(0, "FINISHED", {"auc_low": 0.5}, {}, "u")])]
    return StudyTable("t", "parent", dict(header), 2, rows, {"auc_low": 0.49}, [("auc_low", "AUC low")], 1.0)


def test_rows_become_points_and_the_front_column_marks_them() -> None:
    table = _table(SYNTHETIC)
    points, missing = pareto_points(table, "auc_low")
    assert [p.row for p in points] == ["base", "fast", "slow_bad", "best"]
    base = points[0]
    assert (base.time, base.quality) == (pytest.approx(11.0), pytest.approx(0.71))
    assert base.time_std == pytest.approx(1.41421, rel=1e-4) and base.quality_std == pytest.approx(0.0141421, rel=1e-4)
    assert missing == {"Untimed": "no generation time at batch 100"}
    assert [p.row for p in front_rows(table, "auc_low")] == ["fast", "base", "best"]  # fastest first
    column = front_column(table)
    assert column is not None and column.text == {"fast": "front", "base": "front", "best": "front"}
    data = frame(table, extra=[column]).set_index("row")
    assert data.loc[["base", "fast", "slow_bad", "best"], "pareto_front"].tolist() == [True, True, False, True]
    assert pd.isna(data.loc["untimed", "pareto_front"])  # no point, no mark


def test_metric_default_fallback_and_refusal() -> None:
    table = _table(SYNTHETIC)
    assert choose_metric(table) == "auc_low"
    no_low = _table(SYNTHETIC, [Row("base", "Base", [CellResult(0, "FINISHED", {"auc_high_z": 0.6}, {}, "r")])])
    assert choose_metric(no_low) == "auc_high_z"
    table.quality_metric = "fpd"
    assert choose_metric(table) == "fpd"
    table.quality_metric = "auc_mid"
    with pytest.raises(ConfigError, match="'auc_mid': expected one of auc_low"):
        choose_metric(table)


def _summary(means: dict[str, float]) -> MulticlassSummary:
    return MulticlassSummary(means, dict.fromkeys(means, 0.05), len(means), 0, 2, [0, 1], "cls-low", 200, 200,
                             3.0, "k")


def test_the_multiclass_axis_is_higher_is_better() -> None:
    table = _table(SYNTHETIC)
    table.header[TAG] = _summary({"base": -1.2, "fast": -1.9, "slow_bad": -1.0, "best": -1.1}).to_json()
    table.quality_metric = "multiclass"
    points, _ = pareto_points(table, "multiclass")
    assert {p.row: p.quality for p in points}["slow_bad"] == -1.0
    assert [p.row for p in front_rows(table, "multiclass")] == ["fast", "base", "slow_bad"]


def test_published_points_only_on_real_dataset_1_and_for_published_metrics() -> None:
    assert "synthetic stand-in" in (published_reason(_table(SYNTHETIC), "auc_low") or "")
    assert published_reason(_table(REAL), "auc_low") is None
    assert "not recorded as real" in (published_reason(_table({"dataset": "1-photons"}), "auc_low") or "")
    assert "dataset 2" in (published_reason(_table({**REAL, "dataset": "2"}), "auc_low") or "")
    assert "not a published" in (published_reason(_table(REAL), "sep_mean") or "")
    photons = published_points("1-photons", "auc_low") or []
    assert len(photons) == 16 and photons[1][0].submission == "CaloDiffusion" and photons[1][1] == 0.635
    multi = published_points("1-pions", "multiclass") or []
    assert len(multi) == len(PUBLISHED["1-pions"]) - 1  # Geant4 vs Geant4 has no multi-cls
    assert published_points("1-photons", "sep_mean") is None


@pytest.mark.parametrize("header", [SYNTHETIC, REAL], ids=["synthetic", "real"])
def test_the_plot_is_written_and_none_without_points(tmp_path: Path, header: dict[str, str]) -> None:
    path = plot_pareto(_table(header), tmp_path / PLOT_FILE)
    assert path == tmp_path / PLOT_FILE and path.stat().st_size > 10_000
    assert any(f"]({PLOT_FILE})" in line for line in pareto_lines(_table(header)))  # table.md links it
    empty = _table(header, [Row("base", "Base", [CellResult(0, "FINISHED", {"auc_low": 0.5}, {}, "r")])])
    assert plot_pareto(empty, tmp_path / "none.png") is None and not (tmp_path / "none.png").exists()
    assert not any(PLOT_FILE in line for line in pareto_lines(empty))  # no link to a plot that is not there
