"""The study's estimate from this machine's rates (study/estimate.py): the arithmetic a user relies on, and
the warning that names what would fit. Hand-made rates and FLOPs, no measurement, no timing assertions."""

from __future__ import annotations

from pathlib import Path

import pytest

from calo_ablate.config import resolve_config
from calo_ablate.runs.names import REFERENCE, TAG_ESTIMATE_BASIS, TAG_ESTIMATED_SECONDS
from calo_ablate.runs.rates import FamilyRates, MachineKey, MachineRates, RowFlops
from calo_ablate.study.context import THREADS_ENV
from calo_ablate.study.estimate import (
    classifier_seconds,
    estimate_tags,
    minutes_text,
    plan_estimate_seconds,
    promise_warning,
    rated_cell_seconds,
    sizes_that_fit,
)
from calo_ablate.study.plan import Plan, make_plan
from calo_ablate.study.registry import load_registry

REGISTRY = """\
ablations:
  base: {title: Base}
  fewer_steps: {title: Fewer time steps, set: {sample.steps_factor: 0.5}}
"""
# every cell: 100 training showers (80 train + 20 validation) x 2 epochs, 10 evaluation showers, no timing
# batch below the sample's (batch 10), at 16 sampling steps
SETS = ["data.max_train_events=100", "data.val_fraction=0.2", "train.max_epochs=2", "evaluate.n_events=10",
        "sample.batch_size=10", "evaluate.timing_batch_sizes=[10]", "sample.steps=16"]
TRAIN_S = 0.1  # seconds per training shower of the measured architecture
GEN_S = 1.0  # seconds per generated shower of the measured architecture (its whole sampling)


def _rates(threads: int = 1) -> MachineRates:
    family = FamilyRates(train_seconds_per_shower=TRAIN_S, train_gflop_per_shower=2.0, gen_seconds_per_shower=GEN_S,
                         gen_gflop_per_shower=4.0, sampling_steps=16)
    return MachineRates(MachineKey("Test CPU", threads, "2.x"), "2026-12-07 10:00 UTC", "cpu", 100.0,
                        {"caloscore_v2/1-photons": family})


def _plan(tmp_path: Path, seeds: int, extra: list[str] = ()) -> Plan:
    path = tmp_path / "ablations.yaml"
    path.write_text(REGISTRY)
    registry = load_registry(str(path), dataset="1-photons", profile="smoke", cli_set=(*SETS, *extra))
    return make_plan(registry, seeds=seeds, checksums={})


# the base's architecture at half the measured FLOPs; fewer_steps generates with half the base's FLOPs
FLOPS = {"base": RowFlops(1.0, 2.0), "fewer_steps": RowFlops(1.0, 1.0)}


def _expected_cells(config) -> tuple[float, float, float]:
    """(base cell, fewer_steps cell, reference) seconds, by hand."""
    train = 2 * 0.5 * TRAIN_S * (80 + 20 / 3)  # epochs x FLOP ratio x (training + validation at a third)
    classifiers = classifier_seconds(config.evaluate, "1-photons", 10, 100.0)
    base_eval = 10 * 0.5 * GEN_S + classifiers
    fewer_eval = 10 * 0.25 * GEN_S + classifiers
    return train + base_eval, fewer_eval, config.evaluate.noise_floor_samples * classifiers


def test_shared_trainings_count_once_and_the_reference_counts(tmp_path: Path) -> None:
    plan = _plan(tmp_path, seeds=2)
    cells = rated_cell_seconds(plan, _rates(), FLOPS)
    base, fewer, reference = _expected_cells(plan.base_cell(0).config)
    assert cells is not None
    assert cells["base"] == pytest.approx([base, base])
    assert cells["fewer_steps"] == pytest.approx([fewer, fewer])  # shares the base's training: evaluation only
    assert cells[REFERENCE] == pytest.approx([reference])
    assert reference > 0


def test_workers_share_the_cells(tmp_path: Path) -> None:
    plan = _plan(tmp_path, seeds=2)
    base, fewer, reference = _expected_cells(plan.base_cell(0).config)
    total = 2 * base + 2 * fewer + reference
    assert plan_estimate_seconds(plan, _rates(), FLOPS, workers=1) == pytest.approx(total)
    assert plan_estimate_seconds(plan, _rates(), FLOPS, workers=2) == pytest.approx(total / 2)


def test_no_estimate_without_the_family_or_its_flops(tmp_path: Path) -> None:
    plan = _plan(tmp_path, seeds=1)
    assert plan_estimate_seconds(plan, _rates(), {"base": FLOPS["base"]}, workers=1) is None
    no_family = MachineRates(MachineKey("Test CPU", 1, "2.x"), "2026-12-07 10:00 UTC", "cpu", 100.0, {})
    assert plan_estimate_seconds(plan, no_family, FLOPS, workers=1) is None


def test_the_classifiers_cost_grows_with_their_showers_and_epochs() -> None:
    config = resolve_config("1-photons", "smoke")
    small = classifier_seconds(config.evaluate, "1-photons", 100, 100.0)
    longer = config.evaluate.model_copy(update={"classifier": config.evaluate.classifier.model_copy(
        update={"epochs": 2 * config.evaluate.classifier.epochs})})
    assert classifier_seconds(config.evaluate, "1-photons", 1000, 100.0) > 5 * small
    assert classifier_seconds(longer, "1-photons", 100, 100.0) == pytest.approx(2 * small)


def test_the_warning_names_the_seeds_and_workers_that_fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    monkeypatch.delenv(THREADS_ENV, raising=False)
    plan = _plan(tmp_path, seeds=4)
    rates = _rates(threads=1)  # measured with one thread per worker: 4 cores keep that up to 4 workers
    one_seed = plan_estimate_seconds(_plan(tmp_path, seeds=1), rates, FLOPS, workers=1)
    four = plan_estimate_seconds(plan, rates, FLOPS, workers=1)
    assert one_seed is not None and four is not None
    limit = one_seed * 1.01
    fits = sizes_that_fit(plan, rates, FLOPS, workers=1, limit_s=limit)
    assert fits[0] == f"--seeds 1 ({minutes_text(one_seed)})"
    assert any(f.startswith("--workers ") for f in fits)  # the reference and 4 seeds of cells over up to 4 workers
    text = promise_warning(four, "quick", limit / 60, fits)
    assert "exceeds profile quick's promise" in text and "--seeds 1" in text


def test_more_workers_are_not_offered_beyond_the_cores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    monkeypatch.delenv(THREADS_ENV, raising=False)
    plan = _plan(tmp_path, seeds=2)
    fits = sizes_that_fit(plan, _rates(threads=1), FLOPS, workers=2, limit_s=1.0)
    assert not any(f.startswith("--workers") for f in fits)
    assert "no smaller size" in promise_warning(100.0, "quick", 1 / 60, fits)


def test_another_profile_that_fits_is_named(tmp_path: Path) -> None:
    plan = _plan(tmp_path, seeds=2)
    small = _plan(tmp_path, seeds=1, extra=["train.max_epochs=1"])
    seconds = plan_estimate_seconds(small, _rates(), FLOPS, workers=2)
    assert seconds is not None
    fits = sizes_that_fit(plan, _rates(), FLOPS, workers=2, limit_s=seconds, others={"--profile smoke": (small, FLOPS)})
    assert f"--profile smoke ({minutes_text(seconds)})" in fits


def test_the_estimate_tags_of_the_parent_run() -> None:
    assert estimate_tags(None, "x") == {}
    assert estimate_tags(1260.4, "Test CPU") == {TAG_ESTIMATED_SECONDS: "1260",
                                                 TAG_ESTIMATE_BASIS: "Test CPU"}


def test_minutes_text() -> None:
    assert (minutes_text(40), minutes_text(270), minutes_text(1260)) == ("40 s", "4.5 min", "21 min")
