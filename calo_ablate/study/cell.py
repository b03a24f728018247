"""One cell of a study: train (or reuse) its model, then evaluate it; and the reference noise floor.

Per cell, into the cell's own MLflow run (a child of the study's parent run, opened by the worker):
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
training; a derived cell's own training only), teacher_train_seconds (a derived cell: its teacher chain's
training seconds, summed), eval_seconds, and every metric of evaluate_samples and time_generation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
from lightning.pytorch.callbacks import Callback
from optuna.trial import TrialState

from calo_ablate.config import Config
from calo_ablate.data.datamodule import CaloDataModule
from calo_ablate.errors import TrainingError
from calo_ablate.evaluation.evaluate import evaluate_samples, reference_noise_floor
from calo_ablate.evaluation.timing import time_generation
from calo_ablate.model.families import load_family
from calo_ablate.runs.faults import fault_point
from calo_ablate.runs.generate import TrainedModel, generate_showers
from calo_ablate.runs.names import (
    EPOCHS,
    EVAL_SECONDS,
    GEN_MS_PREFIX,
    N_PARAMS,
    REFERENCE,
    REFERENCE_PREFIX,
    REFERENCE_SECONDS,
    REFERENCE_STD_PREFIX,
    SAMPLE_STEPS,
    SECONDS_PER_EPOCH,
    TEACHER_TRAIN_SECONDS,
    TRAIN_SECONDS,
    VAL_LOSS,
)
from calo_ablate.runs.provenance import CellTags, run_tags
from calo_ablate.runs.samples import sample_path, save_sample
from calo_ablate.runs.train import RESULT_FILE, TrainResult, run_training
from calo_ablate.study.context import StudyContext
from calo_ablate.study.plan import Cell
from calo_ablate.study.queue import Claim, StudyQueue

TEACHER_POLL_S = 2.0  # how often a derived cell looks for its teacher's result.json
REFERENCE_SEED = 1_000_003  # the noise-floor samples (seeds from here on) are drawn independently of every cell's


def cell_tags(ctx: StudyContext, cell: Cell) -> dict[str, str]:
    """The tags of the cell's run (provenance.run_tags with the cell's identity)."""
    owner = ctx.plan.training_owner(cell)
    identity = CellTags(
        ablation=cell.ablation.name, title=cell.ablation.title, why=cell.ablation.why, profile=ctx.settings.profile,
        loss_comparable=ctx.plan.loss_comparable(cell),
        eval_key=None if cell.ablation.search else cell.eval_key,
        shares_training_of=owner.ablation.name if owner.name != cell.name else None)
    return run_tags(cell.config, ctx.files, identity)


def open_cell_run(ctx: StudyContext, cell: Cell) -> str:
    """The cell's MLflow run, RUNNING (created on first use, found again by its name afterwards)."""
    return ctx.tracker.open_child_run(cell.name, cell_tags(ctx, cell))


def runtime_config(ctx: StudyContext, config: Config) -> Config:
    """The cell's config with this machine's thread share (a runtime field: keys are unchanged)."""
    config = config.model_copy(deep=True)
    config.trainer.threads = ctx.threads
    return config


class EpochProgress(Callback):
    """Prints each epoch's validation loss and records it as the claim's detail (the progress display)."""

    def __init__(self, ctx: StudyContext, queue: StudyQueue, claim: Claim, label: str) -> None:
        self.ctx, self.queue, self.claim, self.label = ctx, queue, claim, label

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_rank != 0:
            return
        epoch = f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"
        val = trainer.callback_metrics.get(VAL_LOSS)
        loss = f", {VAL_LOSS} {float(val):.4f}" if val is not None else ""
        self.ctx.log(f"  {self.label}: {epoch}{loss}")
        self.queue.set_detail(self.claim, f"{self.label} {epoch}")


def teacher_dir(ctx: StudyContext, cell: Cell) -> Path | None:
    """The run folder of the training `cell` starts from (None: it trains from scratch)."""
    teacher = ctx.plan.teacher_cell(cell)
    return ctx.runs_dir / teacher.train_key if teacher is not None else None


class TeacherPending(Exception):
    """The teacher's training of a derived cell waits in the queue (not yet taken, or handed back after a
    kill): the worker hands the derived cell's unit back, so that it comes after the teacher's."""


def _teacher_queue_state(queue: StudyQueue, owner: str) -> tuple[str, str]:
    """('done' | 'running' | 'waiting' | 'not queued', the last error of `owner`'s cell) in the queue."""
    trials = queue.trials()
    if any(owner in t.user_attrs.get("cells_done", []) for t in trials):
        return "done", ""
    holding = [t.state for t in trials if owner in t.user_attrs.get("cells", [])]
    errors = [t.user_attrs["errors"][owner] for t in trials if owner in t.user_attrs.get("errors", {})]
    state = "running" if TrialState.RUNNING in holding else "waiting" if TrialState.WAITING in holding \
        else "not queued"
    return state, errors[-1] if errors else ""


def wait_for_teacher(ctx: StudyContext, queue: StudyQueue, claim: Claim, cell: Cell,
                     check: Callable[[], None] | None = None, poll_s: float = TEACHER_POLL_S) -> None:
    """Return once the teacher's training of `cell` has finished (its result.json) while another worker
    trains it; reaps dead workers meanwhile. check: called between looks (a stop request raises there);
    poll_s: seconds between looks.

    Raises TeacherPending when the teacher's unit waits in the queue (this unit goes back behind it), and
    TrainingError when the teacher will not be trained in this call (it failed, or was given up)."""
    teacher, folder = ctx.plan.teacher_cell(cell), teacher_dir(ctx, cell)
    if teacher is None or folder is None:
        return
    owner = ctx.plan.training_owner(teacher).name
    waiting = False
    while not (folder / RESULT_FILE).is_file():
        queue.reap()  # a killed teacher's unit goes back to the queue, and is then seen as waiting
        state, error = _teacher_queue_state(queue, owner)
        if (folder / RESULT_FILE).is_file():  # finished between the two looks
            return
        if state == "waiting":
            msg = f"{cell.name}: the training of its teacher {owner} waits in the queue"
            raise TeacherPending(msg)
        if state != "running":
            given_up = " (given up: --retry-failed runs it again)" if owner in queue.given_up() else ""
            msg = (f"{cell.name}: its teacher's training ({owner}, {folder}) is {state} with no {RESULT_FILE}"
                   f"{given_up}{': ' + error if error else ''}")
            raise TrainingError(msg)
        if not waiting:
            queue.set_detail(claim, f"{cell.name} waiting for its teacher {owner}")
            ctx.log(f"  {cell.name}: waiting for the training of its teacher {owner} (another worker)")
            waiting = True
        if check is not None:
            check()
        time.sleep(poll_s)


def teacher_train_seconds(ctx: StudyContext, cell: Cell) -> dict[str, float]:
    """{TEACHER_TRAIN_SECONDS: the training seconds of every teacher in `cell`'s chain} for a derived
    cell whose teachers' times are all known; {} otherwise."""
    results = [TrainResult.load(ctx.runs_dir / teacher.train_key / RESULT_FILE)
               for teacher in ctx.plan.teacher_chain(cell)]
    seconds = [r.train_seconds for r in results if r is not None]
    if not results or len(seconds) < len(results) or not all(math.isfinite(s) for s in seconds):
        return {}
    return {TEACHER_TRAIN_SECONDS: float(sum(seconds))}


def train_cell(ctx: StudyContext, queue: StudyQueue, claim: Claim, cell: Cell, *,
               extra_callbacks: list[Callback] | None = None, run_dir: Path | None = None,
               run_id: str | None = None, config: Config | None = None,
               label: str | None = None) -> tuple[TrainResult, float | None]:
    """Train (or resume, or reuse) the model of `cell`'s train key (a derived cell: from its teacher's
    finished training, waited for with `wait_for_teacher` first).

    Returns (TrainResult, its training seconds over every call that trained it; None when unknown).
    A search trial passes its own run_dir, run_id, config and label (the progress lines' name).
    """
    owner = ctx.plan.training_owner(cell)
    run_id = run_id or open_cell_run(ctx, owner)
    config = runtime_config(ctx, config or owner.config)
    run_dir = run_dir or ctx.runs_dir / owner.train_key
    label = label or cell.name
    queue.set_detail(claim, f"{label} training")
    result = run_training(
        config, files=ctx.files, run_dir=run_dir, tracker=ctx.tracker, experiment_name=ctx.name,
        run_name=owner.name, run_id=run_id, tags=cell_tags(ctx, owner),
        extra_callbacks=[EpochProgress(ctx, queue, claim, label), *(extra_callbacks or [])],
        teacher_dir=teacher_dir(ctx, owner))
    return result, result.train_seconds if math.isfinite(result.train_seconds) else None


def training_metrics(result: TrainResult, train_seconds: float | None) -> dict[str, float]:
    """The training's final metrics; train_seconds only when known (None: keep what the run has)."""
    metrics = {**result.metrics, N_PARAMS: result.n_params,
               SECONDS_PER_EPOCH: result.seconds_per_epoch, EPOCHS: result.epochs}
    if train_seconds is not None:
        metrics[TRAIN_SECONDS] = train_seconds
    return metrics


def evaluate_cell(ctx: StudyContext, queue: StudyQueue, claim: Claim, cell: Cell,
                  trained: TrainedModel) -> dict[str, float]:
    """Generate, compare with the reference, time generation; returns the metrics (and caches the sample)."""
    config = cell.config
    started = time.perf_counter()
    queue.set_detail(claim, f"{cell.name} evaluating")
    datamodule = CaloDataModule(config, ctx.files, ctx.study_dir / "cache")
    energies, showers = datamodule.eval_sample(config.evaluate.n_events, seed=cell.seed)  # (N,), (N, V) MeV
    steps = load_family(config).sampling_steps()  # this cell's (its training may be another's); None: one pass
    precision = config.sample.precision
    batch = config.sample.batch_size

    def generate(e: np.ndarray) -> np.ndarray:  # one call = one batch of len(e) showers
        return generate_showers(trained, e, steps=steps, batch_size=len(e), seed=cell.seed, progress=False,
                                precision=precision)

    generate(energies[:1])  # warm-up (lazy initialisation), untimed
    started_gen = time.perf_counter()
    generated = generate_showers(trained, energies, steps=steps, batch_size=batch, seed=cell.seed, progress=False,
                                 precision=precision)  # (N, V) MeV
    gen_seconds = time.perf_counter() - started_gen
    if not np.isfinite(generated).all():
        msg = f"{cell.name}: {int((~np.isfinite(generated)).any(axis=1).sum())} of {len(generated)} generated " \
              "showers hold non-finite energies"
        raise TrainingError(msg)
    fault_point("mid-evaluation")
    metrics = evaluate_samples((energies, showers), (energies, generated), ctx.settings.dataset,
                               config.evaluate, seed=cell.seed, device=str(trained.module.device))
    sizes = list(config.evaluate.timing_batch_sizes)
    if batch in sizes and len(energies) % batch == 0:  # the cell's own generation ran at this batch size
        metrics[f"{GEN_MS_PREFIX}{batch}"] = 1000.0 * gen_seconds / len(energies)
        sizes.remove(batch)
    metrics.update(time_generation(generate, energies, sizes, repeats=config.evaluate.timing_repeats,
                                   log=ctx.log))
    if steps is not None:
        metrics[SAMPLE_STEPS] = steps
    save_sample(sample_path(ctx.study_dir, cell.ablation.name, cell.seed), energies, generated)
    reference = sample_path(ctx.study_dir, REFERENCE, cell.seed)
    if not reference.is_file():
        save_sample(reference, energies, showers)
    fault_point("after-sample-write")
    metrics[EVAL_SECONDS] = time.perf_counter() - started
    return metrics


def run_reference(ctx: StudyContext, queue: StudyQueue, claim: Claim) -> None:
    """The noise floor: the metrics of two disjoint halves of the evaluation file, logged to the parent run;
    with evaluate.noise_floor_samples > 1, their mean and std over that many independent draws."""
    config = ctx.plan.base_cell(0).config
    started = time.perf_counter()
    queue.set_detail(claim, "reference vs reference")
    ctx.log("reference vs reference: the metrics' noise floor")
    datamodule = CaloDataModule(config, ctx.files, ctx.study_dir / "cache")
    draws = []
    for i in range(config.evaluate.noise_floor_samples):
        sample = datamodule.eval_sample(2 * config.evaluate.n_events, seed=REFERENCE_SEED + i)
        draws.append(reference_noise_floor(sample, ctx.settings.dataset, config.evaluate, seed=REFERENCE_SEED + i))
    logged = {REFERENCE_PREFIX + k: float(np.mean([d[k] for d in draws])) for k in draws[0]}
    if len(draws) > 1:
        logged.update({REFERENCE_STD_PREFIX + k: float(np.std([d[k] for d in draws], ddof=1))
                       for k in draws[0]})
    ctx.tracker.log_metrics(ctx.tracker.parent_run_id,
                            {**logged, REFERENCE_SECONDS: time.perf_counter() - started})
    queue.cell_done(claim, REFERENCE)
