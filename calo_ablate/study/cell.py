"""One train unit of a study: train (or reuse) its model, then evaluate each of its cells.

Per cell, into the cell's own MLflow run (a child of the study's parent run):
- training: the first cell of a train key trains in results/<study>/runs/<train_key>/ and its run
  holds the per-epoch curves; a cell sharing that training records `shares_training_of` (the owning
  cell) and `shares_training_run`, and gets the training's final metrics copied;
- evaluation (when config.evaluate.enabled): config.evaluate.n_events showers generated with the EMA
  weights for incident energies of a reference sample drawn (by the cell's seed) from the evaluation
  file, the CaloChallenge metrics of generated vs that reference, and the generation time per shower
  at config.evaluate.timing_batch_sizes. The generated sample is cached as
  results/<study>/samples/<ablation>-s<seed>.npz for the report's histograms.
Final metrics: val/loss, val/voxel_loss, val/layer_loss, n_params, seconds_per_epoch, epochs,
train_seconds (wall time of the fit, over every call that trained it; 0 on a cell sharing another's
training), eval_seconds, and every metric of evaluate_samples and time_generation.
"""

from __future__ import annotations

import math
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from calo_ablate.config import Config
from calo_ablate.data.preprocess import write_npz_atomic
from calo_ablate.errors import CaloAblateError, TrainingError
from calo_ablate.faults import fault_callbacks, fault_point
from calo_ablate.study import tracking
from calo_ablate.study.context import StudyContext
from calo_ablate.study.plan import Cell
from calo_ablate.study.queue import REFERENCE_UNIT, Claim, StudyQueue
from calo_ablate.train import git_revision

REFERENCE_PREFIX = "refref/"
REFERENCE_SEED = 1_000_003  # the noise-floor sample is drawn independently of every cell's reference


@dataclass
class UnitOutcome:
    ok: bool
    value: float | None  # the unit's final validation loss


def cell_tags(ctx: StudyContext, cell: Cell) -> dict[str, str]:
    plan = ctx.plan
    owner = plan.training_owner(cell)
    tags = {
        "ablation": cell.ablation.name,
        "title": cell.ablation.title,
        "why": cell.ablation.why,
        "seed": str(cell.seed),
        "dataset": ctx.settings.dataset,
        "profile": ctx.settings.profile,
        "data_source": ctx.settings.data_source,
        "data_checksums": str(ctx.settings.checksums),
        "git_revision": git_revision(),
        "loss_comparable": str(plan.loss_comparable(cell)).lower(),
    }
    if cell.ablation.search is None:  # a search cell's keys are its best trial's (tagged by the search)
        tags.update(train_key=cell.train_key, eval_key=cell.eval_key)
    if owner.name != cell.name:
        tags["shares_training_of"] = owner.ablation.name
    return tags


def cell_run_id(ctx: StudyContext, cell: Cell) -> str:
    return tracking.find_or_create_cell_run(ctx.tracking_uri, ctx.settings.experiment_id,
                                            ctx.settings.parent_run_id, cell.name, cell_tags(ctx, cell))


def runtime_config(ctx: StudyContext, config: Config) -> Config:
    """The cell's config with this machine's thread share (a runtime field: keys are unchanged)."""
    config = config.model_copy(deep=True)
    config.trainer.threads = ctx.threads
    return config


def epoch_callback(ctx: StudyContext, queue: StudyQueue, claim: Claim, label: str) -> Any:
    """A Lightning callback that prints each epoch's validation loss and records it as the claim's detail."""
    from lightning.pytorch.callbacks import Callback

    class EpochProgress(Callback):
        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            if trainer.global_rank != 0:
                return
            epoch = f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"
            val = trainer.callback_metrics.get("val/loss")
            loss = f", val/loss {float(val):.4f}" if val is not None else ""
            ctx.log(f"  {label}: {epoch}{loss}")
            queue.set_detail(claim, f"{label} {epoch}")

    return EpochProgress()


def train_cell(ctx: StudyContext, queue: StudyQueue, claim: Claim, cell: Cell,
               extra_callbacks: list | None = None, run_dir: Path | None = None,
               run_id: str | None = None, config: Config | None = None,
               label: str | None = None) -> tuple[Any, float]:
    """Train (or resume, or reuse) the model of `cell`'s train key.

    Returns (TrainResult, its training seconds over every call that trained it; None when unknown).

    A search trial passes its own run_dir, run_id, config and label (the progress lines' name).
    """
    from calo_ablate.train import run_training

    owner = ctx.plan.training_owner(cell)
    run_id = run_id or cell_run_id(ctx, owner)
    config = runtime_config(ctx, config or owner.config)
    run_dir = run_dir or ctx.runs_dir / owner.train_key
    label = label or cell.name
    queue.set_detail(claim, f"{label} training")
    result = run_training(
        config, files=ctx.files, run_dir=run_dir,
        tracking_uri=ctx.tracking_uri, experiment_name=ctx.name, run_name=owner.name, run_id=run_id,
        parent_run_id=ctx.settings.parent_run_id, tags=cell_tags(ctx, owner),
        extra_callbacks=[epoch_callback(ctx, queue, claim, label), *(extra_callbacks or []), *fault_callbacks()])
    return result, result.train_seconds if math.isfinite(result.train_seconds) else None


def training_metrics(result: Any, train_seconds: float | None) -> dict[str, float]:
    """The training's final metrics; train_seconds only when known (None: keep what the run has)."""
    metrics = {**result.metrics, "n_params": result.n_params, "seconds_per_epoch": result.seconds_per_epoch,
               "epochs": result.epochs}
    if train_seconds is not None:
        metrics["train_seconds"] = train_seconds
    return metrics


def evaluate_cell(ctx: StudyContext, queue: StudyQueue, claim: Claim, cell: Cell, trained: Any) -> dict[str, float]:
    """Generate, compare with the reference, time generation; returns the metrics (and caches the sample)."""
    from calo_ablate.data.datamodule import CaloDataModule
    from calo_ablate.evaluation.evaluate import evaluate_samples
    from calo_ablate.evaluation.timing import time_generation
    from calo_ablate.generate import generate_showers

    config = cell.config
    started = time.perf_counter()
    queue.set_detail(claim, f"{cell.name} evaluating")
    datamodule = CaloDataModule(config, ctx.files, ctx.study_dir / "cache")
    energies, showers = datamodule.eval_sample(config.evaluate.n_events, seed=cell.seed)  # (N,), (N, V) MeV
    steps = config.sample.effective_steps
    precision = config.sample.precision
    generated = generate_showers(trained, energies, steps=steps, batch_size=config.sample.batch_size,
                                 seed=cell.seed, progress=False, precision=precision)  # (N, V) MeV
    if not np.isfinite(generated).all():
        msg = f"{cell.name}: {int((~np.isfinite(generated)).any(axis=1).sum())} of {len(generated)} generated " \
              "showers hold non-finite energies"
        raise TrainingError(msg)
    fault_point("mid-evaluation")
    metrics = evaluate_samples((energies, showers), (energies, generated), ctx.settings.dataset,
                               config.evaluate, seed=cell.seed)
    metrics.update(time_generation(
        lambda e: generate_showers(trained, e, steps=steps, batch_size=len(e), seed=cell.seed, progress=False,
                                   precision=precision),
        energies, config.evaluate.timing_batch_sizes, repeats=config.evaluate.timing_repeats, log=ctx.log))
    metrics["sample_steps"] = steps
    ctx.samples_dir.mkdir(parents=True, exist_ok=True)
    write_npz_atomic(ctx.samples_dir / f"{cell.ablation.name}-s{cell.seed}.npz",
                     {"energies_mev": energies, "showers_mev": generated})
    reference = ctx.samples_dir / f"reference-s{cell.seed}.npz"
    if not reference.is_file():
        write_npz_atomic(reference, {"energies_mev": energies, "showers_mev": showers})
    fault_point("after-sample-write")
    metrics["eval_seconds"] = time.perf_counter() - started
    return metrics


def run_reference(ctx: StudyContext, queue: StudyQueue, claim: Claim) -> UnitOutcome:
    """The noise floor: the metrics of two disjoint halves of the evaluation file, logged to the parent run."""
    from calo_ablate.data.datamodule import CaloDataModule
    from calo_ablate.evaluation.evaluate import reference_noise_floor

    config = ctx.plan.base_cell(0).config
    started = time.perf_counter()
    queue.set_detail(claim, "reference vs reference")
    ctx.log("reference vs reference: the metrics' noise floor")
    datamodule = CaloDataModule(config, ctx.files, ctx.study_dir / "cache")
    sample = datamodule.eval_sample(2 * config.evaluate.n_events, seed=REFERENCE_SEED)
    metrics = reference_noise_floor(sample, ctx.settings.dataset, config.evaluate, seed=REFERENCE_SEED)
    tracking.log_metrics(ctx.tracking_uri, ctx.settings.parent_run_id,
                         {**{REFERENCE_PREFIX + k: v for k, v in metrics.items()},
                          "reference_seconds": time.perf_counter() - started})
    queue.cell_done(claim, REFERENCE_UNIT)
    return UnitOutcome(True, None)


def _error_text(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}".strip()


def _fail(ctx: StudyContext, queue: StudyQueue, claim: Claim, cell: Cell, run_id: str, error: str,
          err: BaseException) -> None:
    ctx.log(f"FAILED {cell.name}: {error}")
    if not isinstance(err, CaloAblateError):  # an unexpected error: its traceback helps
        ctx.log("".join(traceback.format_exception(err)).rstrip())
    tracking.set_failed(ctx.tracking_uri, run_id, error)
    queue.cell_failed(claim, cell.name, error)


def run_unit(ctx: StudyContext, queue: StudyQueue, claim: Claim) -> UnitOutcome:
    """Run every cell of the claimed unit; a failure is recorded per cell and never raised."""
    from calo_ablate.study.search import run_search_cell
    from calo_ablate.train import config_params

    if claim.unit == REFERENCE_UNIT:
        try:
            return run_reference(ctx, queue, claim)
        except Exception as err:  # noqa: BLE001 (a failed unit is recorded, the study goes on)
            ctx.log(f"FAILED reference vs reference: {_error_text(err)}")
            queue.cell_failed(claim, REFERENCE_UNIT, _error_text(err))
            return UnitOutcome(False, None)
    cells = [ctx.plan.cell(name) for name in claim.cells]
    training: Any = None
    train_seconds: float | None = None
    trained_model: Any = None
    training_error: str | None = None
    ok = True
    for cell in cells:
        run_id = cell_run_id(ctx, cell)
        tracking.set_running(ctx.tracking_uri, run_id)
        params = config_params(cell.config)
        if cell.ablation.search:  # its value is the best trial's (a search_best_value metric)
            params.pop(cell.ablation.search.param)
        tracking.log_params(ctx.tracking_uri, run_id, params)
        tracking.log_config(ctx.tracking_uri, run_id, cell.config.model_dump(mode="json"))
        if training_error is not None:
            _fail(ctx, queue, claim, cell, run_id, training_error, TrainingError(training_error))
            ok = False
            continue
        try:
            if cell.ablation.search:
                run_search_cell(ctx, queue, claim, cell, run_id)
                queue.cell_done(claim, cell.name)
                continue
            ctx.log(f"cell {cell.name}: {cell.ablation.title} (train key {cell.train_key})")
            if training is None:
                training, train_seconds = train_cell(ctx, queue, claim, cell)
            metrics = training_metrics(training, train_seconds if training.run_id == run_id else 0.0)
            if training.run_id != run_id:
                tracking.set_tags(ctx.tracking_uri, run_id, {"shares_training_run": training.run_id})
            else:  # the training run has the per-epoch values already; a copy at step 0 would join its curve
                metrics = {k: v for k, v in metrics.items() if k not in training.metrics}
            if cell.config.evaluate.enabled:
                if trained_model is None:
                    from calo_ablate.generate import load_run

                    trained_model = load_run(training.run_id, ctx.tracking_uri)
                metrics.update(evaluate_cell(ctx, queue, claim, cell, trained_model))
            tracking.log_metrics(ctx.tracking_uri, run_id, metrics)
            tracking.set_finished(ctx.tracking_uri, run_id)
            queue.cell_done(claim, cell.name)
            ctx.log(f"done {cell.name}: val/loss {training.metrics['val/loss']:.4f}")
        except Exception as err:  # noqa: BLE001 (a failed cell is recorded, the study goes on)
            error = _error_text(err)
            _fail(ctx, queue, claim, cell, run_id, error, err)
            ok = False
            if training is None:
                training_error = f"training failed: {error}"
    value = training.metrics.get("val/loss") if training is not None else None
    return UnitOutcome(ok, value if value is not None and math.isfinite(value) else None)
