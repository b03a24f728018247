"""The `calo-ablate` command: argument parsing and the one place where errors become messages.

Each subcommand names the function that does its work as "module:function"; the module is imported
only when that subcommand runs, so `calo-ablate --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from calo_ablate.config import PROFILES
from calo_ablate.errors import CaloAblateError
from calo_ablate.model import families  # noqa: F401  (registers the built-in families' config sections)

DATASET_HELP = "CaloChallenge dataset: 1 (= 1-photons), 1-photons, 1-pions, 2 or 3"


def _handler(parser: argparse.ArgumentParser, target: str) -> None:
    parser.set_defaults(target=target)


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="1", help=DATASET_HELP)
    p.add_argument("--profile", default="quick", choices=PROFILES,
                   help="sizes: smoke (seconds), quick (default, minutes on a laptop), full (published, GPU)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.lr=1e-3 (repeatable)")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default: a SQLite store under results/)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="calo-ablate", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="CaloChallenge files: validate, download, synthesise, prepare")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    p = data_sub.add_parser("validate", help="check a file against the official layout and print a summary")
    p.add_argument("file", help="HDF5 file in the CaloChallenge layout")
    p.add_argument("--dataset", required=True, help=DATASET_HELP)
    _handler(p, "calo_ablate.commands.data:validate")
    p = data_sub.add_parser("download", help="fetch the real files from Zenodo with MD5 check and resume")
    p.add_argument("--dataset", required=True, help=DATASET_HELP)
    p.add_argument("--data-dir", default="data", help="where the files go (default: data)")
    p.add_argument("--role", choices=["train", "eval", "all"], default="all", help="which files")
    p.add_argument("--base-url", default=None, help="mirror to download from instead of Zenodo")
    _handler(p, "calo_ablate.commands.data:download")
    p = data_sub.add_parser("synth", help="write the synthetic stand-in (train and evaluation files)")
    p.add_argument("--dataset", required=True, help=DATASET_HELP)
    p.add_argument("--data-dir", default="data", help="files go to DATA_DIR/synthetic (default: data)")
    p.add_argument("--events", type=int, default=None, help="showers per file (default: as the real files)")
    p.add_argument("--seed", type=int, default=0, help="base seed; the train and eval files use independent seeds spawned from it")
    _handler(p, "calo_ablate.commands.data:synth")
    p = data_sub.add_parser("prepare", help="real files from the data folder if present, else the stand-in")
    p.add_argument("--dataset", required=True, help=DATASET_HELP)
    p.add_argument("--data-dir", default="data", help="data folder (default: data)")
    _handler(p, "calo_ablate.commands.data:prepare")

    p = sub.add_parser("params", help="trainable parameters of the model, per net and in total")
    p.add_argument("--dataset", default="1", help=DATASET_HELP)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    _handler(p, "calo_ablate.commands.train:params")

    p = sub.add_parser("train", help="train one model, logged to MLflow; resumes an interrupted run")
    _add_run_options(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the run (default 0)")
    _handler(p, "calo_ablate.commands.train:train")

    p = sub.add_parser("generate", help="showers from a trained run's EMA weights, in the official layout")
    p.add_argument("--run", required=True, dest="run_id", help="MLflow run id")
    p.add_argument("--events", type=int, required=True, help="number of showers")
    p.add_argument("--out", required=True, help="output HDF5 file")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: results/mlflow.db)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampler noise")
    _handler(p, "calo_ablate.commands.train:generate")

    p = sub.add_parser("evaluate", help="CaloChallenge metrics of a generated file against a reference")
    p.add_argument("--reference", required=True, help="reference HDF5 file (e.g. the evaluation file)")
    p.add_argument("--generated", required=True, help="generated HDF5 file")
    p.add_argument("--dataset", required=True, help=DATASET_HELP)
    p.add_argument("--out", default=None, help="folder for metrics.json and the histogram grid")
    p.add_argument("--profile", default="quick", choices=PROFILES,
                   help="classifier settings (full = the official network)")
    _handler(p, "calo_ablate.commands.evaluate:main")

    p = sub.add_parser("list", help="the ablations of the registry and their difference from the base")
    p.add_argument("--dataset", default="1", help=DATASET_HELP)
    p.add_argument("--profile", default="quick", choices=PROFILES)
    p.add_argument("--registry", default=None, help="registry YAML (default: experiments/ablations.yaml)")
    _handler(p, "calo_ablate.commands.study:list_ablations")

    p = sub.add_parser("ablate", help="run the ablation study: every (ablation, seed) cell, then the report")
    _add_run_options(p)
    p.add_argument("--seeds", default="2", help="seeds per ablation (default 2), or 'auto': start with 3 and add one "
                   "seed at a time to the rows still undecided, up to --max-seeds or --budget")
    p.add_argument("--max-seeds", type=int, default=None, help="the cap of --seeds auto (default 8)")
    p.add_argument("--budget", default=None, help="wall time for --seeds auto, e.g. 30m, 2h, 90s: no round starts "
                   "that the study's measured cell times say would end past it")
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes (default 1)")
    p.add_argument("--only", default=None, help="comma-separated ablation names (base is always kept)")
    p.add_argument("--study", default=None, help="study name (default: <dataset>-<profile>)")
    p.add_argument("--storage", default=None, help="Optuna storage URL (default: a file in the study folder)")
    p.add_argument("--registry", default=None, help="registry YAML (default: experiments/ablations.yaml)")
    p.add_argument("--results-dir", default="results", help="where study folders go (default: results)")
    p.add_argument("--fail-fast", action="store_true", help="stop the study at the first failed cell")
    p.add_argument("--retries", type=int, default=2, help="a cell that failed this many times is not run "
                   "again until --retry-failed (default 2)")
    p.add_argument("--retry-failed", action="store_true", help="run given-up cells again (counts restart)")
    p.add_argument("--launcher", choices=["process", "slurm", "local"], default="process",
                   help="how --workers start: processes here (default), SLURM jobs or local submitit jobs")
    p.add_argument("--slurm-partition", default=None, help="SLURM partition of the worker jobs")
    p.add_argument("--slurm-time", type=int, default=240, help="time limit per worker job, minutes (default 240)")
    p.add_argument("--slurm-cpus", type=int, default=4, help="CPUs per worker job (default 4)")
    p.add_argument("--slurm-gpus", type=int, default=0, help="GPUs per worker job (default 0)")
    p.add_argument("--slurm-signal", type=int, default=300, metavar="SECONDS", help="SIGUSR2 this long before "
                   "a job's time limit: the worker stops after its epoch and the job requeues (default 300)")
    p.add_argument("--slurm-requeues", type=int, default=3, help="how often a job that reached its time "
                   "limit requeues itself (default 3)")
    p.add_argument("--slurm-option", action="append", default=[], metavar="KEY=VALUE",
                   help="another sbatch option for the worker jobs, e.g. account=hep, qos=long (repeatable)")
    p.add_argument("--no-wait", action="store_true", help="with a job launcher: submit and return "
                   "(then `calo-ablate report --study S` when the jobs ended)")
    _handler(p, "calo_ablate.commands.study:ablate")

    p = sub.add_parser("worker", help="join a running study (from this or another machine)")
    p.add_argument("--study", required=True, help="study name")
    p.add_argument("--storage", required=True, help="Optuna storage URL of the study")
    p.add_argument("--results-dir", default="results", help="where study folders go (default: results)")
    p.add_argument("--wait-for-study", type=float, default=0.0, metavar="SECONDS",
                   help="wait up to this long for `ablate` to plan the study (a job started alongside it)")
    _handler(p, "calo_ablate.commands.study:worker")

    p = sub.add_parser("report", help="rebuild a study's report from MLflow alone")
    p.add_argument("--study", required=True, help="study name")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: the study's store)")
    p.add_argument("--results-dir", default="results", help="where study folders go (default: results)")
    p.add_argument("--quality-metric", default=None, metavar="METRIC",
                   help="quality axis of pareto.png and the table's front: auc_low (default), auc_high, auc_high_z, "
                        "fpd, kpd, sep_mean, sep_e_ratio or multiclass")
    _handler(p, "calo_ablate.commands.study:report")

    p = sub.add_parser("ui", help="serve the MLflow UI on 127.0.0.1 for a study's store")
    p.add_argument("--study", default=None, help="study name (default: the newest study)")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--results-dir", default="results", help="where study folders go (default: results)")
    _handler(p, "calo_ablate.commands.ui:ui")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module_name, function_name = args.target.split(":")
    try:
        function = getattr(importlib.import_module(module_name), function_name)
        return int(function(args) or 0)
    except CaloAblateError as err:
        print(f"calo-ablate: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("calo-ablate: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
