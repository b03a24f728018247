"""A new SQLite store made from the template (runs/mlflow_store.py) is the store MLflow would make itself,
MLflow opens it without migrating, and a broken template or cache folder never breaks a store.

The cache folder is redirected into the tests' temporary folder by $XDG_CACHE_HOME (rates.cache_dir); the
template is built once for the module (MLflow's migrations: seconds), the tests that break it build it again.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import mlflow
import mlflow.store.db.utils as db_utils
import pytest
from mlflow.tracking import MlflowClient

from calo_ablate.runs.mlflow_store import store_from_template, template_path
from calo_ablate.runs.names import EXPERIMENT_KIND, TAG_CELL
from calo_ablate.runs.rates import cache_dir
from calo_ablate.runs.tracker import Tracker, _artifact_root


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """$XDG_CACHE_HOME in a temporary folder for the module's tests, the template built in it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        assert store_from_template(f"sqlite:///{tmp_path_factory.mktemp('first') / 'mlflow.db'}")
        yield cache_dir()


def _uri(folder: Path) -> str:
    return f"sqlite:///{folder / 'mlflow.db'}"


def _schema(uri: str) -> tuple[dict[tuple[str, str], list[str]], list[tuple[str, ...]]]:
    """(every table, index and trigger of the database, its SQL as sorted lines; its alembic_version rows).

    Sorted: two schemas MLflow creates itself may list a table's CHECK constraints in another order (they
    come from a Python set: the order follows the process's hash seed)."""
    with closing(sqlite3.connect(uri[len("sqlite:///"):])) as db:
        objects = {(kind, name): sorted(line.strip().rstrip(",") for line in (sql or "").splitlines())
                   for kind, name, sql in db.execute("SELECT type, name, sql FROM sqlite_master")}
        return objects, db.execute("SELECT version_num FROM alembic_version").fetchall()


def _template() -> Path:
    return template_path(db_utils._get_latest_schema_revision())


def test_a_store_from_the_template_has_the_schema_mlflow_makes(cache: Path, tmp_path: Path) -> None:
    template = _template()
    assert template.parent == cache and template.is_file()
    assert template.name == f"mlflow-{mlflow.__version__}-{db_utils._get_latest_schema_revision()}.db"
    with closing(sqlite3.connect(template)) as db:
        assert db.execute("SELECT count(*) FROM experiments").fetchone() == (0,)  # MLflow's tables only
    ours, mlflows = _uri(tmp_path / "ours"), _uri(tmp_path / "mlflow")
    assert store_from_template(ours)
    MlflowClient(tracking_uri=mlflows).search_experiments()  # MLflow creates this store itself
    MlflowClient(tracking_uri=ours).search_experiments()
    objects, version = _schema(ours)
    assert {name for kind, name in objects if kind == "table"} >= {"experiments", "runs", "alembic_version"}
    assert (objects, version) == _schema(mlflows)
    assert version == [(db_utils._get_latest_schema_revision(),)]
    default = MlflowClient(tracking_uri=ours).get_experiment("0")  # MLflow's own, added when it opened the copy
    assert default.name == "Default" and default.artifact_location.endswith("mlruns/0")


def test_mlflow_opens_a_copy_without_migrating_and_a_study_works_in_it(cache: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(engine: object) -> None:
        raise AssertionError("MLflow migrated a store made from the template")

    monkeypatch.setattr(db_utils, "_initialize_tables", refuse)
    monkeypatch.setattr(db_utils, "_upgrade_db", refuse)
    uri = _uri(tmp_path / "results" / "study")
    tracker = Tracker(uri)
    experiment_id = tracker.ensure_experiment("study")
    parent = tracker.find_or_create_parent("study", {"note": "parent"})
    cell = tracker.open_child_run("base/s0", {"note": "cell"})
    tracker.log_metrics(cell, {"fpd": 0.5})
    tracker.close_run(cell)

    again = Tracker(uri)
    assert again.find_parent("study") == parent and again.experiment_id == experiment_id == "1"
    experiment = again.client.get_experiment(experiment_id)
    assert experiment.artifact_location == _artifact_root(uri, "study")
    assert experiment.tags[EXPERIMENT_KIND[0]] == EXPERIMENT_KIND[1]
    [run] = again.child_runs(parent)
    assert run.info.run_id == cell and run.info.status == "FINISHED"
    assert run.data.tags[TAG_CELL] == "base/s0" and run.data.metrics == {"fpd": 0.5}


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_corrupt_template_is_replaced_and_the_store_works(cache: Path, tmp_path: Path, damage: str) -> None:
    template = _template()
    data = template.read_bytes()
    broken = b"not a database" * 100 if damage == "garbage" else data[:len(data) // 2]
    template.write_bytes(broken)
    uri = _uri(tmp_path)
    assert store_from_template(uri)  # the template built again, then copied
    assert template.read_bytes() != broken
    assert _schema(uri) == _schema(f"sqlite:///{template}")
    assert Tracker(uri).ensure_experiment("study") == "1"


def test_an_unusable_cache_folder_leaves_the_store_to_mlflow(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # the cache folder cannot be made
    uri = _uri(tmp_path / "study")
    assert not store_from_template(uri)
    assert not (tmp_path / "study" / "mlflow.db").exists()
    tracker = Tracker(uri)
    assert tracker.ensure_experiment("study") == "1"  # MLflow made the store itself
    assert tracker.client.get_experiment("1").tags[EXPERIMENT_KIND[0]] == EXPERIMENT_KIND[1]


def test_only_a_missing_or_empty_sqlite_file_is_made_from_the_template(cache: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty" / "mlflow.db"
    empty.parent.mkdir()
    empty.touch()
    assert store_from_template(_uri(empty.parent))
    assert _schema(_uri(empty.parent))[1] == [(db_utils._get_latest_schema_revision(),)]
    assert not store_from_template(_uri(empty.parent))  # a store now: left alone
    other = tmp_path / "other.db"
    other.write_bytes(b"someone else's file")
    assert not store_from_template(f"sqlite:///{other}")
    assert other.read_bytes() == b"someone else's file"
    for uri in ("sqlite://", "sqlite:///:memory:", "postgresql://u@localhost/db", "http://localhost:5000"):
        assert not store_from_template(uri)
    assert not list(tmp_path.glob("**/*.tmp"))  # no temporary copy left behind
