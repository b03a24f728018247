"""Wall-time estimates of study work from the cell times this study measured so far.

`estimate_seconds` is the one place that turns measured cell times into the wall time of cells still
to run: `--budget` uses it to decide whether another round of `--seeds auto` fits. A cell's time is
its own training plus evaluation (MLflow metrics train_seconds + eval_seconds; a cell sharing another's
training counts its evaluation only); `workers` run cells side by side.
"""

from __future__ import annotations

import re

from calo_ablate.errors import ConfigError
from calo_ablate.report.table import StudyTable
from calo_ablate.runs import record

__all__ = ["estimate_seconds", "measured_cell_seconds", "parse_budget_seconds"]

_BUDGET = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$")
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "": 60.0}


def measured_cell_seconds(table: StudyTable) -> dict[str, list[float]]:
    """Per row, the measured seconds (training + evaluation) of each of its finished cells."""
    out: dict[str, list[float]] = {}
    for row in table.rows:
        for cell in row.finished():
            m = cell.metrics
            if record.TRAIN_SECONDS in m or record.EVAL_SECONDS in m:
                out.setdefault(row.name, []).append(m.get(record.TRAIN_SECONDS, 0.0) + m.get(record.EVAL_SECONDS, 0.0))
    return out


def estimate_seconds(measured: dict[str, list[float]], cells: dict[str, int], workers: int) -> float | None:
    """Wall time of running `cells` (row -> number of new cells) on `workers`: each row's mean measured cell
    time (the study-wide mean for a row not measured yet), summed and shared by the workers; None when
    nothing was measured."""
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
