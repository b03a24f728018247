"""The study's plots: loss_curves.png (MLflow metric histories), histograms.png (cached samples), pareto.png.

loss_curves.png: one panel per loss of each model family in the study (its loss_names tag: CaloScore v2
total, voxel, layer; the base's family first), training (top, the step curve train_steps/<loss>, about
20 points per run) and validation (bottom, every validation); a row draws in its own family's panels; per row the mean over its seeds with a
band of +- one standard deviation, x = optimizer steps done. Every row has its own colour, marker and
line style, so a row on top of another (one sharing the base's training) still shows. pareto.png: sample
quality against generation time per shower (report/pareto.py), with the noise floor, the Pareto front
and, on the real data, the published CaloChallenge points. histograms.png:
the high-level feature histograms of every row's seed-0 generated sample against the seed-0
reference sample, from the samples cached in results/<study>/samples/ by the cells (absent when
those files are not on this machine: the table never needs them).
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.artist import Artist
from matplotlib.ticker import FuncFormatter, LogLocator

from calo_ablate.evaluation.plots import plot_histogram_grid, save_figure
from calo_ablate.report.multiclass import multiclass_of
from calo_ablate.report.pareto import (
    AXES,
    MULTICLASS,
    PLOT_FILE,
    TIME_BATCH,
    choose_metric,
    front_rows,
    pareto_points,
    published_reason,
)
from calo_ablate.report.published import HARDWARE, SOURCE, published_points
from calo_ablate.report.table import StudyTable, loss_label
from calo_ablate.runs.names import (
    CURVE_PREFIX,
    REFERENCE,
    TAG_DATA_SOURCE,
    TAG_DATASET,
    TAG_MODEL_FAMILY,
    TAG_PROFILE,
    VAL_PREFIX,
)
from calo_ablate.runs.samples import load_sample, sample_path

STAGES = ((CURVE_PREFIX, "training"), (VAL_PREFIX, "validation"))
MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*", "<", ">")
LINESTYLES = ("-", "--", "-.", ":")
FLOAT_MAX = np.finfo(np.float64).max


def _drawable(history: list[tuple[int, float]]) -> bool:
    """False for a diverged run: a nan, or an infinity (MLflow stores it as the largest float)."""
    values = np.array([v for _, v in history], dtype=float)
    return len(values) > 0 and bool((np.abs(values) < FLOAT_MAX).all())


def mean_band(runs: list[list[tuple[int, float]]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(optimizer steps done, mean, std over runs) on the first run's steps (others interpolated).

    A history's MLflow step is the 0-based index of the last step before it, hence the + 1.
    """
    x = np.array([s + 1 for s, _ in runs[0]], dtype=float)
    values = np.array([np.interp(x, [s + 1 for s, _ in h], [v for _, v in h]) for h in runs])  # (runs, points)
    std = values.std(axis=0, ddof=1) if len(runs) > 1 else np.zeros(len(x))
    return x, values.mean(axis=0), std


def _panels(table: StudyTable) -> list[tuple[str | None, str]]:
    """(family, loss name) of every panel column; the family is None when the study has only one."""
    if not table.family_losses:
        return [(None, m[len(VAL_PREFIX):]) for m, _ in table.losses]
    single = len(table.family_losses) == 1
    return [(None if single else family, name) for family, names in table.family_losses.items() for name in names]


def plot_loss_curves(table: StudyTable, path: Path) -> Path | None:
    """The loss curves of every row (see the module docstring); None when no run has a history."""
    panels = _panels(table)
    fig, axes = plt.subplots(len(STAGES), len(panels), figsize=(5.2 * len(panels), 4.0 * len(STAGES)),
                             squeeze=False)
    drawn = False
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, row in enumerate(table.rows):
        style = {"color": colours[i % len(colours)], "marker": MARKERS[i % len(MARKERS)],
                 "linestyle": LINESTYLES[i % len(LINESTYLES)], "markersize": 4, "linewidth": 1.2}
        histories = table.histories.get(row.name, {})
        family = next((c.tags[TAG_MODEL_FAMILY] for c in row.cells if TAG_MODEL_FAMILY in c.tags), None)
        for r, (prefix, _) in enumerate(STAGES):
            for c, (panel_family, loss) in enumerate(panels):
                if panel_family is not None and panel_family != family:
                    continue
                runs = [h for h in histories.get(prefix + loss, []) if _drawable(h)]
                if not runs:
                    continue
                x, mean, std = mean_band(runs)
                ax = axes[r][c]
                ax.plot(x, mean, label=row.title, **style)
                ax.fill_between(x, mean - std, mean + std, color=style["color"], alpha=0.15, linewidth=0)
                drawn = True
    if not drawn:
        plt.close(fig)
        return None
    for r, (_, stage) in enumerate(STAGES):
        for c, (panel_family, loss) in enumerate(panels):
            label = loss_label(loss).lower()
            ax = axes[r][c]
            ax.set_title(f"{stage} {label}" + (f" ({panel_family})" if panel_family else ""))
            ax.set_xlabel("optimizer step")
            ax.set_ylabel(f"{label} (mean ± std over seeds)")
            ax.grid(alpha=0.3)
    legend: dict[str, Artist] = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    labels = list(legend)
    fig.legend(list(legend.values()), labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8, frameon=False)
    fig.suptitle(f"{table.study}: losses during training")
    fig.tight_layout(rect=(0, 0.04 + 0.025 * ((len(labels) - 1) // 4), 1, 1))
    return save_figure(fig, path, dpi=110)


def plot_histograms(table: StudyTable, study_dir: Path, path: Path) -> Path | None:
    """The histogram grid of every row's seed-0 sample against the reference; None without cached samples."""
    reference_file = sample_path(study_dir, REFERENCE, 0)
    if not reference_file.is_file():
        return None
    reference = load_sample(reference_file)
    samples = {}
    for row in table.rows:
        file = sample_path(study_dir, row.name, 0)
        if file.is_file() and any(c.seed == 0 and c.status == "FINISHED" for c in row.cells):
            samples[row.title] = load_sample(file)
    if not samples:
        return None
    return plot_histogram_grid(reference, samples, table.header.get(TAG_DATASET, "1-photons"), path)


def _bars(values: list[float]) -> np.ndarray:
    """Error-bar half-lengths; a nan spread (one seed or one training) draws no bar."""
    return np.nan_to_num(np.asarray(values, dtype=float), nan=0.0)


def _floor(table: StudyTable, metric: str) -> tuple[float, float, str] | None:
    """(value, spread, label) of the plot's horizontal line: the noise floor, or log(1/N) for the multiclass."""
    if metric == MULTICLASS:
        summary = multiclass_of(table)
        return None if summary is None else (summary.uniform, 0.0, f"uniform guess log(1/{summary.n_classes})")
    if metric not in table.reference:
        return None
    return table.reference[metric], table.reference_std.get(metric, 0.0), "noise floor (reference vs reference)"


def _published(ax: plt.Axes, table: StudyTable, metric: str) -> None:
    points = published_points(table.header.get(TAG_DATASET, ""), metric) or []
    styles: tuple[tuple[str, str, dict[str, Any]], ...] = (
        ("GPU", "gpu_ms_b100", {"marker": "D", "color": "0.45"}),
        ("CPU", "cpu_ms_b100", {"marker": "s", "facecolor": "none", "edgecolor": "0.45"}))
    for device, attr, style in styles:
        timed = [(p, v) for p, v in points if getattr(p, attr) is not None]
        ax.scatter([getattr(p, attr) for p, _ in timed], [v for _, v in timed], s=22, zorder=2,
                   label=f"published, {device} batch {TIME_BATCH} ({HARDWARE})", **style)
    for p, v in points:  # one name per submission, at its GPU time (CPU where it has none), CPU - GPU joined
        times = [t for t in (p.gpu_ms_b100, p.cpu_ms_b100) if t is not None]
        if times:
            ax.plot(times, [v] * len(times), color="0.6", linewidth=0.6, zorder=1)
            ax.annotate(p.submission, (times[0], v), fontsize=5.5, color="0.35", xytext=(3, 2),
                        textcoords="offset points")
    geant = [v for p, v in points if p.cpu_ms_b100 is None and p.gpu_ms_b100 is None]
    for value in geant:
        ax.axhline(value, color="0.45", linestyle=":", linewidth=1, label="published Geant4 vs Geant4")


def plot_pareto(table: StudyTable, path: Path) -> Path | None:
    """Quality against generation time per shower at batch 100 (report/pareto.py): a point per row with error
    bars, the noise floor, the front; on the real data the published CaloChallenge points. None without points."""
    metric = choose_metric(table)
    axis = AXES[metric]
    points, missing = pareto_points(table, metric)
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(10.0, 5.8))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, p in enumerate(points):
        ax.errorbar(p.time, p.quality, xerr=_bars([p.time_std]), yerr=_bars([p.quality_std]), fmt=MARKERS[i % len(MARKERS)],
                    color=colours[i % len(colours)], markersize=7, capsize=3, label=p.title, zorder=3)
    front = front_rows(table, metric)
    ax.plot([p.time for p in front], [p.quality for p in front], drawstyle="steps-post", color="black",
            linewidth=1.2, alpha=0.7, zorder=2, label="Pareto front (by the means)")
    floor = _floor(table, metric)
    if floor is not None:
        value, spread, label = floor
        ax.axhline(value, color="tab:red", linestyle="--", linewidth=1, label=label)
        if spread and np.isfinite(spread):
            ax.axhspan(value - spread, value + spread, color="tab:red", alpha=0.08, linewidth=0)
    reason = published_reason(table, metric)
    if reason is None:
        _published(ax, table, metric)
    published = f"grey: {SOURCE}; times in ms / shower as inferred; CPU and GPU of one submission joined"
    notes = [reason or published]
    if missing:
        notes.append("not drawn: " + "; ".join(f"{t} ({why})" for t, why in missing.items()))
    ax.text(1.02, 0.0, "\n".join(textwrap.fill(n, 48) for n in notes), transform=ax.transAxes, fontsize=7,
            va="bottom", ha="left")
    ax.set_xscale("log")
    ticks = FuncFormatter(lambda value, _: f"{value:g}")
    ax.xaxis.set_major_formatter(ticks)
    ax.xaxis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0)))
    ax.xaxis.set_minor_formatter(ticks)
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel(f"generation time, ms per shower at batch {TIME_BATCH} (mean ± std over seeds)")
    spread_over = "classifier trainings" if metric == MULTICLASS else "seeds"
    ax.set_ylabel(f"{axis.label}\n(mean ± std over {spread_over}; {'lower' if axis.lower_is_better else 'higher'} "
                  "is better)", fontsize=9)
    source = "synthetic stand-in" if table.header.get(TAG_DATA_SOURCE) == "synthetic" else "real data"
    ax.set_title(f"{table.study} ({source}, profile {table.header.get(TAG_PROFILE, '?')}): {axis.short} "
                 "against generation time", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def write_plots(table: StudyTable, study_dir: Path) -> list[Path]:
    """Every plot into `study_dir`; returns the paths written."""
    written = [plot_loss_curves(table, study_dir / "loss_curves.png"),
               plot_histograms(table, study_dir, study_dir / "histograms.png"),
               plot_pareto(table, study_dir / PLOT_FILE)]
    return [Path(p) for p in written if p is not None]
