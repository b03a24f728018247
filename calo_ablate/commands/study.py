"""`calo-ablate list`, `ablate`, `worker` and `report`: the study's commands (parsing and printing)."""

from __future__ import annotations

import os
import sys
from argparse import Namespace

from calo_ablate.commands.estimate import with_estimate
from calo_ablate.config import canonical_dataset, resolve_config
from calo_ablate.errors import ConfigError
from calo_ablate.study.estimate import parse_budget_seconds
from calo_ablate.study.launch import JobResources, parse_sbatch_options
from calo_ablate.study.plan import describe_difference
from calo_ablate.study.registry import BASE, load_registry
from calo_ablate.study.runner import (
    DEFAULT_MAX_SEEDS,
    StudyRequest,
    join_study,
    rebuild_report,
    run_study,
)
from calo_ablate.study.worker import EXIT_STOPPED, WorkerStopped

__all__ = ["ablate", "list_ablations", "report", "worker"]


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
    pid = os.getpid()
    try:
        failures = join_study(args.study, args.storage, args.results_dir,
                              log=lambda s: print(f"[worker {pid}] {s}", flush=True), wait_s=args.wait_for_study)
    except WorkerStopped as stop:
        print(f"[worker {pid}] stopped: {stop}", flush=True)
        return EXIT_STOPPED
    return 1 if failures else 0


def report(args: Namespace) -> int:
    """`calo-ablate report --study S`: rebuild table and plots from the MLflow store alone."""
    print(f"report: {rebuild_report(args.study, args.results_dir, args.tracking_uri, args.quality_metric)}")
    return 0
