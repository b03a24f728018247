"""The loss-curve plot's statistics and its file, on hand-made histories."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from calo_ablate.report.plots import _panels, mean_band, plot_loss_curves
from calo_ablate.report.table import CellResult, Row, StudyTable, family_losses


def test_mean_band_over_seeds_on_optimizer_steps() -> None:
    runs = [[(14, 2.0), (29, 1.0)], [(14, 4.0), (29, 3.0)]]  # MLflow steps: index of the last step
    x, mean, std = mean_band(runs)
    assert list(x) == [15, 30]
    assert list(mean) == [3.0, 2.0]
    assert np.allclose(std, np.sqrt(2.0))


def test_loss_curves_drawn_from_the_histories(tmp_path: Path) -> None:
    curve = [[(s, 2.0 - s / 100) for s in range(0, 60, 3)]]
    histories = {name: {f"{stage}{loss}": curve for stage in ("train_steps/", "val/")
                        for loss in ("loss", "voxel_loss", "layer_loss")} for name in ("base", "lr")}
    rows = [Row(name, name, [CellResult(0, "FINISHED", {}, {}, "r")]) for name in histories]
    table = StudyTable("t", "p", {}, 1, rows, {}, [], 1.0, histories)
    assert plot_loss_curves(table, tmp_path / "curves.png") == tmp_path / "curves.png"
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    empty = StudyTable("t", "p", {}, 1, rows, {}, [], 1.0, {})
    assert plot_loss_curves(empty, tmp_path / "none.png") is None


def test_a_diverged_run_is_left_out(tmp_path: Path) -> None:
    diverged = [[(0, 2.0), (1, 1.7976931348623157e308)]]  # an infinite loss as MLflow stores it
    histories = {"base": {"val/loss": [[(0, 2.0), (1, 1.9)]]}, "broken": {"val/loss": diverged}}
    rows = [Row(name, name, [CellResult(0, "FINISHED", {}, {}, "r")]) for name in histories]
    table = StudyTable("t", "p", {}, 1, rows, {}, [], 1.0, histories)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow in the axis limits
        assert plot_loss_curves(table, tmp_path / "curves.png") is not None


def test_every_family_of_a_mixed_study_gets_its_own_loss_panels() -> None:
    tags = {"base": ("caloscore_v2", '["loss", "voxel_loss", "layer_loss"]'),
            "flow": ("caloflow", '["loss", "flow1_nll", "flow2_nll"]')}
    rows = [Row(name, name, [CellResult(0, "FINISHED", {}, {"model_family": f, "loss_names": n}, "r")])
            for name, (f, n) in tags.items()]
    table = StudyTable("t", "p", {}, 1, rows, {}, [], 1.0, {}, family_losses=family_losses(rows))
    assert _panels(table) == [("caloscore_v2", "loss"), ("caloscore_v2", "voxel_loss"), ("caloscore_v2", "layer_loss"),
                              ("caloflow", "loss"), ("caloflow", "flow1_nll"), ("caloflow", "flow2_nll")]
    one_family = StudyTable("t", "p", {}, 1, rows[:1], {}, [], 1.0, {}, family_losses=family_losses(rows[:1]))
    assert _panels(one_family) == [(None, "loss"), (None, "voxel_loss"), (None, "layer_loss")]
