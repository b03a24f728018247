"""The report's section "Paired with another row": each row with a `compare:` against the row it names.

The rows of one pair are compared seed by seed as a row is with the base (report/verdicts.py
pair_verdicts: paired t-test, Holm across the study's pairs per metric, equivalence within the
metric's margin) on the base family's losses (where both rows keep their definition), every quality
column and the generation time per shower at batch GEN_BATCH; and by the reference log-likelihood ratio of
the row against the other (report/llr.py pair_llr_verdicts: Holm across the pairs). The multiclass score
has one value per row for the whole study (one classifier over all rows), no per-seed values: its two
scores stand side by side without a test. Nothing is shown for a study without `compare:`.
"""

from __future__ import annotations

from calo_ablate.report.llr import LlrVerdict, pair_llr_verdicts
from calo_ablate.report.multiclass import NAME, multiclass_of
from calo_ablate.report.stats import ALPHA, CONFIDENCE
from calo_ablate.report.table import QUALITY, Row, StudyTable, stat_text
from calo_ablate.report.verdicts import NOT_COMPARABLE, Verdict, pair_verdicts
from calo_ablate.runs.names import GEN_MS_PREFIX

__all__ = ["GEN_BATCH", "MULTICLASS_NO_TEST", "pair_metrics", "paired_lines", "pairs"]

GEN_BATCH = 100  # the generation time compared: per shower at this batch size
MULTICLASS_NO_TEST = "no test: one classifier over all rows gives no per-seed values"
HEADERS = ["Ablation", "Compared with", "Metric", "Ablation: mean ± std", "Other: mean ± std",
           f"Difference [{round(100 * CONFIDENCE)} % CI]", "Verdict"]


def pairs(table: StudyTable) -> list[Row]:
    """The rows with a `compare:`, in registry order."""
    return [r for r in table.rows if r.compare is not None]


def pair_metrics(table: StudyTable) -> list[tuple[str, str]]:
    """(metric, label) a pair is tested on: the base family's losses, then the quality columns and the generation
    time at batch GEN_BATCH where the table has them."""
    quality = [(m, label) for m, label in table.columns if m in dict(QUALITY)]
    timing = [(m, label) for m, label in table.columns if m == f"{GEN_MS_PREFIX}{GEN_BATCH}"]
    return [*table.losses, *quality, *timing]


def _difference_text(verdict: Verdict) -> str:
    d = verdict.difference
    return "" if d is None else f"{d.mean:+.3g} [{d.low:+.3g}, {d.high:+.3g}]"


def _verdict_text(verdict: Verdict) -> str:
    d = verdict.difference
    if d is not None:
        return f"{verdict.word} ({'paired' if d.paired else 'Welch'} p = {d.p:.2g})"
    return f"{verdict.word} ({verdict.reason})" if verdict.reason else verdict.word


def _multiclass_cells(table: StudyTable, row: Row, other: Row) -> list[str] | None:
    summary = multiclass_of(table)
    if summary is None:
        return None
    scores = [summary.score_text(r.name) if r.name in summary.means else "not in the pool" for r in (row, other)]
    return [row.title, other.title, f"{NAME} log p", *scores, "", MULTICLASS_NO_TEST]


def _llr_cells(verdict: LlrVerdict | None, row: Row, other: Row) -> list[str] | None:
    if verdict is None:
        return None
    d = verdict.difference
    interval = "" if d is None else f"{d.mean:+.3g} [{d.low:+.3g}, {d.high:+.3g}]"
    test = "fewer than two replicates" if d is None else f"p = {d.p:.2g}, Holm over {verdict.rows} pairs"
    return [row.title, other.title, "LLR (nats, > 0: closer to the reference)", "", "", interval,
            f"{verdict.word} ({test})"]


def paired_lines(table: StudyTable) -> list[str]:
    """The section as markdown lines: one table line per (row, other row, metric); empty without `compare:`."""
    rows = pairs(table)
    if not rows:
        return []
    metrics = pair_metrics(table)
    verdicts = {metric: pair_verdicts(table, metric) for metric, _ in metrics}
    legend = ("Each row with a `compare:` in the registry against the row it names, seed by seed on the seeds "
              "both finished: the mean of the per-seed differences (row - other) with its "
              f"{round(100 * CONFIDENCE)} % confidence interval and the paired t-test (Welch's where either row is "
              "compared with the base by Welch). Per metric, Holm's procedure across the study's pairs decides "
              "\"lower\" / \"higher\" and separately \"equivalent\" (two one-sided tests against the metric's margin, "
              f"a percentage being of the other row's mean), at alpha = {ALPHA}, once on all seeds. Losses only "
              "where both rows keep the loss's definition; generation time in ms per shower at batch "
              f"{GEN_BATCH}. LLR: the reference log-likelihood ratio of the row against the other (the row's samples "
              "in the base's place; one-sample t-test of its seeds x folds replicates, Holm across the pairs; "
              "\"better\" / \"worse\" by its sign), conditional on the trained models of these seeds.")
    lines = ["## Paired with another row (the registry's `compare:`)", "", legend, "",
             "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    found = {r.name: r for r in table.rows}
    ratios = pair_llr_verdicts(table)
    for row in rows:
        other = found.get(row.compare or "")
        if other is None:
            cells = [row.title, f"{row.compare} (no such row)", "", "", "", "",
                     f"not measured: no row '{row.compare}' in this study"]
            lines.append("| " + " | ".join(cells) + " |")
            continue
        for metric, label in metrics:
            verdict = verdicts[metric][row.name]
            if verdict.reason == NOT_COMPARABLE:
                continue
            cells = [row.title, other.title, label, stat_text(row, metric), stat_text(other, metric),
                     _difference_text(verdict), _verdict_text(verdict)]
            lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
        for extra in (_llr_cells(ratios.get(row.name), row, other), _multiclass_cells(table, row, other)):
            if extra is not None:
                lines.append("| " + " | ".join(extra) + " |")
    return lines
