"""`calo-ablate train`, `params` and `generate`: one model, its size, its showers (their options:
`register`)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_only

from calo_ablate.commands.options import (
    Subcommands,
    add_dataset,
    add_overrides,
    add_run_options,
    add_tracking_uri,
)
from calo_ablate.config import canonical_dataset, resolve_config, train_key
from calo_ablate.data.calochallenge import write_showers
from calo_ablate.data.datamodule import CaloDataModule
from calo_ablate.data.source import ensure_data
from calo_ablate.errors import ConfigError
from calo_ablate.geometry import load_geometry
from calo_ablate.model.families import load_family
from calo_ablate.runs.generate import generate_showers, load_run
from calo_ablate.runs.tracker import Tracker, default_tracking_uri
from calo_ablate.runs.train import run_training

__all__ = ["generate", "params", "register", "train"]


def train(args: argparse.Namespace) -> int:
    """`calo-ablate train --dataset 1 [--profile P] [--seed N] [--set k=v ...] [--tracking-uri URI]`."""
    dataset = canonical_dataset(args.dataset)
    config = resolve_config(dataset, args.profile, cli_set=args.overrides, seed=args.seed)
    files = ensure_data(dataset, config.data.data_dir)
    tracker = Tracker(args.tracking_uri or default_tracking_uri())
    experiment = f"train-{dataset}"
    tracker.ensure_experiment(experiment)
    run_dir = Path("results") / "runs" / train_key(config, files.checksums)
    started = time.perf_counter()
    result = run_training(config, files=files, run_dir=run_dir, tracker=tracker,
                          experiment_name=experiment, run_name=f"{dataset}-{args.profile}-seed{config.train.seed}")
    # The other processes of a multi-process run report nothing. (The ignore: lightning_utilities sets
    # rank_zero_only.rank at run time, and its type does not declare it.)
    if rank_zero_only.rank != 0:  # type: ignore[attr-defined]
        return 0
    tracker.close_run(result.run_id)
    losses = ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items())
    print(f"run {result.run_id} ({experiment} in {tracker.uri}): {result.epochs} epoch(s), {losses}; "
          f"{result.seconds_per_epoch:.1f} s/epoch, {result.n_params:,} parameters, "
          f"{time.perf_counter() - started:.0f} s in this call")
    print(f"checkpoint: {result.checkpoint_path}")
    print(f"generate:   calo-ablate generate --run {result.run_id} --events 1000 --out samples.hdf5"
          + (f" --tracking-uri {tracker.uri}" if args.tracking_uri else ""))
    return 0


def params(args: argparse.Namespace) -> int:
    """`calo-ablate params --dataset 1 [--set k=v ...]`: trainable parameters of the config's model family
    (model.family), per part and in total."""
    dataset = canonical_dataset(args.dataset)
    config = resolve_config(dataset, "full", cli_set=args.overrides)
    geometry = load_geometry(dataset)
    family = load_family(config)
    module = family.module()
    parts = family.parameter_breakdown(module)
    width = max(len(name) for name in [*parts, "total"])
    print(f"{family.title}, dataset {dataset} ({geometry.n_voxels} voxels, {geometry.n_layers} layers)")
    for name, count in parts.items():
        print(f"  {name:<{width}}  {count:>12,}")
    print(f"  {'total':<{width}}  {family.n_parameters(module):>12,}")
    return 0


def generate(args: argparse.Namespace) -> int:
    """`calo-ablate generate --run RUN_ID --events N --out FILE [--tracking-uri URI] [--seed S]`.

    Draws N incident energies from the evaluation file (never the training data) and writes FILE with
    `incident_energies` (N, 1) and `showers` (N, V) in MeV.
    """
    if args.events < 1:
        msg = f"--events {args.events}: expected a positive number of showers"
        raise ConfigError(msg)
    trained = load_run(args.run_id, Tracker(args.tracking_uri or default_tracking_uri()))
    config = trained.config
    files = ensure_data(config.data.dataset, config.data.data_dir)
    datamodule = CaloDataModule(config, files, Path(config.data.data_dir) / "cache")
    energies_mev, _ = datamodule.eval_sample(args.events, args.seed)
    showers_mev = generate_showers(trained, energies_mev, seed=args.seed, progress=True)
    out = Path(args.out)
    write_showers(out, energies_mev, showers_mev)
    steps = trained.family.sampling_steps()
    print(f"{args.events} showers of run {args.run_id} ({trained.family.title}"
          f"{f', {steps} sampling steps' if steps is not None else ''}) -> {out}")
    return 0


def register(commands: Subcommands) -> None:
    """`params`, `train` and `generate`."""
    p = commands.add_parser("params", help="trainable parameters of the model, per net and in total")
    add_dataset(p)
    add_overrides(p, help_text=None)
    p.set_defaults(run=params)

    p = commands.add_parser("train", help="train one model, logged to MLflow; resumes an interrupted run")
    add_run_options(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the run (default 0)")
    p.set_defaults(run=train)

    p = commands.add_parser("generate", help="showers from a trained run's EMA weights, in the official layout")
    p.add_argument("--run", required=True, dest="run_id", help="MLflow run id")
    p.add_argument("--events", type=int, required=True, help="number of showers")
    p.add_argument("--out", required=True, help="output HDF5 file")
    add_tracking_uri(p, "MLflow tracking URI (default: results/mlflow.db)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampler noise")
    p.set_defaults(run=generate)
