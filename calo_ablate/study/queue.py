"""The study's state as an Optuna study: one trial per train unit, taken by workers one at a time.

Storage: a JournalStorage file (results/<study>/optuna.journal) by default, which is safe for several
processes on one machine (and over NFS); any Optuna RDB URL (postgresql://..., sqlite:///...) with
`--storage` for workers on several machines (`postgresql://` uses the psycopg 3 driver of the
`postgres` extra).

Trial lifecycle (all trials of the queue are enqueued with user attrs, no params):
- `sync` enqueues a WAITING trial for every unit whose cells are neither done, covered by a WAITING
  or live RUNNING trial, nor given up (failed `retries` times); it first reaps dead workers;
- `take` claims the next WAITING trial atomically (Optuna's own pop: the state change to RUNNING
  succeeds for exactly one process) and stamps it with the worker's identity (host, pid, pid
  namespace) and a heartbeat;
- the worker marks each cell done as it completes (`cells_done`), then the trial COMPLETE, or FAIL
  with the error per cell (`errors`); a later `sync` retries failed cells.

Liveness (`reap`): a RUNNING trial is dead when
- its worker ran in our pid namespace (same kernel boot and pid namespace, not merely the same host
  name) and its pid is gone: decided at once;
- on RDB storage, Optuna's own heartbeat says so (`record_heartbeat` every HEARTBEAT_S, stale after
  HEARTBEAT_GRACE_S): the database server's clock stamps and judges every beat, so the workers'
  clocks never meet;
- otherwise (journal storage and another machine, or a claim killed before its stamp) its `beat`
  counter did not change between two of OUR observations HEARTBEAT_GRACE_S (CLAIM_GRACE_S for an
  unstamped claim) apart, measured on this process's monotonic clock: no wall clocks compared.
The reaped trial is marked FAIL ('interrupted') and its unfinished cells are enqueued again at once.
Optuna's RetryFailedTrialCallback is not used for this: it re-enqueues a copy of the whole trial,
while a unit's cells that are already done must not run again.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, JournalStorage, RDBStorage, fail_stale_trials
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from optuna.trial import FrozenTrial, TrialState

from calo_ablate.atomic import pid_namespace
from calo_ablate.errors import ConfigError
from calo_ablate.runs.faults import fault_point

JOURNAL_FILE = "optuna.journal"
HEARTBEAT_S = 20
HEARTBEAT_GRACE_S = 90.0  # a beat unchanged this long (our clock) means the worker is gone
CLAIM_GRACE_S = 10.0  # a claim is stamped milliseconds after it is taken: unstamped this long is dead
JOURNAL_LOCK_GRACE_S = 5  # the journal lock is held for one append; Optuna's default 30 s stalls the
# next call that long after a kill -9 of the holder (Optuna judges it by the lock's mtime on its own
# monotonic clock, so a short grace stays clock-safe)
SETTINGS_ATTR = "settings"
STOP_ATTR = "stop"
RETRIES_ATTR = "retries"
FAILURES_FROM_ATTR = "failures_from"  # trial number from which failures count (set by --retry-failed)
DEFAULT_RETRIES = 2

optuna.logging.set_verbosity(optuna.logging.WARNING)


def default_storage(study_dir: Path) -> str:
    """The journal file of a study folder (an absolute path)."""
    return str((Path(study_dir) / JOURNAL_FILE).resolve())


def rdb_url(url: str) -> str:
    """SQLAlchemy URL of an RDB storage: a plain postgresql:// selects the psycopg 3 driver."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def open_storage(url: str, heartbeat_grace_s: float = HEARTBEAT_GRACE_S) -> BaseStorage:
    """An RDB storage (with Optuna heartbeats, stale after heartbeat_grace_s whole seconds) for a URL with '://',
    else a journal file at that path."""
    if "://" in url:
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna since 2.9
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(rdb_url(url), engine_kwargs={"pool_pre_ping": True},
                                  heartbeat_interval=HEARTBEAT_S, grace_period=int(heartbeat_grace_s),
                                  heartbeat_stale_trial_callback=_requeue_stale)
        except ModuleNotFoundError as err:
            msg = f"storage {url}: its database driver is not installed ({err}); for PostgreSQL: " \
                  "pip install 'calo-ablate[postgres]'"
            raise ConfigError(msg) from None
    Path(url).parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(url, lock_obj=JournalFileSymlinkLock(url, JOURNAL_LOCK_GRACE_S)))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def requeue_unfinished(study: optuna.Study, trial: FrozenTrial) -> list[str]:
    """Enqueue the cells of a reaped trial that are not done (Optuna's stale-trial callback, and ours)."""
    done: set[str] = set()
    for other in study.get_trials(deepcopy=False):
        done.update(other.user_attrs.get("cells_done", []))
    pending = [c for c in trial.user_attrs.get("cells", []) if c not in done]
    if pending:
        study.enqueue_trial({}, user_attrs={"unit": trial.user_attrs["unit"], "cells": pending})
    return pending


def _requeue_stale(study: optuna.Study, trial: FrozenTrial) -> None:
    """requeue_unfinished as Optuna's stale-trial callback, which returns nothing."""
    requeue_unfinished(study, trial)


def interrupted(trial: FrozenTrial) -> bool:
    """A FAIL trial that its worker did not end (killed, reaped by the liveness check)."""
    return trial.state == TrialState.FAIL and not trial.user_attrs.get("finished")


@dataclass(frozen=True)
class Claim:
    """A unit taken by this worker: the trial and the cell names it must run (in plan order)."""

    trial_id: int
    number: int
    unit: str
    cells: tuple[str, ...]


@dataclass(frozen=True)
class Progress:
    done: int
    running: list[str]  # "cell (detail)" of live RUNNING trials
    failed: dict[str, str]  # cell -> error, for cells not done whose last attempt failed
    waiting: int
    total: int


class StudyQueue:
    """The queue of one study in one storage."""

    def __init__(self, storage_url: str, study_name: str, *, create: bool,
                 clock: Callable[[], float] = time.monotonic, heartbeat_grace_s: float = HEARTBEAT_GRACE_S) -> None:
        """clock: seconds on a monotonic clock, by which dead workers are judged (a test passes its own);
        heartbeat_grace_s: seconds a worker's beat may stay unchanged before it counts as gone."""
        self.storage_url = storage_url
        self._clock = clock
        self.heartbeat_grace_s = heartbeat_grace_s
        self.storage = open_storage(storage_url, heartbeat_grace_s)
        try:
            if create:
                self.study = optuna.create_study(storage=self.storage, study_name=study_name,
                                                 direction="minimize", load_if_exists=True)
            else:
                self.study = optuna.load_study(study_name=study_name, storage=self.storage)
        except KeyError:
            msg = f"no study named '{study_name}' in storage {storage_url}"
            raise ConfigError(msg) from None
        self.name = study_name
        self.study_id = self.storage.get_study_id_from_name(study_name)
        self._lock = threading.Lock()
        self._seen: dict[int, tuple[Any, float]] = {}  # trial id -> (its beat, our monotonic time seen)

    # settings and flags (study user attrs) ------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        attrs = self.storage.get_study_user_attrs(self.study_id)
        if SETTINGS_ATTR not in attrs:
            msg = f"study '{self.name}' in {self.storage_url} has no settings: was it made by `calo-ablate ablate`?"
            raise ConfigError(msg)
        return json.loads(attrs[SETTINGS_ATTR])

    def save_settings(self, settings: dict[str, Any]) -> None:
        self.study.set_user_attr(SETTINGS_ATTR, json.dumps(settings, sort_keys=True))

    def request_stop(self, reason: str) -> None:
        self.study.set_user_attr(STOP_ATTR, reason)

    def clear_stop(self) -> None:
        self.study.set_user_attr(STOP_ATTR, "")

    def stop_reason(self) -> str:
        return str(self.storage.get_study_user_attrs(self.study_id).get(STOP_ATTR, ""))

    def set_retries(self, retries: int, *, reset: bool = False) -> None:
        """A cell that failed `retries` times is not enqueued again; reset: count failures from now on."""
        self.study.set_user_attr(RETRIES_ATTR, int(retries))
        if reset:
            self.study.set_user_attr(FAILURES_FROM_ATTR, len(self.trials()))

    # state --------------------------------------------------------------------------------------
    def trials(self) -> list[FrozenTrial]:
        return self.storage.get_all_trials(self.study_id, deepcopy=False)

    def done_cells(self) -> set[str]:
        done: set[str] = set()
        for trial in self.trials():
            done.update(trial.user_attrs.get("cells_done", []))
        return done

    def failure_counts(self) -> dict[str, int]:
        """Cell -> failed attempts (since the last --retry-failed); interruptions are not failures."""
        since = int(self.storage.get_study_user_attrs(self.study_id).get(FAILURES_FROM_ATTR, 0))
        counts: dict[str, int] = {}
        for trial in self.trials():
            if trial.number >= since:
                for cell in trial.user_attrs.get("errors", {}):
                    counts[cell] = counts.get(cell, 0) + 1
        return counts

    def given_up(self) -> dict[str, int]:
        """Cells not done that failed `retries` times: cell -> failures."""
        retries = int(self.storage.get_study_user_attrs(self.study_id).get(RETRIES_ATTR, DEFAULT_RETRIES))
        done = self.done_cells()
        return {c: n for c, n in self.failure_counts().items() if n >= retries and c not in done}

    # liveness -----------------------------------------------------------------------------------
    def _unchanged_for(self, trial: FrozenTrial, beat: Any) -> float:
        """Seconds (our monotonic clock) since we first saw the trial with this beat."""
        now = self._clock()
        seen = self._seen.get(trial._trial_id)
        if seen is None or seen[0] != beat:
            self._seen[trial._trial_id] = (beat, now)
            return 0.0
        return now - seen[1]

    def _is_dead(self, trial: FrozenTrial) -> bool:
        owner = trial.user_attrs.get("worker")
        if owner is None:  # claimed, killed before its stamp
            return self._unchanged_for(trial, None) > CLAIM_GRACE_S
        if owner["ns"] == pid_namespace():
            return not pid_alive(int(owner["pid"]))
        if isinstance(self.storage, RDBStorage):
            return False  # Optuna's heartbeat judges it (fail_stale_trials in reap)
        return self._unchanged_for(trial, trial.user_attrs.get("beat")) > self.heartbeat_grace_s

    def reap(self) -> list[str]:
        """Fail the RUNNING trials of dead workers ('interrupted') and enqueue their unfinished cells
        again; returns those cells. Call it often: remote workers are judged over several calls."""
        waiting = {t._trial_id for t in self.trials() if t.state == TrialState.WAITING}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            fail_stale_trials(self.study)  # RDB storage: Optuna's heartbeat, requeue_unfinished as callback
        requeued = [c for t in self.trials() if t.state == TrialState.WAITING and t._trial_id not in waiting
                    for c in t.user_attrs.get("cells", [])]
        for trial in self.trials():
            if trial.state != TrialState.RUNNING or not self._is_dead(trial):
                continue
            try:
                self.storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
                if not self.storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
                    continue
            except UpdateFinishedTrialError:  # another process reaped it first (or it just finished)
                continue
            requeued.extend(requeue_unfinished(self.study, trial))
        return requeued

    def claims_pending_judgement(self) -> bool:
        """A RUNNING trial without a stamp yet (alive claims get theirs in milliseconds)."""
        return any(t.state == TrialState.RUNNING and "worker" not in t.user_attrs for t in self.trials())

    # the queue ----------------------------------------------------------------------------------
    def sync(self, units: list[tuple[str, list[str]]]) -> int:
        """Enqueue every (unit key, cell names) with a cell that is neither done, covered nor given up;
        returns the count."""
        self.reap()
        done = self.done_cells()
        skip = done | set(self.given_up())
        covered: set[str] = set()
        for trial in self.trials():
            if trial.state in (TrialState.WAITING, TrialState.RUNNING):
                covered.update(trial.user_attrs.get("cells", []))
        added = 0
        for key, cells in units:
            pending = [c for c in cells if c not in skip]
            if pending and not set(pending) <= covered:
                self.study.enqueue_trial({}, user_attrs={"unit": key, "cells": pending})
                added += 1
        return added

    def take(self) -> Claim | None:
        """Claim the next WAITING trial (atomically), or None when none waits."""
        while True:
            waiting = self.storage.get_all_trials(self.study_id, deepcopy=False,
                                                  states=(TrialState.WAITING,))
            if not waiting:
                return None
            for trial in waiting:
                try:
                    if not self.storage.set_trial_state_values(trial._trial_id, TrialState.RUNNING):
                        continue
                except UpdateFinishedTrialError:
                    continue
                fault_point("claim")
                self._stamp(trial._trial_id)
                cells = self._unclaimed_cells(trial)
                if not cells:  # a duplicate entry (two `ablate` processes enqueued the same unit)
                    self.storage.set_trial_user_attr(trial._trial_id, "skipped", "duplicate")
                    self.storage.set_trial_user_attr(trial._trial_id, "finished", True)
                    self.storage.set_trial_state_values(trial._trial_id, TrialState.PRUNED)
                    break
                return Claim(trial._trial_id, trial.number, trial.user_attrs["unit"], tuple(cells))

    def _unclaimed_cells(self, mine: FrozenTrial) -> list[str]:
        done = self.done_cells()
        held: set[str] = set()
        for trial in self.trials():
            if trial.state == TrialState.RUNNING and trial._trial_id != mine._trial_id \
                    and trial._trial_id < mine._trial_id:
                held.update(trial.user_attrs.get("cells", []))
        return [c for c in mine.user_attrs["cells"] if c not in done and c not in held]

    def _beat(self, trial_id: int, count: int) -> None:
        with self._lock:
            self.storage.set_trial_user_attr(trial_id, "beat", count)
            if isinstance(self.storage, RDBStorage):
                self.storage.record_heartbeat(trial_id)

    def _stamp(self, trial_id: int) -> None:
        self._beat(trial_id, 0)
        with self._lock:
            self.storage.set_trial_user_attr(trial_id, "worker", {"host": socket.gethostname(), "pid": os.getpid(),
                                                                  "ns": pid_namespace()})
            self.storage.set_trial_user_attr(trial_id, "host", socket.gethostname())
            self.storage.set_trial_user_attr(trial_id, "pid", os.getpid())

    @contextmanager
    def heartbeat(self, claim: Claim) -> Iterator[None]:
        """Beat for the claim every HEARTBEAT_S seconds while the block runs."""
        stop = threading.Event()

        def beat() -> None:
            count = 0
            while not stop.wait(HEARTBEAT_S):
                count += 1
                self._beat(claim.trial_id, count)

        thread = threading.Thread(target=beat, daemon=True, name="calo-ablate-heartbeat")
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def set_detail(self, claim: Claim, text: str) -> None:
        """What the claim is doing now (shown by the progress display), e.g. 'base/s0 epoch 2/5'."""
        with self._lock:
            self.storage.set_trial_user_attr(claim.trial_id, "detail", text)

    def cell_done(self, claim: Claim, cell: str) -> None:
        trial = self.storage.get_trial(claim.trial_id)
        with self._lock:
            self.storage.set_trial_user_attr(claim.trial_id, "cells_done",
                                             [*trial.user_attrs.get("cells_done", []), cell])

    def cell_failed(self, claim: Claim, cell: str, error: str) -> None:
        trial = self.storage.get_trial(claim.trial_id)
        with self._lock:
            self.storage.set_trial_user_attr(claim.trial_id, "errors",
                                             {**trial.user_attrs.get("errors", {}), cell: error})

    def finish(self, claim: Claim, value: float | None) -> None:
        """COMPLETE when every cell is done (value: the unit's validation loss), else FAIL."""
        trial = self.storage.get_trial(claim.trial_id)
        ok = set(claim.cells) <= set(trial.user_attrs.get("cells_done", []))
        state = TrialState.COMPLETE if ok else TrialState.FAIL
        with self._lock:
            self.storage.set_trial_user_attr(claim.trial_id, "finished", True)
        self.storage.set_trial_state_values(claim.trial_id, state,
                                            values=[value] if ok and value is not None else None)

    def progress(self, plan_cells: list[str]) -> Progress:
        trials = self.trials()
        done: set[str] = set()
        for trial in trials:
            done.update(trial.user_attrs.get("cells_done", []))
        running, failed, waiting = [], {}, 0
        for trial in sorted(trials, key=lambda t: t.number):
            attrs = trial.user_attrs
            if trial.state == TrialState.RUNNING:
                running.append(attrs.get("detail") or ", ".join(attrs.get("cells", [])))
            elif trial.state == TrialState.WAITING:
                waiting += len(attrs.get("cells", []))
            for cell, error in attrs.get("errors", {}).items():
                if cell not in done and cell in plan_cells:
                    failed[cell] = error
        for cell in list(failed):
            if any(cell in t.user_attrs.get("cells", []) and t.state in (TrialState.WAITING, TrialState.RUNNING)
                   for t in trials):
                del failed[cell]  # retried now
        return Progress(len(done & set(plan_cells)), running, failed, waiting, len(plan_cells))
