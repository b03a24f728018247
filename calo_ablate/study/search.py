"""An Optuna search inside one ablation cell (the entry's `search:` block).

The cell runs `trials` trainings of its config with `param` sampled by TPE (seeded by the cell's
seed) in [low, high] (log-uniform when `log`), each pruned by Optuna's median pruner on val/loss
through the Lightning pruning callback. The search lives in the study's storage as its own Optuna
study '<study>/search/<ablation>/s<seed>', so a rerun continues it: finished trials are kept, trials
left RUNNING by a killed worker are marked FAIL and replaced by new ones. Each trial trains in
results/<study>/runs/search/<ablation>-s<seed>/trial-<n>/ into an MLflow run nested under the cell's
run. The best trial (lowest final val/loss) becomes the cell's result: its training metrics and the
evaluation of its model, plus search_trials (finished trials), search_pruned and search_best_value.
"""

from __future__ import annotations

import math
from pathlib import Path

import optuna
from optuna.trial import TrialState
from optuna_integration import PyTorchLightningPruningCallback

from calo_ablate.config import with_value
from calo_ablate.errors import TrainingError
from calo_ablate.runs.generate import load_run
from calo_ablate.runs.names import (
    ROLE_SEARCH_TRIAL,
    SEARCH_BEST_VALUE,
    SEARCH_FAILED,
    SEARCH_PRUNED,
    SEARCH_TRIALS,
    TAG_ABLATION,
    TAG_INTERRUPTED,
    TAG_PRUNED,
    TAG_SEARCH_BEST_TRIAL,
    TAG_SEARCH_PARAM,
    TAG_SEED,
    TAG_SHARES_TRAINING_RUN,
    VAL_LOSS,
)
from calo_ablate.runs.train import RESULT_FILE, TrainResult
from calo_ablate.study.cell import evaluate_cell, train_cell, training_metrics
from calo_ablate.study.context import StudyContext
from calo_ablate.study.plan import Cell
from calo_ablate.study.queue import Claim, StudyQueue
from calo_ablate.study.registry import search_is_int

MONITOR = VAL_LOSS


def search_study_name(ctx: StudyContext, cell: Cell) -> str:
    return f"{ctx.name}/search/{cell.ablation.name}/s{cell.seed}"


def _open_search(ctx: StudyContext, queue: StudyQueue, cell: Cell) -> optuna.Study:
    study = optuna.create_study(
        storage=queue.storage, study_name=search_study_name(ctx, cell), direction="minimize",
        load_if_exists=True, sampler=optuna.samplers.TPESampler(seed=cell.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0))
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        # this process holds the cell's queue entry alone: a RUNNING search trial is a killed one; it is
        # replaced (not counted in the budget) and its run closed
        queue.storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
        queue.storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        if "run_id" in trial.user_attrs:
            ctx.tracker.set_tags(trial.user_attrs["run_id"], {TAG_INTERRUPTED: "true"})
            ctx.tracker.kill_run(trial.user_attrs["run_id"])
    return study


def _counted(study: optuna.Study, states: tuple[TrialState, ...]) -> list[optuna.trial.FrozenTrial]:
    """Trials in `states`, less those interrupted by a kill (replaced by new trials)."""
    return [t for t in study.get_trials(deepcopy=False, states=states) if not t.user_attrs.get("interrupted")]


def _suggest(trial: optuna.Trial, cell: Cell) -> float | int:
    search = cell.ablation.search
    assert search is not None
    if search_is_int(cell.config, search):
        return trial.suggest_int(search.param, int(search.low), int(search.high), log=search.log)
    return trial.suggest_float(search.param, search.low, search.high, log=search.log)


def _run_trial(ctx: StudyContext, queue: StudyQueue, claim: Claim, cell: Cell, study: optuna.Study,
               cell_run_id: str) -> None:
    trial = study.ask()
    value = _suggest(trial, cell)
    search = cell.ablation.search
    assert search is not None
    name = f"{cell.name}/trial{trial.number}"
    config = with_value(cell.config, search.param, value)
    run_id = ctx.tracker.open_child_run(
        name, {TAG_ABLATION: cell.ablation.name, TAG_SEED: str(cell.seed), search.param: str(value)},
        parent_run_id=cell_run_id, role=ROLE_SEARCH_TRIAL)
    trial.set_user_attr("run_id", run_id)
    ctx.log(f"  {name}: {search.param} = {value:.4g}")
    run_dir = ctx.runs_dir / "search" / f"{cell.ablation.name}-s{cell.seed}" / f"trial-{trial.number}"
    try:
        result, _ = train_cell(ctx, queue, claim, cell, run_dir=run_dir, run_id=run_id, config=config, label=name,
                               extra_callbacks=[PyTorchLightningPruningCallback(trial, monitor=MONITOR)])
    except optuna.TrialPruned:
        ctx.tracker.set_tags(run_id, {TAG_PRUNED: "true"})
        ctx.tracker.kill_run(run_id)
        study.tell(trial, state=TrialState.PRUNED)
        ctx.log(f"  {name}: pruned")
        return
    except TrainingError as err:
        ctx.tracker.close_run(run_id, str(err))
        study.tell(trial, state=TrialState.FAIL)
        ctx.log(f"  {name}: failed ({err})")
        return
    ctx.tracker.close_run(run_id)
    trial.set_user_attr("run_dir", str(run_dir))
    study.tell(trial, result.metrics[MONITOR])


def run_search_cell(ctx: StudyContext, queue: StudyQueue, claim: Claim, cell: Cell,
                    cell_run_id: str) -> dict[str, float]:
    """Run the cell's search to `trials` finished trials, then evaluate the best; log into the cell's run
    (the caller closes it)."""
    search = cell.ablation.search
    assert search is not None
    study = _open_search(ctx, queue, cell)
    finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    ctx.log(f"cell {cell.name}: {cell.ablation.title}: search over {search.param}, {search.trials} trials")
    while len(_counted(study, finished)) < search.trials:
        _run_trial(ctx, queue, claim, cell, study, cell_run_id)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete or not any(t.value is not None and math.isfinite(t.value) for t in complete):
        msg = f"search of {cell.name}: no trial finished with a finite {MONITOR}"
        raise TrainingError(msg)
    best = study.best_trial
    result = TrainResult.load(Path(best.user_attrs["run_dir"]) / RESULT_FILE)
    if result is None:
        msg = f"search of {cell.name}: the result of its best trial {best.number} is missing; run it again"
        raise TrainingError(msg)
    metrics = training_metrics(result, 0.0)
    metrics.update({
        SEARCH_TRIALS: len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))),
        SEARCH_PRUNED: len(study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))),
        SEARCH_FAILED: len(_counted(study, (TrialState.FAIL,))),
        SEARCH_BEST_VALUE: float(best.params[search.param]),
    })
    ctx.tracker.set_tags(cell_run_id, {
        TAG_SEARCH_PARAM: search.param, TAG_SEARCH_BEST_TRIAL: str(best.number),
        TAG_SHARES_TRAINING_RUN: result.run_id})
    if cell.config.evaluate.enabled:
        metrics.update(evaluate_cell(ctx, queue, claim, cell, load_run(result.run_id, ctx.tracker)))
    ctx.tracker.log_metrics(cell_run_id, metrics)
    ctx.log(f"done {cell.name}: best {search.param} = {best.params[search.param]:.4g}, "
            f"{MONITOR} {result.metrics[MONITOR]:.4f} ({int(metrics[SEARCH_TRIALS])} trials, "
            f"{int(metrics[SEARCH_PRUNED])} pruned)")
    return metrics
