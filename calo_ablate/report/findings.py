"""What a reader may conclude from a study table: verdicts per row, declared expectations, stability.

Everything here is computed from the StudyTable's numbers (nothing is written by hand):
- a comparison of one metric of a row with the base: "lower", "higher", "same" or "undecided", by a
  Welch t-test at p < P_THRESHOLD (two seeds or more on both sides); exact metrics (n_params) and
  rows with the base's very values (a shared training) compare without a test; a loss of a row whose
  loss is not comparable (another noise schedule, ...) is "undecided";
- sample quality: the comparisons of QUALITY_METRICS (lower is better for each) combined, and
  replaced by "undertrained" when both the row and the base are FAR from the reference (FAR_MARGIN);
- expectations (the registry's `expect:`): held, failed or undecided (EXPECTATION RULES below);
- stability: each row's loss change against the base at 25, 50, 75, 100 % of its training, and the
  Spearman rank correlation of the rows' losses at 50 % with those at 100 %.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

from calo_ablate.report.table import EXACT, P_THRESHOLD, Row, StudyTable, summarise
from calo_ablate.runs import record
from calo_ablate.runs.record import BASE

__all__ = ["Comparison", "compare", "expectation_marks", "far_from_reference", "findings_lines", "quality",
           "sections", "stability_lines", "timing_metric"]

QUALITY_METRICS = (("sep_mean", "mean separation power"), ("auc_low", "AUC low"), ("auc_high", "AUC high"))
AUC_METRICS = ("auc_low", "auc_high")
# a sample is far from the reference when a classifier's AUC exceeds its reference-vs-reference AUC
# (about 0.5) by this much, i.e. tells generated from reference showers apart in ~90 % of pairs or more
FAR_MARGIN = 0.4
FRACTIONS = (0.25, 0.5, 0.75, 1.0)
ASPECT_METRIC = {"loss": record.VAL_LOSS, "n_params": record.N_PARAMS, "s_per_epoch": record.SECONDS_PER_EPOCH}
NOT_COMPARABLE = "the row changes a loss-defining field"
IDENTICAL = "identical values: the same training"
UNDERTRAINED = "both far from the reference: undertrained, no quality comparison possible at this budget"


@dataclass(frozen=True)
class Comparison:
    """A row's metric against the base's: direction, ratio of the means, Welch p (nan: no test), why."""

    direction: str  # "lower", "higher", "same" or "undecided"
    ratio: float = math.nan
    p: float = math.nan
    reason: str = ""

    def text(self) -> str:
        if self.reason:
            return self.reason
        return f"p = {self.p:.2g}" if not math.isnan(self.p) else "exact"


def _base(table: StudyTable) -> Row | None:
    return next((r for r in table.rows if r.name == BASE), None)


def timing_metric(table: StudyTable) -> str | None:
    """The generation-time metric at the largest timed batch size (throughput), if any was logged."""
    timing = [m for m, _ in table.columns if m.startswith(record.GEN_MS_PREFIX)]
    return max(timing, key=lambda m: int(m.rsplit("b", 1)[1])) if timing else None


def compare(table: StudyTable, row: Row, metric: str) -> Comparison:
    """The row's `metric` against the base's (see the module docstring for the rules)."""
    base = _base(table)
    if base is None:
        return Comparison("undecided", reason="no base row")
    mine, theirs = row.values(metric), base.values(metric)
    if not mine or not theirs:
        return Comparison("undecided", reason="not measured")
    ratio = float(np.mean(mine) / np.mean(theirs)) if np.mean(theirs) else math.nan
    if metric.startswith(record.VAL_PREFIX) and not row.comparable:
        return Comparison("undecided", ratio, reason=NOT_COMPARABLE)
    if sorted(mine) == sorted(theirs):
        return Comparison("same", ratio, reason=IDENTICAL)
    if metric in EXACT:
        return Comparison("lower" if ratio < 1 else "higher", ratio)
    stat = summarise(mine, theirs)
    if stat is None or math.isnan(stat.p):
        return Comparison("undecided", ratio, reason="one seed: no test")
    if stat.p >= P_THRESHOLD:
        return Comparison("same", ratio, stat.p)
    return Comparison("lower" if ratio < 1 else "higher", ratio, stat.p)


def far_from_reference(table: StudyTable, row: Row) -> bool | None:
    """Whether a classifier tells the row's samples from the reference almost perfectly; None: no AUC."""
    gaps = [float(np.mean(row.values(m))) - table.reference.get(m, 0.5) for m in AUC_METRICS if row.values(m)]
    return max(gaps) >= FAR_MARGIN if gaps else None


def quality(table: StudyTable, row: Row) -> tuple[str, str]:
    """(verdict, detail): better / worse / mixed / indistinguishable / undecided / undertrained."""
    base = _base(table)
    present = [(m, label) for m, label in QUALITY_METRICS if row.values(m)]
    if base is None or not present:
        return "undecided", "no sample-quality metrics"
    if far_from_reference(table, row) and far_from_reference(table, base):
        return "undertrained", UNDERTRAINED
    found = {m: compare(table, row, m) for m, _ in present}
    detail = "; ".join(f"{label} {np.mean(row.values(m)):.3g} vs {np.mean(base.values(m)):.3g}, {found[m].text()}"
                       for m, label in present)
    directions = {c.direction for c in found.values()}
    if "lower" in directions and "higher" in directions:
        return "mixed", detail
    if "lower" in directions:
        return "better", detail
    if "higher" in directions:
        return "worse", detail
    return ("indistinguishable" if directions == {"same"} else "undecided"), detail


def _loss_text(table: StudyTable, row: Row) -> str:
    c = compare(table, row, record.VAL_LOSS)
    if c.reason == NOT_COMPARABLE:
        return f"loss not comparable ({NOT_COMPARABLE})"
    if c.reason == IDENTICAL:
        return "loss identical to the base's (the same training)"
    word = {"lower": "lower", "higher": "higher", "same": "indistinguishable"}.get(c.direction, "undecided")
    change = f"{100 * (c.ratio - 1):+.1f} %, " if not math.isnan(c.ratio) else ""
    return f"loss {word} ({change}{c.text()})"


def _speed_text(table: StudyTable, row: Row) -> str:
    parts = []
    train = compare(table, row, record.SECONDS_PER_EPOCH)
    if not math.isnan(train.ratio):
        parts.append(f"training {train.ratio:.2f}x the base's time per epoch ({train.text()})")
    timing = timing_metric(table)
    if timing is not None:
        gen = compare(table, row, timing)
        if not math.isnan(gen.ratio):
            parts.append(f"generation {gen.ratio:.2f}x (batch {timing.rsplit('b', 1)[1]}, {gen.text()})")
    params = compare(table, row, record.N_PARAMS)
    if not math.isnan(params.ratio) and params.ratio != 1:
        parts.append(f"parameters {params.ratio:.2f}x")
    return "; ".join(parts)


def findings_lines(table: StudyTable) -> list[str]:
    """The Findings section: one line per row but the base."""
    lines = ["## Findings (computed from the numbers above)", ""]
    for row in table.rows:
        if row.name == BASE:
            continue
        if not row.finished():
            lines.append(f"- **{row.title}**: no finished cell")
            continue
        verdict, detail = quality(table, row)
        quality_text = UNDERTRAINED if verdict == "undertrained" else f"sample quality {verdict} ({detail})"
        parts = [_loss_text(table, row), quality_text, _speed_text(table, row)]
        lines.append(f"- **{row.title}**: " + "; ".join(p for p in parts if p))
    rules = (f"Rules: a difference is one where a Welch t-test against the base gives p < {P_THRESHOLD} "
             "(two seeds or more on both sides), otherwise \"indistinguishable\"; a loss is compared only "
             "where the row keeps the loss's definition (noise schedule, preprocessing constants); ratios are "
             "of the means (row / base).")
    if any(m in dict(QUALITY_METRICS) for m, _ in table.columns):
        rules += (" Sample quality combines mean separation power and the two classifier AUCs (lower is "
                  f"better); \"far from the reference\": an AUC at least {FAR_MARGIN} above its "
                  "reference-vs-reference value.")
    lines += ["", rules]
    return lines


def _direction_of(table: StudyTable, row: Row, aspect: str) -> tuple[str, str]:
    """The measured direction of an expectation's aspect and its evidence."""
    if aspect == "quality":
        verdict, detail = quality(table, row)
        measured = {"better": "better", "worse": "worse", "indistinguishable": "same"}.get(verdict, "undecided")
        return measured, verdict if verdict in ("undertrained", "mixed") else detail
    losses = {m[len(record.VAL_PREFIX):]: m for m, _ in table.losses}  # the base family's: voxel_loss, ...
    metric = ASPECT_METRIC.get(aspect) or losses.get(aspect) or (timing_metric(table) if aspect == "gen_time" else None)
    if metric is None:
        return "undecided", "not measured"
    c = compare(table, row, metric)
    ratio = f"{c.ratio:.3g}x the base, " if not math.isnan(c.ratio) else ""
    return c.direction, ratio + c.text()


def expectation_marks(table: StudyTable, row: Row) -> list[tuple[str, str, str, str]]:
    """(aspect, expected, mark, evidence) per expectation of the row; mark: held, failed or undecided.

    EXPECTATION RULES: held when the measured direction is the expected one; failed when it is
    another decided direction (a significant difference against "same", the opposite or no
    difference of an exact metric against "lower"/"higher"); undecided when the measurement cannot
    decide (no test, no significant difference for a "lower"/"higher" expectation of a tested
    metric, a loss that is not comparable, undertrained samples).
    """
    marks = []
    for aspect, expected in row.expect.items():
        measured, evidence = _direction_of(table, row, aspect)
        exact = ASPECT_METRIC.get(aspect) in EXACT or IDENTICAL in evidence
        if measured == "undecided" or (measured == "same" and expected != "same" and not exact):
            mark = "undecided"
        else:
            mark = "held" if measured == expected else "failed"
        marks.append((aspect, expected, mark, f"measured {measured}: {evidence}"))
    return marks


def expectation_lines(table: StudyTable) -> list[str]:
    rows = [r for r in table.rows if r.expect]
    if not rows:
        return []
    lines = ["## Expectations (the registry's `expect:`)", "", "| Ablation | Aspect | Expected | Mark | Evidence |",
             "|---|---|---|---|---|"]
    for row in rows:
        for aspect, expected, mark, evidence in expectation_marks(table, row):
            lines.append(f"| {row.title} | {aspect} | {expected} | **{mark}** | {evidence.replace('|', '/')} |")
    return lines


def _at_fraction(history: list[tuple[int, float]], fraction: float) -> float:
    """The value logged nearest to `fraction` of the run (steps are 0-based indices of the last step)."""
    steps = np.array([s + 1 for s, _ in history], dtype=float)
    target = fraction * steps.max()
    return history[int(np.argmin(np.abs(steps - target)))][1]


def loss_at_fractions(table: StudyTable, row: Row) -> list[float] | None:
    """Mean over the row's runs of val/loss at each of FRACTIONS of training; None without a history."""
    runs = table.histories.get(row.name, {}).get(record.VAL_LOSS, [])
    if not runs:
        return None
    return [float(np.mean([_at_fraction(h, f) for h in runs])) for f in FRACTIONS]


def stability_lines(table: StudyTable) -> list[str]:
    """The Stability section: change vs base at FRACTIONS of training and the rank correlation 50 % vs 100 %."""
    base = _base(table)
    losses = {r.name: loss_at_fractions(table, r) for r in table.rows if r.comparable}
    losses = {k: v for k, v in losses.items() if v is not None}
    if base is None or base.name not in losses:
        return []
    header = [f"{round(100 * f)} %" for f in FRACTIONS]
    lines = ["## Stability of the answer (validation loss, change vs base at a fraction of training)", "",
             "| Ablation | " + " | ".join(header) + " |", "|---|" + "---|" * len(FRACTIONS)]
    for row in table.rows:
        if row.name == BASE or row.name not in losses:
            continue
        changes = [f"{100 * (v / b - 1):+.1f} %" for v, b in zip(losses[row.name], losses[BASE], strict=True)]
        lines.append(f"| {row.title} | " + " | ".join(changes) + " |")
    lines.append("")
    lines.append(ordering_line(losses))
    return lines


def ordering_line(losses: dict[str, list[float]]) -> str:
    """Whether the rows' order by loss at 50 % of training is their order at 100 % (Spearman's rho)."""
    names = sorted(losses)
    if len(names) < 3:
        return f"Ordering at 50 % vs 100 % of training: {len(names)} comparable row(s), too few for a rank correlation."
    half = [losses[n][FRACTIONS.index(0.5)] for n in names]
    end = [losses[n][-1] for n in names]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant inputs give nan with a warning
        rho = float(stats.spearmanr(half, end).statistic)
    same = list(np.argsort(half, kind="stable")) == list(np.argsort(end, kind="stable"))
    verdict = "the same ordering: the answer had settled by half the budget" if same else \
        "a different ordering: the answer was still changing in the second half of the budget"
    return (f"Ordering of the {len(names)} comparable rows by validation loss at 50 % vs 100 % of training: "
            f"Spearman rank correlation {rho:.2f}, {verdict}.")


def sections(table: StudyTable) -> list[str]:
    """Findings, Expectations and Stability, as markdown lines for table.md."""
    out = findings_lines(table)
    for part in (expectation_lines(table), stability_lines(table)):
        if part:
            out += ["", *part]
    return out
