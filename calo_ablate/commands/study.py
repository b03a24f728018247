"""`calo-ablate list`, `ablate`, `worker` and `report`: the study's commands (parsing and printing; their
options: `register`)."""

from __future__ import annotations

import sys
from argparse import ArgumentParser, Namespace

from calo_ablate.commands.estimate import with_estimate
from calo_ablate.commands.options import (
    Subcommands,
    add_dataset,
    add_profile,
    add_registry,
    add_results_dir,
    add_run_options,
    add_tracking_uri,
)
from calo_ablate.config import canonical_dataset, resolve_config
from calo_ablate.errors import ConfigError
from calo_ablate.study.estimate import parse_budget_seconds
from calo_ablate.study.forked import hold_one_thread
from calo_ablate.study.launch import JobResources, parse_sbatch_options
from calo_ablate.study.plan import describe_difference
from calo_ablate.study.registry import BASE, load_registry
from calo_ablate.study.runner import (
    DEFAULT_MAX_SEEDS,
    StudyRequest,
    forks_workers,
    rebuild_report,
    run_study,
    worker_exit_code,
)

__all__ = ["ablate", "list_ablations", "register", "report", "worker"]


def list_ablations(args: Namespace) -> int:
    """Print every registry entry: title, why, the chain it is derived from (`from:`) and its resolved
    difference from the base."""
    dataset = canonical_dataset(args.dataset)
    registry = load_registry(args.registry, dataset=dataset, profile=args.profile)
    base = resolve_config(dataset, args.profile, registry.get(BASE).overrides, seed=0)
    print(f"{registry.path} (dataset {dataset}, profile {args.profile}): {len(registry.ablations)} entries")
    for ablation in registry.ablations:
        print(f"\n{ablation.name}: {ablation.title}")
        if ablation.why:
            print(f"  why: {ablation.why}")
        if ablation.expect:
            print(f"  expect: {', '.join(f'{k} {v}' for k, v in ablation.expect.items())}")
        if ablation.compare is not None:
            print(f"  compare: {ablation.compare} (seed by seed, in the report)")
        if ablation.name == BASE:
            own = ", ".join(f"{k}={v!r}" for k, v in ablation.overrides.items())
            print(f"  the reference row{'; sets ' + own if own else ''}")
            continue
        if ablation.teacher is not None:
            chain = " <- ".join([ablation.name, *registry.teacher_chain(ablation.name)])
            print(f"  from: {ablation.teacher} (trains from its model, per seed: {chain})")
        config = resolve_config(dataset, args.profile, ablation.overrides, seed=0)
        for line in describe_difference(ablation, config, base) or ["(no difference from the base)"]:
            print(f"  {line}")
    return 0


def _only(text: str | None) -> list[str] | None:
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def _seeds(text: str) -> int | None:
    """--seeds: a positive number, or None for 'auto'."""
    if text.strip() == "auto":
        return None
    if not text.strip().isdigit() or int(text) < 1:
        msg = f"--seeds {text!r}: expected a positive number of seeds or 'auto'"
        raise ConfigError(msg)
    return int(text)


def ablate(args: Namespace) -> int:
    """Validate, make data, set up MLflow and the queue, run the cells, write the report."""
    seeds = _seeds(args.seeds)
    if seeds is not None and (args.max_seeds is not None or args.budget is not None):
        msg = "--max-seeds and --budget go with --seeds auto"
        raise ConfigError(msg)
    request = StudyRequest(
        dataset=args.dataset, profile=args.profile, seeds=seeds or 1, workers=args.workers,
        auto_seeds=seeds is None, max_seeds=args.max_seeds or DEFAULT_MAX_SEEDS,
        budget_s=parse_budget_seconds(args.budget) if args.budget is not None else None,
        cli_set=list(args.overrides), only=_only(args.only), study=args.study, registry=args.registry,
        results_dir=args.results_dir, storage=args.storage, tracking_uri=args.tracking_uri,
        fail_fast=bool(args.fail_fast), retries=args.retries, retry_failed=args.retry_failed,
        launcher=args.launcher, wait=not args.no_wait,
        resources=JobResources(args.slurm_partition, args.slurm_time, args.slurm_cpus, args.slurm_gpus,
                               signal_s=args.slurm_signal, requeues=args.slurm_requeues,
                               options=parse_sbatch_options(args.slurm_option)))
    if forks_workers(request):
        hold_one_thread()  # until its workers are forked (study/forked.py); the report gets every core
    request = with_estimate(request, log=lambda s: print(s, flush=True))
    outcome = run_study(request, log=lambda s: print(s, flush=True))
    if outcome.report is None:
        print(f"not waiting: when the jobs ended, `calo-ablate report --study {outcome.study}"
              f"{' --tracking-uri ' + args.tracking_uri if args.tracking_uri else ''}` writes the report")
        return 0
    if outcome.stop_reason:
        print(f"study stopped: {outcome.stop_reason}")
    print(f"report: {outcome.report}")
    progress = outcome.progress
    dead = f"; {', '.join(outcome.dead_workers)}" if outcome.dead_workers else ""
    if outcome.exit_code:
        failed = ", ".join(f"{c} ({e})" for c, e in sorted(progress.failed.items()))
        print(f"incomplete: {progress.done}/{progress.total} cells done"
              + (f"; failed: {failed}" if failed else "") + dead
              + "; run the same command again to retry and resume", file=sys.stderr)
    elif dead:
        print(f"complete: {progress.done}/{progress.total} cells done{dead} (the other workers finished "
              "their units)")
    return outcome.exit_code


def worker(args: Namespace) -> int:
    """`calo-ablate worker --study S --storage URL`: take cells of a running study until none waits."""
    return worker_exit_code(args.study, args.storage, args.results_dir, wait_s=args.wait_for_study)


def report(args: Namespace) -> int:
    """`calo-ablate report --study S`: rebuild table and plots from the MLflow store alone."""
    print(f"report: {rebuild_report(args.study, args.results_dir, args.tracking_uri, args.quality_metric)}")
    return 0


def register(commands: Subcommands) -> None:
    """`list`, `ablate`, `worker` and `report`."""
    p = commands.add_parser("list", help="the ablations of the registry and their difference from the base")
    add_dataset(p)
    add_profile(p, help_text=None)
    add_registry(p)
    p.set_defaults(run=list_ablations)

    _register_ablate(commands)

    p = commands.add_parser("worker", help="join a running study (from this or another machine)")
    p.add_argument("--study", required=True, help="study name")
    p.add_argument("--storage", required=True, help="Optuna storage URL of the study")
    add_results_dir(p)
    p.add_argument("--wait-for-study", type=float, default=0.0, metavar="SECONDS",
                   help="wait up to this long for `ablate` to plan the study (a job started alongside it)")
    p.set_defaults(run=worker)

    p = commands.add_parser("report", help="rebuild a study's report from MLflow alone")
    p.add_argument("--study", required=True, help="study name")
    add_tracking_uri(p, "MLflow tracking URI (default: the study's store)")
    add_results_dir(p)
    p.add_argument("--quality-metric", default=None, metavar="METRIC",
                   help="quality axis of pareto.png and the table's front: auc_low (default), auc_high, auc_high_z, "
                        "fpd, kpd, sep_mean, sep_e_ratio or multiclass")
    p.set_defaults(run=report)


def _register_ablate(commands: Subcommands) -> None:
    p = commands.add_parser("ablate", help="run the ablation study: every (ablation, seed) cell, then the report")
    add_run_options(p)
    _add_seed_options(p)
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes (default 1)")
    p.add_argument("--only", default=None, help="comma-separated ablation names (base is always kept)")
    p.add_argument("--study", default=None, help="study name (default: <dataset>-<profile>)")
    p.add_argument("--storage", default=None, help="Optuna storage URL (default: a file in the study folder)")
    add_registry(p)
    add_results_dir(p)
    _add_failure_options(p)
    _add_launcher_options(p)
    p.set_defaults(run=ablate)


def _add_seed_options(p: ArgumentParser) -> None:
    """How many seeds per ablation: a number, or 'auto' within --max-seeds and --budget."""
    p.add_argument("--seeds", default="2", help="seeds per ablation (default 2), or 'auto': start with 3 and add one "
                   "seed at a time to the rows still undecided, up to --max-seeds or --budget")
    p.add_argument("--max-seeds", type=int, default=None, help="the cap of --seeds auto (default 8)")
    p.add_argument("--budget", default=None, help="wall time for --seeds auto, e.g. 30m, 2h, 90s: no round starts "
                   "that the study's measured cell times say would end past it")


def _add_failure_options(p: ArgumentParser) -> None:
    """What a failed cell does to the study."""
    p.add_argument("--fail-fast", action="store_true", help="stop the study at the first failed cell")
    p.add_argument("--retries", type=int, default=2, help="a cell that failed this many times is not run "
                   "again until --retry-failed (default 2)")
    p.add_argument("--retry-failed", action="store_true", help="run given-up cells again (counts restart)")


def _add_launcher_options(p: ArgumentParser) -> None:
    """How the workers start, and the SLURM jobs' resources."""
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
