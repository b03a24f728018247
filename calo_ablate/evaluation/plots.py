"""A PNG grid of high-level feature histograms: the reference filled, each generated sample a line,
with a generated / reference ratio panel under each histogram. Same bins as the separation power."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from calo_ablate.atomic import atomic_write
from calo_ablate.config import canonical_dataset
from calo_ablate.evaluation.features import compute_features, default_threshold_mev, feature_names
from calo_ablate.evaluation.metrics import feature_bins, histogram_fractions, separation_power
from calo_ablate.geometry import Geometry, load_geometry

__all__ = ["plot_histogram_grid", "plotted_features"]

MAX_PANELS = 48
COLUMNS = 6
UNITS = {"e_tot": "MeV", "e_layer": "MeV", "centre": "mm", "width": "mm"}


def plotted_features(geometry: Geometry) -> list[str]:
    """All features when there are at most 48; else E_tot/E_inc, E_tot and, for 5 layers evenly
    spread over the depth, E_layer, the eta/phi centres and widths and the sparsity."""
    names = feature_names(geometry)
    if len(names) <= MAX_PANELS:
        return names
    ids = [layer.layer_id for layer in geometry.layers]
    chosen = {str(ids[i]) for i in np.linspace(0, len(ids) - 1, 5).round().astype(int)}
    return ["e_ratio", "e_tot"] + [n for n in names[2:] if n.rpartition("_")[2] in chosen
                                   and not n.startswith(("centre_r", "width_r"))]


def _label(name: str) -> str:
    if name == "e_ratio":
        return "E_tot / E_inc"
    unit = next((u for prefix, u in UNITS.items() if name.startswith(prefix)), "")
    return f"{name} [{unit}]" if unit else name


def plot_histogram_grid(
    reference: tuple[np.ndarray, np.ndarray],
    samples: dict[str, tuple[np.ndarray, np.ndarray]],
    dataset: str,
    path: str | Path,
    threshold_mev: float | None = None,
) -> Path:
    """Write the grid to `path` (PNG) and return it. Samples are (energies (N,) MeV, showers (N, V) MeV);
    the readout threshold (None = the dataset's) is applied to all of them first."""
    dataset = canonical_dataset(dataset)
    geometry = load_geometry(dataset)
    threshold = default_threshold_mev(dataset) if threshold_mev is None else threshold_mev
    ref = compute_features(*reference, geometry, threshold)
    gen = {label: compute_features(*sample, geometry, threshold) for label, sample in samples.items()}
    names = plotted_features(geometry)
    rows = math.ceil(len(names) / COLUMNS)
    height = 3.1 * rows + 1.2  # inches
    fig = plt.figure(figsize=(3.3 * COLUMNS, height), dpi=90)
    outer = fig.add_gridspec(rows, COLUMNS, hspace=0.32, wspace=0.32, left=0.04, right=0.99,
                             top=1 - 1.2 / height, bottom=0.3 / height)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"][1:]
    single = len(gen) == 1  # one sample: its separation power in each panel's legend; else one legend on top
    for k, name in enumerate(names):
        row, col = divmod(k, COLUMNS)
        cell = outer[row, col].subgridspec(2, 1, height_ratios=[3, 1], hspace=0.06)
        top = fig.add_subplot(cell[0])
        bottom = fig.add_subplot(cell[1], sharex=top)
        edges = feature_bins(name, ref[name], geometry, dataset, threshold)
        h_ref = histogram_fractions(ref[name], edges)  # out-of-range values dropped, as the official plots
        top.stairs(h_ref, edges, fill=True, alpha=0.3, color="C0", label="reference")
        for colour, (label, features) in zip(colours, gen.items(), strict=False):
            h = histogram_fractions(features[name], edges)
            sep = separation_power(ref[name], features[name], edges)
            top.stairs(h, edges, color=colour, linewidth=1.3, label=f"{label} (S={sep:.3f})" if single else label)
            ratio = np.divide(h, h_ref, out=np.full_like(h, np.nan), where=h_ref > 0)
            bottom.stairs(ratio, edges, color=colour, linewidth=1.0, baseline=None)
        top.set_title(_label(name), fontsize=9)
        top.tick_params(labelbottom=False, labelsize=7)
        if single:
            top.legend(fontsize=6, loc="upper right", frameon=False)  # "best" costs seconds per grid
        elif k == 0:
            fig.legend(*top.get_legend_handles_labels(), loc="upper center", ncol=min(len(gen) + 1, 4),
                       fontsize=9, frameon=False, bbox_to_anchor=(0.5, 1 - 0.45 / height))
        bottom.axhline(1.0, color="C0", linewidth=0.8)
        bottom.set_ylim(0.0, 2.0)
        bottom.set_yticks([0.5, 1.0, 1.5])
        top.yaxis.set_major_locator(MaxNLocator(4))
        bottom.tick_params(labelsize=7)
        bottom.set_ylabel("gen/ref", fontsize=7)
        if name == "e_tot" or name.startswith("e_layer"):
            top.set_xscale("log")
    fig.suptitle(f"High-level features, dataset {dataset} (reference {len(reference[0])} showers, "
                 f"readout threshold {threshold:g} MeV)", fontsize=12, y=1 - 0.25 / height)
    return save_figure(fig, path)


def save_figure(fig: Figure, path: str | Path, dpi: float | None = None) -> Path:
    """Write `fig` to `path` atomically (calo_ablate.atomic), in the format of its suffix, and close it."""
    path = Path(path)
    with atomic_write(path, binary=True) as handle:
        fig.savefig(handle, format=path.suffix.lstrip(".") or "png", dpi=dpi)
    plt.close(fig)
    return path
