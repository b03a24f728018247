"""The `ablate` flow, a joining worker's flow and the report, for the commands to call.

`run_study`, in order: check the request; validate the registry and resolve every entry's config once
(with the --set options); find or make the data; fork the worker processes (with --workers > 1: forked, they need no start-up
of their own and wait for this call's settings; study/forked.py says what this process must not do before);
create the MLflow store, the study's experiment and the Optuna study (`_set_up`); per round
(`_run_rounds`, one unless --seeds auto): plan the cells (the entries' configs with their seeds, keys from
the data checksums), record the parent run, queue the units, save the settings with the serialised plan,
run the pending cells with `workers` processes (in-process for one; a later round forks its own) or
jobs; write the report. `worker_exit_code` is `calo-ablate worker`, and each forked worker.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import uuid
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch

from calo_ablate.config import canonical_dataset
from calo_ablate.data.source import DataFiles, ensure_data
from calo_ablate.errors import ConfigError
from calo_ablate.report.findings import sections
from calo_ablate.report.pareto import choose_metric, quality_columns
from calo_ablate.report.plots import write_plots
from calo_ablate.report.table import build_table, run_description, write_table
from calo_ablate.report.verdicts import table_marks, undecided_rows
from calo_ablate.runs.faults import fault_point
from calo_ablate.runs.names import (
    REFERENCE,
    TAG_CLI_SET,
    TAG_DATA_CHECKSUMS,
    TAG_DATA_SOURCE,
    TAG_DATASET,
    TAG_DESCRIPTION,
    TAG_EVALUATE,
    TAG_GIT_REVISION,
    TAG_MACHINE,
    TAG_MARGINS,
    TAG_PROFILE,
    TAG_ROWS,
    TAG_SEED_DESIGN,
    TAG_SEEDS,
    TAG_SEEDS_BY_ROW,
    TAG_STUDY,
    TAG_WORKERS,
)
from calo_ablate.runs.provenance import code_digest, git_revision, machine_description
from calo_ablate.runs.resume import remove_stale_temps
from calo_ablate.runs.samples import SAMPLES_DIR
from calo_ablate.runs.tracker import Tracker, default_tracking_uri
from calo_ablate.study.context import (
    CALL_ENV,
    WORKERS_HERE_ENV,
    Log,
    StudySettings,
    build_context,
    threads_per_worker,
)
from calo_ablate.study.estimate import estimate_seconds, estimate_tags, measured_cell_seconds
from calo_ablate.study.forked import ForkedWorker
from calo_ablate.study.launch import JobResources, run_jobs
from calo_ablate.study.llr import add_llr
from calo_ablate.study.multiclass import add_multiclass
from calo_ablate.study.plan import Plan, make_plan
from calo_ablate.study.queue import Progress, StudyQueue, default_storage, pid_alive
from calo_ablate.study.registry import BASE, Registry, load_registry
from calo_ablate.study.wallclock import FOLDER as INVOCATIONS
from calo_ablate.study.wallclock import InvocationClock
from calo_ablate.study.worker import (
    EXIT_STOPPED,
    PLAN_WAIT_S,
    WorkerEnd,
    WorkerStopped,
    describe_process_end,
    format_progress,
    mark_given_up,
    open_planned_study,
    run_worker,
    spawn_workers,
    wait_for_others,
    wait_for_workers,
)

__all__ = ["StudyOutcome", "StudyRequest", "find_store", "forks_workers", "join_study", "rebuild_report", "run_study",
           "study_dir", "worker_exit_code", "write_report"]

STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
STORE_FILE = "mlflow.db"
AUTO_FIRST_SEEDS = 3  # --seeds auto starts here (the fewest with which a paired test has 2 degrees of freedom)
DEFAULT_MAX_SEEDS = 8  # --max-seeds


@dataclass(frozen=True)
class StudyRequest:
    """What `calo-ablate ablate` asks for."""

    dataset: str
    profile: str
    seeds: int  # per row; ignored with auto_seeds
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
    auto_seeds: bool = False  # --seeds auto: add seeds to the undecided rows (report/stats.Design)
    max_seeds: int = DEFAULT_MAX_SEEDS  # --max-seeds: the cap of --seeds auto
    budget_s: float | None = None  # --budget: no round of --seeds auto starts that would end past it
    estimate_s: float | None = None  # the wall time estimated from this machine's rates before the start
    estimate_basis: str = ""  # the rates it came from (study/estimate.py estimate_tags)


@dataclass(frozen=True)
class StudyOutcome:
    study: str
    cells: int
    progress: Progress
    stop_reason: str
    report: Path | None  # None when the call returned before the report (submitted jobs, no wait)
    exit_code: int  # 0 when every cell is done (or jobs were submitted without waiting), else 1
    worker_ends: tuple[WorkerEnd, ...] = ()  # how this call's worker processes or jobs ended

    @property
    def dead_workers(self) -> list[str]:
        """The workers that died, in words ('worker pid 12 killed by SIGKILL')."""
        return [end.how for end in self.worker_ends if end.died]


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


def _seeds_so_far(tracker: Tracker, study: str) -> dict[str, int]:
    """The seeds each row had in an earlier call on this study (parent tag seeds_by_row); {} for a new study."""
    parent = tracker.find_parent(study)
    if parent is None:
        return {}
    try:
        return {str(k): int(v) for k, v in json.loads(tracker.client.get_run(parent).data.tags.get(
            TAG_SEEDS_BY_ROW, "{}")).items()}
    except (ValueError, TypeError, AttributeError):
        return {}


@dataclass
class _Study:
    """What every round of a study shares (the result of run_study's set-up)."""

    request: StudyRequest
    study: str
    folder: Path
    registry: Registry  # every entry resolved once, with the request's --set options
    files: DataFiles
    tracker: Tracker
    storage: str
    queue: StudyQueue
    parent_tags: dict[str, str]
    log: Log
    call_id: str  # this call's, in the settings it saves (the workers it started wait for them)
    started: list[ForkedWorker] = field(default_factory=list)  # workers started before the set-up, not yet run


def _record_parent(s: _Study, plan: Plan, seeds: dict[str, int]) -> tuple[str, StudySettings]:
    """The study's parent run (found or made, with this round's seeds) and the settings the workers read
    (saved by `_save_settings` once the units are queued)."""
    tags = {**s.parent_tags, TAG_SEEDS: str(plan.seeds), TAG_SEEDS_BY_ROW: json.dumps(seeds)}
    parent_run_id = s.tracker.find_or_create_parent(s.study, tags)
    settings = StudySettings(
        study=s.study, plan=plan.to_json(), checksums=dict(s.files.checksums), data_source=str(s.files.source),
        data_dir=s.registry.configs[BASE].data.data_dir, tracking_uri=s.tracker.uri,
        experiment_id=s.tracker.experiment_id, parent_run_id=parent_run_id, fail_fast=s.request.fail_fast,
        code_version=code_digest(), config_hash=plan.config_hash(), call_id=s.call_id)
    return parent_run_id, settings


def _save_settings(s: _Study, settings: StudySettings) -> None:
    """The settings in the queue, the stop flag cleared first: a worker waiting for this call's settings
    starts as soon as they are there, with every unit queued."""
    s.queue.clear_stop()
    s.queue.save_settings(settings.to_json())


def _queue_units(s: _Study, plan: Plan) -> list[tuple[str, list[str]]]:
    """The round's units (key, cell names) in the queue: the reference noise floor first (when the study
    evaluates), then the plan's train units."""
    units = [(REFERENCE, [REFERENCE])] if s.registry.configs[BASE].evaluate.enabled else []
    units += [(u.key, [c.name for c in u.cells]) for u in plan.units()]
    s.queue.set_retries(s.request.retries, reset=s.request.retry_failed)
    s.queue.sync(units)
    return units


def _pending_cells(s: _Study, parent_run_id: str, plan_cells: list[str]) -> list[str]:
    """The cells neither done nor given up (those given up are marked on the parent run)."""
    given_up = {c: n for c, n in s.queue.given_up().items() if c in plan_cells}
    mark_given_up(s.tracker, parent_run_id, given_up, s.log)
    return [c for c in plan_cells if c not in s.queue.done_cells() and c not in given_up]


def _run_workers(s: _Study, settings: StudySettings, plan: Plan, units: list[tuple[str, list[str]]],
                 plan_cells: list[str], pending: list[str]) -> tuple[WorkerEnd, ...] | None:
    """Run the pending cells: jobs of the request's launcher, this process (one worker) or worker
    processes; how each worker ended, or None when jobs were submitted without waiting for them."""
    request, log, queue = s.request, s.log, s.queue
    workers = min(request.workers, len({key for key, cells in units if set(cells) & set(pending)}))
    ends: list[WorkerEnd] = []
    if request.launcher != "process":
        resources = request.resources or JobResources(None, 240, 4, 0)
        ends = run_jobs(request.launcher, workers, s.study, s.storage, s.folder.parent, resources, queue,
                        plan_cells, log, wait=request.wait)
        if not request.wait:
            return None
    elif not forks_workers(request):  # --workers 1: this process (one that forks never trains: study/forked.py)
        ctx = build_context(settings, s.files, s.folder, 1, log=log, plan=plan)
        try:
            run_worker(ctx, queue, plan_cells)
        except WorkerStopped as stop:
            log(f"stopped: {stop}")
    else:
        procs = s.started or _fork_workers(workers, s.study, s.storage, s.folder.parent, s.call_id)
        s.started = []
        wait_for_workers(procs, queue, plan_cells, log)
        ends = [describe_process_end(p) for p in procs]
    wait_for_others(queue, plan_cells, log)
    log(format_progress(queue.progress(plan_cells)))
    return tuple(ends)


def _run_round(s: _Study, seeds: dict[str, int]) -> tuple[StudyOutcome, str, bool]:
    """Plan the cells of `seeds` (row -> seeds 0..n-1) and run every pending one: the outcome (no report yet),
    the parent run id, and whether the cells ran (False: jobs submitted without waiting)."""
    plan = make_plan(s.registry, seeds=seeds, checksums=dict(s.files.checksums))
    parent_run_id, settings = _record_parent(s, plan, seeds)
    units = _queue_units(s, plan)
    _save_settings(s, settings)
    plan_cells = [name for _, cells in units for name in cells]
    pending = _pending_cells(s, parent_run_id, plan_cells)
    counts = sorted(set(seeds.values()))
    seeds_text = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    s.log(f"study '{s.study}': {len(plan.cells)} cells ({len(s.registry.ablations)} ablations x {seeds_text} "
          f"seeds) in {len(units)} units; {len(pending)} cells to run (the reference noise floor counts as one)")
    s.log(f"  state: {s.storage}\n  MLflow: {s.tracker.uri} (experiment '{s.study}', parent run {parent_run_id})")
    ends = _run_workers(s, settings, plan, units, plan_cells, pending) if pending else ()
    if ends is None:
        return StudyOutcome(s.study, len(plan_cells), s.queue.progress(plan_cells), "", None, 0), parent_run_id, False
    progress = s.queue.progress(plan_cells)
    exit_code = 0 if progress.done == progress.total else 1  # a worker that died while others finished: 0
    return StudyOutcome(s.study, len(plan_cells), progress, s.queue.stop_reason(), None, exit_code, ends), \
        parent_run_id, True


def _next_seeds(s: _Study, parent_run_id: str, seeds: dict[str, int], clock: InvocationClock) -> dict[str, int] | None:
    """`--seeds auto`: one more seed for the base, every row still undecided and the rows they are derived
    from (a derived cell starts from its teacher's cell of the same seed), or None (and why, logged)
    when every row is decided, the cap is reached or the next round would not fit the budget."""
    request, log = s.request, s.log
    table = build_table(s.tracker, parent_run_id)
    undecided = undecided_rows(table)
    most = max(seeds.values())
    if not undecided:
        log(f"--seeds auto: every row is decided at {most} seeds or fewer")
        return None
    if most >= request.max_seeds:
        log(f"--seeds auto: the cap of {request.max_seeds} seeds is reached; undecided: {', '.join(undecided)}")
        return None
    extended = {BASE, *undecided, *(t for name in undecided for t in s.registry.teacher_chain(name))}
    new_cells = {name: most + 1 - seeds[name] for name in extended}
    if request.budget_s is not None:
        estimate = estimate_seconds(measured_cell_seconds(table), new_cells, request.workers)
        if estimate is not None and clock.seconds() + estimate > request.budget_s:
            log(f"--seeds auto: the budget of {request.budget_s / 60:.1f} min would be passed (spent "
                f"{clock.seconds() / 60:.1f} min, next round estimated at {estimate / 60:.1f} min); "
                f"undecided: {', '.join(undecided)}")
            return None
    log(f"--seeds auto: seed {most + 1} for {', '.join(sorted(extended))} (still undecided: {', '.join(undecided)})")
    return {**seeds, **{name: most + 1 for name in extended}}


def _check_request(request: StudyRequest) -> None:
    if request.workers < 1:
        msg = f"--workers must be at least 1, got {request.workers}"
        raise ConfigError(msg)
    if request.auto_seeds and request.max_seeds < 2:
        msg = f"--max-seeds must be at least 2 with --seeds auto, got {request.max_seeds}"
        raise ConfigError(msg)


def _rows_tag(registry: Registry) -> str:
    """The parent run's rows: name, title, expectations and, where the compared row is in the study,
    `compare` (the row the report compares with seed by seed)."""
    rows = []
    for a in registry.ablations:
        row: dict[str, object] = {"name": a.name, "title": a.title, "expect": a.expect}
        if a.compare is not None and a.compare in registry.names():
            row["compare"] = a.compare
        rows.append(row)
    return json.dumps(rows)


def _parent_tags(request: StudyRequest, study: str, registry: Registry, files: DataFiles,
                 new_study: bool) -> dict[str, str]:
    """The parent run's tags that every round keeps (a round adds its seeds). The estimate is of the whole
    study, so only the call that starts it records one: a later call's would not be "before the start"."""
    design = {"first": _first_seeds(request), "cap": request.max_seeds} if request.auto_seeds else None
    return {
        TAG_STUDY: study, TAG_DATASET: registry.dataset, TAG_PROFILE: request.profile,
        TAG_DATA_SOURCE: files.source,
        TAG_DATA_CHECKSUMS: json.dumps(dict(sorted(files.checksums.items()))),
        TAG_MACHINE: machine_description(), TAG_GIT_REVISION: git_revision(),
        TAG_ROWS: _rows_tag(registry),
        TAG_CLI_SET: json.dumps(list(request.cli_set)), TAG_WORKERS: str(request.workers),
        TAG_EVALUATE: str(registry.configs[BASE].evaluate.enabled).lower(),
        TAG_MARGINS: json.dumps(registry.margins),
        TAG_SEED_DESIGN: json.dumps(design) if design else "",
        **(estimate_tags(request.estimate_s, request.estimate_basis) if new_study else {}),
    }


def _set_up(request: StudyRequest, dataset: str, study: str, folder: Path, log: Log,
            started: list[ForkedWorker]) -> _Study:
    """The registry (validated, every entry resolved once), the data, then the worker processes (with
    --workers > 1 and the process launcher), the MLflow experiment (a new study's store is a copy of
    an empty one: runs/mlflow_store.py), the queue and the parent run's tags. `started` receives the workers as
    they start, for the caller to end should anything fail before they run."""
    registry = load_registry(request.registry, dataset=dataset, profile=request.profile,
                             cli_set=request.cli_set).select(request.only)
    files = ensure_data(dataset, registry.configs[BASE].data.data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    storage = request.storage or default_storage(folder)
    call_id = uuid.uuid4().hex
    if forks_workers(request):
        started += _fork_workers(request.workers, study, storage, folder.parent, call_id)
    tracker = Tracker(request.tracking_uri or default_tracking_uri(folder))
    tracker.ensure_experiment(study)
    queue = StudyQueue(storage, study, create=True)
    _check_same_study(queue, study, storage, dataset, request.profile)
    new_study = tracker.find_parent(study) is None
    return _Study(request, study, folder, registry, files, tracker, storage, queue,
                  _parent_tags(request, study, registry, files, new_study), log, call_id, started)


def forks_workers(request: StudyRequest) -> bool:
    """Whether `ablate` forks worker processes (then it keeps torch to one thread until the report:
    study/forked.py)."""
    return request.launcher == "process" and request.workers > 1


def _fork_workers(n: int, study: str, storage: str, results_dir: Path, call_id: str) -> list[ForkedWorker]:
    return spawn_workers(n, partial(worker_exit_code, study, storage, results_dir, PLAN_WAIT_S), call_id)


def _first_seeds(request: StudyRequest) -> int:
    return min(AUTO_FIRST_SEEDS, request.max_seeds) if request.auto_seeds else request.seeds


def _run_rounds(s: _Study, clock: InvocationClock) -> tuple[StudyOutcome, str, bool]:
    """One round, or with --seeds auto rounds until every row is decided, the cap or the budget: the last
    round's outcome with every round's worker ends, the parent run id, and whether the cells ran."""
    request = s.request
    seeds = {a.name: _first_seeds(request) for a in s.registry.ablations}
    if request.auto_seeds:  # a rerun continues from the seeds each row already has
        so_far = _seeds_so_far(s.tracker, s.study)
        seeds = {name: min(max(n, so_far.get(name, 0)), request.max_seeds) for name, n in seeds.items()}
    ends: tuple[WorkerEnd, ...] = ()  # every round's, so a worker that died in an early round is named
    while True:
        outcome, parent_run_id, ran = _run_round(s, seeds)
        ends += outcome.worker_ends
        if not ran or not request.auto_seeds or outcome.exit_code or outcome.stop_reason:
            break
        following = _next_seeds(s, parent_run_id, seeds, clock)
        if following is None:
            break
        seeds = following
    return dataclasses.replace(outcome, worker_ends=ends), parent_run_id, ran


def run_study(request: StudyRequest, log: Log = print) -> StudyOutcome:
    """Plan, run every pending cell, write the report; safe to call again (it resumes). With
    request.auto_seeds, rounds follow until every row is decided, request.max_seeds or request.budget_s."""
    _check_request(request)
    dataset = canonical_dataset(request.dataset)
    study = request.study or f"{dataset}-{request.profile}"
    folder = study_dir(request.results_dir, study)
    for path in remove_stale_temps([folder / INVOCATIONS, folder / SAMPLES_DIR, *folder.glob("runs/*")],
                                   pid_alive):
        log(f"removed {path}: the temporary file of a write that was killed before its rename")
    clock = InvocationClock(folder)
    started: list[ForkedWorker] = []
    try:
        s = _set_up(request, dataset, study, folder, log, started)
        outcome, parent_run_id, ran = _run_rounds(s, clock)
    finally:  # workers started in the set-up that did not run (it failed, or nothing was pending) end here
        for proc in started:
            if proc.poll() is None:
                proc.terminate()
            proc.wait()
    clock.record(s.tracker, parent_run_id)
    if not ran:
        return outcome
    torch.set_num_threads(threads_per_worker(1))  # the report's classifiers: every core, no fork follows
    report = write_report(folder, s.tracker, parent_run_id)  # with this call's wall time
    s.tracker.client.set_terminated(parent_run_id, "FAILED" if outcome.exit_code else "FINISHED")
    return dataclasses.replace(outcome, report=report)


def join_study(study: str, storage: str, results_dir: str | Path, log: Log = print, wait_s: float = 0.0) -> int:
    """`calo-ablate worker`: take cells of a running study until none waits; returns the failed units.

    wait_s: how long to wait for `ablate` to plan the study (a job started alongside it)."""
    queue = open_planned_study(storage, study, wait_s, call_id=os.environ.get(CALL_ENV, ""))
    settings = StudySettings.from_json(queue.settings())
    files = ensure_data(settings.dataset, settings.data_dir, log=lambda s: None)
    spawned = WORKERS_HERE_ENV in os.environ  # started by `ablate`, which shows the progress
    ctx = build_context(settings, files, study_dir(results_dir, study), int(os.environ.get(WORKERS_HERE_ENV, "1")),
                        log=log)
    torch.set_num_threads(ctx.threads)  # also for the noise floor and evaluations before any training
    evaluate = ctx.plan.base_cell(0).config.evaluate.enabled
    plan_cells = ([REFERENCE] if evaluate else []) + [c.name for c in ctx.plan.cells]
    return run_worker(ctx, queue, plan_cells, show_progress=not spawned)


def worker_exit_code(study: str, storage: str, results_dir: str | Path, wait_s: float = 0.0) -> int:
    """`calo-ablate worker`, and each worker `ablate` forks: join the study (its lines prefixed with the
    worker's pid). 0 when every unit it ran succeeded, 1 with failed cells, EXIT_STOPPED when a signal
    stopped it (its unit handed back)."""
    pid = os.getpid()
    try:
        failures = join_study(study, storage, results_dir, log=lambda s: print(f"[worker {pid}] {s}", flush=True),
                              wait_s=wait_s)
    except WorkerStopped as stop:
        print(f"[worker {pid}] stopped: {stop}", flush=True)
        return EXIT_STOPPED
    return 1 if failures else 0


def write_report(folder: Path, tracker: Tracker, parent_run_id: str, quality_metric: str | None = None) -> Path:
    """table.md, table.csv and the plots from MLflow (and the multiclass metric and the reference
    log-likelihood ratio from the cached samples, study/multiclass.py and study/llr.py), logged as the parent run's artifacts (table.md also as its description); returns
    table.md. quality_metric: the Pareto plot's quality axis (report/pareto.py; None: its default)."""
    table = build_table(tracker, parent_run_id)
    table.quality_metric = quality_metric
    choose_metric(table)  # an unknown metric fails before the multiclass trains
    add_multiclass(table, folder, tracker)
    add_llr(table, folder, tracker)
    paths = write_table(table, folder, sections(table), table_marks(table), quality_columns(table))
    fault_point("mid-report")
    paths += write_plots(table, folder)
    tracker.log_artifacts(parent_run_id, paths)
    tracker.set_tags(parent_run_id, {TAG_DESCRIPTION: run_description(paths[0].read_text())})
    return paths[0]


def rebuild_report(study: str, results_dir: str | Path, tracking_uri: str | None = None,
                   quality_metric: str | None = None) -> Path:
    """`calo-ablate report`: the report from the MLflow store alone (the study's own store by default; the
    multiclass metric from the cached samples where they are on this machine)."""
    folder = study_dir(results_dir, study)
    if tracking_uri is None:
        db = folder / STORE_FILE
        if not db.is_file():
            msg = f"no MLflow store at {db}: give --tracking-uri, or run `calo-ablate ablate --study {study}`"
            raise ConfigError(msg)
        tracking_uri = f"sqlite:///{db}"
    tracker = Tracker(tracking_uri)
    parent = tracker.find_parent(study)
    if parent is None:
        msg = f"the MLflow store {tracking_uri} holds no study '{study}'"
        raise ConfigError(msg)
    folder.mkdir(parents=True, exist_ok=True)
    return write_report(folder, tracker, parent, quality_metric)


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

