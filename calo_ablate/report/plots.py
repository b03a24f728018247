"""The study's plots: loss_curves.png (from MLflow metric histories) and histograms.png (cached samples).

loss_curves.png: training and validation loss per epoch of every row, mean over its seeds (a row
that shares another's training shows that training's curve). histograms.png: the high-level feature
histograms of every row's seed-0 generated sample against the seed-0 reference sample, from the
samples cached in results/<study>/samples/ by the cells (absent when those files are not on this
machine: the table never needs them).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from calo_ablate.evaluation.plots import plot_histogram_grid
from calo_ablate.report.table import StudyTable
from calo_ablate.runs import record

CURVES = ((record.TRAIN_LOSS, "training loss"), (record.VAL_LOSS, "validation loss"))


def _history(tracking_uri: str, run_id: str, metric: str) -> np.ndarray:
    """The per-epoch values of `metric` in step order, shape (epochs,)."""
    history = record.client(tracking_uri).get_metric_history(run_id, metric)
    return np.array([m.value for m in sorted(history, key=lambda m: (m.step, m.timestamp))], dtype=float)


def plot_loss_curves(table: StudyTable, tracking_uri: str, path: Path) -> Path | None:
    """Mean loss per epoch of each row; None when no run has a history."""
    fig, axes = plt.subplots(1, len(CURVES), figsize=(6 * len(CURVES), 4.2), squeeze=False)
    drawn = False
    for row in table.rows:
        runs = {c.training_run for c in row.cells if c.training_run and c.status in ("FINISHED", "FAILED")}
        for ax, (metric, label) in zip(axes[0], CURVES, strict=True):
            curves = [h for h in (_history(tracking_uri, r, metric) for r in sorted(runs)) if len(h)]
            if not curves:
                continue
            length = min(len(h) for h in curves)
            mean = np.mean([h[:length] for h in curves], axis=0)
            ax.plot(np.arange(1, length + 1), mean, marker="o", label=row.title)
            ax.set_title(label)
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    for ax in axes[0]:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("loss (mean over seeds)")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"{table.study}: loss per epoch")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_histograms(table: StudyTable, study_dir: Path, path: Path) -> Path | None:
    """The histogram grid of every row's seed-0 sample against the reference; None without cached samples."""
    reference_file = record.sample_path(study_dir, record.REFERENCE_SAMPLE, 0)
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
