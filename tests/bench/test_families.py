"""The bench's per-family measurements build and run at tiny size for every case (no timing assertions),
the scaling of a timed part to the whole sampling, the published times' lookup and the worker's protocol."""

from __future__ import annotations

import math
import time

import pytest

from calo_ablate.bench.families import (
    CASES,
    SamplingPlan,
    bench_config,
    generation_cost,
    train_flops_per_shower,
    training_module,
    training_throughput,
)
from calo_ablate.bench.published import published_case_ms
from calo_ablate.bench.speed import print_profiles, run_measurement
from calo_ablate.config import flatten
from calo_ablate.model.families import load_family

CALOFLOW_TINY = {"flow1": {"blocks": 2, "hidden_features": 16, "hidden_layers": 2},
                 "flow2": {"blocks": 2, "hidden_features": 24, "hidden_layers": 2}}
STUDENT_TINY = {"student": {"blocks": 2, "hidden_features": 24, "hidden_layers": 2}}
TINY = {
    "caloscore_v2": ["model.voxel.lift_channels=4", "model.voxel.widths=[8,16]", "model.voxel.attention=[false,true]",
                     "model.voxel.block_depth=1", "model.layer.mlp_dim=16", "sample.steps=4"],
    "calodiffusion": ["model.widths=[8,8,8]", "model.embed_hidden=8", "model.embed_dim=8",
                      "model.attention_head_dim=8", "model.norm_groups=4", "sample.steps=4"],
    "caloflow": [f"model.{k}={v}" for k, v in flatten(CALOFLOW_TINY).items()],
    "caloflow_student": [f"model.{k}={v}" for k, v in flatten(CALOFLOW_TINY | STUDENT_TINY).items()],
}
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name", list(CASES))
def test_every_case_trains_and_samples_at_tiny_size(name: str) -> None:
    case = CASES[name]
    extra = [*TINY[name], "train.batch_size=4"]
    family = load_family(bench_config(case, "1", extra))
    assert train_flops_per_shower(family, training_module(case, family, extra), batch=2) > 0
    showers_s = training_throughput(family, training_module(case, family, extra), timed_steps=1, warmup_steps=1)
    assert math.isfinite(showers_s)
    cost = generation_cost(family, 3, timed_evaluations=1, clock=time.perf_counter, flop_batch=2)
    assert cost.batch_size == 3
    assert math.isfinite(cost.ms_per_shower)  # no timing assertion: a tiny MAF's 1- and 4-pass times may cross
    assert cost.mflop_per_shower > 0
    assert cost.peak_rss_mib >= cost.rss_before_mib > 0


def test_student_case_trains_the_distillation_module() -> None:
    case = CASES["caloflow_student"]
    extra = [*TINY[case.name], "train.batch_size=4"]
    module = training_module(case, load_family(bench_config(case, "1", extra)), extra)
    assert type(module).__name__ == "StudentModule"


def test_plan_scales_one_point_in_proportion_and_two_points_linearly() -> None:
    assert SamplingPlan("network evaluations", (2,), 512).scale([3.0]) == pytest.approx(768.0)
    assert SamplingPlan("MAF passes", (1, 4), 368).scale([10.0, 16.0]) == pytest.approx(10.0 + 2.0 * 367)
    assert SamplingPlan("whole", (1,), 1).scale([5.0]) == 5.0


def test_published_times_where_the_sources_have_them() -> None:
    assert published_case_ms("caloscore_v2", "1-photons", 100).mean_ms == 9_425
    assert published_case_ms("caloflow_student", "1-photons", 10_000).mean_ms == pytest.approx(6.11)
    assert published_case_ms("caloscore_v2", "1-pions", 100) is None  # no CaloScore entry for pions
    assert published_case_ms("caloflow", "1-photons", 50) is None


def test_worker_process_reports_its_measurement() -> None:
    extra = [*TINY["caloscore_v2"], "train.batch_size=4"]
    result = run_measurement({"task": "generate", "case": "caloscore_v2", "dataset": "1-photons", "extra": extra,
                              "threads": 1, "cpu_time": True, "batch": 2})
    assert result["batch_size"] == 2
    assert result["matmul_flops"] > 0 and result["peak_rss_mib"] > 0
    with pytest.raises(RuntimeError, match="bench worker nonsense caloscore_v2 failed"):
        run_measurement({"task": "nonsense", "case": "caloscore_v2", "dataset": "1-photons", "extra": extra})


def test_worker_above_the_memory_limit_is_stopped() -> None:
    spec = {"task": "generate", "case": "caloscore_v2", "dataset": "1-photons",
            "extra": [*TINY["caloscore_v2"], "train.batch_size=4"], "threads": 1, "batch": 2}
    with pytest.raises(RuntimeError, match="stopped at .* MiB resident, above the bench's limit of 1 MiB"):
        run_measurement(spec, limit_mib=1.0)


@pytest.mark.parametrize("name", list(CASES))
def test_profiles_of_every_case_print(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    print_profiles(CASES[name], "1-photons", [*TINY[name], "train.batch_size=4"], matmul=1e10, cpu_time=False)
    out = capsys.readouterr().out
    assert "one training step" in out
    assert out.count("sampling (") == 2  # batch 1 and 100
