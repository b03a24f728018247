"""The study's state as an Optuna study: one trial per train unit, taken by workers one at a time.

Storage: a JournalStorage file (results/<study>/optuna.journal) by default, which is safe for several
processes on one machine (and over NFS); any Optuna RDB URL (postgresql://..., sqlite:///...) with
`--storage` for workers on several machines.

Trial lifecycle (all trials of the queue are enqueued with user attrs, no params):
- `sync` enqueues a WAITING trial for every unit whose cells are not all done and that no WAITING or
  live RUNNING trial covers; it first marks RUNNING trials of dead workers FAIL ("interrupted"), so
  their cells are enqueued again and resume from their checkpoints;
- `take` claims the next WAITING trial atomically (Optuna's own pop: the state change to RUNNING
  succeeds for exactly one process) and records host, pid and a heartbeat in the trial;
- the worker marks each cell done as it completes (`cells_done`), then the trial COMPLETE, or FAIL
  with the error per cell (`errors`); a later `sync` retries failed cells.
A RUNNING trial is dead when its worker ran on this host and its pid is gone, or when its heartbeat
is older than HEARTBEAT_STALE_S (workers on other hosts).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from calo_ablate.errors import ConfigError

JOURNAL_FILE = "optuna.journal"
HEARTBEAT_S = 20.0
HEARTBEAT_STALE_S = 120.0
SETTINGS_ATTR = "settings"
STOP_ATTR = "stop"
REFERENCE_UNIT = "reference"

optuna.logging.set_verbosity(optuna.logging.WARNING)


def default_storage(study_dir: Path) -> str:
    """The journal file of a study folder (an absolute path)."""
    return str((Path(study_dir) / JOURNAL_FILE).resolve())


def open_storage(url: str) -> BaseStorage:
    """An RDB storage for a URL with '://', else a journal file at that path."""
    if "://" in url:
        return RDBStorage(url)
    Path(url).parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(url))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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

    def __init__(self, storage_url: str, study_name: str, *, create: bool) -> None:
        self.storage_url = storage_url
        self.storage = open_storage(storage_url)
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

    # settings and flags (study user attrs) ------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        attrs = self.study.user_attrs
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

    # state --------------------------------------------------------------------------------------
    def trials(self) -> list[FrozenTrial]:
        return self.storage.get_all_trials(self.study_id, deepcopy=False)

    def done_cells(self) -> set[str]:
        done: set[str] = set()
        for trial in self.trials():
            done.update(trial.user_attrs.get("cells_done", []))
        return done

    def _is_dead(self, trial: FrozenTrial) -> bool:
        attrs = trial.user_attrs
        if "pid" not in attrs:  # claimed but not yet stamped: judge by its start time
            started = trial.datetime_start.timestamp() if trial.datetime_start else 0.0
            return time.time() - started > HEARTBEAT_STALE_S
        if attrs.get("host") == socket.gethostname() and not pid_alive(int(attrs["pid"])):
            return True
        return time.time() - float(attrs.get("heartbeat", 0.0)) > HEARTBEAT_STALE_S

    def fail_dead_trials(self) -> list[str]:
        """Mark RUNNING trials of dead workers FAIL ('interrupted'); returns the cells they held."""
        interrupted = []
        for trial in self.trials():
            if trial.state == TrialState.RUNNING and self._is_dead(trial):
                self.storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
                try:
                    self.storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
                except UpdateFinishedTrialError:
                    continue
                done = set(trial.user_attrs.get("cells_done", []))
                interrupted.extend(c for c in trial.user_attrs.get("cells", []) if c not in done)
        return interrupted

    def sync(self, units: list[tuple[str, list[str]]]) -> int:
        """Enqueue every (unit key, cell names) with a cell that is neither done nor covered; returns the count."""
        self.fail_dead_trials()
        done = self.done_cells()
        covered: set[str] = set()
        for trial in self.trials():
            if trial.state in (TrialState.WAITING, TrialState.RUNNING):
                covered.update(trial.user_attrs.get("cells", []))
        added = 0
        for key, cells in units:
            pending = [c for c in cells if c not in done]
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
                self._stamp(trial._trial_id)
                cells = self._unclaimed_cells(trial)
                if not cells:  # a duplicate entry (two `ablate` processes enqueued the same unit)
                    self.storage.set_trial_user_attr(trial._trial_id, "skipped", "duplicate")
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

    def _stamp(self, trial_id: int) -> None:
        with self._lock:
            self.storage.set_trial_user_attr(trial_id, "host", socket.gethostname())
            self.storage.set_trial_user_attr(trial_id, "pid", os.getpid())
            self.storage.set_trial_user_attr(trial_id, "heartbeat", time.time())

    @contextmanager
    def heartbeat(self, claim: Claim) -> Iterator[None]:
        """Refresh the claim's heartbeat every HEARTBEAT_S seconds while the block runs."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(HEARTBEAT_S):
                with self._lock:
                    self.storage.set_trial_user_attr(claim.trial_id, "heartbeat", time.time())

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
