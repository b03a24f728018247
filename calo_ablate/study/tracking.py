"""MLflow layout of a study: one experiment (named as the study), one parent run, one child run per cell.

Runs are found again by tags, never created twice: the parent run carries `calo_ablate.role=study`,
a cell's run `calo_ablate.cell=<ablation>/s<seed>` under the parent. A rerun after a crash therefore
continues into the same runs. The store and the experiment are created by the parent process before
any worker starts (several processes creating one SQLite schema at once collide), with
calo_ablate.train.ensure_experiment; the default store is results/<study>/mlflow.db.
"""

from __future__ import annotations

import os
import platform
import re
import socket
import time
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, Run, RunStatus
from mlflow.tracking import MlflowClient

ROLE_TAG = "calo_ablate.role"
CELL_TAG = "calo_ablate.cell"
PARENT_TAG = "mlflow.parentRunId"
ERROR_TAG = "calo_ablate.error"
MAX_TAG_CHARS = 8000  # MLflow 3 refuses longer tag values


def client(tracking_uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=tracking_uri)


def experiment_id(tracking_uri: str, name: str) -> str | None:
    experiment = client(tracking_uri).get_experiment_by_name(name)
    return experiment.experiment_id if experiment is not None else None


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
    """The study's parent run id (one per experiment); `tags` are (re)written on every call."""
    c = client(tracking_uri)
    found = _search(c, exp_id, f"tags.`{ROLE_TAG}` = 'study'")
    if found:
        run_id = found[0].info.run_id
        c.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
    else:
        run_id = c.create_run(exp_id, run_name=study, tags={ROLE_TAG: "study"}).info.run_id
    for key, value in tags.items():
        c.set_tag(run_id, key, _tag_text(value))
    return run_id


def find_parent(tracking_uri: str, study: str) -> str | None:
    exp_id = experiment_id(tracking_uri, study)
    if exp_id is None:
        return None
    found = _search(client(tracking_uri), exp_id, f"tags.`{ROLE_TAG}` = 'study'")
    return found[0].info.run_id if found else None


def find_or_create_cell_run(tracking_uri: str, exp_id: str, parent_run_id: str, cell: str,
                            tags: dict[str, str], role: str = "cell") -> str:
    """The run named `cell` ('base/s0') under the parent run, created on first use; tags rewritten.

    role: "cell" for the study's cells, "search_trial" for a search trial nested under its cell.
    """
    c = client(tracking_uri)
    found = _search(c, exp_id, f"tags.`{CELL_TAG}` = '{cell}' and tags.`{PARENT_TAG}` = '{parent_run_id}'")
    if found:
        run_id = found[0].info.run_id
    else:
        run = c.create_run(exp_id, run_name=cell, tags={CELL_TAG: cell, PARENT_TAG: parent_run_id,
                                                        ROLE_TAG: role})
        run_id = run.info.run_id
    for key, value in tags.items():
        c.set_tag(run_id, key, _tag_text(value))
    return run_id


def child_runs(tracking_uri: str, parent_run_id: str) -> list[Run]:
    """Every cell run of the study (any status)."""
    c = client(tracking_uri)
    parent = c.get_run(parent_run_id)
    return _search(c, parent.info.experiment_id,
                   f"tags.`{PARENT_TAG}` = '{parent_run_id}' and tags.`{ROLE_TAG}` = 'cell'")


def set_running(tracking_uri: str, run_id: str) -> None:
    c = client(tracking_uri)
    c.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
    if ERROR_TAG in c.get_run(run_id).data.tags:
        c.delete_tag(run_id, ERROR_TAG)


def set_finished(tracking_uri: str, run_id: str) -> None:
    client(tracking_uri).set_terminated(run_id, "FINISHED")


def set_failed(tracking_uri: str, run_id: str, error: str) -> None:
    c = client(tracking_uri)
    c.set_tag(run_id, ERROR_TAG, _tag_text(error))
    c.set_terminated(run_id, "FAILED")


def set_tags(tracking_uri: str, run_id: str, tags: dict[str, Any]) -> None:
    c = client(tracking_uri)
    for key, value in tags.items():
        c.set_tag(run_id, key, _tag_text(value))


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
    for start in range(0, len(batch), 100):
        c.log_batch(run_id, params=batch[start:start + 100])


def metric_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_/. \-]", "_", name)


def _tag_text(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value) if isinstance(value, float) else str(value)
    return text[:MAX_TAG_CHARS]


def machine_description() -> str:
    """'<cpu model>, <n> cores[, GPU: <name> x n]' of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} cores, host {socket.gethostname()}"
    import torch

    if torch.cuda.is_available():
        text += f", GPU: {torch.cuda.get_device_name(0)} x {torch.cuda.device_count()}"
    return text


def log_config(tracking_uri: str, run_id: str, config: dict[str, Any]) -> None:
    """The resolved config as the run's config.yaml artifact."""
    import yaml

    client(tracking_uri).log_text(run_id, yaml.safe_dump(config, sort_keys=False), "config.yaml")


def log_artifacts(tracking_uri: str, run_id: str, paths: list[Path]) -> None:
    """The report files as artifacts of the parent run (overwritten on every report)."""
    c = client(tracking_uri)
    for path in paths:
        c.log_artifact(run_id, str(path), artifact_path="report")
