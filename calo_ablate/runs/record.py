"""The run record: every MLflow name calo-ablate writes or reads, a run's tags, opening and closing runs.

Writers (training, the study's cells, the report's parent run) and readers (the report, `generate`,
the benchmark) take every tag, param and metric name from here. Layout in MLflow:
- a study is one experiment (named as the study) with one parent run (tag calo_ablate.role=study)
  and one child run per cell (calo_ablate.role=cell, calo_ablate.cell=<ablation>/s<seed>); search
  trials are runs nested under their cell's run (role search_trial). Runs are found again by these
  tags, never created twice, so a rerun after a crash continues into the same runs;
- `calo-ablate train` alone makes one run (role train) in the experiment train-<dataset>.
A cell's run is opened (RUNNING) when its worker starts it and closed once: FINISHED after its
evaluation, FAILED with the error (tag calo_ablate.error) otherwise. Lightning's logger never closes it.
The store and an experiment are created by one process before any worker starts (several processes
creating one SQLite schema at once collide); the default store is SQLite beside the results.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from mlflow.entities import Metric, Param, Run, RunStatus, RunTag
from mlflow.tracking import MlflowClient

from calo_ablate.config import Config, read_values, train_key
from calo_ablate.data.preprocessing import write_npz_atomic
from calo_ablate.data.source import DataFiles
from calo_ablate.model.curves import TRAIN_CURVE_PREFIX
from calo_ablate.model.families import family_class
from calo_ablate.model.interface import TOTAL_LOSS
from calo_ablate.model.precision import cpu_model

BASE = "base"  # the registry's reference entry: its cells are what every other row is compared with

# ---- tags -------------------------------------------------------------------------------------------
TAG_ROLE = "calo_ablate.role"
ROLE_STUDY, ROLE_CELL, ROLE_SEARCH_TRIAL, ROLE_TRAIN = "study", "cell", "search_trial", "train"
TAG_CELL = "calo_ablate.cell"
TAG_PARENT = "mlflow.parentRunId"
TAG_ERROR = "calo_ablate.error"
TAG_DESCRIPTION = "mlflow.note.content"  # a run's description, rendered as Markdown by the UI
# a model-training experiment: MLflow 3's UI then opens on its runs, not on the GenAI views
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
# every training or cell run
TAG_DATASET = "dataset"
TAG_DATA_SOURCE = "data_source"
TAG_DATA_CHECKSUMS = "data_checksums"  # JSON {file name: md5}
TAG_SEED = "seed"
TAG_GIT_REVISION = "git_revision"
TAG_TRAIN_KEY = "train_key"
TAG_MODEL_FAMILY = "model_family"  # the config's model.family
TAG_LOSS_NAMES = "loss_names"  # JSON list: the family's losses, logged as train/<name> and val/<name>
TAG_CURVE_METRICS = "curve_metrics"  # JSON list: the family's step-curve metrics (train_steps/<name>)
TAG_RUN_DIR = "run_dir"
TAG_CHECKPOINT = "checkpoint_path"
TAG_LAST_CHECKPOINT = "last_checkpoint_path"
TAG_PREPROCESSOR = "preprocessor_path"
# a study's cell runs
TAG_ABLATION = "ablation"
TAG_TITLE = "title"
TAG_WHY = "why"
TAG_PROFILE = "profile"
TAG_EVAL_KEY = "eval_key"
TAG_LOSS_COMPARABLE = "loss_comparable"
TAG_SHARES_TRAINING_OF = "shares_training_of"
TAG_SHARES_TRAINING_RUN = "shares_training_run"
TAG_SEARCH_PARAM = "search_param"
TAG_SEARCH_BEST_TRIAL = "search_best_trial"
TAG_PRUNED = "pruned"
TAG_INTERRUPTED = "interrupted"  # a search trial killed with its worker (replaced by a new trial)
# the study's parent run
TAG_STUDY = "study"
TAG_SEEDS = "seeds"
TAG_MACHINE = "machine"
TAG_ROWS = "rows"  # JSON [{"name": ..., "title": ...}] in registry order
TAG_CLI_SET = "cli_set"  # JSON list of --set options
TAG_WORKERS = "workers"
TAG_EVALUATE = "evaluate"  # "true" / "false"
TAG_SEEDS_BY_ROW = "seeds_by_row"  # JSON {ablation: seeds planned}; absent: every row has TAG_SEEDS
TAG_SEED_DESIGN = "seed_design"  # JSON {"first": n, "cap": n} of `--seeds auto`; absent: a fixed number
TAG_MARGINS = "margins"  # JSON {aspect: margin}: the registry's equivalence margins over the defaults
TAG_ESTIMATED_SECONDS = "estimated_seconds"  # the study's wall time estimated from the rates before the start
TAG_ESTIMATE_BASIS = "estimate_basis"  # the rates it came from: 'AMD EPYC, 2 cores, ..., 91 GFLOP/s matmul; ...'

# ---- metrics ------------------------------------------------------------------------------------------
# per epoch, from the module: train/<name> and val/<name> of every loss name of the run's family (tag
# loss_names); val/loss is every family's total; the step curve train_steps/<name> (tag curve_metrics)
VAL_PREFIX = "val/"
VAL_LOSS = f"{VAL_PREFIX}{TOTAL_LOSS}"
CURVE_PREFIX = TRAIN_CURVE_PREFIX
N_PARAMS = "n_params"
BEST_VAL_LOSS = "best_val_loss"
SECONDS_PER_EPOCH = "seconds_per_epoch"
EPOCHS = "epochs"
TRAIN_SECONDS = "train_seconds"
TEACHER_TRAIN_SECONDS = "teacher_train_seconds"  # a derived cell: its teacher chain's train_seconds, summed
EVAL_SECONDS = "eval_seconds"
SAMPLE_STEPS = "sample_steps"
GEN_MS_PREFIX = "gen_ms_per_shower_b"  # + batch size
SEARCH_TRIALS = "search_trials"
SEARCH_PRUNED = "search_pruned"
SEARCH_FAILED = "search_failed"
SEARCH_BEST_VALUE = "search_best_value"
# the parent run
REFERENCE_PREFIX = "refref/"  # + a metric of the reference-vs-reference noise floor (mean over its draws)
REFERENCE_STD_PREFIX = "refref_std/"  # + its std (ddof 1) over evaluate.noise_floor_samples draws, when > 1
REFERENCE_SECONDS = "reference_seconds"
INVOCATION_SECONDS = "invocation_seconds"  # one value per `ablate` call

SAMPLES_DIR = "samples"  # in a study folder: the cells' generated samples, for the report's histograms
# the noise floor's name: its queue unit, its cached samples (samples/reference-s<seed>.npz) and its report row;
# reserved: no registry entry may take a name of RESERVED_NAMES (its samples would overwrite the floor's)
REFERENCE = "reference"
RESERVED_NAMES = frozenset({REFERENCE})
CONFIG_ARTIFACT = "config.yaml"
REPORT_ARTIFACTS = "report"
MAX_TAG_CHARS = 8000  # MLflow 3 refuses longer tag values
_PARAMS_PER_BATCH = 100  # MLflow takes at most 100 params per log_batch


@dataclass(frozen=True)
class CellTags:
    """What a study cell adds to its run's tags."""

    ablation: str
    title: str
    why: str
    profile: str
    loss_comparable: bool
    eval_key: str | None  # None for a search cell: its keys are its best trial's
    shares_training_of: str | None = None


def sample_path(study_dir: Path, entry: str, seed: int) -> Path:
    """results/<study>/samples/<entry>-s<seed>.npz: a cell's generated sample (or the seed's reference)."""
    return Path(study_dir) / SAMPLES_DIR / f"{entry}-s{seed}.npz"


def save_sample(path: Path, energies_mev: np.ndarray, showers_mev: np.ndarray) -> None:
    """A sample (incident energies (N,) MeV, showers (N, V) MeV) as .npz, written whole or not at all."""
    write_npz_atomic(path, {"energies_mev": energies_mev, "showers_mev": showers_mev})


def load_sample(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(incident energies (N,) MeV, showers (N, V) MeV) as `save_sample` wrote them."""
    with np.load(path) as f:
        return f["energies_mev"], f["showers_mev"]


def client(tracking_uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=tracking_uri)


def default_tracking_uri(results_dir: str | Path = "results") -> str:
    """sqlite:////abs/path/<results_dir>/mlflow.db (the folder is created)."""
    folder = Path(results_dir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}"


def _artifact_root(tracking_uri: str, experiment_name: str) -> str | None:
    """Artifacts of a SQLite store go next to the database (not into the working directory)."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    db_path = Path(tracking_uri[len("sqlite:///"):]).resolve()
    return (db_path.parent / "mlartifacts" / experiment_name).as_uri()


def ensure_experiment(tracking_uri: str, experiment_name: str) -> str:
    """Create the store (schema) and the experiment if missing; returns the experiment id.

    Call it once in the parent process before starting workers: concurrent schema creation in
    SQLite collides.
    """
    c = client(tracking_uri)
    experiment = c.get_experiment_by_name(experiment_name)
    if experiment is not None:
        if EXPERIMENT_KIND[0] not in experiment.tags:  # a store made before the tag existed
            c.set_experiment_tag(experiment.experiment_id, *EXPERIMENT_KIND)
        return experiment.experiment_id
    return c.create_experiment(experiment_name, artifact_location=_artifact_root(tracking_uri, experiment_name),
                               tags=dict([EXPERIMENT_KIND]))


def experiment_id(tracking_uri: str, name: str) -> str | None:
    experiment = client(tracking_uri).get_experiment_by_name(name)
    return experiment.experiment_id if experiment is not None else None


def git_revision() -> str:
    """`git rev-parse HEAD` of the package's checkout with '-dirty' when tracked files changed; 'unknown'
    outside git."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if status else sha


def code_digest() -> str:
    """16 hex digits over the package's own source files (names and contents): equal digests run the same
    code, whatever else changed in the checkout (documents, results) or whether it is a git checkout."""
    package = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        h.update(str(path.relative_to(package)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def machine_description() -> str:
    """'<cpu model>, <n> cores, host <name>[, GPU: <name> x n]' of this machine."""
    cpu = cpu_model()
    text = f"{cpu}, {os.cpu_count()} cores, host {socket.gethostname()}"
    if torch.cuda.is_available():
        text += f", GPU: {torch.cuda.get_device_name(0)} x {torch.cuda.device_count()}"
    return text


def config_params(config: Config) -> dict[str, str]:
    """The resolved config as flat MLflow params: dotted keys, JSON-encoded values (strings as is), every
    key its family reads (a shared key it does not read is left out)."""
    flat = read_values(config)
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in sorted(flat.items())}


def val_losses(loss_names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The validation metrics of a family's losses: ('val/loss', ...); the first is the total."""
    return tuple(f"{VAL_PREFIX}{name}" for name in loss_names)


def run_tags(config: Config, files: DataFiles, cell: CellTags | None = None) -> dict[str, str]:
    """The tags of a training or cell run: data, seed, model family and its losses, code version, keys;
    plus the cell's when given."""
    family = family_class(config.model.family)
    tags = {
        TAG_DATASET: config.data.dataset,
        TAG_MODEL_FAMILY: config.model.family,
        TAG_LOSS_NAMES: json.dumps(list(family.loss_names)),
        TAG_CURVE_METRICS: json.dumps(list(family.curve_metrics())),
        TAG_DATA_SOURCE: str(files.source),
        TAG_DATA_CHECKSUMS: json.dumps(dict(sorted(files.checksums.items()))),
        TAG_SEED: str(config.train.seed),
        TAG_GIT_REVISION: git_revision(),
        TAG_TRAIN_KEY: train_key(config, files.checksums),
    }
    if cell is not None:
        tags.update({TAG_ABLATION: cell.ablation, TAG_TITLE: cell.title, TAG_WHY: cell.why,
                     TAG_PROFILE: cell.profile, TAG_LOSS_COMPARABLE: str(cell.loss_comparable).lower()})
        if cell.eval_key is None:
            del tags[TAG_TRAIN_KEY]
        else:
            tags[TAG_EVAL_KEY] = cell.eval_key
        if cell.shares_training_of is not None:
            tags[TAG_SHARES_TRAINING_OF] = cell.shares_training_of
    return tags


def _search(c: MlflowClient, exp_id: str, filter_string: str) -> list[Run]:
    runs: list[Run] = []
    token = None
    while True:
        page = c.search_runs([exp_id], filter_string=filter_string, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def find_or_create_parent(tracking_uri: str, exp_id: str, study: str, tags: dict[str, str]) -> str:
    """The study's parent run id (one per experiment), RUNNING; `tags` are (re)written on every call."""
    c = client(tracking_uri)
    found = _search(c, exp_id, f"tags.`{TAG_ROLE}` = '{ROLE_STUDY}'")
    if found:
        run_id = found[0].info.run_id
        c.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
    else:
        run_id = c.create_run(exp_id, run_name=study, tags={TAG_ROLE: ROLE_STUDY}).info.run_id
    set_tags(tracking_uri, run_id, tags)
    return run_id


def find_parent(tracking_uri: str, study: str) -> str | None:
    exp_id = experiment_id(tracking_uri, study)
    if exp_id is None:
        return None
    found = _search(client(tracking_uri), exp_id, f"tags.`{TAG_ROLE}` = '{ROLE_STUDY}'")
    return found[0].info.run_id if found else None


def open_child_run(tracking_uri: str, exp_id: str, parent_run_id: str, name: str, tags: dict[str, str],
                   role: str = ROLE_CELL) -> str:
    """The run of `name` ('base/s0') under `parent_run_id` (created on first call), RUNNING, its error tag
    cleared and `tags` (re)written; returns its id.

    Found by its tag calo_ablate.cell = `name`; a cell's run is shown as '<title> s<seed>' (from `tags`).
    """
    c = client(tracking_uri)
    found = _search(c, exp_id, f"tags.`{TAG_CELL}` = '{name}' and tags.`{TAG_PARENT}` = '{parent_run_id}'")
    if found:
        run_id = found[0].info.run_id
        c.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
        if TAG_ERROR in found[0].data.tags:
            c.delete_tag(run_id, TAG_ERROR)
    else:
        shown = f"{tags[TAG_TITLE]} s{tags[TAG_SEED]}" if role == ROLE_CELL and TAG_TITLE in tags else name
        run_id = c.create_run(exp_id, run_name=shown, tags={TAG_CELL: name, TAG_PARENT: parent_run_id,
                                                            TAG_ROLE: role}).info.run_id
    set_tags(tracking_uri, run_id, tags)
    return run_id


def child_runs(tracking_uri: str, parent_run_id: str) -> list[Run]:
    """Every cell run of the study (any status)."""
    c = client(tracking_uri)
    parent = c.get_run(parent_run_id)
    return _search(c, parent.info.experiment_id,
                   f"tags.`{TAG_PARENT}` = '{parent_run_id}' and tags.`{TAG_ROLE}` = '{ROLE_CELL}'")


def close_run(tracking_uri: str, run_id: str, error: str | None = None) -> None:
    """FINISHED, or FAILED with `error` in the tag calo_ablate.error."""
    c = client(tracking_uri)
    if error is not None:
        c.set_tag(run_id, TAG_ERROR, _tag_text(error))
    c.set_terminated(run_id, "FINISHED" if error is None else "FAILED")


def kill_run(tracking_uri: str, run_id: str) -> None:
    """KILLED: a run ended on purpose before its end (a pruned search trial)."""
    client(tracking_uri).set_terminated(run_id, "KILLED")


def set_tags(tracking_uri: str, run_id: str, tags: dict[str, Any]) -> None:
    client(tracking_uri).log_batch(run_id, tags=[RunTag(k, _tag_text(v)) for k, v in tags.items()])


def log_metrics(tracking_uri: str, run_id: str, metrics: dict[str, float]) -> None:
    """Final metrics (one value each, step 0); names sanitised to MLflow's alphabet. A metric the run
    holds already keeps its value (a cell redone after a kill between this and its `cell_done`, or the
    training's own n_params): one value per step."""
    c = client(tracking_uri)
    now = int(time.time() * 1000)
    held = c.get_run(run_id).data.metrics
    batch = [Metric(metric_name(k), float(v), now, 0) for k, v in metrics.items() if metric_name(k) not in held]
    for start in range(0, len(batch), 500):
        c.log_batch(run_id, metrics=batch[start:start + 500])


def log_params(tracking_uri: str, run_id: str, params: dict[str, Any]) -> None:
    """Params that are not yet on the run (MLflow refuses to change a logged param)."""
    c = client(tracking_uri)
    existing = c.get_run(run_id).data.params
    batch = [Param(k, _tag_text(v)[:6000]) for k, v in params.items() if k not in existing]
    for start in range(0, len(batch), _PARAMS_PER_BATCH):
        c.log_batch(run_id, params=batch[start:start + _PARAMS_PER_BATCH])


def log_config(tracking_uri: str, run_id: str, config: Config, *, skip_param: str | None = None) -> None:
    """The resolved config as params (dotted keys; `skip_param` left out) and as the config.yaml artifact."""
    params = config_params(config)
    params.pop(skip_param or "", None)
    log_params(tracking_uri, run_id, params)
    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    client(tracking_uri).log_text(run_id, text, CONFIG_ARTIFACT)


def metric_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_/. \-]", "_", name)


def _tag_text(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value) if isinstance(value, float) else str(value)
    return text[:MAX_TAG_CHARS]


def log_artifacts(tracking_uri: str, run_id: str, paths: list[Path]) -> None:
    """The report files as artifacts of the parent run (overwritten on every report)."""
    c = client(tracking_uri)
    for path in paths:
        c.log_artifact(run_id, str(path), artifact_path=REPORT_ARTIFACTS)
