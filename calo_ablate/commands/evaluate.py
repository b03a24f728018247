"""`calo-ablate evaluate`: the metrics of a generated file against a reference file, printed.

    calo-ablate evaluate --reference REF.hdf5 --generated GEN.hdf5 --dataset 1-photons \
        [--out DIR] [--profile smoke|quick|full]

Histograms, FPD/KPD and PRDC use every shower of both files (as the official script does); the
classifiers need equal sizes, so the larger file is cut to a fixed random subset (seed 0). The profile
chooses the classifier settings and which metrics run (`evaluate.*`; full = the official network).
Each metric group is printed as soon as it is done, with its wall time, marked official or own.
With --out: DIR/metrics.json ({"official": {...}, "own": {...}, "aliases": {alias: official key},
"notes": [...]}) and DIR/histograms.png.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from calo_ablate.atomic import atomic_write
from calo_ablate.commands.options import Subcommands, add_dataset, add_profile
from calo_ablate.config import canonical_dataset, resolve_config
from calo_ablate.data.calochallenge import read_showers
from calo_ablate.evaluation.evaluate import (
    ALIASES,
    classifier_split_note,
    evaluate_samples,
    metric_kind,
    threshold_for,
)
from calo_ablate.evaluation.plots import plot_histogram_grid
from calo_ablate.evaluation.resnet import RESNET_SHAPES

__all__ = ["format_group", "main", "metrics_document", "register"]


def _number(value: float) -> str:
    """4 decimals (as the official files), 4 significant digits for small values, 'nan' for NaN."""
    small = math.isfinite(value) and 0 < abs(value) < 1e-3
    return f"{value:.4g}" if small else f"{value:.4f}"


def format_group(group: str, values: dict[str, float], seconds: float) -> str:
    """One group's lines: a header with official/own and its wall time, then `name: value` lines."""
    kind = metric_kind(f"{group}/")
    lines = [f"[{group}] ({kind}, {seconds:.1f} s)"]
    if group.startswith("fpd_kpd"):
        lines += [f"  {name}: {_number(values[name])} +- {_number(values[name + ' error'])}"
                  for name in ("FPD (x10^3)", "KPD (x10^3)")]
    elif "AUC" in values:
        lines.append(f"  AUC / JSD: {values['AUC']:.4f} +- {values['AUC std']:.4f} / "
                     f"{values['JSD']:.4f} +- {values['JSD std']:.4f}   (mean +- ddof-0 std)")
    else:
        lines += [f"  {name}: {_number(value)}" for name, value in values.items()]
    return "\n".join(lines)


def metrics_document(metrics: dict[str, float], notes: list[str]) -> dict:
    """metrics.json: the numbers grouped by kind, with the aliases' targets and the run's notes."""
    document: dict = {"official": {}, "own": {}}
    for key, value in metrics.items():
        kind = metric_kind(key)
        if kind != "alias":
            document[kind][key] = value
    document["aliases"] = {alias: key for alias, key in ALIASES.items() if alias in metrics}
    document["notes"] = notes
    return document


def main(args: argparse.Namespace) -> int:
    dataset = canonical_dataset(args.dataset)
    settings = resolve_config(dataset, args.profile).evaluate
    reference = read_showers(args.reference, dataset)
    generated = read_showers(args.generated, dataset)
    n_ref, n_gen = len(reference[0]), len(generated[0])
    cls = settings.classifier
    notes = [f"readout threshold {threshold_for(dataset, settings):g} MeV",
             f"reference {n_ref} showers, generated {n_gen}: histograms, FPD/KPD and PRDC use all of them"]
    if settings.classifiers:
        notes += [(f"classifiers {', '.join(settings.classifiers)} on {min(n_ref, n_gen)} showers of each, "
                   f"hidden {cls.hidden} x {cls.num_hidden_layers}, {cls.epochs} epochs, batch {cls.batch_size}, "
                   f"{cls.trainings} trainings (seeds 0..{cls.trainings - 1}; official: one unseeded run)"),
                  classifier_split_note(dataset, min(n_ref, n_gen))]
    if "cls-resnet" in settings.classifiers and dataset not in RESNET_SHAPES:
        notes.append(f"cls-resnet: not defined for dataset {dataset} (datasets 2 and 3 only, as in the official script)")
    print(f"evaluate: dataset {dataset}, profile {args.profile}")
    for note in notes:
        print(f"  {note}")
    metrics = evaluate_samples(reference, generated, dataset, settings,
                               report=lambda *group: print(format_group(*group), flush=True))
    print(f"own: mean of the official separation powers {_number(metrics['sep_mean'])}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_write(out / "metrics.json") as handle:
            handle.write(json.dumps(metrics_document(metrics, notes), indent=2) + "\n")
        plot_histogram_grid(reference, {Path(args.generated).stem: generated}, dataset,
                            out / "histograms.png", threshold_mev=settings.threshold_mev)
        print(f"wrote {out / 'metrics.json'} and {out / 'histograms.png'}")
    return 0


def register(commands: Subcommands) -> None:
    p = commands.add_parser("evaluate", help="CaloChallenge metrics of a generated file against a reference")
    p.add_argument("--reference", required=True, help="reference HDF5 file (e.g. the evaluation file)")
    p.add_argument("--generated", required=True, help="generated HDF5 file")
    add_dataset(p, required=True)
    p.add_argument("--out", default=None, help="folder for metrics.json and the histogram grid")
    add_profile(p, "classifier settings (full = the official network)")
    p.set_defaults(run=main)
