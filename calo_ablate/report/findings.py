"""What a reader may conclude from a study table: verdicts per row, declared expectations, stability.

Everything here is computed from the StudyTable's numbers (nothing is written by hand):
- a comparison of one metric of a row with the base: "lower", "higher", "same" (equivalent within the
  metric's margin, or identical values) or "undecided", from report/verdicts.py (paired test and
  equivalence test per row, Holm across rows, the seed design of `--seeds auto`);
- sample quality: the reference log-likelihood ratio's verdict where the study has it (report/llr.py),
  else the comparisons of QUALITY_METRICS (lower is better for each) combined, and replaced by
  "undertrained" when both the row and the base are FAR from the reference (FAR_MARGIN);
- a row with a `compare:` against the row it names (report/paired.py): one line per pair;
- expectations (the registry's `expect:`): held, failed or undecided (EXPECTATION RULES below);
- stability: each row's loss change against the base at 25, 50, 75, 100 % of its training, and the
  Spearman rank correlation of the rows' losses at 50 % with those at 100 % ("could not be measured"
  where it is undefined: all losses equal at one of the two).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

from calo_ablate.report import llr, multiclass
from calo_ablate.report import stats as verdict_stats
from calo_ablate.report.paired import GEN_BATCH, MULTICLASS_NO_TEST, paired_lines, pairs
from calo_ablate.report.pareto import pareto_lines
from calo_ablate.report.table import Row, StudyTable
from calo_ablate.report.verdicts import (
    IDENTICAL,
    NOT_COMPARABLE,
    Verdict,
    margin_key,
    margins_of,
    metric_verdicts,
    pair_verdicts,
    power_text,
)
from calo_ablate.runs.names import BASE, GEN_MS_PREFIX, N_PARAMS, SECONDS_PER_EPOCH, VAL_LOSS, VAL_PREFIX

__all__ = ["Comparison", "compare", "expectation_marks", "far_from_reference", "findings_lines", "pair_lines",
           "quality", "sections", "stability_lines", "timing_metric"]

QUALITY_METRICS = (("sep_mean", "mean separation power"), ("auc_low", "AUC low"), ("auc_high", "AUC high"))
# the verdicts' AUC high where it was measured: the classifier on standardised high-level inputs (own
# variant cls-high-z; a small classifier barely learns from the official unstandardised ones)
STANDARDISED_HIGH = ("auc_high_z", "AUC high (standardised inputs)")
AUC_METRICS = ("auc_low", "auc_high", "auc_high_z")
# a sample is far from the reference when a classifier's AUC exceeds its reference-vs-reference AUC
# (about 0.5) by this much, i.e. tells generated from reference showers apart in ~90 % of pairs or more
FAR_MARGIN = 0.4
FRACTIONS = (0.25, 0.5, 0.75, 1.0)
ASPECT_METRIC = {"loss": VAL_LOSS, "n_params": N_PARAMS, "s_per_epoch": SECONDS_PER_EPOCH}
UNDERTRAINED = "both far from the reference: undertrained, no quality comparison possible at this budget"
FAR_BOTH = "both far from the reference (undertrained at this budget)"
DIRECTION = {"lower": "lower", "higher": "higher", "equivalent": "same", "undecided": "undecided"}


@dataclass(frozen=True)
class Comparison:
    """A row's metric against the base: direction (lower, higher, same, undecided) and its verdict."""

    direction: str
    verdict: Verdict

    @property
    def ratio(self) -> float:
        return self.verdict.ratio

    @property
    def p(self) -> float:
        d = self.verdict.difference
        return d.p if d is not None else math.nan

    @property
    def reason(self) -> str:
        return self.verdict.reason

    def text(self) -> str:
        if self.verdict.reason and self.verdict.difference is None:
            return self.verdict.reason
        return self.verdict.interval_text()


def _base(table: StudyTable) -> Row | None:
    return next((r for r in table.rows if r.name == BASE), None)


def timing_metric(table: StudyTable) -> str | None:
    """The generation-time metric at the largest timed batch size (throughput), if any was logged."""
    timing = [m for m, _ in table.columns if m.startswith(GEN_MS_PREFIX)]
    return max(timing, key=lambda m: int(m.rsplit("b", 1)[1])) if timing else None


def compare(table: StudyTable, row: Row, metric: str) -> Comparison:
    """The row's `metric` against the base's (report/verdicts.py)."""
    if _base(table) is None:
        return Comparison("undecided", Verdict("undecided", reason="no base row"))
    verdict = metric_verdicts(table, metric).get(row.name, Verdict("undecided", reason="not measured"))
    return Comparison(DIRECTION[verdict.word], verdict)


def far_from_reference(table: StudyTable, row: Row) -> bool | None:
    """Whether a classifier tells the row's samples from the reference almost perfectly; None: no AUC."""
    gaps = [float(np.mean(row.values(m))) - table.reference.get(m, 0.5) for m in AUC_METRICS if row.values(m)]
    return max(gaps) >= FAR_MARGIN if gaps else None


def quality_metrics(row: Row) -> list[tuple[str, str]]:
    """(metric, label) the quality verdict combines for the row: QUALITY_METRICS, with AUC high replaced by
    STANDARDISED_HIGH where the row has it."""
    metrics = [STANDARDISED_HIGH if m == "auc_high" and row.values(STANDARDISED_HIGH[0]) else (m, label)
               for m, label in QUALITY_METRICS]
    return [(m, label) for m, label in metrics if row.values(m)]


def quality(table: StudyTable, row: Row) -> tuple[str, str]:
    """(verdict, detail): better / worse / mixed / equivalent / undecided / undertrained. Where the study has
    the reference log-likelihood ratio (report/llr.py), its verdict decides, the metrics' tests follow it."""
    base = _base(table)
    present = quality_metrics(row)
    ratio = llr.llr_verdicts(table).get(row.name)
    if base is None or not (present or ratio):
        return "undecided", "no sample-quality metrics"
    found = {m: compare(table, row, m) for m, _ in present}
    detail = "; ".join(f"{label} {np.mean(row.values(m)):.3g} vs {np.mean(base.values(m)):.3g}, {found[m].text()}"
                       for m, label in present)
    far = bool(far_from_reference(table, row) and far_from_reference(table, base))
    if ratio is not None:
        return ratio.word, "; ".join(p for p in (ratio.text(), detail, FAR_BOTH if far else "") if p)
    if far:
        return "undertrained", UNDERTRAINED
    directions = {c.direction for c in found.values()}
    if "lower" in directions and "higher" in directions:
        return "mixed", detail
    if "lower" in directions:
        return "better", detail
    if "higher" in directions:
        return "worse", detail
    return ("equivalent" if directions == {"same"} else "undecided"), detail


def _margin_text(table: StudyTable, metric: str) -> str:
    spec = margins_of(table).get(margin_key(metric), "1%")
    return f"within ±{spec}" + (" of the base" if isinstance(spec, str) else "")


def _loss_text(table: StudyTable, row: Row) -> str:
    metric = table.losses[0][0]
    c = compare(table, row, metric)
    if c.reason == NOT_COMPARABLE:
        return f"loss not comparable ({NOT_COMPARABLE})"
    if c.reason == IDENTICAL:
        return "loss identical to the base's (the same training)"
    word = {"lower": "lower", "higher": "higher", "same": f"equivalent {_margin_text(table, metric)}"}.get(
        c.direction, "undecided")
    power = power_text(c.verdict)
    return f"loss {word} ({c.text()}" + (f"; {power})" if power else ")")


def _speed_text(table: StudyTable, row: Row) -> str:
    parts = []
    train = compare(table, row, SECONDS_PER_EPOCH)
    if not math.isnan(train.ratio):
        parts.append(f"training {train.ratio:.2f}x the base's time per epoch ({train.verdict.word}, {train.text()})")
    timing = timing_metric(table)
    if timing is not None:
        gen = compare(table, row, timing)
        if not math.isnan(gen.ratio):
            parts.append(f"generation {gen.ratio:.2f}x (batch {timing.rsplit('b', 1)[1]}, {gen.verdict.word}, "
                         f"{gen.text()})")
    params = compare(table, row, N_PARAMS)
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
    lines += multiclass.findings_lines(table) + llr.findings_lines(table)
    lines += pair_lines(table)
    design = table.design
    looks = (f"seeds added until decided: looks at {design.first}..{design.cap} seeds, the loss tested at each "
             f"look against boundaries of the t statistic that spend alpha = {verdict_stats.ALPHA} over the looks "
             "(Pocock-type alpha spending, Lan & DeMets 1983), a decided row's share of alpha going to the rows "
             "still open (Holm, Maurer & Bretz 2013); \"N to decide\" at the last look's level"
             if design is not None and design.sequential else f"alpha = {verdict_stats.ALPHA}")
    rules = ("Rules: each row is compared with the base seed by seed (paired t-test; Welch's test for rows of "
             "another model family and for search rows); Holm's procedure across the rows decides \"lower\" / "
             "\"higher\", and separately \"equivalent\" (two one-sided tests against the margin); "
             f"{looks}; intervals are {round(100 * verdict_stats.CONFIDENCE)} % confidence intervals of the "
             "difference row - base, in % of the base's mean; power: the smallest difference detected with "
             f"{round(100 * verdict_stats.POWER)} % power at the seeds the row has. Margins: "
             + ", ".join(f"{k} {v}" for k, v in margins_of(table).items())
             + ". A loss is compared only where the row keeps the loss's definition (noise schedule, "
             "preprocessing constants); ratios are of the means (row / base).")
    if any(m in dict(QUALITY_METRICS) for m, _ in table.columns):
        rules += (" Sample quality combines mean separation power and the two classifier AUCs (lower is "
                  f"better); \"far from the reference\": an AUC at least {FAR_MARGIN} above its "
                  "reference-vs-reference value.")
        if any(m == STANDARDISED_HIGH[0] for m, _ in table.columns):
            rules += (" AUC high in the verdicts is the classifier on standardised high-level inputs (own variant "
                      "cls-high-z, column \"AUC high (z)\"): this profile's small classifier barely learns from the "
                      "official unstandardised inputs (column \"AUC high\", kept with the official definition).")
    lines += ["", rules]
    return lines


def _pair_measure(table: StudyTable, row: Row, other: Row, metric: str, label: str) -> str:
    """'AUC low 0.61 vs 0.72, lower, -15 % [-21, -9.7], paired p = 0.004' (in % of the other row's mean)."""
    verdict = pair_verdicts(table, metric)[row.name]
    if verdict.reason == "not measured":
        return f"{label} not measured"
    means = f"{np.mean(row.values(metric)):.3g} vs {np.mean(other.values(metric)):.3g}"
    return f"{label} {means}, {verdict.word}, {verdict.interval_text()}"


def _pair_line(table: StudyTable, row: Row, other: Row) -> str:
    """Quality, loss, generation time and multiclass score of a row against the row its `compare:` names."""
    present = quality_metrics(row)
    ratio = llr.pair_llr_verdicts(table).get(row.name)
    parts = [f"sample quality {ratio.word} ({ratio.text()})" if ratio is not None else "",
             f"quality metrics ({'; '.join(_pair_measure(table, row, other, m, label) for m, label in present)})"
             if present else ""]
    loss = pair_verdicts(table, table.losses[0][0])[row.name]
    parts.append("loss not comparable (a row changes the loss's definition, or the model families differ)"
                 if loss.reason == NOT_COMPARABLE else f"loss {loss.word} ({loss.interval_text()})")
    gen = pair_verdicts(table, f"{GEN_MS_PREFIX}{GEN_BATCH}").get(row.name)
    if gen is not None and not math.isnan(gen.ratio):
        parts.append(f"generation {gen.ratio:.2f}x (batch {GEN_BATCH}, {gen.word}, {gen.interval_text()})")
    summary = multiclass.multiclass_of(table)
    if summary is not None and row.name in summary.means and other.name in summary.means:
        parts.append(f"row-pool classifier log p {summary.score_text(row.name)} vs {summary.score_text(other.name)} "
                     f"({MULTICLASS_NO_TEST})")
    return f"- **{row.title} vs {other.title}**: " + "; ".join(p for p in parts if p)


def pair_lines(table: StudyTable) -> list[str]:
    """One Findings line per row with a `compare:` (report/paired.py): against the row it names, intervals in %
    of that row's mean."""
    found = {r.name: r for r in table.rows}
    lines = []
    for row in pairs(table):
        other = found.get(row.compare or "")
        if other is None:
            lines.append(f"- **{row.title} vs {row.compare}**: not measured: no row '{row.compare}' in this study")
        else:
            lines.append(_pair_line(table, row, other))
    return lines


def _direction_of(table: StudyTable, row: Row, aspect: str) -> tuple[str, str]:
    """The measured direction of an expectation's aspect and its evidence."""
    if aspect == "quality":
        verdict, detail = quality(table, row)
        measured = {"better": "better", "worse": "worse", "equivalent": "same"}.get(verdict, "undecided")
        return measured, verdict if verdict in ("undertrained", "mixed") else detail
    losses = {m[len(VAL_PREFIX):]: m for m, _ in table.losses}  # the base family's: voxel_loss, ...
    metric = ASPECT_METRIC.get(aspect) or losses.get(aspect) or (timing_metric(table) if aspect == "gen_time" else None)
    if metric is None:
        return "undecided", "not measured"
    c = compare(table, row, metric)
    ratio = f"{c.ratio:.3g}x the base, " if not math.isnan(c.ratio) else ""
    return c.direction, ratio + c.text()


def expectation_marks(table: StudyTable, row: Row) -> list[tuple[str, str, str, str]]:
    """(aspect, expected, mark, evidence) per expectation of the row; mark: held, failed or undecided.

    EXPECTATION RULES: held when the measured direction is the expected one (an expected "same"
    holds on equivalence within the margin, or identical values); failed when it is another decided
    direction (a difference against "same", the opposite direction, or equivalence against
    "lower"/"higher"); undecided when the measurement cannot decide (no test, neither a difference
    nor equivalence, a loss that is not comparable, undertrained samples).
    """
    marks = []
    for aspect, expected in row.expect.items():
        measured, evidence = _direction_of(table, row, aspect)
        if measured == "undecided":
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
    runs = table.histories.get(row.name, {}).get(VAL_LOSS, [])
    if not runs:
        return None
    return [float(np.mean([_at_fraction(h, f) for h in runs])) for f in FRACTIONS]


def stability_lines(table: StudyTable) -> list[str]:
    """The Stability section: change vs base at FRACTIONS of training and the rank correlation 50 % vs 100 %."""
    base = _base(table)
    at_fractions = {r.name: loss_at_fractions(table, r) for r in table.rows if r.comparable}
    losses = {k: v for k, v in at_fractions.items() if v is not None}
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
    if math.isnan(rho):
        return (f"Ordering of the {len(names)} comparable rows by validation loss at 50 % vs 100 % of training: "
                "could not be measured (the rows' losses are all equal at 50 % or at 100 %, so no rank "
                "correlation).")
    same = list(np.argsort(half, kind="stable")) == list(np.argsort(end, kind="stable"))
    verdict = "the same ordering: the answer had settled by half the budget" if same else \
        "a different ordering: the answer was still changing in the second half of the budget"
    return (f"Ordering of the {len(names)} comparable rows by validation loss at 50 % vs 100 % of training: "
            f"Spearman rank correlation {rho:.2f}, {verdict}.")


def sections(table: StudyTable) -> list[str]:
    """Findings, Paired with another row, quality against generation time, Expectations and Stability, as
    markdown lines for table.md."""
    out = findings_lines(table)
    for part in (paired_lines(table), pareto_lines(table), expectation_lines(table), stability_lines(table)):
        if part:
            out += ["", *part]
    return out
