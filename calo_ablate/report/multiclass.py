"""The multiclass metric in the report: its summary as the parent run stores it, its column and Findings line.

The study stage (study/multiclass.py) trains the classifier over the rows' cached samples
(evaluation/multiclass.py) and stores a MulticlassSummary as JSON in the parent run's tag TAG; the report
reads it from there, so `calo-ablate report` shows it from the MLflow store alone.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from calo_ablate.report.table import ExtraColumn, StudyTable
from calo_ablate.runs.names import REFERENCE

__all__ = ["CAVEAT", "NAME", "SKIPPED", "TAG", "MulticlassSummary", "findings_lines", "multiclass_column",
           "multiclass_of"]

TAG = "multiclass"
SKIPPED = "multiclass_skipped"  # table.header only (never stored): why this report has no multiclass result
CAVEAT = ("the score is relative to the pool of rows: adding or removing a row moves every row's value, so "
          "compare it only within this study")
NAME = "Row-pool classifier"  # own metric: not the CaloChallenge's multi-cls (whose network is not reproduced)


@dataclass
class MulticlassSummary:
    """What the report needs of a multiclass run; JSON in the parent run's tag TAG."""

    means: dict[str, float]  # row name -> mean over trainings of the mean log p(row | reference shower)
    stds: dict[str, float]  # ddof 1 over trainings (nan with one)
    n_classes: int
    seed: int
    trainings: int
    seeds: list[int]  # the study seeds whose samples were pooled
    inputs: str
    showers_per_class: int
    reference_showers: int
    seconds: float  # wall time of the computation that produced it
    key: str  # what it was computed from (study/multiclass.py)
    left_out: dict[str, str] = field(default_factory=dict)  # row name -> why it is not in the pool

    @property
    def uniform(self) -> float:
        return -math.log(self.n_classes)

    def to_json(self) -> str:
        return json.dumps(asdict(self), allow_nan=True)

    @classmethod
    def from_json(cls, text: str) -> MulticlassSummary:
        return cls(**json.loads(text))

    def score_text(self, row: str) -> str:
        """The row's score as the report shows it: '-4.200 ± 1.100' (mean ± std over trainings)."""
        mean, std = self.means[row], self.stds[row]
        return f"{mean:.3f}" + (f" ± {std:.3f}" if math.isfinite(std) else "")


def multiclass_of(table: StudyTable) -> MulticlassSummary | None:
    """The study's multiclass summary (the parent run's tag), None when it has none or it is unreadable."""
    text = table.header.get(TAG)
    if not text:
        return None
    try:
        return MulticlassSummary.from_json(text)
    except (json.JSONDecodeError, TypeError):
        return None


def multiclass_column(table: StudyTable) -> ExtraColumn | None:
    """The table's multiclass column (its uniform-guess value in the noise-floor row); None without a summary."""
    summary = multiclass_of(table)
    if summary is None:
        return None
    text = {REFERENCE: f"uniform guess log(1/{summary.n_classes}) = {summary.uniform:.3f}"}
    data: dict[str, dict[str, Any]] = {REFERENCE: {"multiclass_uniform": summary.uniform}}
    for row in table.rows:
        if row.name in summary.means:
            text[row.name] = summary.score_text(row.name)
            data[row.name] = {"multiclass_mean": summary.means[row.name], "multiclass_std": summary.stds[row.name],
                              "multiclass_n": summary.trainings, "multiclass_uniform": summary.uniform}
        elif row.name in summary.left_out:
            text[row.name] = "not in the pool"
    label = f"{NAME} log p (own; uniform {summary.uniform:.3f})"
    return ExtraColumn(label, text, data)


def findings_lines(table: StudyTable) -> list[str]:
    """The Findings line of the multiclass metric (empty without a summary)."""
    summary = multiclass_of(table)
    if summary is None:
        skipped = table.header.get(SKIPPED)
        return [f"- **{NAME}**: not computed: {skipped}"] if skipped else []
    titles = {r.name: r.title for r in table.rows}
    order = sorted(summary.means, key=lambda name: -summary.means[name])
    values = "; ".join(f"{titles.get(n, n)} {summary.score_text(n)}" for n in order)
    left = "; ".join(f"{titles.get(n, n)}: {why}" for n, why in summary.left_out.items())
    seeds = ", ".join(str(s) for s in summary.seeds)
    return [
        f"- **{NAME}** (own metric, not the CaloChallenge's multi-cls; one classifier over the {summary.n_classes} "
        f"rows, each row's score the mean log "
        f"p(row | x) over {summary.reference_showers} reference showers; mean ± std over {summary.trainings} "
        f"classifier trainings, seed {summary.seed}; samples of seeds {seeds}, {summary.showers_per_class} showers "
        f"per row; {summary.inputs} inputs, standardised): {values}; uniform guess log(1/{summary.n_classes}) = "
        f"{summary.uniform:.3f}. No verdict: the spread is the classifier's over trainings on fixed samples (the "
        f"sample-quality verdicts are the reference log-likelihood ratio's). Caveat: {CAVEAT}."
        + (f" Not in the pool: {left}." if left else ""),
    ]
