"""This machine's rates for the study's estimate (calo_ablate/study/estimate.py), measured by the bench's own
training and sampling code (calo_ablate/bench/worker.py `measure`, in its own process) and cached (calo_ablate/runs/rates.py).

Per model family of a plan, on that family's bench case on the plan's dataset (the full profile's
architecture): training seconds per shower (Lightning steps at the case's batch size, after its warm-up
steps) and generation seconds per shower at batch 100 (a part of the sampling timed and scaled, as in
`make bench`), with the FLOPs of both and the fp32 matmul rate of the same process. With one torch thread
per worker they are timed by the process's CPU time (what a worker gets when its core is free), otherwise
by wall time. Every row's own architecture is priced by its FLOPs (counted once per architecture and cached).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from calo_ablate.bench.families import (
    CASES,
    bench_config,
    generation_flops_per_shower,
    network_evaluations,
    train_flops_per_shower,
)
from calo_ablate.bench.speed import run_measurement
from calo_ablate.config import Config, digest
from calo_ablate.model.families import load_family
from calo_ablate.runs.rates import FamilyRates, MachineKey, MachineRates, RatesCache, RowFlops, family_entry
from calo_ablate.study.plan import Plan

__all__ = ["measure_family", "plan_flops", "plan_rates", "row_flops"]

GEN_BATCH = 100  # the study's sample.batch_size
TIMED_TRAIN_STEPS = 2  # after the case's warm-up steps: a few seconds per family
FLOP_BATCH = 4  # showers of the FLOP counts (FLOPs per shower do not depend on it; a small batch counts fast)


def measure_family(family: str, dataset: str, threads: int) -> tuple[FamilyRates, float]:
    """(`family`'s rates on its bench case, the fp32 matmul GFLOP/s) with `threads` torch threads, each
    measurement in a process of its own (as `make bench`'s; `ablate`, which forks its workers, runs no
    torch on more than one thread itself: study/forked.py)."""
    spec = {"case": family, "dataset": dataset, "extra": [], "threads": threads, "cpu_time": threads == 1,
            "timed_steps": TIMED_TRAIN_STEPS}
    train = run_measurement({**spec, "task": "train"})
    gen = run_measurement({**spec, "task": "generate", "batch": GEN_BATCH})
    measured = load_family(bench_config(CASES[family], dataset))
    steps = measured.sampling_steps()
    rates = FamilyRates(
        train_seconds_per_shower=1 / train["showers_s"], train_gflop_per_shower=train["flop_per_shower"] / 1e9,
        gen_seconds_per_shower=gen["ms_per_shower"] / 1000, gen_gflop_per_shower=gen["mflop_per_shower"] / 1000,
        sampling_steps=network_evaluations(measured, steps) if steps is not None else None)
    return rates, train["matmul_flops"] / 1e9


def plan_rates(plan: Plan, threads: int, cache: RatesCache, log: Callable[[str], None]) -> MachineRates | None:
    """This machine's rates for every family of `plan` (measured and written to the cache where missing);
    None when a family has no bench case (a user's family), said through `log`."""
    families = sorted({cell.config.model.family for cell in plan.cells})
    unknown = [f for f in families if f not in CASES]
    if unknown:
        log(f"estimate: not made, no bench case for model family {', '.join(unknown)}")
        return None
    key = MachineKey.here(threads)
    rates = cache.machine(key)
    missing = [f for f in families if rates is None or family_entry(f, plan.registry.dataset) not in rates.families]
    if not missing:
        return rates
    log(f"estimate: measuring this machine's rates once ({', '.join(missing)} on dataset {plan.registry.dataset}, "
        f"{threads} thread{'s' if threads > 1 else ''}; about half a minute per family on a quiet machine), cached in {cache.path}")
    measured = {family: measure_family(family, plan.registry.dataset, threads) for family in missing}
    for family, (own, matmul) in measured.items():
        log(f"  {family}: {1 / own.train_seconds_per_shower:.1f} training showers/s, "
            f"{1000 * own.gen_seconds_per_shower_step:.3g} ms per shower and sampling step at batch {GEN_BATCH}; "
            f"matmul {matmul:.0f} GFLOP/s")
    if rates is None:
        rates = MachineRates(key, datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "cpu" if threads == 1 else "wall",
                             measured[missing[0]][1])
    rates.families.update({family_entry(f, plan.registry.dataset): own for f, (own, _) in measured.items()})
    cache.put(rates)
    cache.write()
    return rates


def architecture_digest(config: Config, teacher: Config | None) -> str:
    """What a row's FLOPs depend on: the dataset, its model section, its sampling steps, its teacher's model."""
    return digest({"dataset": config.data.dataset, "model": config.model.model_dump(mode="json"),
                   "steps": config.sample.effective_steps,
                   "teacher": teacher.model.model_dump(mode="json") if teacher is not None else None})


def row_flops(config: Config, teacher: Config | None) -> RowFlops:
    """The FLOPs of a training shower and of one shower's sampling of `config`'s model (a derived row: the
    module its family derives from an untrained `teacher`)."""
    family = load_family(config)
    module = family.module() if teacher is None else family.derived_module(load_family(teacher).module().eval())
    train = train_flops_per_shower(family, module, batch=FLOP_BATCH)
    return RowFlops(train / 1e9, generation_flops_per_shower(family, module.eval(), flop_batch=FLOP_BATCH) / 1e9)


def plan_flops(plan: Plan, cache: RatesCache) -> dict[str, RowFlops]:
    """Each row's FLOPs (by ablation name), from the cache or counted (and cached; the caller writes it)."""
    out: dict[str, RowFlops] = {}
    for cell in plan.cells:
        if cell.ablation.name in out:
            continue
        teacher = plan.teacher_cell(cell)
        key = architecture_digest(cell.config, teacher.config if teacher is not None else None)
        if key not in cache.flops:
            cache.flops[key] = row_flops(cell.config, teacher.config if teacher is not None else None)
        out[cell.ablation.name] = cache.flops[key]
    return out
