"""The rates cache (runs/rates.py) and when `ablate`'s estimate measures (bench/rates.py, commands/estimate.py):
measured once per CPU, thread count and torch version; a corrupt file is said, by name, and measured again.
The measurement itself is replaced by a counter (it takes seconds; the bench's own tests cover its code)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from calo_ablate.bench import rates as bench_rates
from calo_ablate.commands import estimate as command
from calo_ablate.errors import ConfigError
from calo_ablate.runs import rates
from calo_ablate.runs.rates import FamilyRates, MachineKey, RatesCache, RowFlops
from calo_ablate.study.plan import make_plan
from calo_ablate.study.registry import load_registry
from calo_ablate.study.runner import StudyRequest
from tests.study.helpers import TINY

FAMILY = FamilyRates(train_seconds_per_shower=0.03, train_gflop_per_shower=1.7, gen_seconds_per_shower=4.5,
                     gen_gflop_per_shower=275.0, sampling_steps=512)
REGISTRY = "ablations:\n  base: {title: Base}\n  higher_lr: {title: Higher LR, set: {train.lr: 1.0e-3}}\n"
DEEPER = "  deeper: {title: Deeper layer net, set: {model.layer.num_layer: 6}}\n"


@pytest.fixture
def measured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[str, str, int]]:
    """The measurements made (family, dataset, threads), each giving FAMILY at 90 GFLOP/s; the rates file in tmp."""
    calls: list[tuple[str, str, int]] = []

    def fake(family: str, dataset: str, threads: int) -> tuple[FamilyRates, float]:
        calls.append((family, dataset, threads))
        return FAMILY, 90.0

    monkeypatch.setattr(bench_rates, "measure_family", fake)
    monkeypatch.setenv(rates.RATES_ENV, str(tmp_path / "rates.json"))
    return calls


def _plan(tmp_path: Path, text: str = REGISTRY, cli_set: list[str] = ()):
    path = tmp_path / "ablations.yaml"
    path.write_text(text)
    registry = load_registry(str(path), dataset="1-photons", profile="smoke", cli_set=tuple(cli_set))
    return make_plan(registry, seeds=1, checksums={})


def test_rates_are_measured_once_per_cpu_and_thread_count(measured, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    plan = _plan(tmp_path)
    first = bench_rates.plan_rates(plan, 1, RatesCache(), print)
    assert measured == [("caloscore_v2", "1-photons", 1)]
    again = bench_rates.plan_rates(plan, 1, RatesCache(), print)  # read back from the file
    assert measured == [("caloscore_v2", "1-photons", 1)]
    assert again == first and again is not None and again.families["caloscore_v2/1-photons"] == FAMILY
    bench_rates.plan_rates(plan, 2, RatesCache(), print)  # two threads per worker: another key
    assert measured[-1] == ("caloscore_v2", "1-photons", 2)
    monkeypatch.setattr(rates, "cpu_model", lambda: "Another CPU")
    bench_rates.plan_rates(plan, 1, RatesCache(), print)
    assert len(measured) == 3
    keys = [m.key for m in RatesCache().machines]
    assert MachineKey("Another CPU", 1, keys[0].torch) in keys and len(keys) == 3  # the others are kept


def test_a_corrupt_rates_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "rates.json"
    path.write_text('{"machines": [{"cpu": "x"')
    with pytest.raises(ConfigError, match=rf"{path}: not a readable rates file .*delete it to measure again"):
        RatesCache(path)
    path.write_text(json.dumps({"machines": [{"cpu": "x"}]}))  # JSON, but not this format
    with pytest.raises(ConfigError, match=str(path)):
        RatesCache(path)


def test_ablate_says_a_corrupt_file_and_measures_again(measured, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "rates.json").write_text("not json")
    registry = tmp_path / "ablations.yaml"
    registry.write_text(REGISTRY)
    monkeypatch.setattr(command, "plan_flops", lambda plan, cache: {
        "base": RowFlops(1.7, 275.0), "higher_lr": RowFlops(1.7, 275.0)})
    request = StudyRequest(dataset="1", profile="smoke", seeds=1, workers=1, cli_set=[], registry=str(registry))
    estimated = command.with_estimate(request, log=print)
    out = capsys.readouterr().out
    assert f"{tmp_path / 'rates.json'}: not a readable rates file" in out and "measuring again" in out
    assert "estimated wall time:" in out and "GFLOP/s matmul; rates cached" in out
    assert len(measured) == 1 and RatesCache().machines  # measured, and the file is readable again
    assert estimated.estimate_s is not None and estimated.estimate_s > 0
    assert "90 GFLOP/s matmul" in estimated.estimate_basis


def test_no_estimate_for_jobs_run_elsewhere(measured, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    request = StudyRequest(dataset="1", profile="smoke", seeds=1, workers=1, cli_set=[], launcher="slurm")
    assert command.with_estimate(request, log=print) == request
    assert "not made" in capsys.readouterr().out and not measured


def test_flops_are_counted_once_per_architecture(tmp_path: Path) -> None:
    plan = _plan(tmp_path, REGISTRY + DEEPER, cli_set=TINY)
    cache = RatesCache(tmp_path / "rates.json", read=False)
    flops = bench_rates.plan_flops(plan, cache)
    assert flops["higher_lr"] == flops["base"]  # another learning rate, the same network
    assert flops["deeper"].train_gflop_per_shower > flops["base"].train_gflop_per_shower > 0
    assert len(cache.flops) == 2
    cache.flops = {key: RowFlops(1.0, 2.0) for key in cache.flops}  # counted before: read, not counted again
    assert bench_rates.plan_flops(plan, cache)["deeper"] == RowFlops(1.0, 2.0)
