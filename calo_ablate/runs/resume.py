"""What keeps a run folder and its MLflow run true across kills (used by calo_ablate.runs.train).

- result.json is written atomically and checked on read: an unreadable one is discarded (with a
  message) and rebuilt by the resumed fit, which has no epoch left to run;
- last.ckpt is loaded once before a resume: a truncated one (torch.load fails) is set aside and the
  best checkpoint is used instead, or training restarts from scratch;
- EpochClock keeps every epoch's wall time and the fit's training seconds inside the checkpoint, so a
  fit resumed after a kill knows the times of the epochs it restored (seconds per epoch and train
  seconds never fall back to 0 or lose a killed call's epochs);
- RunLogger logs no second value at a step the run already holds (an epoch re-run after a kill that
  came between its logging and its checkpoint keeps the value logged first), and never closes the run:
  its owner does (a study cell after its evaluation).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only

from calo_ablate.atomic import TEMP_PATTERN, namespace_tag, temp_writer

BEST_PATTERN = "best-*.ckpt"
TEMP_GRACE_S = 10.0  # a write takes milliseconds: a temp file of a dead pid this old was never renamed
STALE_TEMP_S = 600.0  # any temp file this old (another pid namespace's writer, or no writer in its name)


def _say(text: str) -> None:
    print(f"calo-ablate: {text}", file=sys.stderr, flush=True)


def remove_stale_temps(folders: Iterable[Path], pid_alive: Callable[[int], bool]) -> list[Path]:
    """Remove the temp files in `folders` whose write was killed before its rename: older than
    TEMP_GRACE_S with a writer of this pid namespace that `pid_alive` denies, or older than
    STALE_TEMP_S (a writer in another namespace, on another machine, or unnamed). Ages are file mtimes
    against this machine's clock (a shared filesystem's skew is covered by the margins). Returns the
    removed paths."""
    removed = []
    now = time.time()
    here = namespace_tag()
    for folder in folders:
        for path in Path(folder).glob(TEMP_PATTERN):
            try:
                age_s = now - path.stat().st_mtime
            except FileNotFoundError:  # renamed meanwhile
                continue
            writer = temp_writer(path)
            dead_writer = writer is not None and writer[0] == here and not pid_alive(writer[1]) and age_s > TEMP_GRACE_S
            if dead_writer or age_s > STALE_TEMP_S:
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def read_json_or_discard(path: Path, log: Callable[[str], None] = _say) -> dict[str, Any] | None:
    """The JSON object in `path`, or None when it is missing; an unreadable file is removed (with a message)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise TypeError(f"a JSON {type(data).__name__}, expected an object")
        return data
    except (OSError, ValueError, TypeError) as err:
        log(f"{path} is unreadable ({err}): discarded, it is computed again")
        path.unlink(missing_ok=True)
        return None


def _loads(path: Path) -> bool:
    try:
        torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # noqa: BLE001 (any failure to unpickle means the file cannot be resumed from)
        return False
    return True


def resume_checkpoint(run_dir: Path, last_name: str, log: Callable[[str], None] = _say) -> Path | None:
    """The checkpoint to resume from: last.ckpt when it loads, else the newest best-*.ckpt that loads,
    else None (train from scratch). A truncated last.ckpt is renamed to last.ckpt.corrupt."""
    last = run_dir / last_name
    if not last.is_file():
        return None
    if _loads(last):
        return last
    corrupt = last.with_name(last.name + ".corrupt")
    os.replace(last, corrupt)
    for best in sorted(run_dir.glob(BEST_PATTERN), key=lambda p: p.stat().st_mtime, reverse=True):
        if _loads(best):
            log(f"{last} is truncated or unreadable (kept as {corrupt.name}): resuming from {best.name}")
            return best
    log(f"{last} is truncated or unreadable (kept as {corrupt.name}) and no best checkpoint loads: "
        "training starts again")
    return None


class EpochClock(Callback):
    """Each epoch's wall time (training plus validation) and the training seconds of the fit, summed over
    every call that trained it up to its last checkpoint; both travel in the checkpoints."""

    def __init__(self) -> None:
        self.epoch_seconds: list[float] = []
        self.seconds_before = 0.0  # training seconds of earlier calls, restored from the checkpoint
        self._fit_start = time.perf_counter()
        self._epoch_start: float | None = None

    @property
    def train_seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self._fit_start

    def mean_epoch_seconds(self) -> float:
        return sum(self.epoch_seconds) / len(self.epoch_seconds) if self.epoch_seconds else float("nan")

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self._fit_start = time.perf_counter()

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self._epoch_start is not None:
            self.epoch_seconds.append(time.perf_counter() - self._epoch_start)
            self._epoch_start = None

    def state_dict(self) -> dict[str, Any]:
        # ModelCheckpoint saves at the end of validation, before on_train_epoch_end: the epoch in
        # progress belongs to the checkpoint being written
        pending = [time.perf_counter() - self._epoch_start] if self._epoch_start is not None else []
        return {"epoch_seconds": [*self.epoch_seconds, *pending], "train_seconds": self.train_seconds}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.epoch_seconds = list(state_dict["epoch_seconds"])
        self.seconds_before = float(state_dict["train_seconds"])


class RunLogger(MLFlowLogger):
    """An MLFlowLogger that drops a metric value at a step its run already holds and leaves the run open
    at the end of fit."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._steps: dict[str, set[int]] | None = None

    def _logged_steps(self) -> dict[str, set[int]]:
        if self._steps is None:
            client = self.experiment
            names = client.get_run(self.run_id).data.metrics
            self._steps = {n: {m.step for m in client.get_metric_history(self.run_id, n)} for n in names}
        return self._steps

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        logged = self._logged_steps()
        at = step or 0  # as MLFlowLogger logs it
        metrics = {k: v for k, v in metrics.items() if at not in logged.get(k, set())}
        for name in metrics:
            logged.setdefault(name, set()).add(at)
        if metrics:
            super().log_metrics(metrics, step)

    def finalize(self, status: str = "success") -> None:
        return None
