"""Sample quality against generation time: the points, the Pareto front and its table column.

One point per row: x = generation time per shower at batch 100 (`gen_ms_per_shower_b100`, mean ± std over
the row's seeds), y = the quality metric (mean ± std over seeds; the multiclass score: mean ± std over
classifier trainings). A row is on the front when no other row is at least as fast and at least as good
and strictly better in one of the two (the standard non-dominated set; two rows with equal points are
both on it). Means decide; the spreads are drawn, not tested.

The default metric is AUC low (DEFAULT_METRIC, see docs/guide/quality-vs-speed.md): an official
CaloChallenge number, so on the real data the published points are the same quantity; every profile
measures it; the classifier sees every voxel. Where a study did not log it, the first of FALLBACK that
it logged is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from calo_ablate.errors import ConfigError
from calo_ablate.report.llr import llr_column
from calo_ablate.report.multiclass import multiclass_column, multiclass_of
from calo_ablate.report.published import HARDWARE, SOURCE, published_points
from calo_ablate.report.table import ExtraColumn, StudyTable, summarise
from calo_ablate.runs.names import GEN_MS_PREFIX, TAG_DATA_SOURCE, TAG_DATASET, TAG_PROFILE

__all__ = ["AXES", "DEFAULT_METRIC", "FALLBACK", "MULTICLASS", "PLOT_FILE", "TIME_BATCH", "TIME_METRIC", "Axis",
           "ParetoPoint", "choose_metric", "front_column", "front_rows", "pareto_front", "pareto_lines", "pareto_points",
           "published_reason", "quality_columns"]

MULTICLASS = "multiclass"
TIME_BATCH = 100
TIME_METRIC = f"{GEN_MS_PREFIX}{TIME_BATCH}"
PLOT_FILE = "pareto.png"


@dataclass(frozen=True)
class Axis:
    metric: str
    label: str
    short: str  # in the table's column header
    lower_is_better: bool


AXES = {a.metric: a for a in (
    Axis("auc_low", "AUC low", "AUC low", True), Axis("auc_high", "AUC high", "AUC high", True),
    Axis("auc_high_z", "AUC high (z, standardised inputs)", "AUC high (z)", True),
    Axis("fpd", "FPD x1e3", "FPD", True), Axis("kpd", "KPD x1e3", "KPD", True),
    Axis("sep_mean", "mean separation power", "mean sep.", True),
    Axis("sep_e_ratio", "separation power E_tot/E_inc", "sep. E_tot/E_inc", True),
    Axis(MULTICLASS, "multiclass mean log p(row | reference shower)", "multi-cls", False))}
DEFAULT_METRIC = "auc_low"
FALLBACK = ("auc_low", "auc_high_z", "auc_high", "sep_mean", "fpd", MULTICLASS)


@dataclass(frozen=True)
class ParetoPoint:
    row: str
    title: str
    time: float  # ms per shower at TIME_BATCH, mean over seeds
    time_std: float  # nan with one seed
    quality: float
    quality_std: float  # over seeds (over classifier trainings for the multiclass score); nan with one


def pareto_front(points: list[tuple[float, float]], lower_is_better: bool = True) -> list[bool]:
    """Whether each (time, quality) point is non-dominated: no other point is at least as fast and at least as
    good, and strictly better in one. Lower time is better; quality by `lower_is_better`. Equal points do not
    dominate one another, so ties stay on the front together."""
    sign = 1.0 if lower_is_better else -1.0
    pts = [(t, sign * q) for t, q in points]
    for t, q in pts:
        if not (math.isfinite(t) and math.isfinite(q)):
            msg = f"pareto_front: point ({t}, {sign * q}) is not finite; expected finite time and quality"
            raise ValueError(msg)
    return [not any(t2 <= t and q2 <= q and (t2 < t or q2 < q) for t2, q2 in pts) for t, q in pts]


def _logged(table: StudyTable, metric: str) -> bool:
    if metric == MULTICLASS:
        return multiclass_of(table) is not None
    return any(row.values(metric) for row in table.rows)


def choose_metric(table: StudyTable) -> str:
    """The quality axis: table.quality_metric when set (it must be one of AXES), else DEFAULT_METRIC, else the
    first of FALLBACK the study logged (DEFAULT_METRIC when none: the plot then says nothing was measured)."""
    requested = table.quality_metric
    if requested is not None:
        if requested not in AXES:
            msg = f"quality metric {requested!r}: expected one of {', '.join(AXES)}"
            raise ConfigError(msg)
        return requested
    return next((m for m in FALLBACK if _logged(table, m)), DEFAULT_METRIC)


def _quality_of(table: StudyTable, metric: str) -> dict[str, tuple[float, float]]:
    """row name -> (mean, std) of the quality metric."""
    if metric == MULTICLASS:
        summary = multiclass_of(table)
        return {} if summary is None else {n: (summary.means[n], summary.stds[n]) for n in summary.means}
    out = {}
    for row in table.rows:
        stat = summarise(row.values(metric))
        if stat is not None:
            out[row.name] = (stat.mean, stat.std)
    return out


def pareto_points(table: StudyTable, metric: str) -> tuple[list[ParetoPoint], dict[str, str]]:
    """(the rows' points, {row title: why it has no point})."""
    quality = _quality_of(table, metric)
    points, missing = [], {}
    for row in table.rows:
        time = summarise(row.values(TIME_METRIC))
        if time is None or row.name not in quality:
            missing[row.title] = ("no finished cell" if not row.finished() else
                                  f"no generation time at batch {TIME_BATCH}" if time is None else
                                  f"no {AXES[metric].label}")
            continue
        points.append(ParetoPoint(row.name, row.title, time.mean, time.std, *quality[row.name]))
    return points, missing


def front_rows(table: StudyTable, metric: str) -> list[ParetoPoint]:
    """The points on the front, fastest first."""
    points, _ = pareto_points(table, metric)
    if not points:
        return []
    on = pareto_front([(p.time, p.quality) for p in points], AXES[metric].lower_is_better)
    return sorted((p for p, f in zip(points, on, strict=True) if f), key=lambda p: (p.time, p.row))


def front_column(table: StudyTable) -> ExtraColumn | None:
    """The table's "front" mark (and table.csv's pareto_front: true / false, absent without a point)."""
    metric = choose_metric(table)
    points, _ = pareto_points(table, metric)
    if not points:
        return None
    on = {p.row for p in front_rows(table, metric)}
    text = {p.row: "front" for p in points if p.row in on}
    data = {p.row: {"pareto_front": p.row in on, "pareto_metric": metric} for p in points}
    return ExtraColumn(f"Pareto front ({AXES[metric].short} vs gen. time b{TIME_BATCH})", text, data)


def published_reason(table: StudyTable, metric: str) -> str | None:
    """Why the published CaloChallenge points are not drawn; None when they are."""
    dataset = table.header.get(TAG_DATASET, "?")
    source = table.header.get(TAG_DATA_SOURCE)
    if source == "synthetic":
        return ("published CaloChallenge points not shown: this study ran on the synthetic stand-in, not the "
                "Geant4 showers they were measured on")
    if source != "real":
        return f"published CaloChallenge points not shown: the study's data source is not recorded as real ({source})"
    if published_points(dataset, metric) is None:
        what = (f"dataset {dataset}" if published_points(dataset, "auc_low") is None
                else f"{AXES[metric].label} (not a published CaloChallenge number)")
        return f"published CaloChallenge points not shown: none stored for {what}"
    return None


def _choice_text(table: StudyTable, metric: str) -> str:
    if table.quality_metric is not None:
        return f" Axis chosen with --quality-metric {metric}."
    why = ("the default: an official number (the same quantity as the published ones), measured by every profile, "
           "on every voxel" if metric == DEFAULT_METRIC else
           f"the study logged no {AXES[DEFAULT_METRIC].label} (the default), so the first of "
           f"{', '.join(FALLBACK)} that it logged")
    return f" Axis {AXES[metric].label}: {why}; `calo-ablate report --quality-metric M` picks another."


def pareto_lines(table: StudyTable) -> list[str]:
    """The report's section on quality against speed: the plot's link, the front, the metric and its rule."""
    metric = choose_metric(table)
    axis = AXES[metric]
    points, missing = pareto_points(table, metric)
    if not points:
        return ["## Quality against generation time", "",
                (f"No Pareto plot: no row has both a sample-quality metric and a generation time at batch "
                 f"{TIME_BATCH} (the study evaluated or timed no samples).")]
    lines = [f"## Quality against generation time ({axis.label} vs ms / shower at batch {TIME_BATCH})", ""]
    front = front_rows(table, metric)
    direction = "lower" if axis.lower_is_better else "higher"
    lines += [f"![{axis.label} against generation time]({PLOT_FILE})", "",
              "Pareto front (fastest first; no other row is at least as fast and at least as good, by the means): "
              + " → ".join(f"{p.title} ({p.time:.3g} ms, {p.quality:.3g})" for p in front) + ".",
              "",
              f"Quality axis: {axis.label} ({direction} is better), mean ± std over "
              + ("classifier trainings" if metric == MULTICLASS else "seeds")
              + f"; time: generation per shower at batch {TIME_BATCH}, mean ± std over seeds, on this study's "
              "machine, model loading excluded."
              + _choice_text(table, metric)]
    if missing:
        lines += ["", "Not on the plot: " + "; ".join(f"{title} ({why})" for title, why in missing.items()) + "."]
    reason = published_reason(table, metric)
    if reason is None:
        lines += ["", f"Grey markers: the published dataset-{table.header.get(TAG_DATASET)} results at "
                      f"batch 100 on CPU and GPU ({SOURCE}; {HARDWARE}; times in ms / shower as inferred), fixed "
                      "reference points, not part of the front."
                      + ("" if table.header.get(TAG_PROFILE) == "full" else
                         f" This study's profile ({table.header.get(TAG_PROFILE)}) evaluates fewer showers "
                         "with a smaller classifier than the published 10,000+ showers and official classifier: "
                         "compare positions, not numbers.")
                      + (" The published multi-cls scores come from the challenge's own pool of submissions (log(1/N) "
                         "= -2.708 for 15 photon, -2.485 for 12 pion submissions): not comparable number for number "
                         "with this study's pool." if metric == MULTICLASS else "")]
    else:
        lines += ["", reason[0].upper() + reason[1:] + "."]
    return lines



def quality_columns(table: StudyTable) -> list[ExtraColumn]:
    """The table's study-wide columns: the multiclass score, the reference log-likelihood ratio and the Pareto
    front's mark (where they exist)."""
    return [c for c in (multiclass_column(table), llr_column(table), front_column(table)) if c is not None]
