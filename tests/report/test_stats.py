"""The verdicts' statistics: paired and Welch differences, TOST, Holm, power, the sequential design."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from calo_ablate.report.stats import (
    ALPHA,
    BOUNDARY_PATHS,
    Design,
    detectable_difference,
    holm_rejected,
    paired_difference,
    seeds_to_decide,
    sequential_holm,
    t_boundaries,
    verdicts,
    welch_difference,
)


def test_paired_difference_is_the_paired_t_test_with_its_interval() -> None:
    base = {0: 1.00, 1: 1.10, 2: 0.95, 3: 1.05}
    row = {0: 0.97, 1: 1.06, 2: 0.93, 3: 1.01, 9: 5.0}  # seed 9 has no partner
    diff = paired_difference(row, base, margin=0.01)
    d = np.array([row[s] - base[s] for s in range(4)])
    assert diff.n == 4 and diff.paired
    assert diff.mean == pytest.approx(d.mean())
    assert diff.p == pytest.approx(stats.ttest_rel([row[s] for s in range(4)], list(base.values())).pvalue)
    half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2
    assert (diff.low, diff.high) == pytest.approx((d.mean() - half, d.mean() + half))
    assert paired_difference({0: 1.0}, base, 0.01) is None


def test_welch_difference_is_welchs_test() -> None:
    a, b = [1.0, 1.2, 0.9], [1.4, 1.5, 1.3, 1.6]
    diff = welch_difference(a, b, margin=0.1)
    assert diff.p == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    assert not diff.paired


def test_tost_rejects_inside_the_margin_and_not_outside() -> None:
    base = {s: 1.0 + 0.1 * s for s in range(6)}
    tiny = {s: v + 0.001 * (-1) ** s for s, v in base.items()}
    shifted = {s: v + 0.05 + 0.001 * (-1) ** s for s, v in base.items()}
    assert paired_difference(tiny, base, margin=0.01).p_equivalent < 0.01
    assert paired_difference(shifted, base, margin=0.01).p_equivalent > 0.5
    same = paired_difference(dict(base), base, margin=0.01)  # identical values: exact
    assert (same.p, same.p_equivalent) == (1.0, 0.0)


def test_holm_steps_down() -> None:
    assert holm_rejected({"a": 0.01, "b": 0.04, "c": 0.03}, 0.05) == {"a"}
    assert holm_rejected({"a": 0.01, "b": 0.02, "c": 0.04}, 0.05) == {"a", "b", "c"}
    assert holm_rejected({"a": 0.02}, 0.05) == {"a"}


def test_spending_sums_to_alpha_and_a_fixed_design_is_one_look() -> None:
    design = Design(3, 10)
    assert sum(design.level(n) for n in design.looks()) == pytest.approx(ALPHA)
    assert all(design.level(n) > 0 for n in design.looks())
    assert Design.fixed(4).looks() == [4] and Design.fixed(4).level(4) == ALPHA


def test_power_at_the_detectable_difference_is_80_percent() -> None:
    rng = np.random.default_rng(0)
    base = {s: float(v) for s, v in enumerate(rng.normal(size=5))}
    row = {s: v + float(rng.normal(0.3, 0.2)) for s, v in base.items()}
    diff = paired_difference(row, base, margin=0.05)
    smallest = detectable_difference(diff)
    # the noncentral-t power at that difference, by simulation of the paired t-test
    sims = rng.normal(smallest, diff.sd, size=(20000, diff.n))
    p = stats.ttest_1samp(sims, 0.0, axis=1).pvalue
    assert np.mean(p < ALPHA) == pytest.approx(0.8, abs=0.02)
    needed = seeds_to_decide(diff)
    assert needed is not None and needed >= diff.n


def _simulate(effect_sd: float, margin_sd: float, studies: int, rows: int, design: Design,
              seed: int) -> list[dict[str, str]]:
    """`studies` simulated studies (no training): per-seed row - base differences ~ N(effect, 1)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(studies):
        base = {s: 0.0 for s in range(design.cap)}
        values = {f"r{i}": {s: float(x) for s, x in enumerate(rng.normal(effect_sd, 1.0, design.cap))}
                  for i in range(rows)}
        decided = verdicts(values, base, {k: margin_sd for k in values}, design)
        out.append({k: d.verdict for k, d in decided.items()})
    return out


def test_seeds_until_decided_keeps_the_false_positive_rate_under_the_null() -> None:
    """No true difference: the chance that any of 3 rows is called lower or higher, over looks at
    3..10 seeds, stays at or below ALPHA (2,000 simulated studies, seeded)."""
    results = _simulate(0.0, 0.5, 2000, 3, Design(3, 10), seed=1)
    false_positive = np.mean([any(v in ("lower", "higher") for v in r.values()) for r in results])
    assert 0.0 < false_positive <= ALPHA  # it spends its level, and no more


def _null_t(design: Design, sequences: int, seed: int) -> np.ndarray:
    """Fresh t statistics of no difference at each look of `design` (sequences x looks)."""
    x = np.random.default_rng(seed).standard_normal((sequences, design.cap))
    n = np.arange(1, design.cap + 1)
    mean = np.cumsum(x, axis=1) / n
    with np.errstate(divide="ignore", invalid="ignore"):
        t = mean / np.sqrt((np.cumsum(x * x, axis=1) - n * mean ** 2) / (n - 1) / n)
    return t[:, design.first - 1:]


@pytest.mark.parametrize("one_sided", [False, True])
@pytest.mark.parametrize("level", [ALPHA, ALPHA / 3])
def test_t_boundaries_reject_a_true_null_at_their_level(level: float, one_sided: bool) -> None:
    """200,000 fresh t sequences of no difference (other draws than the boundaries') cross the
    boundaries of looks at 3..10 seeds at some look in `level` of cases, within 4 standard errors of
    both simulations. (Normal-theory boundaries read as nominal levels cross in 5.9 % at 5 %.)"""
    design = Design(3, 10)
    t = _null_t(design, 200_000, seed=11)
    crossed = ((t if one_sided else np.abs(t)) >= np.array(t_boundaries(design, level, one_sided))).any(axis=1)
    tolerance = 4 * math.sqrt(level * (1 - level) / len(t)) + 4 * math.sqrt(level * (1 - level) / BOUNDARY_PATHS)
    assert abs(np.mean(crossed) - level) <= tolerance


def test_the_t_boundaries_are_never_stricter_than_bonferroni_over_the_looks() -> None:
    design = Design(3, 16)
    exact, bonferroni = design.nominal(ALPHA, one_sided=False), design.nominal(ALPHA, one_sided=False, exact=False)
    assert sum(bonferroni.values()) == pytest.approx(ALPHA)
    assert exact[3] == pytest.approx(bonferroni[3])  # the first look: the exact t quantile of its increment
    assert all(exact[n] > bonferroni[n] for n in design.looks()[1:])
    assert Design.fixed(4).nominal(0.01, one_sided=True) == {4: 0.01}


def test_sequential_holm_passes_a_rejected_rows_share_on() -> None:
    """a crosses at 0.05/3; then c at 0.05/2 (its 0.02 at look 3); then b at 0.05 (its 0.04 at look 3)."""
    def nominal(name: str, share: float) -> dict[int, float]:
        return {3: share, 4: share}

    tests = {"a": {3: 0.001}, "b": {3: 0.04, 4: 0.03}, "c": {3: 0.9, 4: 0.9}}
    assert sequential_holm(tests, nominal) == {"a": 3}
    tests["c"] = {3: 0.02, 4: 0.02}
    assert sequential_holm(tests, nominal) == {"a": 3, "c": 3, "b": 3}
    assert sequential_holm({"b": {3: 0.06, 4: 0.04}}, nominal) == {"b": 4}


def test_seeds_until_decided_keeps_the_false_equivalence_rate_on_the_margin() -> None:
    """A true difference exactly on the margin: any row called equivalent at most ALPHA of the time."""
    results = _simulate(0.5, 0.5, 1000, 3, Design(3, 10), seed=2)
    assert np.mean([any(v == "equivalent" for v in r.values()) for r in results]) <= ALPHA


def test_seeds_until_decided_finds_a_stated_effect() -> None:
    """A true difference of 2 standard deviations of the per-seed difference: found (as higher) in
    at least 80 % of simulated studies by 10 seeds, most before the cap."""
    design = Design(3, 10)
    rng = np.random.default_rng(3)
    found, looks = 0, []
    for _ in range(400):
        base = {s: 0.0 for s in range(design.cap)}
        row = {s: float(x) for s, x in enumerate(rng.normal(2.0, 1.0, design.cap))}
        d = verdicts({"r": row}, base, {"r": 0.1}, design)["r"]
        if d.verdict == "higher":
            found += 1
            looks.append(d.look)
    assert found / 400 >= 0.8
    assert np.median(looks) < design.cap
    assert not math.isnan(np.mean(looks))


def test_power_with_two_seeds_is_finite() -> None:
    """One degree of freedom: scipy's noncentral t gives NaN far out; the power still comes out."""
    diff = paired_difference({0: 1.0, 1: 1.1}, {0: 0.9, 1: 1.05}, margin=0.01)
    smallest = detectable_difference(diff)
    assert math.isfinite(smallest) and smallest > abs(diff.mean)
    assert seeds_to_decide(diff) is not None


def test_a_row_that_stopped_taking_seeds_is_decided_by_a_share_passed_on_later() -> None:
    """b stopped after 3 seeds (a failed cell): its p = 0.024 is under the first look's boundary at alpha but
    not at alpha / 2. a is decided at 8 seeds, and its share then decides b on its 3 seeds."""
    base = dict.fromkeys(range(8), 0.0)
    a = dict(enumerate([0.9, 1.8, 2.5, -0.3, 2.5, 2.3, 1.8, 1.3]))
    b = dict(enumerate([1.7, 1.7, 1.0]))
    margins = {"a": 0.01, "b": 0.01}
    decided = verdicts({"a": a, "b": b}, base, margins, Design(3, 8))
    assert (decided["a"].verdict, decided["a"].look) == ("higher", 8)
    assert (decided["b"].verdict, decided["b"].look) == ("higher", 3)
    before = verdicts({"a": {s: v for s, v in a.items() if s < 7}, "b": b}, base, margins, Design(3, 8))
    assert before["a"].verdict == before["b"].verdict == "undecided"


@pytest.mark.parametrize(("rho", "bound"), [(0.0, ALPHA), (0.9, 0.08)])
def test_a_metric_tested_once_after_stopping_on_the_loss(rho: float, bound: float) -> None:
    """Under --seeds auto another metric (quality, time) is tested once, on the seeds its row got from the
    loss's looks. With no true difference in it and per-seed differences correlated rho with the loss's:
    called different in about ALPHA of 2,000 studies when independent (within 3 standard errors), and in
    up to 8 % when strongly correlated (stopping on an extreme loss picks an extreme metric too)."""
    design, rng, called = Design(3, 10), np.random.default_rng(7), 0
    studies = 2000
    for _ in range(studies):
        loss = rng.normal(0.0, 1.0, design.cap)
        metric = rho * loss + math.sqrt(1 - rho ** 2) * rng.normal(0.0, 1.0, design.cap)
        decided = verdicts({"r": dict(enumerate(loss.tolist()))}, dict.fromkeys(range(design.cap), 0.0), {"r": 0.5},
                           design)["r"]
        seeds = decided.look or design.cap
        called += stats.ttest_1samp(metric[:seeds], 0.0).pvalue < ALPHA
    assert called / studies <= bound + 3 * math.sqrt(ALPHA * (1 - ALPHA) / studies)
