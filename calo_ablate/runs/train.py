"""One training run: seeded Lightning fit of the config's model family (model.family) into an MLflow run,
resumable.

`run_training` trains one model (the study calls it per cell, `calo-ablate train` once) and never
closes its MLflow run: the caller does, after whatever it does with the model (a cell evaluates it).

A run lives in a run folder (results/runs/<train_key>/ from the CLI) holding:
- run.json         the MLflow run id, written before the first epoch (re-attached on restart);
- last.ckpt        Lightning's latest checkpoint (optimizer, scheduler, EMA, loop state): resume point;
- best-*.ckpt      the checkpoint with the lowest val/loss (sampling uses it);
- config.yaml      the resolved config; preprocessor.npz the fitted preprocessing state (family's format);
- result.json      written when the run finished: a run with it is never trained again.

A derived training (train.teacher set) builds its module with the family's `derived_module(teacher)`,
the teacher rebuilt from its finished run folder (`teacher_dir`: best checkpoint, EMA weights where
the module keeps an EMA copy, frozen, eval mode), on a fresh run and on resume alike.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import signal
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import yaml
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from calo_ablate.atomic import atomic_write
from calo_ablate.config import Config
from calo_ablate.data.datamodule import CaloDataModule
from calo_ablate.data.source import DataFiles
from calo_ablate.errors import ConfigError, TrainingError
from calo_ablate.model.ema import EMA
from calo_ablate.model.families import load_family
from calo_ablate.model.precision import check_precision
from calo_ablate.runs import record
from calo_ablate.runs.devices import resolve_device
from calo_ablate.runs.faults import fault_callbacks
from calo_ablate.runs.resume import (
    EpochClock,
    RunLogger,
    read_json_or_discard,
    resume_checkpoint,
)

__all__ = ["TrainResult", "quiet_lightning", "run_training"]

RUN_FILE = "run.json"
RESULT_FILE = "result.json"
CONFIG_FILE = "config.yaml"
PREPROCESSOR_FILE = "preprocessor.npz"
LAST_CHECKPOINT = "last.ckpt"


@dataclass
class TrainResult:
    """What one finished training run produced.

    metrics: the family's validation losses of the final epoch ({"val/loss", ...}, one per loss name);
    seconds_per_epoch: mean wall time of an epoch (training plus
    validation), seconds; n_params: trainable parameters; epochs: epochs trained in total.
    """

    run_id: str
    checkpoint_path: str
    metrics: dict[str, float]
    seconds_per_epoch: float
    n_params: int
    epochs: int
    train_seconds: float = float("nan")

    def save(self, path: Path) -> None:
        """Written whole or not at all (temporary file, then rename): a kill never leaves half a file."""
        with atomic_write(path) as handle:
            handle.write(json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> TrainResult | None:
        """The result in `path`; None when it is missing or unreadable (then discarded, with a message)."""
        saved = read_json_or_discard(path)
        return cls(**saved) if saved is not None else None


def _attach_run(client: MlflowClient, experiment_id: str, run_dir: Path, run_id: str | None, run_name: str,
                tags: dict[str, str], config: Config, tracking_uri: str) -> str:
    """The MLflow run of this run folder: the given id, else the one in run.json, else a new run.

    A new run gets the params, the tags and the config artifact at once; the id is persisted in
    run.json before any training so that a killed process re-attaches instead of duplicating.
    """
    run_file = run_dir / RUN_FILE
    if run_id is None and run_file.is_file():
        saved = json.loads(run_file.read_text())["run_id"]
        try:
            if client.get_run(saved).info.lifecycle_stage == "active":
                run_id = saved
                client.update_run(run_id, status="RUNNING")
        except MlflowException:
            print(f"calo-ablate: {run_file} names run {saved}, which this tracking store does not hold; "
                  "starting a new run", file=sys.stderr)
    if run_id is None:
        run_id = client.create_run(experiment_id, run_name=run_name,
                                   tags={record.TAG_ROLE: record.ROLE_TRAIN, **tags}).info.run_id
        record.log_config(tracking_uri, run_id, config)
    else:
        record.set_tags(tracking_uri, run_id, tags)
    with atomic_write(run_file) as handle:
        handle.write(json.dumps({"run_id": run_id, "experiment_id": experiment_id}, indent=2) + "\n")
    return run_id


def load_teacher(teacher_dir: Path) -> pl.LightningModule:
    """The finished run of `teacher_dir` as a teacher: its family's module with the best checkpoint's
    weights (the EMA copy's where the module keeps one as `ema` beside `net`), frozen, in eval mode."""
    teacher_dir = Path(teacher_dir)
    result = TrainResult.load(teacher_dir / RESULT_FILE)
    if result is None or not (teacher_dir / CONFIG_FILE).is_file():
        msg = f"teacher run folder {teacher_dir}: no {RESULT_FILE} and {CONFIG_FILE}; the teacher must finish first"
        raise TrainingError(msg)
    config = Config.model_validate(yaml.safe_load((teacher_dir / CONFIG_FILE).read_text()))
    module = load_family(config).module()
    module.load_state_dict(torch.load(result.checkpoint_path, map_location="cpu", weights_only=True)["state_dict"])
    ema, net = getattr(module, "ema", None), getattr(module, "net", None)
    if isinstance(ema, EMA) and isinstance(net, torch.nn.Module):
        net.load_state_dict(ema.net.state_dict())
    return module.requires_grad_(False).eval()


def teacher_module(config: Config, teacher_dir: Path | None) -> pl.LightningModule | None:
    """The teacher that a training with train.teacher set starts from (`load_teacher(teacher_dir)`); None when
    it trains from scratch. ConfigError naming the key when train.teacher is set without a teacher run."""
    if config.train.teacher is None:
        return None
    if teacher_dir is None:
        msg = (f"train.teacher={config.train.teacher!r}: no trained teacher to start from; a derived training "
               "runs in a study, from a registry entry's `from: <entry>`")
        raise ConfigError(msg)
    return load_teacher(teacher_dir)


def new_module(config: Config, teacher: pl.LightningModule | None) -> pl.LightningModule:
    """The module to train: the family's `module()`, or its `derived_module(teacher)` for a derived training."""
    family = load_family(config)
    return family.module() if teacher is None else family.derived_module(teacher)


def quiet_lightning() -> None:
    """Keep Lightning's start-up chatter (accelerator lines, tips, 'stopped' notes) out of the log;
    its warnings and errors still show, and our own per-epoch lines say what happens."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # torch pytree deprecation inside Lightning
    # on a machine with SLURM installed, every run not started by srun: a worker is one process by design
    warnings.filterwarnings("ignore", message="The `srun` command is available on your system but is not used")


def _trainer_kwargs(config: Config, val_check_interval: float = 1.0) -> dict[str, Any]:
    t = config.trainer
    return {
        "accelerator": t.accelerator,
        "devices": t.devices,
        "strategy": t.strategy,
        "num_nodes": t.num_nodes,
        "precision": config.train.precision,
        "max_epochs": config.train.max_epochs,
        "val_check_interval": val_check_interval,  # batches between validations, or 1.0: once per epoch
        "deterministic": "warn",  # deterministic algorithms where they exist, a warning where not
        "enable_progress_bar": sys.stderr.isatty(),
        "enable_model_summary": False,
        "log_every_n_steps": 10**6,  # per epoch or per validation; the module logs its own loss curve
        "num_sanity_val_steps": 0,
    }


def run_training(
    config: Config,
    *,
    files: DataFiles,
    run_dir: Path,
    tracking_uri: str,
    experiment_name: str,
    run_name: str,
    run_id: str | None = None,
    tags: dict[str, str] | None = None,
    extra_callbacks: list[Callback] | None = None,
    teacher_dir: Path | None = None,
) -> TrainResult:
    """Train one model (or finish an interrupted run) and return its TrainResult; the run stays open.

    The MLflow run is `run_id` if given (a study cell's run, opened by the cell), else the one recorded
    in run_dir/run.json, else a new run. tags: added to record.run_tags(config, files).
    Training resumes from run_dir/last.ckpt when it exists; a run folder with result.json is returned
    without training. teacher_dir: the finished run folder of train.teacher (required when it is set). Raises TrainingError on a non-finite loss; a Ctrl-C surfaces as KeyboardInterrupt
    (resume by calling again).
    """
    check_precision(config.train.precision, resolve_device(config.trainer.accelerator), "train.precision")
    run_dir = Path(run_dir).resolve()
    result_file = run_dir / RESULT_FILE
    finished = TrainResult.load(result_file)
    if finished is not None:
        return finished
    teacher = teacher_module(config, teacher_dir)  # before anything is written: a missing teacher stops here
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(run_dir / CONFIG_FILE) as handle:
        handle.write(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))

    experiment_id = record.ensure_experiment(tracking_uri, experiment_name)
    client = record.client(tracking_uri)
    all_tags = {**record.run_tags(config, files), **(tags or {}), record.TAG_RUN_DIR: str(run_dir)}
    run_id = _attach_run(client, experiment_id, run_dir, run_id, run_name, all_tags, config, tracking_uri)

    pl.seed_everything(config.train.seed, workers=True, verbose=False)
    if config.trainer.threads is not None:
        torch.set_num_threads(config.trainer.threads)

    family = load_family(config)
    preprocessing = family.preprocessing()
    datamodule = CaloDataModule(config, files, Path(config.data.data_dir) / "cache", preprocessing)
    preprocessor_path = run_dir / PREPROCESSOR_FILE
    preprocessing.save(datamodule.preprocessor, preprocessor_path)  # fits or loads it; beside the checkpoints
    module = new_module(config, teacher)
    total_loss = record.val_losses(family.loss_names)[0]
    checkpoint = ModelCheckpoint(dirpath=run_dir, filename="best-{epoch}", monitor=total_loss, mode="min",
                                 save_top_k=1, save_last=True)
    clock = EpochClock()
    callbacks: list[Callback] = [checkpoint, clock, *family.callbacks()]
    callbacks.extend([*(extra_callbacks or []), *fault_callbacks()])
    logger = RunLogger(experiment_name=experiment_name, tracking_uri=tracking_uri, run_id=run_id,
                            log_model=False)
    quiet_lightning()
    val_every = family.validation_interval(len(datamodule.train_dataloader()))
    trainer = pl.Trainer(logger=logger, callbacks=callbacks, **_trainer_kwargs(config, val_every))

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
        return TrainResult(run_id, checkpoint.best_model_path, {}, clock.mean_epoch_seconds(),
                           family.n_parameters(module), trainer.current_epoch, clock.train_seconds)

    # the final epoch's values: from this process, or from MLflow when the process that trained the last
    # epoch died before result.json (the resumed fit then has no epoch left to run)
    logged = client.get_run(run_id).data.metrics
    metrics = {}
    for name in record.val_losses(family.loss_names):
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
        n_params=family.n_parameters(module),
        epochs=trainer.current_epoch,
        train_seconds=clock.train_seconds,
    )
    record.set_tags(tracking_uri, run_id, {record.TAG_CHECKPOINT: result.checkpoint_path,
                                           record.TAG_LAST_CHECKPOINT: str(last),
                                           record.TAG_PREPROCESSOR: str(preprocessor_path)})
    client.log_metric(run_id, record.N_PARAMS, result.n_params)
    client.log_metric(run_id, record.BEST_VAL_LOSS, float(checkpoint.best_model_score or metrics[total_loss]))
    result.save(result_file)
    return result
