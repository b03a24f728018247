"""Verdicts, expectation marks and stability on hand-made metric tables (no MLflow needed)."""

from __future__ import annotations

import pytest

from calo_ablate.report.findings import (
    UNDERTRAINED,
    compare,
    expectation_lines,
    expectation_marks,
    findings_lines,
    loss_at_fractions,
    quality,
    sections,
    stability_lines,
    timing_metric,
)
from calo_ablate.report.stats import detectable_difference, seeds_to_decide
from calo_ablate.report.table import CellResult, Row, StudyTable
from calo_ablate.report.verdicts import NOT_COMPARABLE, margins_of

HEADER = {"dataset": "1-photons", "data_source": "synthetic", "profile": "quick", "machine": "test cpu",
          "data_checksums": "{}", "git_revision": "abc", "workers": "1"}
COLUMNS = [("n_params", "Parameters"), ("seconds_per_epoch", "s / epoch"), ("gen_ms_per_shower_b100", "Gen."),
           ("sep_mean", "Mean sep."), ("auc_low", "AUC low"), ("auc_high", "AUC high")]
REFERENCE = {"sep_mean": 0.05, "auc_low": 0.49, "auc_high": 0.48}


def _cell(seed: int, loss: float, auc: float = 0.6, seconds: float = 2.0, params: int = 1000,
          wobble: tuple[float, ...] = (0.0, 0.0, 0.0), **tags: str) -> CellResult:
    jitter = (seed - 1) / 100  # seeds 0, 1, 2: -0.01, 0, +0.01 (shared by every row: common random numbers)
    metrics = {"val/loss": loss + jitter + wobble[seed], "val/voxel_loss": loss / 2, "val/layer_loss": loss / 2,
               "n_params": params, "seconds_per_epoch": seconds + jitter, "gen_ms_per_shower_b100": seconds + jitter,
               "sep_mean": auc / 4 + jitter / 10, "auc_low": auc + jitter / 10, "auc_high": auc + jitter / 10}
    return CellResult(seed, "FINISHED", metrics, {"loss_comparable": "true", **tags}, f"run{seed}-{loss}-{auc}")


def _row(name: str, loss: float, expect: dict[str, str] | None = None, **kwargs: object) -> Row:
    return Row(name, name.title(), [_cell(s, loss, **kwargs) for s in range(3)], expect or {})


LOSSES = [("val/loss", "Loss"), ("val/voxel_loss", "Voxel Loss"), ("val/layer_loss", "Layer Loss")]


def _table(rows: list[Row], histories: dict | None = None) -> StudyTable:
    return StudyTable("t", "parent", HEADER, 3, rows, REFERENCE, COLUMNS, 60.0, histories or {}, LOSSES)


def test_loss_lower_higher_equivalent_undecided_and_not_comparable() -> None:
    base = _row("base", 1.0)
    rows = [base, _row("lower", 0.8), _row("higher", 1.3), _row("same", 1.001, wobble=(0.0005, -0.0005, 0.0)),
            _row("unsure", 1.01, wobble=(0.05, -0.05, 0.0)),
            Row("noise", "Noise", [_cell(s, 2.4, loss_comparable="false") for s in range(3)])]
    table = _table(rows)
    lower = compare(table, rows[1], "val/loss")
    assert lower.direction == "lower" and lower.ratio == pytest.approx(0.8)
    assert lower.verdict.difference is not None and lower.verdict.difference.paired
    assert lower.verdict.difference.high < 0 and lower.p < 0.05
    higher = compare(table, rows[2], "val/loss")
    assert higher.direction == "higher" and higher.ratio == pytest.approx(1.3)
    same = compare(table, rows[3], "val/loss")
    assert same.direction == "same" and same.p > 0.05 and same.verdict.word == "equivalent"
    d = same.verdict.difference
    assert d is not None and -0.01 < d.low < d.high < 0.01  # inside the default margin, 1 % of the base's loss
    unsure = compare(table, rows[4], "val/loss")
    d = unsure.verdict.difference
    assert unsure.direction == "undecided" and d is not None and d.low < 0 < d.high and d.n == 3
    assert detectable_difference(d) > abs(d.mean)  # too few seeds to see a difference this small...
    needed = seeds_to_decide(d)
    assert needed is None or needed > 3  # ...and more would be needed to decide it
    noise = compare(table, rows[5], "val/loss")
    assert noise.direction == "undecided" and noise.reason == NOT_COMPARABLE
    assert [line.split("**")[1] for line in findings_lines(table) if line.startswith("- **")] == [
        "Lower", "Higher", "Same", "Unsure", "Noise"]  # one Findings line per row but the base


def test_holm_across_rows_is_stricter_than_one_test() -> None:
    """A difference with p between alpha / 3 and alpha is decided alone and undecided among three tested rows."""
    wobble = (0.004, -0.004, 0.0)
    alone = _table([_row("base", 1.0), _row("edge", 1.012, wobble=wobble)])
    edge = compare(alone, alone.rows[1], "val/loss")
    assert 0.05 / 3 < edge.p < 0.05 and edge.direction == "higher"
    crowded = _table([_row("base", 1.0), _row("edge", 1.012, wobble=wobble),
                      _row("a", 1.2, wobble=(0.3, -0.3, 0.0)), _row("b", 1.2, wobble=(0.3, -0.3, 0.0))])
    assert compare(crowded, crowded.rows[1], "val/loss").direction == "undecided"


def test_rows_of_another_family_compare_unpaired() -> None:
    base = _row("base", 1.0, model_family="caloscore_v2")
    other = _row("other", 1.0, auc=0.7, model_family="calodiffusion")
    verdict = compare(_table([base, other]), other, "auc_low").verdict
    assert verdict.difference is not None and not verdict.difference.paired
    assert compare(_table([base, _row("mine", 0.9)]), _row("mine", 0.9), "val/loss").verdict.difference.paired


def test_one_seed_gives_no_verdict_and_a_shared_training_is_the_same() -> None:
    base = Row("base", "Base", [_cell(0, 1.0)])
    one = Row("one", "One", [_cell(0, 0.5)])
    shared = Row("shared", "Shared", [_cell(0, 1.0, shares_training_of="base")])
    table = StudyTable("t", "p", HEADER, 1, [base, one, shared], REFERENCE, COLUMNS, 1.0)
    assert compare(table, one, "val/loss").direction == "undecided"
    assert compare(table, shared, "val/loss").direction == "same"


def test_quality_undertrained_when_both_far_from_the_reference() -> None:
    table = _table([_row("base", 1.0, auc=0.93), _row("worse", 1.0, auc=0.97), _row("good", 1.0, auc=0.55)])
    verdict, detail = quality(table, table.rows[1])
    assert verdict == "undertrained" and detail == UNDERTRAINED
    assert UNDERTRAINED in next(line for line in findings_lines(table) if "**Worse**" in line)
    # the base alone is far: the comparison stands
    assert quality(table, table.rows[2])[0] == "better"


def test_quality_better_worse_and_equivalent_near_the_reference() -> None:
    table = _table([_row("base", 1.0, auc=0.6), _row("worse", 1.0, auc=0.7), _row("same", 1.0, auc=0.6005)])
    assert quality(table, table.rows[1])[0] == "worse"
    assert quality(table, table.rows[2])[0] == "equivalent"


def test_speed_and_parameters_as_ratios() -> None:
    table = _table([_row("base", 1.0), _row("small", 1.0, seconds=0.5, params=250)])
    small = table.rows[1]
    train = compare(table, small, "seconds_per_epoch")
    assert train.ratio == pytest.approx(0.25, rel=0.02) and train.direction == "lower"
    assert timing_metric(table) == "gen_ms_per_shower_b100"  # the largest timed batch
    assert compare(table, small, "gen_ms_per_shower_b100").ratio == pytest.approx(0.25, rel=0.02)
    params = compare(table, small, "n_params")
    assert params.ratio == 0.25 and params.direction == "lower" and params.reason == "exact"


def test_expectations_held_failed_and_undecided() -> None:
    expect = {"loss": "lower", "s_per_epoch": "same", "n_params": "lower", "quality": "better", "layer_loss": "higher"}
    rows = [_row("base", 1.0, auc=0.93), _row("fast", 0.8, expect, seconds=0.5, auc=0.95),
            Row("noise", "Noise", [_cell(s, 2.4, loss_comparable="false") for s in range(3)], {"loss": "higher"})]
    table = _table(rows)
    marks = {aspect: mark for aspect, _, mark, _ in expectation_marks(table, rows[1])}
    assert marks == {"loss": "held",          # significantly lower
                     "s_per_epoch": "failed",  # significantly faster, expected the same
                     "n_params": "failed",     # exactly equal, expected fewer
                     "quality": "undecided",   # both far from the reference
                     "layer_loss": "failed"}   # lower (0.4 against 0.5 on every seed), expected higher
    assert expectation_marks(table, rows[2])[0][2] == "undecided"  # a loss that is not comparable
    expectations, report = expectation_lines(table), sections(table)
    start = report.index(expectations[0])
    assert report[start:start + len(expectations)] == expectations  # the report holds the Expectations section


def _history(losses: list[float]) -> list[tuple[int, float]]:
    return [(15 * (i + 1) - 1, v) for i, v in enumerate(losses)]  # validated after steps 15, 30, 45, 60


def test_stability_changes_at_fractions_and_rank_correlation() -> None:
    rows = [_row("base", 1.0), _row("a", 1.0), _row("b", 1.0), _row("c", 1.0)]
    settled = {"base": [2.0, 1.8, 1.6, 1.5], "a": [1.0, 0.9, 0.8, 0.75], "b": [3.0, 2.7, 2.4, 2.25],
               "c": [2.2, 2.0, 1.8, 1.6]}
    table = _table(rows, {n: {"val/loss": [_history(v)] * 2} for n, v in settled.items()})
    assert loss_at_fractions(table, table.rows[0]) == settled["base"]  # at 25, 50, 75 and 100 % of the steps
    assert loss_at_fractions(table, table.rows[1]) == settled["a"]  # -50 % against the base throughout
    # the rank correlation exists only as the section's sentence
    assert "Spearman rank correlation 1.00, the same ordering" in stability_lines(table)[-1]
    changing = {**settled, "c": [2.2, 2.0, 1.4, 1.2]}  # c overtakes the base in the second half
    table = _table(rows, {n: {"val/loss": [_history(v)]} for n, v in changing.items()})
    last = stability_lines(table)[-1]
    assert "Spearman rank correlation 0.80, a different ordering" in last


def test_registry_margins_set_the_equivalence() -> None:
    rows = [_row("base", 1.0), _row("same", 1.001, wobble=(0.0005, -0.0005, 0.0))]
    table = _table(rows)
    assert compare(table, rows[1], "val/loss").verdict.word == "equivalent"  # default: 1 % of the base's loss
    table.margins = {"loss": "0.05%"}
    assert compare(table, rows[1], "val/loss").verdict.word == "undecided"
    assert margins_of(table)["loss"] == "0.05%" and margins_of(table)["s_per_epoch"] == "5%"  # the rest: defaults
