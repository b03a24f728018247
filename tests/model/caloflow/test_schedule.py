"""CaloFlow's per-flow schedules follow torch's OneCycleLR and CyclicLR step for step."""

from __future__ import annotations

import pytest
import torch

from calo_ablate.model.caloflow.config import ScheduleConfig
from calo_ablate.model.caloflow.schedule import FlowSchedules


def _lrs_and_betas(scheduler: torch.optim.lr_scheduler.LRScheduler, optimizer: torch.optim.Optimizer,
                   steps: int) -> list[tuple[float, ...]]:
    values = []
    for _ in range(steps):
        values.append(tuple(v for g in optimizer.param_groups for v in (g["lr"], g["betas"][0])))
        optimizer.step()
        scheduler.step()
    return values


def test_two_groups_follow_torchs_one_cycle_and_cyclic() -> None:
    total = 200
    one_cycle = ScheduleConfig(kind="one_cycle", max_lr=1e-3, pct_start=0.4)
    cyclic = ScheduleConfig(kind="cyclic", max_lr=2e-3, base_lr=5e-5, step_size_up=30)
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    ours = torch.optim.Adam([{"params": [a]}, {"params": [b]}], lr=1.0)
    got = _lrs_and_betas(FlowSchedules(ours, [one_cycle, cyclic], total), ours, total)

    ref_a = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    ref_b = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched_a = torch.optim.lr_scheduler.OneCycleLR(ref_a, max_lr=1e-3, total_steps=total, pct_start=0.4,
                                                  div_factor=25, final_div_factor=1e4, three_phase=True,
                                                  base_momentum=0.85, max_momentum=0.95)
    sched_b = torch.optim.lr_scheduler.CyclicLR(ref_b, base_lr=5e-5, max_lr=2e-3, step_size_up=30,
                                                mode="triangular2", cycle_momentum=False)
    want_a = _lrs_and_betas(sched_a, ref_a, total)
    want_b = _lrs_and_betas(sched_b, ref_b, total)
    for mine, x, y in zip(got, want_a, want_b, strict=True):
        assert mine == pytest.approx(x + y, rel=1e-9)


def test_constant_keeps_max_lr() -> None:
    p = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([p], lr=1.0)
    got = _lrs_and_betas(FlowSchedules(optimizer, [ScheduleConfig(kind="constant", max_lr=3e-4)], 10), optimizer, 10)
    assert {v[0] for v in got} == {3e-4}


def test_state_loads_with_weights_only(tmp_path) -> None:
    """Lightning's checkpoints are read with torch.load(weights_only=True): the state holds no config objects."""
    p = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([p], lr=1.0)
    scheduler = FlowSchedules(optimizer, [ScheduleConfig(kind="one_cycle", max_lr=1e-3, pct_start=0.4)], 50)
    for _ in range(7):
        optimizer.step()
        scheduler.step()
    torch.save(scheduler.state_dict(), tmp_path / "state.pt")
    fresh = FlowSchedules(optimizer, [ScheduleConfig(kind="one_cycle", max_lr=1e-3, pct_start=0.4)], 50)
    fresh.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert fresh.last_epoch == 7
