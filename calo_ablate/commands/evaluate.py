"""`calo-ablate evaluate`: the metrics of a generated file against a reference file, printed.

    calo-ablate evaluate --reference REF.hdf5 --generated GEN.hdf5 --dataset 1-photons \
        [--out DIR] [--profile smoke|quick|full]

Uses every shower of the smaller file; the larger one is subsampled to the same size (a fixed random
choice, seed 0). The profile only chooses the classifier settings (full = the official network).
With --out: DIR/metrics.json (flat {metric: number}) and DIR/histograms.png.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from calo_ablate.config import canonical_dataset, resolve_config
from calo_ablate.data.calochallenge import read_showers
from calo_ablate.evaluation.evaluate import evaluate_samples, threshold_for
from calo_ablate.evaluation.plots import plot_histogram_grid

__all__ = ["equal_sizes", "format_summary", "main"]

Sample = tuple[np.ndarray, np.ndarray]


def equal_sizes(first: Sample, second: Sample, seed: int = 0) -> tuple[Sample, Sample]:
    """Both samples cut to the smaller size: the larger keeps a fixed random subset (order kept)."""
    n = min(len(first[0]), len(second[0]))

    def cut(sample: Sample) -> Sample:
        if len(sample[0]) == n:
            return sample
        keep = np.sort(np.random.default_rng(seed).choice(len(sample[0]), n, replace=False))
        return sample[0][keep], sample[1][keep]

    return cut(first), cut(second)


def format_summary(metrics: dict[str, float]) -> str:
    """The headline numbers, one per line, then every separation power."""
    lines = [
        *(f"classifier AUC, {level + '-level':<11} {metrics[f'auc_{level}']:.4f} +- "
          f"{metrics[f'auc_{level}_std']:.4f}   (JSD {metrics[f'jsd_{level}']:.4f} +- "
          f"{metrics[f'jsd_{level}_std']:.4f})" for level in ("low", "high")),
        f"FPD x 1e3                   {metrics['fpd']:.4f} +- {metrics['fpd_err']:.4f}",
        f"KPD x 1e3                   {metrics['kpd']:.4f} +- {metrics['kpd_err']:.4f}",
        f"separation power E_tot/E_inc {metrics['sep_e_ratio']:.4f}, mean {metrics['sep_mean']:.4f}",
        "separation power per feature:",
    ]
    seps = sorted((k[4:], v) for k, v in metrics.items() if k.startswith("sep_") and k != "sep_mean")
    lines += [f"  {name:<16} {value:.4f}" for name, value in seps]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    dataset = canonical_dataset(args.dataset)
    settings = resolve_config(dataset, args.profile).evaluate
    reference = read_showers(args.reference, dataset)
    generated = read_showers(args.generated, dataset)
    n_ref, n_gen = len(reference[0]), len(generated[0])
    reference, generated = equal_sizes(reference, generated)
    print(f"evaluate: dataset {dataset}, profile {args.profile}: {len(reference[0])} showers of each "
          f"(reference file {n_ref}, generated file {n_gen}); readout threshold "
          f"{threshold_for(dataset, settings):g} MeV; classifier hidden {settings.classifier.hidden} x "
          f"{settings.classifier.num_hidden_layers}, {settings.classifier.epochs} epochs, "
          f"{settings.classifier.trainings} trainings")
    metrics = evaluate_samples(reference, generated, dataset, settings)
    print(format_summary(metrics))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        plot_histogram_grid(reference, {Path(args.generated).stem: generated}, dataset,
                            out / "histograms.png", threshold_mev=settings.threshold_mev)
        print(f"wrote {out / 'metrics.json'} and {out / 'histograms.png'}")
    return 0
