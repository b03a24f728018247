"""The step profiles of `make bench`: operator categories, FLOPs counted per category, the phases of a
training step, and the printed table."""

from __future__ import annotations

import time

import pytest
import torch
from torch.profiler import record_function

from calo_ablate.bench.profile import (
    ATTENTION,
    CATEGORIES,
    CLIPPING,
    CONVOLUTION,
    DENSE,
    ELEMENTWISE,
    EMA_PHASE,
    OPTIMIZER,
    OUTSIDE,
    format_profile,
    operator_category,
    profile_sampling_step,
    profile_step,
    profile_training_step,
)
from calo_ablate.config import resolve_config
from calo_ablate.model.families import load_family

TINY = ["model.voxel.lift_channels=4", "model.voxel.widths=[8,16]", "model.voxel.attention=[false,true]",
        "model.voxel.block_depth=1", "model.layer.mlp_dim=16", "train.batch_size=8"]


@pytest.mark.parametrize(("name", "category"), [
    ("aten::mkldnn_convolution", CONVOLUTION),
    ("aten.convolution_backward", CONVOLUTION),
    ("aten::_scaled_dot_product_flash_attention_for_cpu_backward", ATTENTION),
    ("aten._scaled_dot_product_flash_attention_for_cpu", ATTENTION),
    ("aten::addmm", DENSE),
    ("aten.mm", DENSE),
    ("aten::bmm", DENSE),
    ("aten::silu_backward", ELEMENTWISE),
    ("aten::copy_", ELEMENTWISE),
])
def test_operator_category(name: str, category: str) -> None:
    assert operator_category(name) == category


def test_time_goes_to_where_it_was_spent() -> None:
    """A sleep (no operator) is outside; a matmul is dense; an operator under a phase label is that phase's."""
    a = torch.randn(128, 128)

    def step() -> None:
        time.sleep(0.05)
        a @ a
        with record_function(OPTIMIZER):
            a.add_(0.0)

    profile = profile_step("three parts", 1, step)
    assert profile.seconds[OUTSIDE] >= 0.04
    assert profile.seconds[DENSE] > 0 and profile.seconds[OPTIMIZER] > 0
    assert profile.seconds[CLIPPING] == profile.seconds[EMA_PHASE] == profile.seconds[ATTENTION] == 0
    assert profile.seconds[OUTSIDE] > profile.seconds[DENSE] + profile.seconds[OPTIMIZER]
    assert profile.flops == {DENSE: 2 * 128**3}   # the matmul's multiply-adds, counted as two FLOPs each


def test_training_step_profile_has_every_phase() -> None:
    profile = profile_training_step(load_family(resolve_config("1", "smoke", cli_set=TINY)))
    assert set(profile.seconds) == set(CATEGORIES)
    for category in (CONVOLUTION, ATTENTION, DENSE, ELEMENTWISE, CLIPPING, OPTIMIZER, EMA_PHASE):
        assert profile.seconds[category] > 0, category
    # attention FLOPs are counted although torch's table has no entry for the CPU kernels
    assert profile.flops[CONVOLUTION] > 0 and profile.flops[ATTENTION] > 0 and profile.flops[DENSE] > 0
    assert profile.top_operators and all(name.startswith("aten::") for name, _, _ in profile.top_operators)


def test_sampling_step_profile_and_table() -> None:
    profile = profile_sampling_step(load_family(resolve_config("1", "smoke", cli_set=TINY)), batch_size=4)
    assert profile.seconds[OPTIMIZER] == profile.seconds[CLIPPING] == profile.seconds[EMA_PHASE] == 0
    assert profile.flops[ATTENTION] > 0
    text = format_profile(profile, matmul_flops=1e11)
    assert "one sampling step" in text and "batch 4" in text
    for category in (CONVOLUTION, ATTENTION, DENSE, ELEMENTWISE, OUTSIDE):
        assert category in text
    assert OPTIMIZER not in text  # phases a sampling step does not have are left out
    assert "% of the matmul rate" in text and "wall time" in text
    assert "CPU time" in format_profile(profile, matmul_flops=1e11, cpu_time=True)
