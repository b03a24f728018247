"""Wall-time estimates of study work: from the cell times this study measured so far, or from this
machine's measured rates before any cell ran.

`estimate_seconds` is the one place that turns cell times into the wall time of cells still to run:
each row's mean cell time times its new cells, summed and shared by the `workers`, who run cells side
by side. Its cell times come from one of two sources:
- measured (`measured_cell_seconds`): this study's finished cells, training plus evaluation (MLflow
  metrics train_seconds + eval_seconds; a cell sharing another's training counts its evaluation only).
  `--budget` of `--seeds auto` uses these once the first round has run: they are this study's own
  architectures under this machine's actual load, so they win over the rates;
- from the rates (`rated_cell_seconds`): before the first cell, `ablate` prices every cell of the plan
  with this machine's cached rates (calo_ablate/runs/rates.py, measured by calo_ablate/bench/rates.py):
  training showers x epochs at the family's training seconds per shower (a validation shower at a third
  of it: the forward pass only), the evaluation showers plus the generation-timing showers at its
  generation seconds per shower at batch 100, each scaled from the measured architecture to the row's
  by FLOPs; the classifier trainings of the metrics from their FLOPs at a tenth of the matmul rate;
  shared trainings count once (in the cell that owns them), a search row's training once per trial,
  the reference noise floor as one cell of its classifier trainings.
Not counted: FPD/KPD, PRDC and the histograms (under a second per quick cell), data loading, process
start-up and the report (about 2 % of the quick study), waits of derived cells for their teachers.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping

from calo_ablate.config import Config, EvaluateConfig
from calo_ablate.errors import ConfigError
from calo_ablate.evaluation.classifier import OFFICIAL_SPLIT, split_counts
from calo_ablate.geometry import load_geometry
from calo_ablate.report.table import StudyTable
from calo_ablate.runs.names import (
    EVAL_SECONDS,
    REFERENCE,
    TAG_ESTIMATE_BASIS,
    TAG_ESTIMATED_SECONDS,
    TRAIN_SECONDS,
)
from calo_ablate.runs.rates import FamilyRates, MachineRates, RowFlops, family_entry
from calo_ablate.study.context import threads_per_worker
from calo_ablate.study.plan import Cell, Plan

__all__ = ["classifier_seconds", "estimate_seconds", "estimate_tags", "measured_cell_seconds", "minutes_text",
           "parse_budget_seconds", "plan_estimate_seconds", "promise_warning", "rated_cell_seconds", "sizes_that_fit"]

_BUDGET = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$")
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "": 60.0}
VALIDATION_COST = 1 / 3  # a validation shower: the forward pass alone, a third of a training step's work
# float64 MLP trainings of the metrics (batches of 100 to 1,000): 8-11 GFLOP/s of a 90 GFLOP/s fp32 matmul rate
# (the example quick study's reference noise floor, table.csv seconds/cls-*, full epochs)
CLASSIFIER_MATMUL_FRACTION = 0.1


def measured_cell_seconds(table: StudyTable) -> dict[str, list[float]]:
    """Per row, the measured seconds (training + evaluation) of each of its finished cells."""
    out: dict[str, list[float]] = {}
    for row in table.rows:
        for cell in row.finished():
            m = cell.metrics
            if TRAIN_SECONDS in m or EVAL_SECONDS in m:
                out.setdefault(row.name, []).append(m.get(TRAIN_SECONDS, 0.0) + m.get(EVAL_SECONDS, 0.0))
    return out


def estimate_seconds(measured: dict[str, list[float]], cells: dict[str, int], workers: int) -> float | None:
    """Wall time of running `cells` (row -> number of new cells) on `workers`: each row's mean cell time
    (measured_cell_seconds, or rated_cell_seconds before any cell ran; the study-wide mean for a row without
    one), summed and shared by the workers; None when there is no cell time at all."""
    every = [s for times in measured.values() for s in times]
    if not every:
        return None
    overall = sum(every) / len(every)
    total = sum(n * (sum(measured[r]) / len(measured[r]) if measured.get(r) else overall) for r, n in cells.items())
    return total / max(1, workers)


def parse_budget_seconds(text: str) -> float:
    """'30m', '2h', '90s' or '45' (minutes) as seconds; ConfigError otherwise."""
    match = _BUDGET.match(text)
    if match is None or float(match.group(1)) <= 0:
        msg = f"--budget {text!r}: expected a positive wall time such as 30m, 2h or 90s"
        raise ConfigError(msg)
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def classifier_seconds(evaluate: EvaluateConfig, dataset: str, n_per_class: int, matmul_gflop_per_s: float) -> float:
    """Seconds of the metrics' classifier trainings on `n_per_class` showers of each sample: every DNN mode's
    trainings x epochs over its training split, 6 FLOPs per weight and shower (forward and backward), each
    mode priced at the voxel inputs (an upper bound for cls-high), at CLASSIFIER_MATMUL_FRACTION of the matmul
    rate. cls-resnet (datasets 2 and 3) is not counted."""
    c = evaluate.classifier
    n_train, _, _ = split_counts(dataset, n_per_class)
    weights = (load_geometry(dataset).n_voxels + 1) * c.hidden + (c.num_hidden_layers - 1) * c.hidden ** 2 + c.hidden
    modes = [m for m in evaluate.classifiers if m != "cls-resnet"]
    gflop = len(modes) * c.trainings * c.epochs * 2 * n_train * 6 * weights / 1e9
    return gflop / (CLASSIFIER_MATMUL_FRACTION * matmul_gflop_per_s)


def _timing_showers(config: Config) -> int:
    """Showers generated again by the generation timing (batch sizes other than the sample's own)."""
    n, batch, ev = config.evaluate.n_events, config.sample.batch_size, config.evaluate
    sizes = {b for b in ev.timing_batch_sizes if b <= n and not (b == batch and n % batch == 0)}
    return sum(b * min(ev.timing_repeats, n // b) for b in sizes)


def _train_seconds(config: Config, family: FamilyRates, flops: RowFlops) -> float:
    per_shower = family.train_seconds_per_shower * flops.train_gflop_per_shower / family.train_gflop_per_shower
    showers = config.data.max_train_events or OFFICIAL_SPLIT[config.data.dataset][2]  # the training file's size
    validation = round(showers * config.data.val_fraction)
    return config.train.max_epochs * per_shower * (showers - validation + VALIDATION_COST * validation)


def _eval_seconds(config: Config, family: FamilyRates, flops: RowFlops, matmul_gflop_per_s: float) -> float:
    if not config.evaluate.enabled:
        return 0.0
    per_shower = family.gen_seconds_per_shower * flops.gen_gflop_per_shower / family.gen_gflop_per_shower
    showers = config.evaluate.n_events + _timing_showers(config)
    return showers * per_shower + classifier_seconds(config.evaluate, config.data.dataset, config.evaluate.n_events,
                                                     matmul_gflop_per_s)


def _cell_seconds(plan: Plan, cell: Cell, family: FamilyRates, flops: RowFlops, matmul: float) -> float:
    """A cell's training (when it owns it; a search: once per trial) plus its evaluation."""
    trains = plan.training_owner(cell).name == cell.name
    trainings = cell.ablation.search.trials if cell.ablation.search else 1
    train = trainings * _train_seconds(cell.config, family, flops) if trains else 0.0
    return train + _eval_seconds(cell.config, family, flops, matmul)


def rated_cell_seconds(plan: Plan, rates: MachineRates, flops: Mapping[str, RowFlops]) -> dict[str, list[float]] | None:
    """Per row (and REFERENCE for the noise floor), the seconds of each of its cells from the rates;
    flops: each row's FLOPs (by ablation name). None when a row's family or FLOPs are missing."""
    out: dict[str, list[float]] = {}
    for cell in plan.cells:
        family = rates.families.get(family_entry(cell.config.model.family, plan.registry.dataset))
        row = flops.get(cell.ablation.name)
        if family is None or row is None:
            return None
        out.setdefault(cell.ablation.name, []).append(
            _cell_seconds(plan, cell, family, row, rates.matmul_gflop_per_s))
    base = plan.base_cell(0).config
    if base.evaluate.enabled:
        floor = classifier_seconds(base.evaluate, plan.registry.dataset, base.evaluate.n_events, rates.matmul_gflop_per_s)
        out[REFERENCE] = [base.evaluate.noise_floor_samples * floor]
    return out


def plan_estimate_seconds(plan: Plan, rates: MachineRates, flops: Mapping[str, RowFlops], workers: int) -> float | None:
    """The wall time of every cell of `plan` on `workers` from the rates (estimate_seconds of rated_cell_seconds)."""
    cells = rated_cell_seconds(plan, rates, flops)
    return None if cells is None else estimate_seconds(cells, {row: len(s) for row, s in cells.items()}, workers)


def _with_seeds(plan: Plan, seeds: int) -> Plan:
    return dataclasses.replace(plan, cells=tuple(c for c in plan.cells if c.seed < seeds))


def sizes_that_fit(plan: Plan, rates: MachineRates, flops: Mapping[str, RowFlops], workers: int, limit_s: float,
                   others: Mapping[str, tuple[Plan, Mapping[str, RowFlops]]] | None = None) -> list[str]:
    """What would fit in `limit_s` by the same estimate: the most seeds below the plan's ('--seeds 1 (12 min)'),
    the fewest more workers among those the cores give the rates' threads per worker, and each of
    `others` (name -> its plan and FLOPs, e.g. '--profile smoke') with the plan's workers."""
    fits = []
    for seeds in range(plan.seeds - 1, 0, -1):
        seconds = plan_estimate_seconds(_with_seeds(plan, seeds), rates, flops, workers)
        if seconds is not None and seconds <= limit_s:
            fits.append(f"--seeds {seeds} ({minutes_text(seconds)})")
            break
    for more in range(workers + 1, (os.cpu_count() or 1) // rates.key.threads + 1):
        if threads_per_worker(more) != rates.key.threads:  # the runner would split the cores otherwise
            continue
        seconds = plan_estimate_seconds(plan, rates, flops, more)
        if seconds is not None and seconds <= limit_s:
            fits.append(f"--workers {more} ({minutes_text(seconds)})")
            break
    for name, (other, other_flops) in (others or {}).items():
        seconds = plan_estimate_seconds(other, rates, other_flops, workers)
        if seconds is not None and seconds <= limit_s:
            fits.append(f"{name} ({minutes_text(seconds)})")
    return fits


def minutes_text(seconds: float) -> str:
    """'21 min', '4.5 min' below 10 minutes, '40 s' below 2 minutes."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 600 else f"{seconds / 60:.0f} min"


def promise_warning(estimate_s: float, profile: str, promise_minutes: float, fits: list[str]) -> str:
    """The warning `ablate` prints when its estimate exceeds the profile's promise, naming what would fit."""
    fit = f"; within it: {', '.join(fits)}" if fits else "; no smaller size of this study fits it on this machine"
    return (f"warning: estimated {minutes_text(estimate_s)} exceeds profile {profile}'s promise of "
            f"{promise_minutes:g} min (study.promise_minutes){fit}")


def estimate_tags(estimate_s: float | None, basis: str) -> dict[str, str]:
    """The parent run's tags of the estimate made before the start (none when there was none)."""
    if estimate_s is None:
        return {}
    return {TAG_ESTIMATED_SECONDS: f"{estimate_s:.0f}", TAG_ESTIMATE_BASIS: basis}
