"""The published learning-rate schedules of CaloFlow, one per flow, on one Adam with a group per flow.

The published code trains each flow with its own Adam and torch scheduler: OneCycleLR (three-phase,
cosine, beta1 cycling) or, for the photon teacher, CyclicLR (triangular2, no momentum cycling). Here
both flows share one optimizer (Lightning's automatic optimization takes one), so FlowSchedules gives
every parameter group its own schedule with the same formulas as torch's schedulers, stepped once per
optimizer step; a constant schedule keeps max_lr throughout.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from calo_ablate.model.caloflow.config import ScheduleConfig

__all__ = ["FlowSchedules", "cyclic_lr", "one_cycle"]


def _cos_anneal(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1.0)


def one_cycle(step: int, total_steps: int, schedule: ScheduleConfig) -> tuple[float, float]:
    """(lr, beta1) after `step` optimizer steps of torch's OneCycleLR(three_phase=True, anneal 'cos')."""
    if schedule.max_lr is None or schedule.pct_start is None:
        msg = "caloflow schedule is unresolved: call CaloFlowConfig.resolved(dataset) first"
        raise ValueError(msg)
    peak = schedule.max_lr
    initial = peak / schedule.div_factor
    low_beta, high_beta = schedule.momentum_range
    rise_end = float(schedule.pct_start * total_steps) - 1.0
    phases = ((rise_end, initial, peak, high_beta, low_beta),
              (2.0 * rise_end, peak, initial, low_beta, high_beta),
              (total_steps - 1.0, initial, initial / schedule.final_div_factor, high_beta, high_beta))
    start_step = 0.0
    for i, (end_step, lr_from, lr_to, beta_from, beta_to) in enumerate(phases):
        if step <= end_step or i == len(phases) - 1:
            pct = (step - start_step) / (end_step - start_step) if end_step > start_step else 1.0
            return _cos_anneal(lr_from, lr_to, pct), _cos_anneal(beta_from, beta_to, pct)
        start_step = end_step
    raise AssertionError  # the last phase always returns


def cyclic_lr(step: int, schedule: ScheduleConfig) -> float:
    """The lr after `step` optimizer steps of torch's CyclicLR(mode='triangular2')."""
    if schedule.max_lr is None:
        msg = "caloflow schedule is unresolved: call CaloFlowConfig.resolved(dataset) first"
        raise ValueError(msg)
    half = schedule.step_size_up
    cycle = math.floor(1 + step / (2 * half))
    x = abs(step / half - 2 * cycle + 1)
    return schedule.base_lr + (schedule.max_lr - schedule.base_lr) * max(0.0, 1.0 - x) / 2.0 ** (cycle - 1)


def schedule_value(step: int, total_steps: int, schedule: ScheduleConfig) -> tuple[float, float | None]:
    """(lr, beta1 or None for unchanged) of one schedule after `step` optimizer steps."""
    if schedule.kind == "one_cycle":
        return one_cycle(step, total_steps, schedule)
    if schedule.kind == "cyclic":
        return cyclic_lr(step, schedule), None
    if schedule.kind == "constant" and schedule.max_lr is not None:
        return schedule.max_lr, None
    msg = f"caloflow schedule {schedule.kind!r} is unresolved: call CaloFlowConfig.resolved(dataset) first"
    raise ValueError(msg)


class FlowSchedules(torch.optim.lr_scheduler.LRScheduler):
    """Per-group schedules on an Adam whose groups are the flows, in the order of `schedules`.

    total_steps: the optimizer steps of the whole training (one_cycle's horizon); beyond it the last
    value holds.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, schedules: list[ScheduleConfig], total_steps: int) -> None:
        if len(schedules) != len(optimizer.param_groups):
            msg = f"{len(schedules)} schedules for {len(optimizer.param_groups)} parameter groups"
            raise ValueError(msg)
        self.schedules = schedules
        self.total_steps = max(1, total_steps)
        super().__init__(optimizer)

    def state_dict(self) -> dict[str, Any]:
        """torch's state without the schedules (rebuilt from the config; checkpoints hold plain values)."""
        return {k: v for k, v in super().state_dict().items() if k != "schedules"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict({k: v for k, v in state_dict.items() if k != "schedules"})

    def _values(self) -> list[tuple[float, float | None]]:
        step = min(self.last_epoch, self.total_steps - 1)
        return [schedule_value(step, self.total_steps, s) for s in self.schedules]

    def get_lr(self) -> list[float | torch.Tensor]:  # torch's signature; the values here are floats
        values = self._values()
        for group, (_, beta1) in zip(self.optimizer.param_groups, values, strict=True):
            if beta1 is not None:
                group["betas"] = (beta1, group["betas"][1])
        return [lr for lr, _ in values]
