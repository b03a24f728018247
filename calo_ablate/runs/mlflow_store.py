"""A new SQLite MLflow store as a copy of a pristine empty one, built by MLflow once per machine.

MLflow makes the schema of an empty SQLite file by creating its initial tables and then running every
alembic migration: seconds, on every new study. Instead, MLflow does that once on a template in the
cache folder (rates.cache_dir(), e.g. ~/.cache/calo-ablate/mlflow-3.17.2-dc11669786a5.db: MLflow's
version and its schema's alembic head revision, so another MLflow never gets a stale schema), and a
new store is a copy of it. The template holds MLflow's tables only, no experiment: MLflow adds its
Default experiment when it first opens the copy, as it does in a store it creates.

A template that is not an intact SQLite file at the head revision is built again; when anything fails
(an unwritable cache folder, a file system without hard links), nothing is copied and MLflow creates
the store itself, as before.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import mlflow

from calo_ablate.atomic import atomic_path, temp_path
from calo_ablate.runs.rates import cache_dir

__all__ = ["build_template", "store_from_template", "template_path"]

log = logging.getLogger(__name__)


def template_path(revision: str) -> Path:
    """The template of this MLflow at schema `revision`: <cache folder>/mlflow-<MLflow version>-<revision>.db."""
    return cache_dir() / f"mlflow-{mlflow.__version__}-{revision}.db"


def build_template(path: Path) -> None:
    """MLflow's own creation of an empty store's schema (its initial tables, then its migrations) on a
    temporary file beside `path`, renamed to `path` when finished."""
    # Imported here, not at the top: SQLAlchemy and alembic take ~0.4 s to import, needed for new stores only.
    from mlflow.store.db import utils as db_utils

    with atomic_path(path) as tmp:
        engine = db_utils.create_sqlalchemy_engine(f"sqlite:///{tmp}")
        try:
            db_utils._initialize_tables(engine)  # what MLflow's SqlAlchemyStore runs on an empty database
        finally:
            engine.dispose()


def store_from_template(tracking_uri: str) -> bool:
    """Make the store of a `sqlite:///` tracking URI whose file is missing or empty a copy of the template
    (built first where it is missing or unusable); True when this call put the copy in place.

    False, with nothing changed, for another store (a server, an existing database, in memory), when another
    process made the store meanwhile, and when the template fails (logged at info level): MLflow then
    creates the store itself."""
    path = _new_sqlite_file(tracking_uri)
    if path is None:
        return False
    try:
        from mlflow.store.db import utils as db_utils  # here, not at the top: see build_template

        revision = db_utils._get_latest_schema_revision()  # the one MLflow's store requires when it opens a file
        template = template_path(revision)
        if not _is_store_at(template, revision):  # missing, corrupt or not MLflow's: built (again)
            build_template(template)
        return _copy_into_place(template, path)
    except Exception as err:  # noqa: BLE001 (correctness first: whatever failed, MLflow makes the store as before)
        log.info("new MLflow store %s not made from the template (%s: %s); MLflow creates it", path,
                 type(err).__name__, err)
        return False


def _new_sqlite_file(tracking_uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI when it is missing or empty (0 bytes) and no SQLite journal
    lies beside it; None otherwise."""
    if not tracking_uri.startswith("sqlite:///") or "?" in tracking_uri:
        return None
    name = tracking_uri[len("sqlite:///"):]
    if name in ("", ":memory:"):
        return None
    path = Path(name)
    if path.exists() and (not path.is_file() or path.stat().st_size > 0):
        return None
    if any(Path(f"{path}{suffix}").exists() for suffix in ("-journal", "-wal")):
        return None
    return path


def _is_store_at(path: Path, revision: str) -> bool:
    """True when `path` is an intact SQLite database whose alembic_version is `revision` (read only: a
    missing file stays missing)."""
    try:
        with closing(sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)) as db:
            intact = db.execute("PRAGMA quick_check").fetchall() == [("ok",)]
            return intact and db.execute("SELECT version_num FROM alembic_version").fetchall() == [(revision,)]
    except sqlite3.Error:
        return False


def _copy_into_place(template: Path, path: Path) -> bool:
    """Copy `template` to a temporary file beside `path`, flush it to disk and link it as `path` (over an
    empty file); True when it did, False when another process put a store at `path` meanwhile (kept)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        shutil.copyfile(template, tmp)
        with tmp.open("rb+") as handle:
            os.fsync(handle.fileno())
        if path.exists() and path.stat().st_size == 0:
            path.unlink(missing_ok=True)
        try:
            os.link(tmp, path)  # unlike a rename, never replaces a store made meanwhile
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink(missing_ok=True)
