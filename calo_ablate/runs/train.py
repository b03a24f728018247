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

from calo_ablate.atomic import atomic_write
from calo_ablate.config import Config
from calo_ablate.data.datamodule import CaloDataModule
from calo_ablate.data.source import DataFiles
from calo_ablate.errors import ConfigError, TrainingError
from calo_ablate.model.ema import EMA
from calo_ablate.model.families import load_family
from calo_ablate.model.interface import ModelFamily
from calo_ablate.model.precision import check_precision
from calo_ablate.runs.devices import resolve_device
from calo_ablate.runs.faults import fault_callbacks
from calo_ablate.runs.names import (
    BEST_VAL_LOSS,
    N_PARAMS,
    ROLE_TRAIN,
    TAG_CHECKPOINT,
    TAG_LAST_CHECKPOINT,
    TAG_PREPROCESSOR,
    TAG_ROLE,
    TAG_RUN_DIR,
    val_losses,
)
from calo_ablate.runs.provenance import run_tags
from calo_ablate.runs.resume import (
    EpochClock,
    RunLogger,
    read_json_or_discard,
    resume_checkpoint,
)
from calo_ablate.runs.tracker import Tracker

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


def _attach_run(tracker: Tracker, run_dir: Path, run_id: str | None, run_name: str, tags: dict[str, str],
                config: Config) -> str:
    """The MLflow run of this run folder: the given id, else the one in run.json, else a new run in the
    tracker's experiment.

    A new run gets the params, the tags and the config artifact at once; the id is persisted in
    run.json before any training so that a killed process re-attaches instead of duplicating.
    """
    run_file = run_dir / RUN_FILE
    if run_id is None and run_file.is_file():
        saved = json.loads(run_file.read_text())["run_id"]
        try:
            if tracker.client.get_run(saved).info.lifecycle_stage == "active":
                run_id = saved
                tracker.reopen(run_id)
        except MlflowException:
            print(f"calo-ablate: {run_file} names run {saved}, which this tracking store does not hold; "
                  "starting a new run", file=sys.stderr)
    if run_id is None:
        run_id = tracker.create_run(run_name, {TAG_ROLE: ROLE_TRAIN, **tags})
        tracker.log_config(run_id, config)
    else:
        tracker.set_tags(run_id, tags)
    with atomic_write(run_file) as handle:
        handle.write(json.dumps({"run_id": run_id, "experiment_id": tracker.experiment_id}, indent=2) + "\n")
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


@dataclass
class _Fit:
    """One Lightning fit: what it trains, and what its result is read from afterwards."""

    family: ModelFamily
    module: pl.LightningModule
    datamodule: CaloDataModule
    trainer: pl.Trainer
    checkpoint: ModelCheckpoint
    clock: EpochClock

    def result(self, run_id: str, checkpoint_path: str, metrics: dict[str, float]) -> TrainResult:
        return TrainResult(run_id, checkpoint_path, metrics, self.clock.mean_epoch_seconds(),
                           self.family.n_parameters(self.module), self.trainer.current_epoch, self.clock.train_seconds)


def _write_config(run_dir: Path, config: Config) -> None:
    """The run folder, with the resolved config as config.yaml."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(run_dir / CONFIG_FILE) as handle:
        handle.write(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))


def _build_fit(config: Config, files: DataFiles, run_dir: Path, teacher: pl.LightningModule | None,
               logger: RunLogger, extra_callbacks: list[Callback]) -> _Fit:
    """Seeded: the family's data module (its preprocessor fitted or loaded, and saved in the run folder),
    the module, the callbacks (best and last checkpoints in the run folder, the epoch clock) and the trainer."""
    pl.seed_everything(config.train.seed, workers=True, verbose=False)
    if config.trainer.threads is not None:
        torch.set_num_threads(config.trainer.threads)
    family = load_family(config)
    preprocessing = family.preprocessing()
    datamodule = CaloDataModule(config, files, Path(config.data.data_dir) / "cache", preprocessing)
    preprocessing.save(datamodule.preprocessor, run_dir / PREPROCESSOR_FILE)  # fits or loads it
    module = new_module(config, teacher)
    checkpoint = ModelCheckpoint(dirpath=run_dir, filename="best-{epoch}", monitor=val_losses(family.loss_names)[0],
                                 mode="min", save_top_k=1, save_last=True)
    clock = EpochClock()
    callbacks: list[Callback] = [checkpoint, clock, *family.callbacks(), *extra_callbacks, *fault_callbacks()]
    quiet_lightning()
    val_every = family.validation_interval(len(datamodule.train_dataloader()))
    trainer = pl.Trainer(logger=logger, callbacks=callbacks, **_trainer_kwargs(config, val_every))
    return _Fit(family, module, datamodule, trainer, checkpoint, clock)


def _fit(fit: _Fit, run_dir: Path) -> None:
    """Train from the run folder's resume checkpoint (or from scratch); a Ctrl-C surfaces as KeyboardInterrupt."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*exists and is not empty.*")  # run.json, config.yaml
        warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")  # the EMA copy
        try:
            fit.trainer.fit(fit.module, datamodule=fit.datamodule,
                            ckpt_path=resume_checkpoint(run_dir, LAST_CHECKPOINT))
        except SystemExit as err:
            # Lightning turns Ctrl-C into sys.exit(1) after its graceful shutdown and leaves SIGINT
            # ignored: restore the handler and report an interruption (the run resumes from last.ckpt)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            if fit.trainer.interrupted:
                raise KeyboardInterrupt from err
            raise


def _final_losses(tracker: Tracker, run_id: str, fit: _Fit, config: Config) -> dict[str, float]:
    """The final epoch's validation losses: from this process, or from MLflow when the process that trained
    the last epoch died before result.json (the resumed fit then has no epoch left to run)."""
    logged = tracker.client.get_run(run_id).data.metrics
    metrics = {}
    for name in val_losses(fit.family.loss_names):
        value = fit.trainer.callback_metrics.get(name, logged.get(name))
        if value is None:
            msg = f"run {run_id}: no {name} was logged (did validation run? data.val_fraction=" \
                  f"{config.data.val_fraction})"
            raise TrainingError(msg)
        metrics[name] = float(value)
        if not math.isfinite(metrics[name]):
            msg = f"non-finite validation loss: {name} = {metrics[name]} (run {run_id})"
            raise TrainingError(msg)
    return metrics


def _record_result(tracker: Tracker, run_id: str, run_dir: Path, fit: _Fit, metrics: dict[str, float]) -> TrainResult:
    """The result, its checkpoints and preprocessor as the run's tags, n_params and best_val_loss as its
    metrics, and result.json (last: a run folder with it is finished)."""
    last = run_dir / LAST_CHECKPOINT
    result = fit.result(run_id, str(fit.checkpoint.best_model_path or last), metrics)
    tracker.set_tags(run_id, {TAG_CHECKPOINT: result.checkpoint_path, TAG_LAST_CHECKPOINT: str(last),
                              TAG_PREPROCESSOR: str(run_dir / PREPROCESSOR_FILE)})
    total_loss = val_losses(fit.family.loss_names)[0]
    # one batch, and none of it again when a kill came between it and result.json (a metric history stays true)
    tracker.log_metrics(run_id, {N_PARAMS: result.n_params,
                                 BEST_VAL_LOSS: float(fit.checkpoint.best_model_score or metrics[total_loss])})
    result.save(run_dir / RESULT_FILE)
    return result


def run_training(
    config: Config,
    *,
    files: DataFiles,
    run_dir: Path,
    tracker: Tracker,
    experiment_name: str,
    run_name: str,
    run_id: str | None = None,
    tags: dict[str, str] | None = None,
    extra_callbacks: list[Callback] | None = None,
    teacher_dir: Path | None = None,
) -> TrainResult:
    """Train one model (or finish an interrupted run) and return its TrainResult; the run stays open.

    The MLflow run is `run_id` if given (a study cell's run, opened by the cell), else the one recorded
    in run_dir/run.json, else a new run in the experiment `experiment_name` (created if missing). tags:
    added to provenance.run_tags(config, files). Training resumes from run_dir/last.ckpt when it exists;
    a run folder with result.json is returned without training. teacher_dir: the finished run folder of
    train.teacher (required when it is set). Raises TrainingError on a non-finite loss; a Ctrl-C surfaces
    as KeyboardInterrupt (resume by calling again).
    """
    check_precision(config.train.precision, resolve_device(config.trainer.accelerator), "train.precision")
    run_dir = Path(run_dir).resolve()
    finished = TrainResult.load(run_dir / RESULT_FILE)
    if finished is not None:
        return finished
    teacher = teacher_module(config, teacher_dir)  # before anything is written: a missing teacher stops here
    _write_config(run_dir, config)

    tracker.ensure_experiment(experiment_name)
    all_tags = {**run_tags(config, files), **(tags or {}), TAG_RUN_DIR: str(run_dir)}
    run_id = _attach_run(tracker, run_dir, run_id, run_name, all_tags, config)

    logger = RunLogger(experiment_name=experiment_name, tracking_uri=tracker.uri, run_id=run_id, log_model=False)
    fit = _build_fit(config, files, run_dir, teacher, logger, extra_callbacks or [])
    _fit(fit, run_dir)
    if fit.trainer.global_rank != 0:
        return fit.result(run_id, fit.checkpoint.best_model_path, {})
    return _record_result(tracker, run_id, run_dir, fit, _final_losses(tracker, run_id, fit, config))
