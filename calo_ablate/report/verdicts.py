"""Each row's verdict on each metric against the base: for the table, the Findings and `--seeds auto`.

A row's metric is "lower", "higher", "equivalent" (within the metric's margin) or "undecided"
(report/stats.py says how). Rows of the base's family that train their own model compare seed by
seed (paired); rows of another model family and search rows (a best trial) by Welch's test. Holm's
procedure runs across the rows tested on that metric. The study's primary metric (the base family's
total validation loss) follows the study's seed design (`--seeds auto`: the looks and their alpha
spending); every other metric is tested once, on all seeds, at ALPHA. Without a test: a loss of a row
that changes the loss's definition is "undecided" (not comparable); a row with the base's very values
on every seed (a shared training) and an exact metric (the parameter count) compare without a test.

Margins: DEFAULT_MARGINS, overridden per aspect by the registry's `margins:` (parent tag `margins`);
"1%" is a fraction of the base's mean, a number is in the metric's own unit.

A row with a `compare:` is also tested against the row it names (pair_verdicts): the same tests with
that row in the base's place (its mean scales a "1%" margin), Holm across the study's pairs on each
metric, once on all seeds at ALPHA.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from calo_ablate.report import stats
from calo_ablate.report.table import EXACT, Mark, Marks, Row, StudyTable, other_family
from calo_ablate.runs.names import (
    BASE,
    GEN_MS_PREFIX,
    SEARCH_TRIALS,
    SECONDS_PER_EPOCH,
    TAG_SEARCH_PARAM,
    VAL_PREFIX,
)

__all__ = ["DEFAULT_MARGINS", "Verdict", "margin_key", "margins_of", "metric_verdicts", "pair_verdicts", "parse_margin",
           "power_text", "table_marks", "undecided_rows"]

# equivalence margins: "x%" of the base's mean, or an absolute value in the metric's unit
DEFAULT_MARGINS: dict[str, float | str] = {
    "loss": "1%", "voxel_loss": "1%", "layer_loss": "1%",  # the seed study's smallest reported change is 0.2 %
    "s_per_epoch": "5%", "gen_time": "5%",
    "sep_e_ratio": 0.01, "sep_mean": 0.005,  # separation power (0..1)
    "auc_low": 0.02, "auc_high": 0.02, "auc_high_z": 0.02,  # classifier AUCs
    "fpd": "10%", "kpd": "10%",
    "llr": 0.05,  # nats: the reference log-likelihood ratio (report/llr.py, docs/guide/verdicts.md)
}
NOT_COMPARABLE = "the row changes a loss-defining field"
IDENTICAL = "identical values on every seed"


@dataclass(frozen=True)
class Verdict:
    """A row's metric against the base: the verdict, the ratio of the means and the test's evidence."""

    word: str  # lower, higher, equivalent or undecided
    ratio: float = math.nan
    decision: stats.Decision | None = None
    reason: str = ""  # why there is no test (not comparable, identical, exact, one seed, not measured)
    base_mean: float = math.nan

    @property
    def difference(self) -> stats.Difference | None:
        return self.decision.difference if self.decision is not None else None

    def interval_text(self) -> str:
        """'-1.2 % [-2.0, -0.4], paired p = 0.012' (in % of the base's mean where it is not zero); an equivalent
        row adds its two one-sided tests' p."""
        decision = self.decision
        if decision is None or decision.difference is None:
            return self.reason or "no test"
        d = decision.difference
        kind = "paired" if d.paired else "Welch"
        if self.base_mean:
            scale = 100 / abs(self.base_mean)
            text = f"{d.mean * scale:+.2g} % [{d.low * scale:+.2g}, {d.high * scale:+.2g}]"
        else:
            text = f"{d.mean:+.3g} [{d.low:+.3g}, {d.high:+.3g}]"
        look = f" at {decision.look} seeds" if decision.look is not None and decision.level < stats.ALPHA \
            else ""
        same = f", equivalence p = {d.p_equivalent:.2g}" if self.word == "equivalent" and d.sd > 0 else ""
        return f"{text}, {kind} p = {d.p:.2g}{same}{look}"


def parse_margin(spec: float | str) -> tuple[float, bool]:
    """(value, relative): '1%' -> (0.01, True), 0.02 -> (0.02, False); ValueError when neither."""
    if isinstance(spec, str) and spec.strip().endswith("%"):
        value, relative = float(spec.strip()[:-1]) / 100, True
    elif isinstance(spec, int | float) and not isinstance(spec, bool):
        value, relative = float(spec), False
    else:
        msg = f"margin {spec!r}: expected a percentage of the base's mean ('1%') or a number in the metric's unit"
        raise ValueError(msg)
    if not math.isfinite(value) or value <= 0:
        msg = f"margin {spec!r}: must be positive"
        raise ValueError(msg)
    return value, relative


def margin_key(metric: str) -> str:
    """The aspect a metric's margin is set under: val/loss -> loss, gen_ms_per_shower_b100 -> gen_time, ..."""
    if metric.startswith("val/"):
        return metric[len("val/"):]
    if metric == SECONDS_PER_EPOCH:
        return "s_per_epoch"
    if metric.startswith(GEN_MS_PREFIX):
        return "gen_time"
    return metric


def _margin(table: StudyTable, metric: str, base_mean: float) -> float:
    spec = {**DEFAULT_MARGINS, **table.margins}.get(margin_key(metric), "1%")
    value, relative = parse_margin(spec)
    return value * abs(base_mean) if relative else value


def _paired(table: StudyTable, row: Row) -> bool:
    """Seed-by-seed pairing holds for rows of the base's family with their own (non-search) model."""
    searched = any(TAG_SEARCH_PARAM in c.tags or SEARCH_TRIALS in c.metrics for c in row.finished())
    return other_family(table, row) is None and not searched


def _design(table: StudyTable, metric: str) -> stats.Design:
    if table.design is not None and metric == table.losses[0][0]:
        return table.design
    return stats.Design.fixed(max(2, table.seeds))


def _mean(values: Mapping[int, float]) -> float:
    return float(np.mean(list(values.values()))) if values else math.nan


def _ratio(mine: Mapping[int, float], theirs: Mapping[int, float]) -> float:
    theirs_mean = _mean(theirs)
    return _mean(mine) / theirs_mean if theirs_mean else math.nan


def _untested(metric: str, mine: Mapping[int, float], theirs: Mapping[int, float], comparable: bool) -> Verdict | None:
    """The verdict of `mine` against `theirs` where it needs no test (not measured, a loss that is not
    comparable, identical values, an exact metric); None: test it."""
    if not mine or not theirs:
        return Verdict("undecided", reason="not measured")
    mean, theirs_mean, ratio = _mean(mine), _mean(theirs), _ratio(mine, theirs)
    if metric.startswith(VAL_PREFIX) and not comparable:
        return Verdict("undecided", ratio, reason=NOT_COMPARABLE, base_mean=theirs_mean)
    if sorted(mine.values()) == sorted(theirs.values()):
        return Verdict("equivalent", ratio, reason=IDENTICAL, base_mean=theirs_mean)
    if metric in EXACT:
        word = "equivalent" if mean == theirs_mean else "lower" if mean < theirs_mean else "higher"
        return Verdict(word, ratio, reason="exact", base_mean=theirs_mean)
    return None


def _tested(decision: stats.Decision, mine: Mapping[int, float], theirs: Mapping[int, float]) -> Verdict:
    reason = "" if decision.difference is not None else "one seed: no test"
    return Verdict(decision.verdict, _ratio(mine, theirs), decision, reason, _mean(theirs))


def metric_verdicts(table: StudyTable, metric: str) -> dict[str, Verdict]:
    """The verdict of every row but the base on `metric` (see the module docstring)."""
    base = next((r for r in table.rows if r.name == BASE), None)
    if base is None:
        return {r.name: Verdict("undecided", reason="no base row") for r in table.rows if r.name != BASE}
    theirs = base.values_by_seed(metric)
    out: dict[str, Verdict] = {}
    tested: dict[str, dict[int, float]] = {}
    for row in table.rows:
        if row.name == BASE:
            continue
        mine = row.values_by_seed(metric)
        untested = _untested(metric, mine, theirs, row.comparable)
        if untested is None:
            tested[row.name] = mine
        else:
            out[row.name] = untested
    if tested:
        margin = _margin(table, metric, _mean(theirs))
        paired = {name: _paired(table, table.row(name)) for name in tested}
        decided = stats.verdicts(tested, theirs, dict.fromkeys(tested, margin), _design(table, metric), paired)
        out.update({name: _tested(decision, tested[name], theirs) for name, decision in decided.items()})
    return {r.name: out[r.name] for r in table.rows if r.name in out}


def pair_verdicts(table: StudyTable, metric: str) -> dict[str, Verdict]:
    """The verdict of every row with a `compare:` against the row it names, on `metric`, by row name.

    As against the base (paired on the seeds both have; Welch where either row is compared with the
    base by Welch), with Holm across the study's pairs on this metric, once on all seeds at ALPHA; the
    margin is the metric's, a percentage of the other row's mean. A loss is compared only where both
    rows keep its definition and are of one model family; a `compare:` naming no row of the table is
    not measured."""
    out: dict[str, Verdict] = {}
    tested: dict[str, dict[int, float]] = {}
    others: dict[str, dict[int, float]] = {}
    paired: dict[str, bool] = {}
    names = {r.name for r in table.rows}
    for row in table.rows:
        if row.compare is None:
            continue
        if row.compare not in names:
            out[row.name] = Verdict("undecided", reason=f"not measured: no row '{row.compare}' in this study")
            continue
        other = table.row(row.compare)
        mine, theirs = row.values_by_seed(metric), other.values_by_seed(metric)
        comparable = row.comparable and other.comparable and other_family(table, row) == other_family(table, other)
        untested = _untested(metric, mine, theirs, comparable)
        if untested is None:
            tested[row.name], others[row.name] = mine, theirs
            paired[row.name] = _paired(table, row) and _paired(table, other)
        else:
            out[row.name] = untested
    if tested:
        margins = {name: _margin(table, metric, _mean(others[name])) for name in tested}
        design = stats.Design.fixed(max(2, table.seeds))
        decided = stats.verdicts(tested, {}, margins, design, paired, bases=others)
        out.update({name: _tested(decision, tested[name], others[name]) for name, decision in decided.items()})
    return {r.name: out[r.name] for r in table.rows if r.name in out}


def undecided_rows(table: StudyTable) -> list[str]:
    """Rows whose primary loss is testable and still undecided: those `--seeds auto` gives another seed."""
    verdicts = metric_verdicts(table, table.losses[0][0])
    return [name for name, v in verdicts.items() if v.word == "undecided" and not v.reason.startswith(NOT_COMPARABLE)
            and v.reason != "not measured"]


def power_text(verdict: Verdict, short: bool = False) -> str:
    """'detectable at 80 % power with 2 seeds: 1.3 %; about 6 seeds would decide it at the observed
    difference' (short: '1.3 % (2 seeds); 6 to decide'); empty without a test."""
    d = verdict.difference
    if d is None or d.sd == 0:
        return ""
    smallest = stats.detectable_difference(d)
    scale, unit = (100 / abs(verdict.base_mean), " %") if verdict.base_mean else (1.0, "")
    # at the level of the design's last look (ALPHA for a fixed number of seeds; smaller under --seeds auto)
    level = verdict.decision.level if verdict.decision is not None else stats.ALPHA
    needed = stats.seeds_to_decide(d, alpha=level) if verdict.word == "undecided" else None
    beyond = f"> {stats.MAX_SEEDS_SEARCHED}"
    if short:
        text = f"{smallest * scale:.2g}{unit} ({d.n} seeds)"
        if verdict.word == "undecided":
            text += f"; {needed if needed is not None else beyond} to decide"
        return text
    text = f"detectable at {round(100 * stats.POWER)} % power with {d.n} seeds: {smallest * scale:.2g}{unit}"
    if verdict.word == "undecided":
        text += f"; about {needed if needed is not None else beyond} seeds would decide it at the observed difference"
    return text


def margins_of(table: StudyTable) -> Mapping[str, float | str]:
    """The margins in force: the defaults with the registry's overrides."""
    return {**DEFAULT_MARGINS, **table.margins}


def table_marks(table: StudyTable) -> Marks:
    """Every row's Mark on every loss and column of the table (the power line on the primary loss)."""
    marks: dict[tuple[str, str], Mark] = {}
    primary = table.losses[0][0]
    for metric in [m for m, _ in table.losses] + [m for m, _ in table.columns]:
        for name, v in metric_verdicts(table, metric).items():
            d = v.difference
            power = power_text(v, short=True) if metric == primary else ""
            if d is None:
                marks[name, metric] = Mark(v.word if v.reason != NOT_COMPARABLE else "undecided", power=power)
            else:
                marks[name, metric] = Mark(v.word, d.p, d.low, d.high, power, d.mean)
    return marks
