"""The training-loss step curve every family's module logs, and the names of its metrics.

Per epoch a module logs train/<loss> and val/<loss> for each of its family's loss names; besides,
about TRAIN_CURVE_POINTS times per run, the mean of each training loss over the optimizer steps since
the previous point as train_steps/<loss> (and the learning rate as train_steps/lr), at the MLflow step
of the last optimizer step before it (n steps done: n - 1), as Lightning numbers its own metrics.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning.pytorch as pl
import torch

__all__ = ["EPOCH_SECONDS", "TRAIN_CURVE_POINTS", "TRAIN_CURVE_PREFIX", "EpochLosses", "StepCurve", "curve_metrics"]

EPOCH_SECONDS = "epoch_seconds"  # per epoch: training plus validation wall time
TRAIN_CURVE_POINTS = 20  # training-loss points per run
TRAIN_CURVE_PREFIX = "train_steps/"


def curve_metrics(loss_names: Sequence[str]) -> tuple[str, ...]:
    """The step-curve metrics of these losses: ('train_steps/loss', ...)."""
    return tuple(f"{TRAIN_CURVE_PREFIX}{name}" for name in loss_names)


class EpochLosses:
    """A module's losses summed over the showers of the current epoch, per stage ('train', 'val'), and
    their means logged as <stage>/<loss> at the epoch's end. dtype: of the sums (float64 where single
    losses are large, e.g. a flow's negative log-likelihood); the logged means are float32."""

    def __init__(self, loss_names: Sequence[str], dtype: torch.dtype = torch.float32) -> None:
        self.loss_names = tuple(loss_names)
        self._sums = {stage: torch.zeros(len(self.loss_names), dtype=dtype) for stage in ("train", "val")}
        self._counts = {"train": 0, "val": 0}

    def reset(self, stage: str) -> None:
        """At the start of an epoch of `stage`."""
        self._sums[stage].zero_()
        self._counts[stage] = 0

    def add(self, stage: str, losses: Sequence[torch.Tensor], n: int) -> None:
        """One batch of `n` showers: its mean losses (scalars, in loss_names order)."""
        sums = self._sums[stage]
        if sums.device != losses[0].device:
            sums = self._sums[stage] = sums.to(losses[0].device)
        sums += torch.stack([x.detach().to(sums.dtype) for x in losses]) * n
        self._counts[stage] += n

    def log(self, module: pl.LightningModule, stage: str) -> None:
        """At the end of an epoch of `stage`: the means, as <stage>/<loss> (nothing for an empty epoch)."""
        if self._counts[stage] == 0:
            return
        means = (self._sums[stage] / self._counts[stage]).float()
        for name, value in zip(self.loss_names, means, strict=True):
            module.log(f"{stage}/{name}", value, on_step=False, on_epoch=True, sync_dist=True)


class StepCurve:
    """The window of training losses since the last curve point of one module, and its logging."""

    def __init__(self, loss_names: Sequence[str]) -> None:
        self.loss_names = tuple(loss_names)
        self._sums = torch.zeros(len(self.loss_names))
        self._count = 0
        self._every = 1  # optimizer steps between two points
        self._total = 1

    def start(self, total_steps: float) -> None:
        """At the start of training: the run's optimizer steps (Lightning's estimated_stepping_batches, an int
        or a float) set the spacing of the points."""
        self._total = max(1, int(total_steps))
        self._every = max(1, round(self._total / TRAIN_CURVE_POINTS))

    def add(self, losses: Sequence[torch.Tensor], n: int) -> None:
        """One batch of `n` showers: its losses (scalars, in loss_names order) enter the window."""
        if self._sums.device != losses[0].device:
            self._sums = self._sums.to(losses[0].device)
        self._sums += torch.stack([x.detach().float() for x in losses]) * n
        self._count += n

    def after_step(self, module: pl.LightningModule, per_group_lr: bool = False) -> None:
        """After an optimizer step: log a point when one is due (and the window is not empty).

        per_group_lr: log train_steps/lr_<group name> of every parameter group instead of the first
        group's train_steps/lr (a module whose groups follow schedules of their own)."""
        step = module.global_step
        if step % self._every != 0 and step != self._total:
            return
        if self._count == 0 or module.logger is None:
            return
        means = (self._sums / self._count).tolist()
        metrics = {metric: v for metric, v in zip(curve_metrics(self.loss_names), means, strict=True)}
        groups = module.trainer.optimizers[0].param_groups
        if per_group_lr:
            metrics.update({f"{TRAIN_CURVE_PREFIX}lr_{g['name']}": g["lr"] for g in groups})
        else:
            metrics[f"{TRAIN_CURVE_PREFIX}lr"] = groups[0]["lr"]
        module.logger.log_metrics(metrics, step=step - 1)  # Lightning's step: the last batch's index
        self._sums.zero_()
        self._count = 0
