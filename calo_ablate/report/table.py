"""The study's table from its MLflow runs alone: results/<study>/table.md and table.csv.

Rows: "reference vs reference" (the metrics' noise floor) first, then one row per ablation in registry
order (the parent run's `rows` tag). Every value is the mean +- std over the row's finished seeds,
with the verdict against the base that the caller passes as Marks (report/verdicts.py: a paired test,
equivalence within a margin, Holm across rows): "↓" lower, "↑" higher, "≈" equivalent. The change vs
base is that of the mean validation loss, in %, with the 95 % interval of the difference, replaced by
"not comparable" when the row changes a loss-defining field (tag loss_comparable).
Sample-quality and timing columns exist only when some cell has those metrics. table.csv holds the
same numbers unrounded and every other logged metric (all separation powers, KPD, JSD, ...).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from calo_ablate.atomic import atomic_write
from calo_ablate.report.stats import Design
from calo_ablate.runs.names import (
    BASE,
    CURVE_PREFIX,
    GEN_MS_PREFIX,
    INVOCATION_SECONDS,
    MAX_TAG_CHARS,
    N_PARAMS,
    REFERENCE,
    REFERENCE_PREFIX,
    REFERENCE_STD_PREFIX,
    SEARCH_BEST_VALUE,
    SEARCH_PRUNED,
    SEARCH_TRIALS,
    SECONDS_PER_EPOCH,
    TAG_ABLATION,
    TAG_CLI_SET,
    TAG_CURVE_METRICS,
    TAG_DATA_CHECKSUMS,
    TAG_DATA_SOURCE,
    TAG_DATASET,
    TAG_ERROR,
    TAG_ESTIMATE_BASIS,
    TAG_ESTIMATED_SECONDS,
    TAG_EVALUATE,
    TAG_GIT_REVISION,
    TAG_LOSS_COMPARABLE,
    TAG_LOSS_NAMES,
    TAG_MACHINE,
    TAG_MARGINS,
    TAG_MODEL_FAMILY,
    TAG_PROFILE,
    TAG_ROWS,
    TAG_SEARCH_PARAM,
    TAG_SEED,
    TAG_SEED_DESIGN,
    TAG_SEEDS,
    TAG_SEEDS_BY_ROW,
    TAG_SHARES_TRAINING_OF,
    TAG_SHARES_TRAINING_RUN,
    TAG_STUDY,
    TAG_WORKERS,
    TEACHER_TRAIN_SECONDS,
    VAL_LOSS,
    VAL_PREFIX,
    val_losses,
)
from calo_ablate.runs.tracker import Tracker

SYMBOLS = {"lower": "↓", "higher": "↑", "equivalent": "≈"}
LOSSES = [(VAL_LOSS, "Loss")]  # runs without a loss_names tag: the total every family logs
QUALITY = [("sep_e_ratio", "Sep. E_tot/E_inc"), ("sep_mean", "Mean sep."), ("auc_low", "AUC low"),
           ("auc_high", "AUC high"), ("auc_high_z", "AUC high (z)"), ("fpd", "FPD x1e3"), ("kpd", "KPD x1e3")]
LOSS_FORMAT = ".4f"  # every val/<loss>
FORMATS = {SECONDS_PER_EPOCH: ".3g", "sep_e_ratio": ".3g", "sep_mean": ".3g", "auc_low": ".3f",
           "auc_high": ".3f", "auc_high_z": ".3f", "fpd": ".3g", "kpd": ".3g"}
# how the base's model starts and is updated (model.init, train.lr_horizon_steps, ...): a header line
UPDATE_RULE = [("model.init", "init"), ("train.lr_horizon_steps", "LR cosine horizon (steps)"),
               ("model.layer.dropout_in_training", "layer-net dropout in training"),
               ("train.ema_start", "EMA start")]
BUDGET = [("data.max_train_events", "training showers (train + validation)"), ("train.max_epochs", "max epochs"),
          ("train.early_stopping_patience", "early-stopping patience"), ("sample.steps", "sampling steps"),
          ("evaluate.n_events", "evaluation showers")]
# columns whose spread over seeds is not sampling noise: no std, no test
EXACT = {N_PARAMS}


@dataclass
class CellResult:
    """One cell's run as the report sees it."""

    seed: int
    status: str  # FINISHED, FAILED, RUNNING, KILLED, or "not run"
    metrics: dict[str, float]
    tags: dict[str, str]
    run_id: str | None
    params: dict[str, str] = field(default_factory=dict)

    @property
    def training_run(self) -> str | None:
        """The run whose metric histories hold this cell's training curves."""
        return self.tags.get(TAG_SHARES_TRAINING_RUN) or self.run_id


@dataclass
class Row:
    name: str
    title: str
    cells: list[CellResult] = field(default_factory=list)
    expect: dict[str, str] = field(default_factory=dict)  # the registry's `expect:` (aspect -> direction)
    compare: str | None = None  # the registry's `compare:`: the row this one is also tested against

    def finished(self) -> list[CellResult]:
        return [c for c in self.cells if c.status == "FINISHED"]

    def values(self, metric: str) -> list[float]:
        return list(self.values_by_seed(metric).values())

    def values_by_seed(self, metric: str) -> dict[int, float]:
        return {c.seed: c.metrics[metric] for c in self.finished()
                if metric in c.metrics and math.isfinite(c.metrics[metric])}

    @property
    def comparable(self) -> bool:
        return all(c.tags.get(TAG_LOSS_COMPARABLE, "true") == "true" for c in self.cells if c.run_id)


@dataclass
class Stat:
    mean: float
    std: float  # nan with one value
    n: int


@dataclass(frozen=True)
class Mark:
    """A row's verdict on one metric as the table shows it (made by report/verdicts.py)."""

    verdict: str  # lower, higher, equivalent or undecided
    p: float = math.nan  # the test's p (paired or Welch); nan without a test
    low: float = math.nan  # 95 % interval of the difference row - base
    high: float = math.nan
    power: str = ""  # the power line (detectable difference, seeds to decide)
    mean: float = math.nan  # the difference row - base the interval is of (paired: on the seeds both have)


Marks = Mapping[tuple[str, str], Mark]  # (row name, metric) -> Mark


@dataclass(frozen=True)
class ExtraColumn:
    """A column computed for the whole study rather than per cell (the multiclass score, the Pareto front's
    mark): its cells' text in table.md and its fields in table.csv, by row name (REFERENCE for the
    noise-floor row)."""

    label: str
    text: dict[str, str]
    data: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class StudyTable:
    study: str
    parent_run_id: str
    header: dict[str, str]
    seeds: int
    rows: list[Row]
    reference: dict[str, float]  # the noise floor's metrics (no prefix)
    columns: list[tuple[str, str]]  # (metric, label) shown in table.md, after the loss columns
    wall_seconds: float
    # row name -> metric (curve_names) -> one [(MLflow step, value), ...] per training run of the row's cells
    histories: dict[str, dict[str, list[list[tuple[int, float]]]]] = field(default_factory=dict)
    losses: list[tuple[str, str]] = field(default_factory=lambda: list(LOSSES))  # the base family's
    # the loss names of each family in the study, the base's first (the figure's panels): family -> names
    family_losses: dict[str, list[str]] = field(default_factory=dict)
    margins: dict[str, float | str] = field(default_factory=dict)  # the registry's equivalence margins
    design: Design | None = None  # `--seeds auto`'s looks; None: a fixed number of seeds
    reference_std: dict[str, float] = field(default_factory=dict)  # the noise floor's spread over its draws
    quality_metric: str | None = None  # the Pareto plot's quality axis (report/pareto.py); None: its default
    written: datetime = field(default_factory=lambda: datetime.now(UTC))  # the header's "Written:" time

    def row(self, name: str) -> Row:
        return next(r for r in self.rows if r.name == name)


def _json_tag(tags: dict[str, str], key: str, default: Any) -> Any:
    """A JSON-valued tag of the parent run; `default` when absent or unreadable (e.g. truncated)."""
    try:
        return json.loads(tags[key])
    except (KeyError, json.JSONDecodeError):
        return default


def summarise(values: list[float], exact: bool = False) -> Stat | None:
    """Mean and std (ddof 1; none for an exact metric); None without values."""
    if not values:
        return None
    arr = np.asarray(values, dtype=float)
    std = float(arr.std(ddof=1)) if len(arr) > 1 and not exact else math.nan
    return Stat(float(arr.mean()), std, len(arr))


def _cell_results(tracker: Tracker, parent_run_id: str, seeds: int) -> dict[str, list[CellResult]]:
    by_row: dict[str, list[CellResult]] = {}
    for run in tracker.child_runs(parent_run_id):
        tags = dict(run.data.tags)
        seed = int(tags.get(TAG_SEED, -1))
        if TAG_ABLATION not in tags or not 0 <= seed < seeds:
            continue
        by_row.setdefault(tags[TAG_ABLATION], []).append(
            CellResult(seed, run.info.status, dict(run.data.metrics), tags, run.info.run_id, dict(run.data.params)))
    return by_row


def build_table(tracker: Tracker, parent_run_id: str) -> StudyTable:
    """Read the parent run and its cell runs; nothing but the MLflow store is needed."""
    c = tracker.client
    parent = c.get_run(parent_run_id)
    tags = dict(parent.data.tags)
    seeds = int(tags.get(TAG_SEEDS, "1"))
    seeds_by_row = _json_tag(tags, TAG_SEEDS_BY_ROW, {})
    seeds = max([seeds, *seeds_by_row.values()])
    cells = _cell_results(tracker, parent_run_id, seeds)
    rows = []
    for entry in _json_tag(tags, TAG_ROWS, []):
        found = {cr.seed: cr for cr in cells.get(entry["name"], [])}
        row_seeds = int(seeds_by_row.get(entry["name"], seeds))
        row_cells = [found.get(s, CellResult(s, "not run", {}, {}, None)) for s in range(row_seeds)]
        rows.append(Row(entry["name"], entry["title"], row_cells, dict(entry.get("expect") or {}),
                        entry.get("compare")))
    reference = {k[len(REFERENCE_PREFIX):]: v for k, v in parent.data.metrics.items()
                 if k.startswith(REFERENCE_PREFIX)}
    reference_std = {k[len(REFERENCE_STD_PREFIX):]: v for k, v in parent.data.metrics.items()
                     if k.startswith(REFERENCE_STD_PREFIX)}
    metrics_seen = {m for r in rows for cr in r.finished() for m in cr.metrics} | set(reference)
    timing = sorted((m for m in metrics_seen if m.startswith(GEN_MS_PREFIX)),
                    key=lambda m: int(m[len(GEN_MS_PREFIX):]))
    columns = [(N_PARAMS, "Parameters"), (SECONDS_PER_EPOCH, "s / epoch")]
    if TEACHER_TRAIN_SECONDS in metrics_seen:  # derived rows: what their teachers' trainings cost
        columns.append((TEACHER_TRAIN_SECONDS, "Teacher train s"))
    columns += [(m, f"Gen. ms / shower (batch {m[len(GEN_MS_PREFIX):]})") for m in timing]
    columns += [(m, label) for m, label in QUALITY if m in metrics_seen]
    history = c.get_metric_history(parent_run_id, INVOCATION_SECONDS)
    wall = float(sum(m.value for m in history))
    design = _json_tag(tags, TAG_SEED_DESIGN, None)
    return StudyTable(tags.get(TAG_STUDY, parent.info.run_name), parent_run_id, tags, seeds, rows, reference,
                      columns, wall, {r.name: _row_histories(c, r) for r in rows}, loss_columns(rows),
                      family_losses(rows), _json_tag(tags, TAG_MARGINS, {}),
                      Design(int(design["first"]), int(design["cap"])) if design else None, reference_std)


def curve_names(row: Row) -> list[str]:
    """The metrics the report draws for a row: its family's val/<loss> and step curve (its cells' tags
    loss_names and curve_metrics; runs without curve_metrics: train_steps/<loss>)."""
    names = json.loads(_tag_of(row, TAG_LOSS_NAMES) or json.dumps([m[len(VAL_PREFIX):] for m, _ in LOSSES]))
    curves = _tag_of(row, TAG_CURVE_METRICS)
    steps = json.loads(curves) if curves else [f"{CURVE_PREFIX}{n}" for n in names]
    return [*val_losses(names), *steps]


def _row_histories(c: MlflowClient, row: Row) -> dict[str, list[list[tuple[int, float]]]]:
    """The curve_names histories of each training run behind the row's finished or failed cells, in step order."""
    runs = sorted({cell.training_run for cell in row.cells
                   if cell.training_run and cell.status in ("FINISHED", "FAILED")})
    out: dict[str, list[list[tuple[int, float]]]] = {}
    for metric in curve_names(row):
        for run_id in runs:
            history = sorted(c.get_metric_history(run_id, metric), key=lambda m: (m.step, m.timestamp))
            if history:
                out.setdefault(metric, []).append([(m.step, m.value) for m in history])
    return out


def _tag_of(row: Row | None, tag: str) -> str | None:
    return next((c.tags[tag] for c in row.cells if tag in c.tags), None) if row is not None else None


def loss_label(name: str) -> str:
    """'voxel_loss' -> 'Voxel Loss'."""
    return name.replace("_", " ").title()


def loss_columns(rows: list[Row]) -> list[tuple[str, str]]:
    """(metric, label) of the losses the base's model family logs (its cells' loss_names tag; val/loss alone
    for runs without it)."""
    names = _tag_of(next((r for r in rows if r.name == BASE), None), TAG_LOSS_NAMES)
    if names is None:
        return list(LOSSES)
    return [(f"{VAL_PREFIX}{name}", loss_label(name)) for name in json.loads(names)]


def family_losses(rows: list[Row]) -> dict[str, list[str]]:
    """{model family: its loss names} of the rows' cells, the base's family first."""
    ordered = sorted(rows, key=lambda r: r.name != BASE)
    out: dict[str, list[str]] = {}
    for row in ordered:
        family, names = _tag_of(row, TAG_MODEL_FAMILY), _tag_of(row, TAG_LOSS_NAMES)
        if family is not None and names is not None:
            out.setdefault(family, json.loads(names))
    return out


def other_family(table: StudyTable, row: Row) -> str | None:
    """The row's model family when it is not the base's (compared by sample quality and speed only)."""
    base = _tag_of(next((r for r in table.rows if r.name == BASE), None), TAG_MODEL_FAMILY)
    mine = _tag_of(row, TAG_MODEL_FAMILY)
    return mine if mine is not None and base is not None and mine != base else None


def row_stats(row: Row, metrics: list[str]) -> dict[str, Stat]:
    out = {}
    for metric in metrics:
        stat = summarise(row.values(metric), exact=metric in EXACT)
        if stat is not None:
            out[metric] = stat
    return out


def _fmt_number(metric: str, value: float) -> str:
    if metric == N_PARAMS or abs(value) >= 1000:  # no exponents for large numbers
        return f"{round(value):,}"
    return format(value, LOSS_FORMAT if metric.startswith(VAL_PREFIX) else FORMATS.get(metric, ".3g"))


def stat_text(row: Row, metric: str) -> str:
    """The row's mean ± std of `metric` over its seeds as the table shows it; empty without values."""
    return _fmt_stat(metric, summarise(row.values(metric), exact=metric in EXACT))


def _fmt_stat(metric: str, stat: Stat | None, mark: Mark | None = None) -> str:
    if stat is None:
        return ""
    text = _fmt_number(metric, stat.mean)
    if not math.isnan(stat.std):
        text += f" ± {_fmt_number(metric, stat.std)}"
    symbol = SYMBOLS.get(mark.verdict, "") if mark is not None else ""
    return text + (f" {symbol}" if symbol else "")


def delta_text(table: StudyTable, row: Row, marks: Marks | None = None) -> str:
    """The change of the mean loss in % of the base's, with the 95 % interval of the difference and the verdict's
    symbol; where tested, the tested difference (paired: on the seeds row and base both have)."""
    if row.name == BASE:
        return ""
    if not row.comparable:
        return "not comparable"
    total = table.losses[0][0]
    base = table.row(BASE).values(total) if any(r.name == BASE for r in table.rows) else []
    mine = row.values(total)
    if not base or not mine or np.mean(base) == 0:
        return ""
    mark = (marks or {}).get((row.name, total))
    scale = 100 / abs(float(np.mean(base)))
    if mark is not None and not math.isnan(mark.low):  # the tested difference and its interval, on one set of seeds
        text = f"{mark.mean * scale:+.1f} % [{mark.low * scale:+.1f}, {mark.high * scale:+.1f}]"
    else:
        text = f"{100 * (np.mean(mine) / np.mean(base) - 1):+.1f} %"
    if mark is not None and mark.verdict in SYMBOLS:
        text += f" {SYMBOLS[mark.verdict]}"
    return text


def note_text(table: StudyTable, row: Row) -> str:
    notes = []
    family = other_family(table, row)
    if family is not None:
        own = ", ".join(table.family_losses.get(family, [])) or "loss"
        notes.append(f"model family {family}: its own losses ({own}) are in table.csv; compare sample quality "
                     "and speed")
    shared = {c.tags[TAG_SHARES_TRAINING_OF] for c in row.cells if c.tags.get(TAG_SHARES_TRAINING_OF)}
    for owner in sorted(shared):
        title = next((r.title for r in table.rows if r.name == owner), owner)
        notes.append("shares the base's training" if owner == BASE else f"shares the training of '{title}'")
    for cell in row.cells:
        if cell.status == "FAILED":
            notes.append(f"s{cell.seed} failed: {cell.tags.get(TAG_ERROR, 'unknown error')}")
        elif cell.status != "FINISHED":
            notes.append(f"s{cell.seed} {'not run' if cell.run_id is None else 'unfinished'}")
    finished = row.finished()
    if finished and SEARCH_TRIALS in finished[0].metrics:
        param = finished[0].tags.get(TAG_SEARCH_PARAM, "param")
        for cell in finished:
            m = cell.metrics
            notes.append(f"s{cell.seed}: best of {int(m[SEARCH_TRIALS])} trials ({int(m.get(SEARCH_PRUNED, 0))} "
                         f"pruned): {param} = {m[SEARCH_BEST_VALUE]:.4g}")
    return "; ".join(notes)


def _rule_value(value: str) -> str:
    """A logged param as the header shows it: 'null' (an LR horizon of the run's own steps), integers with commas."""
    if value == "null":
        return "the run's own"
    return f"{int(value):,}" if value.isdigit() else value


def _estimate_text(header: dict[str, str]) -> str:
    """'; estimated before the start: 21 min from <the rates>' where the parent run holds an estimate."""
    seconds = header.get(TAG_ESTIMATED_SECONDS)
    if not seconds:
        return ""
    return f"; estimated before the start: {float(seconds) / 60:.1f} min from {header.get(TAG_ESTIMATE_BASIS, '?')}"


def _header_lines(table: StudyTable) -> list[str]:
    h = table.header
    source = h.get(TAG_DATA_SOURCE, "?")
    source_text = ("**synthetic stand-in** (generated by calo-ablate, not the Geant4 CaloChallenge files)"
                   if source == "synthetic" else "real CaloChallenge files")
    checksums = ", ".join(f"{k} md5 {v}" for k, v in _json_tag(h, TAG_DATA_CHECKSUMS, {}).items())
    cli_set = _json_tag(h, TAG_CLI_SET, [])
    params = next((c.params for r in table.rows if r.name == BASE for c in r.cells if c.params), {})
    budget = ", ".join(f"{label} {'none' if params[key] == 'null' else params[key]}"
                       for key, label in BUDGET if key in params)
    rule = ", ".join(f"{label} {_rule_value(params[key])}" for key, label in UPDATE_RULE if key in params)
    now = table.written.strftime("%Y-%m-%d %H:%M UTC")
    return [
        f"# Ablation study `{table.study}`",
        "",
        f"- Dataset: {h.get(TAG_DATASET, '?')}, {source_text}; {checksums}",
        f"- Profile: {h.get(TAG_PROFILE, '?')}" + (f", overrides {' '.join(cli_set)}" if cli_set else "")
        + f"; seeds: {table.seeds} (0..{table.seeds - 1}); workers: {h.get(TAG_WORKERS, '?')}",
        f"- Budget per cell (base): {budget or 'unknown'}",
        f"- Start and update rule (base): {rule or 'unknown'}"
        + ("; the EMA weights generate the samples" if "train.ema_start" in params else ""),
        f"- Machine: {h.get(TAG_MACHINE, '?')}",
        f"- Total wall time: {table.wall_seconds / 60:.1f} min (all `ablate` calls of this study"
        + f"{_estimate_text(h)})",
        f"- Written: {now}; code version: {h.get(TAG_GIT_REVISION, '?')}; MLflow parent run {table.parent_run_id}",
    ]


def not_measured(table: StudyTable) -> list[str]:
    """The "What was not measured" list of table.md."""
    h = table.header
    lines = []
    if table.seeds < 2:
        lines.append("spread over seeds and significance against the base: one seed, so no std and no test")
    if h.get(TAG_PROFILE) != "full":
        lines.append(f"converged models: profile {h.get(TAG_PROFILE)} trains a few epochs, so the losses are "
                     "early-training values (as in the seed study's table)")
    if h.get(TAG_DATA_SOURCE) == "synthetic":
        lines.append("real Geant4 showers: these numbers come from the synthetic stand-in and say nothing "
                     "quantitative about the CaloChallenge data")
    if h.get(TAG_EVALUATE) == "false" or not any(m for m, _ in table.columns if m in dict(QUALITY)):
        lines.append("sample quality (no evaluation metrics were logged)")
    elif h.get(TAG_PROFILE) != "full":
        lines.append("the official CaloChallenge classifier (this profile trains a smaller one on fewer showers)")
    lines.append("generation time on other hardware (timed on the machine above, model loading excluded)")
    return lines


def display_headers(table: StudyTable, extra: list[ExtraColumn] | None = None) -> list[str]:
    """table.md's column headers."""
    return ["Ablation", *[label for _, label in table.losses], "Change vs base [95 % CI]", "Loss: power",
            *[label for _, label in table.columns], *[c.label for c in extra or []], "Note"]


def display_rows(table: StudyTable, marks: Marks | None = None,
                 extra: list[ExtraColumn] | None = None) -> list[dict[str, str]]:
    """table.md's table as data: one {column header: cell text} per line, the noise-floor row first."""
    marks, extra = marks or {}, extra or []
    loss_metrics = [m for m, _ in table.losses]
    headers = display_headers(table, extra)
    lines = []
    if table.reference:
        ref = ["reference vs reference", *[""] * (len(table.losses) + 2)]
        ref += [_fmt_stat(m, Stat(table.reference[m], table.reference_std.get(m, math.nan), 1))
                if m in table.reference else "" for m, _ in table.columns]
        ref += [c.text.get(REFERENCE, "") for c in extra]
        draws = " (mean ± std over independent draws)" if table.reference_std else ""
        ref.append(f"noise floor: two disjoint halves of the evaluation file{draws}")
        lines.append(ref)
    for row in table.rows:
        st = row_stats(row, loss_metrics + [m for m, _ in table.columns])
        own_family = other_family(table, row) is None  # another family's losses measure another objective
        power = marks.get((row.name, loss_metrics[0])) if own_family else None
        cells = [row.title, *[_fmt_stat(m, st.get(m), marks.get((row.name, m))) if own_family else ""
                              for m in loss_metrics],
                 delta_text(table, row, marks), power.power if power is not None else "",
                 *[_fmt_stat(m, st.get(m), marks.get((row.name, m))) for m, _ in table.columns],
                 *[c.text.get(row.name, "") for c in extra], note_text(table, row)]
        lines.append(cells)
    return [dict(zip(headers, cells, strict=True)) for cells in lines]


def markdown(table: StudyTable, sections: list[str] | None = None, marks: Marks | None = None,
             extra: list[ExtraColumn] | None = None) -> str:
    """table.md's text; `sections` (markdown lines, e.g. calo_ablate.report.findings) go after the legend;
    `marks` (report/verdicts.table_marks) give each value its verdict and the loss its interval and power;
    `extra` columns go after the metric columns."""
    shown = display_rows(table, marks, extra)
    headers = display_headers(table, extra)
    lines = _header_lines(table) + ["", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in cells.values()) + " |" for cells in shown]
    legend = ("Mean ± std over seeds (std with ddof 1). Against the base (docs/guide/verdicts.md): "
              "↓ lower, ↑ higher (a paired test, Holm across rows), ≈ equivalent within the margin (two one-sided "
              "tests); no symbol: undecided. Losses: validation, final epoch. Change vs base: the tested difference "
              "of the loss, row - base (paired: over the seeds both have), with its 95 % confidence interval, in % "
              "of the base's mean; \"not comparable\" "
              "where the row changes the noise schedule or another loss-defining field. Loss: power: the smallest "
              "difference the study detects with 80 % power at the seeds it has, and for an undecided row about "
              "how many seeds would decide it.")
    if any(m in dict(QUALITY) for m, _ in table.columns):
        legend += " Separation power: 0 identical, 1 disjoint; AUC 0.5 = indistinguishable; FPD x 1e3."
    if any(other_family(table, row) for row in table.rows):
        legend += (" Rows of another model family than the base compare by parameters, s / epoch, generation time "
                   "and sample quality only; their own losses are in table.csv.")
    lines += [
        "",
        legend + " All metrics, unrounded: table.csv.",
        "",
        *(list(sections or []) + ([""] if sections else [])),
        "What was not measured:",
        *[f"- {line}" for line in not_measured(table)],
        "",
    ]
    return "\n".join(lines)


def frame(table: StudyTable, marks: Marks | None = None, extra: list[ExtraColumn] | None = None) -> pd.DataFrame:
    """One line per row, unrounded: <metric>_mean, _std, _n for every metric logged, and where `marks` has it
    _verdict, _p_vs_base, _diff_low, _diff_high (the 95 % interval of row - base); then the `extra` columns'
    fields."""
    marks = marks or {}
    metrics = sorted({m for r in table.rows for c in r.finished() for m in c.metrics})
    records: list[dict[str, Any]] = []
    if table.reference:
        records.append({"row": REFERENCE, "title": "reference vs reference",
                        **{f"{k}_mean": v for k, v in sorted(table.reference.items())}})
    for row in table.rows:
        line: dict[str, Any] = {
            "row": row.name, "title": row.title, "finished": len(row.finished()),
            "failed": sum(c.status == "FAILED" for c in row.cells), "loss_comparable": row.comparable,
            "change_vs_base": delta_text(table, row, marks), "note": note_text(table, row)}
        for metric, stat in row_stats(row, metrics).items():
            line.update({f"{metric}_mean": stat.mean, f"{metric}_std": stat.std, f"{metric}_n": stat.n})
            mark = marks.get((row.name, metric))
            if mark is not None:
                line.update({f"{metric}_verdict": mark.verdict, f"{metric}_p_vs_base": mark.p,
                             f"{metric}_diff_low": mark.low, f"{metric}_diff_high": mark.high})
        records.append(line)
    return pd.DataFrame.from_records(_with_extra(records, extra or []))


def _with_extra(records: list[dict[str, Any]], extra: list[ExtraColumn]) -> list[dict[str, Any]]:
    for line in records:
        for column in extra:
            line.update(column.data.get(line["row"], {}))
    return records


def run_description(markdown_text: str, limit: int = MAX_TAG_CHARS) -> str:
    """table.md as the parent run's MLflow description (tag mlflow.note.content, at most `limit` chars):
    whole lines up to the limit, then a pointer to the full artifact."""
    if len(markdown_text) <= limit:
        return markdown_text
    tail = "\n\n(cut here to fit an MLflow tag: the whole report is the artifact report/table.md)\n"
    head = markdown_text[:limit - len(tail)]
    return head[:head.rfind("\n")] + tail


def write_table(table: StudyTable, study_dir: Path, sections: list[str] | None = None,
                marks: Marks | None = None, extra: list[ExtraColumn] | None = None) -> list[Path]:
    """table.md (with `sections`, `marks` and `extra`, see markdown) and table.csv in `study_dir`; returns their
    paths (table.md first)."""
    study_dir.mkdir(parents=True, exist_ok=True)
    md, csv = study_dir / "table.md", study_dir / "table.csv"
    with atomic_write(md) as handle:
        handle.write(markdown(table, sections, marks, extra))
    with atomic_write(csv) as handle:
        frame(table, marks, extra).to_csv(handle, index=False)
    return [md, csv]
