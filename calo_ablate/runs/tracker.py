"""The MLflow store as calo-ablate uses it: one Tracker per store, holding one client.

Runs are found again by their tags (runs/names.py), never created twice, so a rerun after a crash
continues into the same runs. A cell's run is opened (RUNNING) when its worker starts it and closed once:
FINISHED after its evaluation, FAILED with the error (tag calo_ablate.error) otherwise; Lightning's
logger never closes it. The store and an experiment are created by one process before any worker
starts (several processes creating one SQLite schema at once collide); the default store is SQLite
beside the results. A new SQLite store is a copy of an empty one that MLflow built once per machine
(runs/mlflow_store.py), not seconds of MLflow's schema migrations on every study. The tracking URI
stays a string only where it crosses a process boundary (the study's settings that workers read,
Lightning's MLFlowLogger).
"""

from __future__ import annotations

import re
import time
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from mlflow.entities import Metric, Param, Run, RunStatus, RunTag
from mlflow.tracking import MlflowClient

from calo_ablate.config import Config
from calo_ablate.errors import CaloAblateError
from calo_ablate.runs.mlflow_store import store_from_template
from calo_ablate.runs.names import (
    CONFIG_ARTIFACT,
    EXPERIMENT_KIND,
    MAX_TAG_CHARS,
    REPORT_ARTIFACTS,
    ROLE_CELL,
    ROLE_STUDY,
    TAG_CELL,
    TAG_ERROR,
    TAG_PARENT,
    TAG_ROLE,
    TAG_SEED,
    TAG_TITLE,
)
from calo_ablate.runs.provenance import config_params

_PARAMS_PER_BATCH = 100  # MLflow takes at most 100 params per log_batch
_METRICS_PER_BATCH = 500
_PARAM_CHARS = 6000


def default_tracking_uri(results_dir: str | Path = "results") -> str:
    """sqlite:////abs/path/<results_dir>/mlflow.db (the folder is created)."""
    folder = Path(results_dir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}"


def metric_name(name: str) -> str:
    """`name` in MLflow's metric alphabet (anything else becomes '_')."""
    return re.sub(r"[^A-Za-z0-9_/. \-]", "_", name)


def _tag_text(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value) if isinstance(value, float) else str(value)
    return text[:MAX_TAG_CHARS]


def _artifact_root(tracking_uri: str, experiment_name: str) -> str | None:
    """Artifacts of a SQLite store go next to the database (not into the working directory)."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    db_path = Path(tracking_uri[len("sqlite:///"):]).resolve()
    return (db_path.parent / "mlartifacts" / experiment_name).as_uri()


class Tracker:
    """One MLflow store (`uri`) with one client, and the experiment and the study's parent run where known.

    The experiment id comes from the constructor, `ensure_experiment` or `find_parent`; the parent run
    id from the constructor, `find_or_create_parent` or `find_parent`. The client is made on first use,
    so a tracker that logs nothing never opens its store.
    """

    def __init__(self, uri: str, experiment_id: str | None = None, parent_run_id: str | None = None) -> None:
        self.uri = uri
        self._experiment_id = experiment_id
        self._parent_run_id = parent_run_id

    @cached_property
    def client(self) -> MlflowClient:
        """The store's client; a new SQLite store is first made from the template (MLflow opens its store here)."""
        store_from_template(self.uri)
        return MlflowClient(tracking_uri=self.uri)

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            msg = f"MLflow store {self.uri}: no experiment chosen yet (ensure_experiment or find_parent first)"
            raise CaloAblateError(msg)
        return self._experiment_id

    @property
    def parent_run_id(self) -> str:
        if self._parent_run_id is None:
            msg = (f"MLflow store {self.uri}: no study parent run known yet "
                   "(find_or_create_parent or find_parent first)")
            raise CaloAblateError(msg)
        return self._parent_run_id

    # ---- experiments ------------------------------------------------------------------------------------
    def ensure_experiment(self, name: str) -> str:
        """Create the store (a new SQLite one from the template) and the experiment `name` if missing; it
        becomes this tracker's experiment; returns its id.

        Call it once in the parent process before starting workers: concurrent schema creation in
        SQLite collides.
        """
        experiment = self.client.get_experiment_by_name(name)
        if experiment is None:
            self._experiment_id = self.client.create_experiment(
                name, artifact_location=_artifact_root(self.uri, name), tags=dict([EXPERIMENT_KIND]))
        else:
            if EXPERIMENT_KIND[0] not in experiment.tags:  # a store made before the tag existed
                self.client.set_experiment_tag(experiment.experiment_id, *EXPERIMENT_KIND)
            self._experiment_id = experiment.experiment_id
        return self._experiment_id

    def find_experiment(self, name: str) -> str | None:
        """The id of the experiment `name`; None when the store has none of that name."""
        experiment = self.client.get_experiment_by_name(name)
        return experiment.experiment_id if experiment is not None else None

    # ---- finding and opening runs -------------------------------------------------------------------
    def _search(self, experiment_id: str, filter_string: str) -> list[Run]:
        runs: list[Run] = []
        token = None
        while True:
            page = self.client.search_runs([experiment_id], filter_string=filter_string, max_results=1000,
                                           page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def create_run(self, run_name: str, tags: dict[str, str]) -> str:
        """A new run in this tracker's experiment; returns its id."""
        return self.client.create_run(self.experiment_id, run_name=run_name, tags=tags).info.run_id

    def reopen(self, run_id: str) -> None:
        """RUNNING again: a run that a rerun continues."""
        self.client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))

    def find_or_create_parent(self, study: str, tags: dict[str, str]) -> str:
        """The study's parent run id (one per experiment), RUNNING; `tags` are (re)written on every call.
        It becomes this tracker's parent run."""
        found = self._search(self.experiment_id, f"tags.`{TAG_ROLE}` = '{ROLE_STUDY}'")
        if found:
            run_id = found[0].info.run_id
            self.reopen(run_id)
        else:
            run_id = self.create_run(study, {TAG_ROLE: ROLE_STUDY})
        self.set_tags(run_id, tags)
        self._parent_run_id = run_id
        return run_id

    def find_parent(self, study: str) -> str | None:
        """The parent run id of `study` (then this tracker's experiment and parent run); None when the
        store holds no such study."""
        experiment_id = self.find_experiment(study)
        if experiment_id is None:
            return None
        found = self._search(experiment_id, f"tags.`{TAG_ROLE}` = '{ROLE_STUDY}'")
        if not found:
            return None
        self._experiment_id, self._parent_run_id = experiment_id, found[0].info.run_id
        return self._parent_run_id

    def open_child_run(self, name: str, tags: dict[str, str], *, parent_run_id: str | None = None,
                       role: str = ROLE_CELL) -> str:
        """The run of `name` ('base/s0') under `parent_run_id` (default: the study's parent run; created on
        first call), RUNNING, its error tag cleared and `tags` (re)written; returns its id.

        Found by its tag calo_ablate.cell = `name`; a cell's run is shown as '<title> s<seed>' (from `tags`).
        """
        parent = parent_run_id if parent_run_id is not None else self.parent_run_id
        found = self._search(self.experiment_id, f"tags.`{TAG_CELL}` = '{name}' and tags.`{TAG_PARENT}` = '{parent}'")
        if found:
            run_id = found[0].info.run_id
            self.reopen(run_id)
            if TAG_ERROR in found[0].data.tags:
                self.client.delete_tag(run_id, TAG_ERROR)
        else:
            shown = f"{tags[TAG_TITLE]} s{tags[TAG_SEED]}" if role == ROLE_CELL and TAG_TITLE in tags else name
            run_id = self.create_run(shown, {TAG_CELL: name, TAG_PARENT: parent, TAG_ROLE: role})
        self.set_tags(run_id, tags)
        return run_id

    def child_runs(self, parent_run_id: str) -> list[Run]:
        """Every cell run under the study's parent run `parent_run_id` (any status)."""
        parent = self.client.get_run(parent_run_id)
        return self._search(parent.info.experiment_id,
                            f"tags.`{TAG_PARENT}` = '{parent_run_id}' and tags.`{TAG_ROLE}` = '{ROLE_CELL}'")

    # ---- closing runs ---------------------------------------------------------------------------------
    def close_run(self, run_id: str, error: str | None = None) -> None:
        """FINISHED, or FAILED with `error` in the tag calo_ablate.error."""
        if error is not None:
            self.client.set_tag(run_id, TAG_ERROR, _tag_text(error))
        self.client.set_terminated(run_id, "FINISHED" if error is None else "FAILED")

    def kill_run(self, run_id: str) -> None:
        """KILLED: a run ended on purpose before its end (a pruned search trial)."""
        self.client.set_terminated(run_id, "KILLED")

    # ---- logging --------------------------------------------------------------------------------------
    def set_tags(self, run_id: str, tags: dict[str, Any]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(k, _tag_text(v)) for k, v in tags.items()])

    def log_metrics(self, run_id: str, metrics: dict[str, float]) -> None:
        """Final metrics (one value each, step 0); names sanitised to MLflow's alphabet. A metric the run
        holds already keeps its value (a cell redone after a kill between this and its `cell_done`, or the
        training's own n_params): one value per step."""
        now = int(time.time() * 1000)
        held = self.client.get_run(run_id).data.metrics
        batch = [Metric(metric_name(k), float(v), now, 0) for k, v in metrics.items() if metric_name(k) not in held]
        for start in range(0, len(batch), _METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=batch[start:start + _METRICS_PER_BATCH])

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        """Params that are not yet on the run (MLflow refuses to change a logged param)."""
        existing = self.client.get_run(run_id).data.params
        batch = [Param(k, _tag_text(v)[:_PARAM_CHARS]) for k, v in params.items() if k not in existing]
        for start in range(0, len(batch), _PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=batch[start:start + _PARAMS_PER_BATCH])

    def log_config(self, run_id: str, config: Config, *, skip_param: str | None = None) -> None:
        """The resolved config as params (dotted keys; `skip_param` left out) and as the config.yaml artifact."""
        params = config_params(config)
        params.pop(skip_param or "", None)
        self.log_params(run_id, params)
        text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
        self.client.log_text(run_id, text, CONFIG_ARTIFACT)

    def log_artifacts(self, run_id: str, paths: list[Path]) -> None:
        """The report files as artifacts of the parent run (overwritten on every report)."""
        for path in paths:
            self.client.log_artifact(run_id, str(path), artifact_path=REPORT_ARTIFACTS)
