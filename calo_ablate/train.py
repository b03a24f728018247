"""One training run: seeded Lightning fit of CaloScore v2, logged to MLflow, resumable.

`run_training` is the library entry point (the study calls it per cell); `main` is `calo-ablate train`
and `print_params` is `calo-ablate params`.

A run lives in a run folder (results/runs/<train_key>/ from the CLI) holding:
- run.json         the MLflow run id, written before the first epoch (re-attached on restart);
- last.ckpt        Lightning's latest checkpoint (optimizer, scheduler, EMA, loop state): resume point;
- best-*.ckpt      the checkpoint with the lowest val/loss (its EMA weights are used for sampling);
- config.yaml      the resolved config; preprocessor.npz the fitted preprocessing statistics;
- result.json      written when the run finished: a run with it is never trained again.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from calo_ablate.config import Config, canonical_dataset, flatten, resolve_config, train_key
from calo_ablate.errors import TrainingError
from calo_ablate.resume import (
    EpochClock,
    ResumeSafeMLFlowLogger,
    read_json_or_discard,
    resume_checkpoint,
    write_text_atomic,
)

__all__ = [
    "TrainResult",
    "config_params",
    "default_tracking_uri",
    "ensure_experiment",
    "git_revision",
    "main",
    "print_params",
    "run_training",
]

VAL_METRICS = ("val/loss", "val/voxel_loss", "val/layer_loss")
RUN_FILE = "run.json"
RESULT_FILE = "result.json"
CONFIG_FILE = "config.yaml"
PREPROCESSOR_FILE = "preprocessor.npz"
LAST_CHECKPOINT = "last.ckpt"
TAG_CHECKPOINT = "checkpoint_path"
TAG_RUN_DIR = "run_dir"
TAG_PREPROCESSOR = "preprocessor_path"


@dataclass
class TrainResult:
    """What one finished training run produced.

    metrics: validation loss, voxel loss and layer loss of the final epoch ({"val/loss", ...});
    seconds_per_epoch: mean wall time of an epoch (training plus validation), seconds;
    n_params: trainable parameters of both nets; epochs: epochs trained in total;
    train_seconds: wall time of the fit, summed over the calls that trained it (each up to its last
    checkpoint: work lost to a kill is counted when it is redone).
    """

    run_id: str
    checkpoint_path: str
    metrics: dict[str, float]
    seconds_per_epoch: float
    n_params: int
    epochs: int
    train_seconds: float = float("nan")

    def save(self, path: Path) -> None:
        write_text_atomic(path, json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> TrainResult:
        return cls(**json.loads(path.read_text()))


def default_tracking_uri(results_dir: str | Path = "results") -> str:
    """sqlite:////abs/path/results/mlflow.db (the folder is created)."""
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
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(experiment_name, artifact_location=_artifact_root(tracking_uri,
                                                                                     experiment_name))


def git_revision() -> str:
    """`git rev-parse HEAD` of the package's checkout with '-dirty' when tracked files changed; 'unknown'
    outside git."""
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if status else sha


def config_params(config: Config) -> dict[str, str]:
    """The resolved config as flat MLflow params: dotted keys, JSON-encoded values (strings as is)."""
    flat = flatten(config.model_dump(mode="json"))
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in sorted(flat.items())}


def _run_tags(config: Config, files: Any, tags: dict[str, str] | None,
              parent_run_id: str | None) -> dict[str, str]:
    out = {
        "dataset": config.data.dataset,
        "data_source": str(files.source),
        "data_checksums": json.dumps(dict(sorted(files.checksums.items()))),
        "seed": str(config.train.seed),
        "git_revision": git_revision(),
        "train_key": train_key(config, files.checksums),
    }
    out.update(tags or {})
    if parent_run_id:
        out["mlflow.parentRunId"] = parent_run_id
    return out


def _attach_run(client: Any, experiment_id: str, run_dir: Path, run_id: str | None, run_name: str,
                tags: dict[str, str], config: Config) -> str:
    """The MLflow run of this run folder: the given id, else the one in run.json, else a new run.

    A new run gets the params, the tags and the config artifact at once; the id is persisted in
    run.json before any training so that a killed process re-attaches instead of duplicating.
    """
    from mlflow.entities import Param, RunTag
    from mlflow.exceptions import MlflowException

    run_file = run_dir / RUN_FILE
    if run_id is None and run_file.is_file():
        saved = json.loads(run_file.read_text())["run_id"]
        try:
            if client.get_run(saved).info.lifecycle_stage == "active":
                run_id = saved
        except MlflowException:
            print(f"calo-ablate: {run_file} names run {saved}, which this tracking store does not hold; "
                  "starting a new run", file=sys.stderr)
    if run_id is None:
        run = client.create_run(experiment_id, run_name=run_name, tags=tags)
        run_id = run.info.run_id
        params = [Param(k, v) for k, v in config_params(config).items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            client.log_batch(run_id, params=params[start:start + 100])
        client.log_artifact(run_id, str(run_dir / CONFIG_FILE))
    else:
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        client.update_run(run_id, status="RUNNING")
    run_file.write_text(json.dumps({"run_id": run_id, "experiment_id": experiment_id}, indent=2) + "\n")
    return run_id


def quiet_lightning() -> None:
    """Keep Lightning's start-up chatter (accelerator lines, tips, 'stopped' notes) out of the log;
    its warnings and errors still show, and our own per-epoch lines say what happens."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # torch pytree deprecation inside Lightning


def _trainer_kwargs(config: Config) -> dict[str, Any]:
    t = config.trainer
    return {
        "accelerator": t.accelerator,
        "devices": t.devices,
        "strategy": t.strategy,
        "num_nodes": t.num_nodes,
        "precision": config.train.precision,
        "max_epochs": config.train.max_epochs,
        "deterministic": "warn",  # deterministic algorithms where they exist, a warning where not
        "enable_progress_bar": sys.stderr.isatty(),
        "enable_model_summary": False,
        "log_every_n_steps": 10**6,  # nothing is logged per step; metrics are per epoch
        "num_sanity_val_steps": 0,
    }


def run_training(
    config: Config,
    *,
    files: Any,
    run_dir: Path,
    tracking_uri: str,
    experiment_name: str,
    run_name: str,
    run_id: str | None = None,
    parent_run_id: str | None = None,
    tags: dict[str, str] | None = None,
    extra_callbacks: list | None = None,
) -> TrainResult:
    """Train one model (or finish an interrupted run) and return its TrainResult.

    files: a calo_ablate.data.source.DataFiles. The MLflow run is `run_id` if given, else the one
    recorded in run_dir/run.json, else a new run (child of `parent_run_id` when given). Training resumes
    from run_dir/last.ckpt when it exists; a run folder with result.json is returned without training.
    Raises TrainingError on a non-finite loss; a Ctrl-C surfaces as KeyboardInterrupt (resume by calling
    again).
    """
    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
    from mlflow.tracking import MlflowClient

    from calo_ablate.data.datamodule import CaloDataModule
    from calo_ablate.model.calo_score import CaloScoreModule

    run_dir = Path(run_dir).resolve()
    result_file = run_dir / RESULT_FILE
    saved = read_json_or_discard(result_file)
    if saved is not None:
        return TrainResult(**saved)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_FILE).write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))

    experiment_id = ensure_experiment(tracking_uri, experiment_name)
    client = MlflowClient(tracking_uri=tracking_uri)
    all_tags = _run_tags(config, files, tags, parent_run_id)
    all_tags[TAG_RUN_DIR] = str(run_dir)
    run_id = _attach_run(client, experiment_id, run_dir, run_id, run_name, all_tags, config)

    pl.seed_everything(config.train.seed, workers=True, verbose=False)
    if config.trainer.threads is not None:
        torch.set_num_threads(config.trainer.threads)

    datamodule = CaloDataModule(config, files, Path(config.data.data_dir) / "cache")
    preprocessor_path = run_dir / PREPROCESSOR_FILE
    datamodule.preprocessor.save(preprocessor_path)  # fits or loads it; next to the checkpoints from the start
    module = CaloScoreModule(config, datamodule.n_voxels, datamodule.n_layers)
    checkpoint = ModelCheckpoint(dirpath=run_dir, filename="best-{epoch}", monitor="val/loss", mode="min",
                                 save_top_k=1, save_last=True)
    clock = EpochClock()
    callbacks: list = [checkpoint, clock]
    if config.train.early_stopping_patience is not None:
        callbacks.append(EarlyStopping(monitor="val/loss", mode="min",
                                       patience=config.train.early_stopping_patience))
    callbacks.extend(extra_callbacks or [])
    logger = ResumeSafeMLFlowLogger(experiment_name=experiment_name, tracking_uri=tracking_uri, run_id=run_id,
                          log_model=False)
    quiet_lightning()
    trainer = pl.Trainer(logger=logger, callbacks=callbacks, **_trainer_kwargs(config))

    last = run_dir / LAST_CHECKPOINT
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*exists and is not empty.*")  # run.json, config.yaml
        warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")  # the EMA copy
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=resume_checkpoint(run_dir, LAST_CHECKPOINT))
        except SystemExit as err:
            # Lightning turns Ctrl-C into sys.exit(1) after its graceful shutdown and leaves SIGINT
            # ignored: restore the handler and report an interruption (the run resumes from last.ckpt)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            if trainer.interrupted:
                raise KeyboardInterrupt from err
            raise

    if trainer.global_rank != 0:
        return TrainResult(run_id, checkpoint.best_model_path, {}, module.mean_epoch_seconds(),
                           module.n_trainable_parameters(), trainer.current_epoch)

    # the final epoch's values: from this process, or from MLflow when the process that trained the last
    # epoch died before result.json (the resumed fit then has no epoch left to run)
    logged = client.get_run(run_id).data.metrics
    metrics = {}
    for name in VAL_METRICS:
        value = trainer.callback_metrics.get(name, logged.get(name))
        if value is None:
            msg = f"run {run_id}: no {name} was logged (did validation run? data.val_fraction=" \
                  f"{config.data.val_fraction})"
            raise TrainingError(msg)
        metrics[name] = float(value)
        if not math.isfinite(metrics[name]):
            msg = f"non-finite validation loss: {name} = {metrics[name]} (run {run_id})"
            raise TrainingError(msg)
    best = checkpoint.best_model_path or str(last)
    result = TrainResult(
        run_id=run_id,
        checkpoint_path=str(best),
        metrics=metrics,
        seconds_per_epoch=clock.mean_epoch_seconds(),
        n_params=module.n_trainable_parameters(),
        epochs=trainer.current_epoch,
        train_seconds=clock.train_seconds,
    )
    client.log_batch(run_id, tags=[
        _tag(TAG_CHECKPOINT, result.checkpoint_path),
        _tag("last_checkpoint_path", str(last)),
        _tag(TAG_PREPROCESSOR, str(preprocessor_path)),
    ])
    client.log_metric(run_id, "n_params", result.n_params)
    client.log_metric(run_id, "best_val_loss", float(checkpoint.best_model_score or metrics["val/loss"]))
    result.save(result_file)
    return result


def _tag(key: str, value: str) -> Any:
    from mlflow.entities import RunTag

    return RunTag(key, value)


def main(args: Any) -> int:
    """`calo-ablate train --dataset 1 [--profile P] [--seed N] [--set k=v ...] [--tracking-uri URI]`."""
    from lightning.pytorch.utilities import rank_zero_only

    from calo_ablate.data.source import ensure_data

    dataset = canonical_dataset(args.dataset)
    config = resolve_config(dataset, args.profile, cli_set=args.overrides, seed=args.seed)
    files = ensure_data(dataset, config.data.data_dir)
    tracking_uri = args.tracking_uri or default_tracking_uri()
    experiment = f"train-{dataset}"
    ensure_experiment(tracking_uri, experiment)
    key = train_key(config, files.checksums)
    run_dir = Path("results") / "runs" / key
    started = time.perf_counter()
    result = run_training(config, files=files, run_dir=run_dir, tracking_uri=tracking_uri,
                          experiment_name=experiment, run_name=f"{dataset}-{args.profile}-seed{config.train.seed}")
    if rank_zero_only.rank != 0:  # the other processes of a multi-process run report nothing
        return 0
    losses = ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items())
    print(f"run {result.run_id} ({experiment} in {tracking_uri}): {result.epochs} epoch(s), {losses}; "
          f"{result.seconds_per_epoch:.1f} s/epoch, {result.n_params:,} parameters, "
          f"{time.perf_counter() - started:.0f} s in this call")
    print(f"checkpoint: {result.checkpoint_path}")
    print(f"generate:   calo-ablate generate --run {result.run_id} --events 1000 --out samples.hdf5"
          + (f" --tracking-uri {tracking_uri}" if args.tracking_uri else ""))
    return 0


def print_params(args: Any) -> int:
    """`calo-ablate params --dataset 1 [--set k=v ...]`: trainable parameters per net and in total."""
    from calo_ablate.geometry import load_geometry
    from calo_ablate.model.calo_score import CaloScoreModule

    dataset = canonical_dataset(args.dataset)
    config = resolve_config(dataset, "full", cli_set=args.overrides)
    geometry = load_geometry(dataset)
    module = CaloScoreModule(config, geometry.n_voxels, geometry.n_layers)
    parts = {k: v for k, v in module.net.parameter_breakdown().items() if k != "total"}
    width = max(len(name) for name in parts)
    print(f"CaloScore v2, dataset {dataset} ({geometry.n_voxels} voxels, {geometry.n_layers} layers)")
    for name, count in parts.items():
        print(f"  {name:<{width}}  {count:>12,}")
    print(f"  {'total':<{width}}  {module.n_trainable_parameters():>12,}")
    return 0
