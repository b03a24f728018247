"""`ablate`'s estimate before the start: the study's wall time on this machine from its cached rates (measured
first where missing), printed with the plan, a warning when it exceeds the profile's promise naming the sizes
that would fit, and the request carrying it to the study's parent run (its tags, the report's header)."""

from __future__ import annotations

import dataclasses

from calo_ablate.bench.rates import plan_flops, plan_rates
from calo_ablate.config import canonical_dataset
from calo_ablate.errors import ConfigError
from calo_ablate.runs.rates import MachineRates, RatesCache, RowFlops
from calo_ablate.study.context import Log, threads_per_worker
from calo_ablate.study.estimate import minutes_text, plan_estimate_seconds, promise_warning, sizes_that_fit
from calo_ablate.study.plan import Plan, make_plan
from calo_ablate.study.registry import load_registry
from calo_ablate.study.runner import AUTO_FIRST_SEEDS, StudyRequest

__all__ = ["with_estimate"]

SMOKE = "smoke"


def _plan(request: StudyRequest, profile: str) -> Plan:
    """The cells `ablate` would plan for `request` with `profile` (the first round of --seeds auto)."""
    dataset = canonical_dataset(request.dataset)
    registry = load_registry(request.registry, dataset=dataset, profile=profile,
                             cli_set=request.cli_set).select(request.only)
    seeds = min(AUTO_FIRST_SEEDS, request.max_seeds) if request.auto_seeds else request.seeds
    return make_plan(registry, seeds=seeds, checksums={})


def _open_cache(log: Log) -> RatesCache:
    """The rates file; a corrupt one is said and measured again (and overwritten)."""
    try:
        return RatesCache()
    except ConfigError as err:
        log(f"estimate: {err}; measuring again")
        return RatesCache(read=False)


def _fits(request: StudyRequest, plan: Plan, rates: MachineRates, flops: dict[str, RowFlops],
          cache: RatesCache, limit_s: float) -> list[str]:
    """The sizes within `limit_s` (sizes_that_fit), the smoke profile among them where the study can run it."""
    others = {}
    if request.profile != SMOKE:
        try:
            smoke = _plan(request, SMOKE)
        except ConfigError:  # the registry or a --set does not fit the smoke profile: not offered
            pass
        else:
            others[f"--profile {SMOKE}"] = (smoke, plan_flops(smoke, cache))
    return sizes_that_fit(plan, rates, flops, request.workers, limit_s, others)


def with_estimate(request: StudyRequest, log: Log = print) -> StudyRequest:
    """Print the estimated wall time of the study `request` asks for on this machine (measuring the rates
    once where the cache lacks them) and warn where it exceeds the profile's promise or the --budget; returns
    the request with the estimate (unchanged where no estimate is made: jobs of a scheduler, a user's family)."""
    if request.launcher != "process":
        log(f"estimate: not made, the cells run as {request.launcher} jobs elsewhere")
        return request
    if request.workers < 1:  # run_study refuses it, saying why
        return request
    plan = _plan(request, request.profile)
    cache = _open_cache(log)
    rates = plan_rates(plan, threads_per_worker(request.workers), cache, log)
    if rates is None:
        return request
    flops = plan_flops(plan, cache)
    seconds = plan_estimate_seconds(plan, rates, flops, request.workers)
    if seconds is None:
        return request
    basis = rates.describe()
    log(f"estimated wall time: {minutes_text(seconds)} on this machine ({basis})")
    promise = plan.base_cell(0).config.study.promise_minutes
    if promise is not None and seconds > 60 * promise:
        log(promise_warning(seconds, request.profile, promise, _fits(request, plan, rates, flops, cache, 60 * promise)))
    if request.budget_s is not None and seconds > request.budget_s:
        log(f"warning: the first round ({plan.seeds} seeds) is estimated at {minutes_text(seconds)}, past --budget "
            f"{minutes_text(request.budget_s)}; it runs whole and no further round starts")
    cache.write()
    return dataclasses.replace(request, estimate_s=seconds, estimate_basis=basis)
