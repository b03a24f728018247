"""What the study tests share: a registry, tiny-model overrides, the `ablate` arguments, readers of a
study folder (its MLflow cell runs, the report's table as data, Optuna trials and finished trainings)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from calo_ablate.report.table import StudyTable, build_table
from calo_ablate.runs.names import REFERENCE
from calo_ablate.runs.tracker import Tracker
from calo_ablate.study.queue import StudyQueue

REGISTRY = """\
ablations:
  base: {title: Base}
  broken: {title: Broken on purpose, why: a learning rate that makes the loss non-finite, set: {train.lr: 1.0e+30}}
  fewer_steps: {title: Fewer time steps, set: {sample.steps_factor: 0.5}}
  higher_lr: {title: Increased learning rate, set: {train.lr: 1.0e-3}}
  less_noise: {title: Decrease noise, set: {model.diffusion.noise_scale: 0.5}}
  lr_search:
    title: Learning-rate search
    search: {param: train.lr, low: 1.0e-4, high: 1.0e-3, log: true, trials: 2}
"""
TINY = ["data.max_train_events=100", "train.batch_size=32", "model.voxel.widths=[8,8]",
        "model.voxel.attention=[false,false]", "model.voxel.block_depth=1", "model.voxel.lift_channels=4",
        "model.embed_dim=16", "model.layer.mlp_dim=16", "sample.steps=4", "evaluate.n_events=50",
        "evaluate.timing_batch_sizes=[1,10]", "evaluate.classifier.hidden=16", "evaluate.classifier.epochs=2",
        "evaluate.classifier.trainings=1", "evaluate.classifier.batch_size=50"]
NO_EVAL = ["evaluate.enabled=false"]


def ablate_args(tmp: Path, data: Path, study: str, only: str, *extra: str, sets: list[str] = ()) -> list[str]:
    args = ["ablate", "--profile", "smoke", "--seeds", "1", "--registry", str(tmp / "ablations.yaml"),
            "--results-dir", str(tmp / "results"), "--study", study, "--only", only, *extra]
    for item in [f"data.data_dir={data}", *TINY, *sets]:
        args += ["--set", item]
    return args


def child_runs(study_dir: Path) -> list:
    client = MlflowClient(f"sqlite:///{study_dir / 'mlflow.db'}")
    exp = client.get_experiment_by_name(study_dir.name)
    return client.search_runs([exp.experiment_id], filter_string="tags.`calo_ablate.role` = 'cell'")


def report_rows(study_dir: Path) -> pd.DataFrame:
    """The report's table.csv indexed by row name (the noise floor, where evaluated, first as 'reference'); an
    empty change_vs_base or note reads as ''."""
    return pd.read_csv(study_dir / "table.csv", index_col="row").fillna({"change_vs_base": "", "note": ""})


def all_finished(rows: pd.DataFrame, seeds: int) -> bool:
    """Whether every cell of every row in report_rows finished (the noise floor aside)."""
    cells = rows.drop(index=REFERENCE, errors="ignore")
    return bool((cells["finished"] == seeds).all() and (cells["failed"] == 0).all())


def study_table(study_dir: Path) -> StudyTable:
    """The report's StudyTable, rebuilt from the study folder's MLflow store."""
    tracker = Tracker(f"sqlite:///{study_dir / 'mlflow.db'}")
    parent = tracker.find_parent(study_dir.name)
    assert parent is not None, f"no study {study_dir.name} in {tracker.uri}"
    return build_table(tracker, parent)


def trials(study_dir: Path) -> list:
    return StudyQueue(str(study_dir / "optuna.journal"), study_dir.name, create=False).trials()


def stamps(study_dir: Path) -> dict[str, float]:
    """mtime of every finished training's files: unchanged means nothing retrained."""
    finished = [p.parent for p in (study_dir / "runs").glob("*/result.json")]
    return {str(p): p.stat().st_mtime for d in finished for p in d.iterdir()}
