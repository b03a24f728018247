"""The `ablate` flow, a joining worker's flow and the report, for the commands to call.

`run_study`, in order: validate the registry and every cell's config; resolve every cell once; find
or make the data; plan (keys from the data checksums); create the MLflow store, the study's
experiment and parent run, and the Optuna study (settings with the serialised plan); run the cells
with `workers` processes (in-process for one); write the report. `join_study` is `calo-ablate worker`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from calo_ablate.config import canonical_dataset
from calo_ablate.data.source import ensure_data
from calo_ablate.errors import ConfigError
from calo_ablate.report.findings import sections
from calo_ablate.report.plots import write_plots
from calo_ablate.report.table import build_table, run_description, write_table
from calo_ablate.report.verdicts import table_marks
from calo_ablate.runs import record
from calo_ablate.runs.faults import fault_point
from calo_ablate.study.context import WORKERS_HERE_ENV, Log, StudySettings, build_context
from calo_ablate.study.launch import JobResources, submit_workers
from calo_ablate.study.plan import make_plan, resolve_cells
from calo_ablate.study.queue import REFERENCE_UNIT, Progress, StudyQueue, default_storage
from calo_ablate.study.registry import load_registry
from calo_ablate.study.wallclock import InvocationClock
from calo_ablate.study.worker import (
    format_progress,
    mark_given_up,
    open_planned_study,
    run_worker,
    spawn_workers,
    wait_for_others,
    wait_for_workers,
)

__all__ = ["StudyOutcome", "StudyRequest", "find_store", "join_study", "rebuild_report", "run_study", "study_dir",
           "write_report"]

STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
STORE_FILE = "mlflow.db"


@dataclass(frozen=True)
class StudyRequest:
    """What `calo-ablate ablate` asks for."""

    dataset: str
    profile: str
    seeds: int
    workers: int
    cli_set: list[str]
    only: list[str] | None = None
    study: str | None = None
    registry: str | None = None
    results_dir: str = "results"
    storage: str | None = None
    tracking_uri: str | None = None
    fail_fast: bool = False
    retries: int = 2  # a cell that failed this many times is given up until retry_failed
    retry_failed: bool = False
    launcher: str = "process"  # process | slurm | local (submitit jobs)
    resources: JobResources | None = None  # per job, for the job launchers
    wait: bool = True  # job launchers: wait for the jobs, else return once submitted


@dataclass(frozen=True)
class StudyOutcome:
    study: str
    cells: int
    progress: Progress
    stop_reason: str
    report: Path | None  # None when the call returned before the report (submitted jobs, no wait)
    exit_code: int  # 0 when every cell is done (or jobs were submitted without waiting), else 1


def study_dir(results_dir: str | Path, study: str) -> Path:
    if not STUDY_NAME.match(study):
        msg = f"study name {study!r}: use letters, digits, '.', '_' or '-' (it names a folder)"
        raise ConfigError(msg)
    return Path(results_dir).resolve() / study


def _check_same_study(queue: StudyQueue, study: str, storage: str, dataset: str, profile: str) -> None:
    previous = queue.study.user_attrs.get("settings")
    if not previous:
        return
    plan = json.loads(previous).get("plan", {})
    if (plan.get("dataset"), plan.get("profile")) != (dataset, profile):
        msg = (f"study '{study}' in {storage} is a dataset {plan.get('dataset')} / profile {plan.get('profile')} "
               f"study; choose another --study for dataset {dataset} / profile {profile}")
        raise ConfigError(msg)


def run_study(request: StudyRequest, log: Log = print) -> StudyOutcome:
    """Plan, run every pending cell, write the report; safe to call again (it resumes)."""
    dataset = canonical_dataset(request.dataset)
    study = request.study or f"{dataset}-{request.profile}"
    folder = study_dir(request.results_dir, study)
    clock = InvocationClock(folder)
    if request.workers < 1:
        msg = f"--workers must be at least 1, got {request.workers}"
        raise ConfigError(msg)
    registry = load_registry(request.registry, dataset=dataset, profile=request.profile).select(request.only)
    resolved = resolve_cells(registry, dataset=dataset, profile=request.profile, seeds=request.seeds,
                             cli_set=request.cli_set)
    base_config = resolved[0][2]  # the base of seed 0 (the registry starts with the base)
    files = ensure_data(dataset, base_config.data.data_dir)
    plan = make_plan(registry, dataset=dataset, profile=request.profile, seeds=request.seeds,
                     checksums=dict(files.checksums), cli_set=request.cli_set, resolved=resolved)
    folder.mkdir(parents=True, exist_ok=True)

    tracking_uri = request.tracking_uri or record.default_tracking_uri(folder)
    exp_id = record.ensure_experiment(tracking_uri, study)
    storage = request.storage or default_storage(folder)
    queue = StudyQueue(storage, study, create=True)
    _check_same_study(queue, study, storage, dataset, request.profile)
    evaluate = base_config.evaluate.enabled
    parent_tags = {
        record.TAG_STUDY: study, record.TAG_DATASET: dataset, record.TAG_PROFILE: request.profile,
        record.TAG_SEEDS: str(request.seeds), record.TAG_DATA_SOURCE: files.source,
        record.TAG_DATA_CHECKSUMS: json.dumps(dict(sorted(files.checksums.items()))),
        record.TAG_MACHINE: record.machine_description(), record.TAG_GIT_REVISION: record.git_revision(),
        record.TAG_ROWS: json.dumps([{"name": a.name, "title": a.title, "expect": a.expect}
                                     for a in registry.ablations]),
        record.TAG_CLI_SET: json.dumps(list(request.cli_set)), record.TAG_WORKERS: str(request.workers),
        record.TAG_EVALUATE: str(evaluate).lower(),
    }
    parent_run_id = record.find_or_create_parent(tracking_uri, exp_id, study, parent_tags)
    settings = StudySettings(
        study=study, plan=plan.to_json(), checksums=dict(files.checksums), data_source=str(files.source),
        data_dir=base_config.data.data_dir, tracking_uri=tracking_uri, experiment_id=exp_id,
        parent_run_id=parent_run_id, fail_fast=request.fail_fast, code_version=record.code_digest(),
        config_hash=plan.config_hash())
    queue.save_settings(settings.to_json())
    queue.clear_stop()

    units = [(REFERENCE_UNIT, [REFERENCE_UNIT])] if evaluate else []
    units += [(u.key, [c.name for c in u.cells]) for u in plan.units()]
    plan_cells = [name for _, cells in units for name in cells]
    queue.set_retries(request.retries, reset=request.retry_failed)
    queue.sync(units)
    given_up = {c: n for c, n in queue.given_up().items() if c in plan_cells}
    mark_given_up(tracking_uri, parent_run_id, given_up, log)
    pending = [c for c in plan_cells if c not in queue.done_cells() and c not in given_up]
    log(f"study '{study}': {len(plan.cells)} cells ({len(registry.ablations)} ablations x {request.seeds} seeds) "
        f"in {len(units)} units; {len(pending)} cells to run (the reference noise floor counts as one)")
    log(f"  state: {storage}\n  MLflow: {tracking_uri} (experiment '{study}', parent run {parent_run_id})")
    exit_code = 0
    if pending:
        workers = min(request.workers, len({key for key, cells in units if set(cells) & set(pending)}))
        if request.launcher != "process":
            resources = request.resources or JobResources(None, 240, 4, 0)
            jobs = submit_workers(request.launcher, workers, study, storage, folder.parent, resources)
            log(f"submitted {workers} worker jobs ({request.launcher}): {', '.join(j.job.job_id for j in jobs)}; "
                f"logs in {folder / 'jobs'}")
            if not request.wait:
                clock.record(tracking_uri, parent_run_id)
                return StudyOutcome(study, len(plan_cells), queue.progress(plan_cells), "", None, 0)
            exit_code = 1 if any(wait_for_workers(jobs, queue, plan_cells, log)) else 0
        elif workers == 1:
            ctx = build_context(settings, files, folder, 1, log=log, plan=plan)
            if run_worker(ctx, queue, plan_cells):
                exit_code = 1
        else:
            codes = wait_for_workers(spawn_workers(workers, study, storage, folder.parent), queue, plan_cells, log)
            exit_code = 1 if any(codes) else 0
        wait_for_others(queue, plan_cells, log)
        log(format_progress(queue.progress(plan_cells)))
    progress = queue.progress(plan_cells)
    if progress.failed or progress.done < progress.total:
        exit_code = 1
    clock.record(tracking_uri, parent_run_id)
    report = write_report(folder, tracking_uri, parent_run_id)
    record.client(tracking_uri).set_terminated(parent_run_id, "FAILED" if exit_code else "FINISHED")
    return StudyOutcome(study, len(plan_cells), progress, queue.stop_reason(), report, exit_code)


def join_study(study: str, storage: str, results_dir: str | Path, log: Log = print, wait_s: float = 0.0) -> int:
    """`calo-ablate worker`: take cells of a running study until none waits; returns the failed units.

    wait_s: how long to wait for `ablate` to plan the study (a job started alongside it)."""
    queue = open_planned_study(storage, study, wait_s)
    settings = StudySettings.from_json(queue.settings())
    files = ensure_data(settings.dataset, settings.data_dir, log=lambda s: None)
    spawned = WORKERS_HERE_ENV in os.environ  # started by `ablate`, which shows the progress
    ctx = build_context(settings, files, study_dir(results_dir, study), int(os.environ.get(WORKERS_HERE_ENV, "1")),
                        log=log)
    evaluate = ctx.plan.base_cell(0).config.evaluate.enabled
    plan_cells = ([REFERENCE_UNIT] if evaluate else []) + [c.name for c in ctx.plan.cells]
    return run_worker(ctx, queue, plan_cells, show_progress=not spawned)


def write_report(folder: Path, tracking_uri: str, parent_run_id: str) -> Path:
    """table.md, table.csv and the plots from MLflow, logged as the parent run's artifacts (table.md also
    as its description); returns table.md."""
    table = build_table(tracking_uri, parent_run_id)
    paths = write_table(table, folder, sections(table), table_marks(table))
    fault_point("mid-report")
    paths += write_plots(table, tracking_uri, folder)
    record.log_artifacts(tracking_uri, parent_run_id, paths)
    record.set_tags(tracking_uri, parent_run_id, {record.TAG_DESCRIPTION: run_description(paths[0].read_text())})
    return paths[0]


def rebuild_report(study: str, results_dir: str | Path, tracking_uri: str | None = None) -> Path:
    """`calo-ablate report`: the report from the MLflow store alone (the study's own store by default)."""
    folder = study_dir(results_dir, study)
    if tracking_uri is None:
        db = folder / STORE_FILE
        if not db.is_file():
            msg = f"no MLflow store at {db}: give --tracking-uri, or run `calo-ablate ablate --study {study}`"
            raise ConfigError(msg)
        tracking_uri = f"sqlite:///{db}"
    parent = record.find_parent(tracking_uri, study)
    if parent is None:
        msg = f"the MLflow store {tracking_uri} holds no study '{study}'"
        raise ConfigError(msg)
    folder.mkdir(parents=True, exist_ok=True)
    return write_report(folder, tracking_uri, parent)


def find_store(results_dir: str | Path, study: str | None) -> Path:
    """The SQLite MLflow store of a study (default: the newest under results_dir)."""
    if study:
        db = study_dir(results_dir, study) / STORE_FILE
    else:
        results = Path(results_dir).resolve()
        stores = sorted(results.glob(f"*/{STORE_FILE}"), key=lambda p: p.stat().st_mtime)
        if not stores:
            msg = f"no study store under {results}/*/{STORE_FILE}: run `make ablate` first"
            raise ConfigError(msg)
        db = stores[-1]
    if not db.is_file():
        msg = f"no MLflow store at {db}"
        raise ConfigError(msg)
    return db

