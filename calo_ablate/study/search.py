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
from typing import Any

import optuna
from optuna.trial import TrialState

from calo_ablate.config import resolve_config
from calo_ablate.errors import TrainingError
from calo_ablate.study import tracking
from calo_ablate.study.context import StudyContext
from calo_ablate.study.plan import Cell
from calo_ablate.study.queue import Claim, StudyQueue
from calo_ablate.study.registry import search_is_int

MONITOR = "val/loss"


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
            tracking.set_tags(ctx.tracking_uri, trial.user_attrs["run_id"], {"interrupted": "true"})
            tracking.client(ctx.tracking_uri).set_terminated(trial.user_attrs["run_id"], "KILLED")
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
    from optuna_integration import PyTorchLightningPruningCallback

    from calo_ablate.study.cell import train_cell

    trial = study.ask()
    value = _suggest(trial, cell)
    search = cell.ablation.search
    assert search is not None
    name = f"{cell.name}/trial{trial.number}"
    config = resolve_config(ctx.settings.dataset, ctx.settings.profile,
                            {**cell.ablation.overrides, search.param: value}, ctx.settings.cli_set, cell.seed)
    run_id = tracking.find_or_create_cell_run(
        ctx.tracking_uri, ctx.settings.experiment_id, cell_run_id, name,
        {"ablation": cell.ablation.name, "seed": str(cell.seed), search.param: str(value)}, role="search_trial")
    trial.set_user_attr("run_id", run_id)
    ctx.log(f"  {name}: {search.param} = {value:.4g}")
    run_dir = ctx.runs_dir / "search" / f"{cell.ablation.name}-s{cell.seed}" / f"trial-{trial.number}"
    try:
        result, _ = train_cell(ctx, queue, claim, cell, run_dir=run_dir, run_id=run_id, config=config, label=name,
                               extra_callbacks=[PyTorchLightningPruningCallback(trial, monitor=MONITOR)])
    except optuna.TrialPruned:
        tracking.set_tags(ctx.tracking_uri, run_id, {"pruned": "true"})
        tracking.client(ctx.tracking_uri).set_terminated(run_id, "KILLED")
        study.tell(trial, state=TrialState.PRUNED)
        ctx.log(f"  {name}: pruned")
        return
    except TrainingError as err:
        tracking.set_failed(ctx.tracking_uri, run_id, str(err))
        study.tell(trial, state=TrialState.FAIL)
        ctx.log(f"  {name}: failed ({err})")
        return
    trial.set_user_attr("run_dir", str(run_dir))
    study.tell(trial, result.metrics[MONITOR])


def run_search_cell(ctx: StudyContext, queue: StudyQueue, claim: Claim, cell: Cell,
                    cell_run_id: str) -> dict[str, float]:
    """Run the cell's search to `trials` finished trials, then evaluate the best; log into the cell's run."""
    from calo_ablate.generate import load_run
    from calo_ablate.study.cell import evaluate_cell, training_metrics
    from calo_ablate.train import TrainResult

    search = cell.ablation.search
    assert search is not None
    study = _open_search(ctx, queue, cell)
    finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    ctx.log(f"cell {cell.name}: {cell.ablation.title}: search over {search.param}, {search.trials} trials")
    while len(_counted(study, finished)) < search.trials:
        _run_trial(ctx, queue, claim, cell, study, cell_run_id)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete or not any(math.isfinite(t.value) for t in complete):
        msg = f"search of {cell.name}: no trial finished with a finite {MONITOR}"
        raise TrainingError(msg)
    best = study.best_trial
    result = TrainResult.load(_result_file(best.user_attrs["run_dir"]))
    metrics: dict[str, Any] = training_metrics(result, 0.0)
    metrics.update({
        "search_trials": len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))),
        "search_pruned": len(study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))),
        "search_failed": len(_counted(study, (TrialState.FAIL,))),
        "search_best_value": float(best.params[search.param]),
    })
    tracking.set_tags(ctx.tracking_uri, cell_run_id, {
        "search_param": search.param, "search_best_trial": str(best.number),
        "shares_training_run": result.run_id})
    if cell.config.evaluate.enabled:
        metrics.update(evaluate_cell(ctx, queue, claim, cell, load_run(result.run_id, ctx.tracking_uri)))
    tracking.log_metrics(ctx.tracking_uri, cell_run_id, metrics)
    tracking.set_finished(ctx.tracking_uri, cell_run_id)
    ctx.log(f"done {cell.name}: best {search.param} = {best.params[search.param]:.4g}, "
            f"val/loss {result.metrics[MONITOR]:.4f} ({metrics['search_trials']} trials, "
            f"{metrics['search_pruned']} pruned)")
    return metrics


def _result_file(run_dir: str) -> Path:
    from calo_ablate.train import RESULT_FILE

    return Path(run_dir) / RESULT_FILE
