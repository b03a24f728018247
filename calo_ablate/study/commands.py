"""Handlers of `calo-ablate list`, `ablate`, `worker`, `report` and `ui` (wired in calo_ablate/cli.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from argparse import Namespace
from pathlib import Path

from calo_ablate.config import canonical_dataset, resolve_config
from calo_ablate.errors import ConfigError
from calo_ablate.faults import fault_point
from calo_ablate.study.registry import BASE, load_registry

STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def list_ablations(args: Namespace) -> int:
    """Print every registry entry: title, why and its resolved difference from the base."""
    from calo_ablate.study.plan import describe_difference

    dataset = canonical_dataset(args.dataset)
    registry = load_registry(args.registry, dataset=dataset, profile=args.profile)
    base = resolve_config(dataset, args.profile, registry.get(BASE).overrides, seed=0)
    print(f"{registry.path} (dataset {dataset}, profile {args.profile}): {len(registry.ablations)} entries")
    for ablation in registry.ablations:
        config = resolve_config(dataset, args.profile, ablation.overrides, seed=0)
        print(f"\n{ablation.name}: {ablation.title}")
        if ablation.why:
            print(f"  why: {ablation.why}")
        if ablation.name == BASE:
            own = ", ".join(f"{k}={v!r}" for k, v in ablation.overrides.items())
            print(f"  the reference row{'; sets ' + own if own else ''}")
            continue
        lines = describe_difference(ablation, config, base) or ["(no difference from the base)"]
        for line in lines:
            print(f"  {line}")
    return 0


def _study_dir(results_dir: str, study: str) -> Path:
    if not STUDY_NAME.match(study):
        msg = f"study name {study!r}: use letters, digits, '.', '_' or '-' (it names a folder)"
        raise ConfigError(msg)
    return Path(results_dir).resolve() / study


def _only(text: str | None) -> list[str] | None:
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def ablate(args: Namespace) -> int:
    """Validate, make data, set up MLflow and the queue, run the cells, write the report."""
    from calo_ablate.data.source import ensure_data
    from calo_ablate.study import tracking
    from calo_ablate.study.context import StudySettings, build_context, serialise_registry
    from calo_ablate.study.launch import JobResources, submit_workers
    from calo_ablate.study.plan import make_plan
    from calo_ablate.study.queue import REFERENCE_UNIT, StudyQueue, default_storage
    from calo_ablate.study.wallclock import InvocationClock
    from calo_ablate.study.worker import (
        config_hash,
        format_progress,
        mark_given_up,
        run_worker,
        spawn_workers,
        wait_for_others,
        wait_for_workers,
    )
    from calo_ablate.train import default_tracking_uri, ensure_experiment, git_revision

    started = time.perf_counter()
    dataset = canonical_dataset(args.dataset)
    study = args.study or f"{dataset}-{args.profile}"
    clock = InvocationClock(_study_dir(args.results_dir, study))
    if args.workers < 1:
        msg = f"--workers must be at least 1, got {args.workers}"
        raise ConfigError(msg)
    registry = load_registry(args.registry, dataset=dataset, profile=args.profile).select(_only(args.only))
    base_config = resolve_config(dataset, args.profile, registry.get(BASE).overrides, args.overrides, 0)
    study_dir = _study_dir(args.results_dir, study)
    files = ensure_data(dataset, base_config.data.data_dir)
    plan = make_plan(registry, dataset=dataset, profile=args.profile, seeds=args.seeds,
                     checksums=dict(files.checksums), cli_set=args.overrides)
    study_dir.mkdir(parents=True, exist_ok=True)

    tracking_uri = args.tracking_uri or default_tracking_uri(study_dir)
    exp_id = ensure_experiment(tracking_uri, study)
    storage = args.storage or default_storage(study_dir)
    queue = StudyQueue(storage, study, create=True)
    previous = queue.study.user_attrs.get("settings")
    if previous:
        old = json.loads(previous)
        if (old["dataset"], old["profile"]) != (dataset, args.profile):
            msg = (f"study '{study}' in {storage} is a dataset {old['dataset']} / profile {old['profile']} "
                   f"study; choose another --study for dataset {dataset} / profile {args.profile}")
            raise ConfigError(msg)
    rows = [{"name": a.name, "title": a.title} for a in registry.ablations]
    parent_tags = {
        "study": study, "dataset": dataset, "profile": args.profile, "seeds": str(args.seeds),
        "data_source": files.source, "data_checksums": json.dumps(dict(sorted(files.checksums.items()))),
        "machine": tracking.machine_description(), "git_revision": git_revision(),
        "rows": json.dumps(rows), "cli_set": json.dumps(list(args.overrides)),
        "workers": str(args.workers), "evaluate": str(base_config.evaluate.enabled).lower(),
    }
    parent_run_id = tracking.find_or_create_parent(tracking_uri, exp_id, study, parent_tags)
    settings = StudySettings(
        study=study, dataset=dataset, profile=args.profile, seeds=args.seeds, cli_set=list(args.overrides),
        registry_path=str(registry.path), ablations=serialise_registry(registry),
        checksums=dict(files.checksums), data_source=str(files.source), tracking_uri=tracking_uri,
        experiment_id=exp_id, parent_run_id=parent_run_id, fail_fast=bool(args.fail_fast),
        code_version=git_revision(), config_hash=config_hash(plan))
    queue.save_settings(settings.to_json())
    queue.clear_stop()

    units = [(REFERENCE_UNIT, [REFERENCE_UNIT])] if base_config.evaluate.enabled else []
    units += [(u.key, [c.name for c in u.cells]) for u in plan.units()]
    plan_cells = [name for _, cells in units for name in cells]
    queue.set_retries(args.retries, reset=args.retry_failed)
    queue.sync(units)
    given_up = {c: n for c, n in queue.given_up().items() if c in plan_cells}
    mark_given_up(tracking_uri, parent_run_id, given_up)
    pending = [c for c in plan_cells if c not in queue.done_cells() and c not in given_up]
    print(f"study '{study}': {len(plan.cells)} cells ({len(registry.ablations)} ablations x {args.seeds} seeds) "
          f"in {len(units)} units; {len(pending)} cells to run (the reference noise floor counts as one)")
    print(f"  state: {storage}\n  MLflow: {tracking_uri} (experiment '{study}', parent run {parent_run_id})")
    exit_code = 0
    if pending:
        workers = min(args.workers, len({key for key, cells in units if set(cells) & set(pending)}))
        if args.launcher != "process":
            resources = JobResources(args.slurm_partition, args.slurm_time, args.slurm_cpus, args.slurm_gpus)
            jobs = submit_workers(args.launcher, workers, study, storage, study_dir.parent, resources)
            print(f"submitted {workers} worker jobs ({args.launcher}): {', '.join(j.job.job_id for j in jobs)}; "
                  f"logs in {study_dir / 'jobs'}")
            if args.no_wait:
                clock.record(tracking_uri, parent_run_id)
                print(f"not waiting: when the jobs ended, `calo-ablate report --study {study}"
                      f"{' --tracking-uri ' + tracking_uri if args.tracking_uri else ''}` writes the report")
                return 0
            exit_code = 1 if any(wait_for_workers(jobs, queue, plan_cells)) else 0
        elif workers == 1:
            ctx = build_context(settings, files, study_dir, 1)
            if run_worker(ctx, queue, plan_cells):
                exit_code = 1
        else:
            codes = wait_for_workers(spawn_workers(workers, study, storage, study_dir.parent), queue, plan_cells)
            exit_code = 1 if any(codes) else 0
        wait_for_others(queue, plan_cells)
        print(format_progress(queue.progress(plan_cells)))
    progress = queue.progress(plan_cells)
    if progress.failed or progress.done < progress.total:
        exit_code = 1
    stop = queue.stop_reason()
    if stop:
        print(f"study stopped: {stop}")
    clock.record(tracking_uri, parent_run_id)
    path = _write_report(study_dir, tracking_uri, parent_run_id)
    tracking.client(tracking_uri).set_terminated(parent_run_id, "FAILED" if exit_code else "FINISHED")
    print(f"report: {path} ({time.perf_counter() - started:.0f} s in this call)")
    if exit_code:
        failed = ", ".join(f"{c} ({e})" for c, e in sorted(progress.failed.items()))
        print(f"incomplete: {progress.done}/{progress.total} cells done"
              + (f"; failed: {failed}" if failed else "")
              + "; run the same command again to retry and resume", file=sys.stderr)
    return exit_code


def _write_report(study_dir: Path, tracking_uri: str, parent_run_id: str) -> Path:
    from calo_ablate.report.plots import write_plots
    from calo_ablate.report.table import build_table, write_table
    from calo_ablate.study.tracking import log_artifacts

    table = build_table(tracking_uri, parent_run_id)
    paths = write_table(table, study_dir)
    fault_point("mid-report")
    paths += write_plots(table, tracking_uri, study_dir)
    log_artifacts(tracking_uri, parent_run_id, paths)
    return paths[0]


def worker(args: Namespace) -> int:
    """`calo-ablate worker --study S --storage URL`: take cells of a running study until none waits."""
    from calo_ablate.data.source import ensure_data
    from calo_ablate.study.context import StudySettings, build_context
    from calo_ablate.study.queue import REFERENCE_UNIT
    from calo_ablate.study.worker import open_planned_study, run_worker

    queue = open_planned_study(args.storage, args.study, args.wait_for_study)
    settings = StudySettings.from_json(queue.settings())
    base = resolve_config(settings.dataset, settings.profile, settings.registry().get(BASE).overrides,
                          settings.cli_set, 0)
    files = ensure_data(settings.dataset, base.data.data_dir, log=lambda s: None)
    spawned = "CALO_ABLATE_WORKERS_HERE" in os.environ  # started by `ablate`, which shows the progress
    workers_here = int(os.environ.get("CALO_ABLATE_WORKERS_HERE", "1"))
    pid = os.getpid()
    ctx = build_context(settings, files, _study_dir(args.results_dir, args.study), workers_here,
                        log=lambda s: print(f"[worker {pid}] {s}", flush=True))
    plan_cells = ([REFERENCE_UNIT] if base.evaluate.enabled else []) + [c.name for c in ctx.plan.cells]
    return 1 if run_worker(ctx, queue, plan_cells, show_progress=not spawned) else 0


def report(args: Namespace) -> int:
    """`calo-ablate report --study S`: rebuild table and plots from the MLflow store alone."""
    from calo_ablate.study.tracking import find_parent

    study_dir = _study_dir(args.results_dir, args.study)
    tracking_uri = args.tracking_uri
    if tracking_uri is None:
        db = study_dir / "mlflow.db"
        if not db.is_file():
            msg = f"no MLflow store at {db}: give --tracking-uri, or run `calo-ablate ablate --study {args.study}`"
            raise ConfigError(msg)
        tracking_uri = f"sqlite:///{db}"
    parent = find_parent(tracking_uri, args.study)
    if parent is None:
        msg = f"the MLflow store {tracking_uri} holds no study '{args.study}'"
        raise ConfigError(msg)
    study_dir.mkdir(parents=True, exist_ok=True)
    print(f"report: {_write_report(study_dir, tracking_uri, parent)}")
    return 0


def ui(args: Namespace) -> int:
    """`calo-ablate ui [--study S]`: the MLflow UI on 127.0.0.1 for a study's store (default: the newest)."""
    results = Path(args.results_dir).resolve()
    if args.study:
        db = _study_dir(args.results_dir, args.study) / "mlflow.db"
    else:
        stores = sorted(results.glob("*/mlflow.db"), key=lambda p: p.stat().st_mtime)
        if not stores:
            msg = f"no study store under {results}/*/mlflow.db: run `make ablate` first"
            raise ConfigError(msg)
        db = stores[-1]
    if not db.is_file():
        msg = f"no MLflow store at {db}"
        raise ConfigError(msg)
    mlflow = Path(sys.executable).with_name("mlflow")
    command = [str(mlflow) if mlflow.is_file() else "mlflow", "ui", "--backend-store-uri", f"sqlite:///{db}",
               "--host", "127.0.0.1", "--port", str(args.port)]
    print(f"MLflow UI for {db.parent.name} on http://127.0.0.1:{args.port} (Ctrl-C stops it)")
    return subprocess.call(command)
