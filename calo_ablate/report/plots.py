"""The study's plots: loss_curves.png (from MLflow metric histories) and histograms.png (cached samples).

loss_curves.png: one panel per loss of each model family in the study (its loss_names tag: CaloScore v2
total, voxel, layer; the base's family first), training (top, the step curve train_steps/<loss>, about
20 points per run) and validation (bottom, every validation); a row draws in its own family's panels; per row the mean over its seeds with a
band of +- one standard deviation, x = optimizer steps done. Every row has its own colour, marker and
line style, so a row on top of another (one sharing the base's training) still shows. histograms.png:
the high-level feature histograms of every row's seed-0 generated sample against the seed-0
reference sample, from the samples cached in results/<study>/samples/ by the cells (absent when
those files are not on this machine: the table never needs them).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from calo_ablate.evaluation.plots import plot_histogram_grid
from calo_ablate.report.table import StudyTable, loss_label
from calo_ablate.runs import record

STAGES = ((record.CURVE_PREFIX, "training"), (record.VAL_PREFIX, "validation"))
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
    families = table.family_losses or {None: [m[len(record.VAL_PREFIX):] for m, _ in table.losses]}
    single = len(families) == 1
    return [(None if single else family, name) for family, names in families.items() for name in names]


def plot_loss_curves(table: StudyTable, tracking_uri: str, path: Path) -> Path | None:
    """The loss curves of every row (see the module docstring); None when no run has a history.

    tracking_uri: unused (the histories come with the table); kept for the callers' signature.
    """
    panels = _panels(table)
    fig, axes = plt.subplots(len(STAGES), len(panels), figsize=(5.2 * len(panels), 4.0 * len(STAGES)),
                             squeeze=False)
    drawn = False
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, row in enumerate(table.rows):
        style = {"color": colours[i % len(colours)], "marker": MARKERS[i % len(MARKERS)],
                 "linestyle": LINESTYLES[i % len(LINESTYLES)], "markersize": 4, "linewidth": 1.2}
        histories = table.histories.get(row.name, {})
        family = next((c.tags[record.TAG_MODEL_FAMILY] for c in row.cells if record.TAG_MODEL_FAMILY in c.tags), None)
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
    legend: dict[str, object] = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    labels = list(legend)
    fig.legend(list(legend.values()), labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8, frameon=False)
    fig.suptitle(f"{table.study}: losses during training")
    fig.tight_layout(rect=(0, 0.04 + 0.025 * ((len(labels) - 1) // 4), 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_histograms(table: StudyTable, study_dir: Path, path: Path) -> Path | None:
    """The histogram grid of every row's seed-0 sample against the reference; None without cached samples."""
    reference_file = record.sample_path(study_dir, record.REFERENCE, 0)
    if not reference_file.is_file():
        return None
    reference = record.load_sample(reference_file)
    samples = {}
    for row in table.rows:
        file = record.sample_path(study_dir, row.name, 0)
        if file.is_file() and any(c.seed == 0 and c.status == "FINISHED" for c in row.cells):
            samples[row.title] = record.load_sample(file)
    if not samples:
        return None
    return plot_histogram_grid(reference, samples, table.header.get(record.TAG_DATASET, "1-photons"), path)


def write_plots(table: StudyTable, tracking_uri: str, study_dir: Path) -> list[Path]:
    """Both plots into `study_dir`; returns the paths written."""
    written = [plot_loss_curves(table, tracking_uri, study_dir / "loss_curves.png"),
               plot_histograms(table, study_dir, study_dir / "histograms.png")]
    return [Path(p) for p in written if p is not None]
