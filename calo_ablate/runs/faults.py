"""Fault injection for the kill tests: CALO_ABLATE_FAULT=<point> makes the process kill its whole
process group with SIGKILL when it reaches that point (like `kill -9` of the study from outside).

Points: claim (a unit taken, before its worker stamp), mid-training (the second epoch's first
batch done), after-checkpoint (an epoch's last.ckpt written, its end-of-epoch metrics not yet logged),
mid-evaluation (showers generated, metrics not yet computed), after-sample-write (the cached sample
written, the cell not yet marked done), mid-report (the table written, the plots not yet).
The variable is read once at import: an unset variable costs one comparison per point.

CALO_ABLATE_MIN_EPOCH_S=<seconds> makes every training epoch last at least that long (a stand-in for the
long epochs of a real study: the SLURM tests' signals then land mid-training on any machine).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, Checkpoint

POINTS = ("claim", "mid-training", "after-checkpoint", "mid-evaluation", "after-sample-write", "mid-report")
ARMED = os.environ.get("CALO_ABLATE_FAULT", "")
MIN_EPOCH_ENV = "CALO_ABLATE_MIN_EPOCH_S"


def fault_point(name: str) -> None:
    """Kill this process group now when CALO_ABLATE_FAULT names this point."""
    if ARMED == name:
        os.killpg(os.getpgid(0), signal.SIGKILL)


class TrainingFaults(Checkpoint):
    """The training points. A Checkpoint subclass: Lightning runs these last, after ModelCheckpoint has
    written last.ckpt in on_train_epoch_end and before the epoch's metrics (epoch_seconds, train/...) go
    to the logger."""

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.current_epoch == 1:
            fault_point("mid-training")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        fault_point("after-checkpoint")


class MinEpochSeconds(Callback):
    """Sleeps at the end of each training epoch until it lasted `seconds`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._started = time.monotonic()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started = time.monotonic()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        time.sleep(max(0.0, self.seconds - (time.monotonic() - self._started)))


def fault_callbacks() -> list[Callback]:
    """The Lightning callbacks of the armed training point and of CALO_ABLATE_MIN_EPOCH_S (else none)."""
    callbacks: list[Callback] = [TrainingFaults()] if ARMED in ("mid-training", "after-checkpoint") else []
    if os.environ.get(MIN_EPOCH_ENV):
        callbacks.append(MinEpochSeconds(float(os.environ[MIN_EPOCH_ENV])))
    return callbacks
