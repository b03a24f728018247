"""The statistics behind the report's verdicts: paired and Welch differences, equivalence, Holm, power,
and the group-sequential design of `--seeds auto`.

- A row is compared with the base seed by seed (`paired_difference`: the rows of one seed share data
  order, training noise, evaluation energies and sampling noise, model/noise.py): the mean of the
  per-seed differences (row - base), its CONFIDENCE interval (Student t, n - 1 degrees of freedom),
  the two-sided paired t-test of no difference, and the two one-sided tests (TOST, Schuirmann 1987)
  of a difference inside +- margin. `welch_difference` is the same for unpaired designs (rows of
  another model family, a search's best trial): Welch's t with Welch-Satterthwaite degrees of freedom.
- `verdicts`: per look, Holm's procedure across the rows (Holm 1979) decides the differences, and
  separately the equivalences, at ALPHA; a row is "equivalent" (TOST rejected: the interval lies inside
  the margin, whether or not a smaller difference is significant), else "lower" / "higher" (difference
  rejected, by sign), else "undecided".
- `Design`: the looks of a study. A fixed number of seeds is one look at level ALPHA. `--seeds auto`
  looks at n = first, first + 1, ..., cap seeds and spends a test's level over the looks with the
  Pocock-type spending function of Lan & DeMets (1983), alpha(t) = level ln(1 + (e - 1) t), t = n / cap.
  A paired row's boundaries are those of the t statistic itself (`t_boundaries`): the chance of a first
  crossing at each look is the spending function's increment, so a true null is rejected at some look
  with probability `level` (up to the Monte Carlo error of BOUNDARY_PATHS simulated sequences: about
  0.45 % of the level at 0.05). A Welch row tests each look at its increment (Bonferroni over the looks,
  valid whatever the test and conservative). Across rows, `sequential_holm`: Holm's procedure on each
  row's sequential test, a rejected row's share of alpha going to the rows still open (Maurer & Bretz
  2013); a row decided at a look takes no further seeds and keeps its tests so far.
- Power (`detectable_difference`, `seeds_to_decide`): the smallest true difference the paired t-test
  at level ALPHA detects with POWER (noncentral t) at the seeds a row has and the observed spread of
  its differences; for an undecided row, the smallest number of seeds at which the difference test
  (or, when the observed difference lies inside the margin, the equivalence test) reaches POWER at
  the observed difference and spread.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from scipy import integrate, optimize, stats

__all__ = ["ALPHA", "CONFIDENCE", "POWER", "Decision", "Design", "Difference", "detectable_difference",
           "holm_rejected", "one_sample_difference", "paired_difference", "seeds_to_decide", "sequential_holm",
           "t_boundaries", "verdicts", "welch_difference"]

ALPHA = 0.05
CONFIDENCE = 0.95
POWER = 0.8
MAX_SEEDS_SEARCHED = 1000  # seeds_to_decide answers None beyond this
BOUNDARY_PATHS = 1_000_000  # simulated t sequences behind a sequential design's boundaries (t_boundaries)
BOUNDARY_SEED = 20261207


@dataclass(frozen=True)
class Difference:
    """Row minus base for one metric: mean, CONFIDENCE interval, tests against 0 and against +-margin."""

    n: int  # pairs (paired), or the smaller side (Welch)
    mean: float
    low: float
    high: float
    sd: float  # of the per-seed differences (paired); of sqrt(n) x the standard error (Welch)
    df: float
    p: float  # two-sided test of no difference
    p_equivalent: float  # TOST against +-margin (the larger one-sided p)
    margin: float
    paired: bool

    @property
    def se(self) -> float:
        return self.sd / math.sqrt(self.n)


def _difference(mean: float, se: float, df: float, n: int, sd: float, margin: float, paired: bool) -> Difference:
    if se == 0:  # identical values on every seed (or a constant shift): no noise to test against
        p = 1.0 if mean == 0 else 0.0
        p_eq = 0.0 if abs(mean) < margin else 1.0
        return Difference(n, mean, mean, mean, sd, df, p, p_eq, margin, paired)
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, df)) * se
    p = float(2 * stats.t.sf(abs(mean) / se, df))
    p_eq = max(float(stats.t.sf((mean + margin) / se, df)), float(stats.t.sf((margin - mean) / se, df)))
    return Difference(n, mean, mean - half, mean + half, sd, df, p, p_eq, margin, paired)


def paired_difference(row: Mapping[int, float], base: Mapping[int, float], margin: float) -> Difference | None:
    """Per-seed differences row[s] - base[s] over the seeds both have; None with fewer than two pairs."""
    seeds = sorted(set(row) & set(base))
    return one_sample_difference([row[s] - base[s] for s in seeds], margin)


def one_sample_difference(values: Sequence[float], margin: float) -> Difference | None:
    """The mean of independent replicates against 0 (one-sample t, n - 1 degrees of freedom); None with fewer
    than two."""
    if len(values) < 2:
        return None
    d = np.asarray(values, dtype=float)
    sd = float(d.std(ddof=1))
    return _difference(float(d.mean()), sd / math.sqrt(len(d)), len(d) - 1, len(d), sd, margin, paired=True)


def welch_difference(row: Sequence[float], base: Sequence[float], margin: float) -> Difference | None:
    """mean(row) - mean(base), unpaired (Welch); None with fewer than two values on a side."""
    if len(row) < 2 or len(base) < 2:
        return None
    a, b = np.asarray(row, dtype=float), np.asarray(base, dtype=float)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)) if se > 0 else len(a) + len(b) - 2
    n = min(len(a), len(b))
    return _difference(float(a.mean() - b.mean()), se, float(df), n, se * math.sqrt(n), margin, paired=False)


def holm_rejected(pvalues: Mapping[str, float], level: float) -> set[str]:
    """Holm's step-down procedure: the names whose hypotheses are rejected at family-wise `level`."""
    ordered = sorted(pvalues.items(), key=lambda kv: kv[1])
    rejected: set[str] = set()
    m = len(ordered)
    for i, (name, p) in enumerate(ordered):
        if p > level / (m - i):
            break
        rejected.add(name)
    return rejected


@dataclass(frozen=True)
class Design:
    """The looks of a study: one at `seeds` (fixed), or first..cap (`--seeds auto`) with alpha spending."""

    first: int
    cap: int
    alpha: float = ALPHA

    @classmethod
    def fixed(cls, seeds: int) -> Design:
        return cls(seeds, seeds)

    @property
    def sequential(self) -> bool:
        return self.cap > self.first

    def looks(self) -> list[int]:
        return list(range(self.first, self.cap + 1))

    def spent(self, n: int, level: float | None = None) -> float:
        """Of a test at family-wise `level` (default: the design's alpha), the alpha spent up to and including
        the look at n seeds (Pocock-type, Lan & DeMets 1983)."""
        level = self.alpha if level is None else level
        if n < self.first:
            return 0.0
        if not self.sequential:
            return level
        return level * math.log(1 + (math.e - 1) * min(n, self.cap) / self.cap)

    def level(self, n: int, level: float | None = None) -> float:
        """The spending function's increment at the look with n seeds."""
        return self.spent(n, level) - (self.spent(n - 1, level) if n > self.first else 0.0)

    def nominal(self, level: float, one_sided: bool, exact: bool = True) -> dict[int, float]:
        """Look (seeds) -> the p-value at or below which a test at family-wise `level` rejects there.

        One look: `level` itself. Several: with `exact`, the boundaries of the paired t statistic that
        spend `level` look by look (t_boundaries); without, Bonferroni over the looks (each look at its
        increment: valid for any test, Welch's included, and conservative)."""
        return dict(_nominal(self, level, one_sided, exact))


@cache
def _nominal(design: Design, level: float, one_sided: bool, exact: bool) -> tuple[tuple[int, float], ...]:
    if not design.sequential or not exact:
        return tuple((n, design.level(n, level)) for n in design.looks())
    tails = 1 if one_sided else 2
    crit = t_boundaries(design, level, one_sided)
    return tuple((n, tails * float(stats.t.sf(c, n - 1))) for n, c in zip(design.looks(), crit, strict=True))


@cache
def _null_t_paths(cap: int) -> np.ndarray:
    """BOUNDARY_PATHS simulated sequences of the one-sample t statistic under no difference: column j is
    the t of the first j + 2 of cap standard normal values (float32; fixed seed, so every report agrees)."""
    rng = np.random.default_rng(BOUNDARY_SEED)
    out = np.empty((BOUNDARY_PATHS, cap - 1), dtype=np.float32)
    chunk = 100_000
    n = np.arange(1, cap + 1)
    for start in range(0, BOUNDARY_PATHS, chunk):
        x = rng.standard_normal((min(chunk, BOUNDARY_PATHS - start), cap))
        total, squares = np.cumsum(x, axis=1), np.cumsum(x * x, axis=1)
        mean = total / n
        with np.errstate(divide="ignore", invalid="ignore"):
            sd = np.sqrt((squares - n * mean * mean) / (n - 1))
            out[start:start + len(x)] = (mean / (sd / np.sqrt(n)))[:, 1:]
    return out


@cache
def t_boundaries(design: Design, level: float, one_sided: bool) -> tuple[float, ...]:
    """The critical t (|t| when two-sided) of each look of a sequential design, for paired t-tests that
    together reject a true null with probability `level`: each look's boundary makes the chance of
    crossing first there equal to the spending function's increment.

    The t statistics of one row's successive looks are correlated and, with few seeds, far from normal,
    so normal-theory boundaries (applied as nominal levels) would exceed `level` (5.9 % for 5 % at 3..10
    seeds, simulated). Under no difference the sequence of t statistics does not depend on the unknown
    spread, so its law is simulated once (BOUNDARY_PATHS sequences): the first look is the exact t
    quantile, each later one the order statistic of the sequences that have not yet crossed."""
    paths = _null_t_paths(design.cap)
    alive = np.ones(len(paths), dtype=bool)
    out = []
    for i, n in enumerate(design.looks()):
        stat = paths[:, n - 2] if one_sided else np.abs(paths[:, n - 2])
        increment = design.level(n, level)
        if i == 0:
            crit = float(stats.t.isf(increment if one_sided else increment / 2, n - 1))
        else:
            candidates = stat[alive]
            k = max(1, round(increment * len(paths)))
            crit = float(np.partition(candidates, len(candidates) - k)[len(candidates) - k]) \
                if k <= len(candidates) else 0.0
        out.append(crit)
        alive &= stat < crit
    return tuple(out)


@dataclass(frozen=True)
class Decision:
    """A row's verdict on one metric: lower / higher / equivalent / undecided, and the evidence."""

    verdict: str
    difference: Difference | None
    look: int | None  # the seeds at which it was decided (None: undecided)
    level: float  # the nominal level of that look at the full alpha (of the last look, when undecided)


def sequential_holm(tests: Mapping[str, Mapping[int, float]], nominal: Callable[[str, float], Mapping[int, float]],
                    alpha: float = ALPHA) -> dict[str, int]:
    """Holm's procedure over the looks: the rows rejected at family-wise `alpha`, with the look of each
    crossing.

    `tests[row]`: look -> p-value of the row's tests so far; `nominal(row, share)`: look -> the p-value
    at or below which the row's sequential test at level `share` rejects there. A row is rejected when
    it crosses at alpha / r at any of its looks, r the rows not yet rejected; repeated until no more
    (Holm 1979 on each row's sequential p-value, the smallest share at which it crosses: the graphical
    procedure of Maurer & Bretz 2013 with Holm's weights, a rejected row's share going to the others)."""
    rejected: dict[str, int] = {}
    while len(rejected) < len(tests):
        share = alpha / (len(tests) - len(rejected))
        new = {}
        for name, by_look in tests.items():
            if name in rejected:
                continue
            bound = nominal(name, share)
            crossed = [n for n in sorted(by_look) if by_look[n] <= bound[n]]
            if crossed:
                new[name] = crossed[0]
        if not new:
            break
        rejected.update(new)
    return rejected


def verdicts(rows: Mapping[str, Mapping[int, float]], base: Mapping[int, float], margins: Mapping[str, float],
             design: Design, paired: Mapping[str, bool] | None = None,
             bases: Mapping[str, Mapping[int, float]] | None = None) -> dict[str, Decision]:
    """Replay the design's looks on per-seed values (seed -> value): each row's decision.

    At the look with n seeds every row not yet decided is tested on its seeds below n (paired with
    the base's, or Welch where `paired[row]` is False); `sequential_holm` on the tests of all looks so
    far decides differences (two-sided) and, separately, equivalences (TOST), a paired row with the
    t boundaries of the design, a Welch row with Bonferroni over the looks. A row is decided at the first
    look at which either is rejected (equivalent where both are) and takes no later look. A row lacking
    the seeds of a look is not tested there. Undecided rows report the test on all their seeds.
    `bases[row]`, where given, replaces `base` for that row (a row compared with another row)."""
    paired = paired or {}
    theirs = {name: (bases or {}).get(name, base) for name in rows}

    def nominal(one_sided: bool) -> Callable[[str, float], dict[int, float]]:
        return lambda name, share: design.nominal(share, one_sided, exact=paired.get(name, True))

    decided: dict[str, Decision] = {}
    found: dict[str, dict[int, Difference]] = {name: {} for name in rows}
    looks = design.looks()
    for n in looks:
        for name, values in rows.items():
            if name in decided:
                continue
            if sum(1 for s in values if s < n) < n and n > design.first:
                continue  # the row took no seed at this look (it failed, or was not extended)
            diff = _compare({s: v for s, v in values.items() if s < n},
                            {s: v for s, v in theirs[name].items() if s < n}, margins[name], paired.get(name, True))
            if diff is not None:
                found[name][n] = diff
        differ = sequential_holm({k: {m: d.p for m, d in v.items()} for k, v in found.items()}, nominal(False))
        same = sequential_holm({k: {m: d.p_equivalent for m, d in v.items()} for k, v in found.items()},
                               nominal(True))
        for name in set(differ) | set(same):
            if name in decided:
                continue
            # its last test: a row that stopped taking seeds can be decided later by a share passed on
            seeds = max(found[name])
            diff, full = found[name][seeds], _look_level(design, seeds, paired.get(name, True))
            if name in same:  # inside the margin: equivalent, even where a smaller difference is significant
                decided[name] = Decision("equivalent", diff, seeds, full)
            else:
                sign = found[name][differ[name]].mean
                decided[name] = Decision("lower" if sign < 0 else "higher", diff, seeds, full)
    out = {}
    for name, values in rows.items():
        if name in decided:
            out[name] = decided[name]
            continue
        diff = _compare(values, theirs[name], margins[name], paired.get(name, True))
        last = found[name][max(found[name])] if found[name] else None
        out[name] = Decision("undecided", diff if diff is not None else last, None,
                             _look_level(design, looks[-1], paired.get(name, True)))
    return out


def _look_level(design: Design, n: int, paired: bool) -> float:
    """The two-sided nominal level of the look at n seeds for one row alone at the design's alpha."""
    return design.nominal(design.alpha, one_sided=False, exact=paired)[n]


def _compare(row: Mapping[int, float], base: Mapping[int, float], margin: float, paired: bool) -> Difference | None:
    if paired:
        return paired_difference(row, base, margin)
    return welch_difference(list(row.values()), list(base.values()), margin)


def _t_above(crit: float, df: int, nc: float) -> float:
    """P(T > crit) for T noncentral t (df, nc). scipy's nct loses its way for few degrees of freedom and a
    large nc (NaN); then the same probability as an integral over the chi-square: E[Phi(nc - crit sqrt(V/df))]."""
    value = float(stats.nct.sf(crit, df, nc))
    if math.isfinite(value):
        return value
    integral, _ = integrate.quad(lambda v: stats.norm.cdf(nc - crit * math.sqrt(v / df)) * stats.chi2.pdf(v, df),
                                 0, np.inf, limit=200)
    return float(min(1.0, max(0.0, integral)))


def _difference_power(effect_sd: float, n: int, alpha: float) -> float:
    """Power of the two-sided one-sample t-test at `alpha` with n values for a true mean/sd of effect_sd."""
    df = n - 1
    crit = float(stats.t.ppf(1 - alpha / 2, df))
    nc = effect_sd * math.sqrt(n)
    return _t_above(crit, df, nc) + _t_above(crit, df, -nc)


def _equivalence_power(effect_sd: float, margin_sd: float, n: int, alpha: float) -> float:
    """A lower bound of the TOST's power (both one-sided tests at `alpha`) for a true mean/sd effect_sd."""
    df = n - 1
    crit = float(stats.t.ppf(1 - alpha, df))
    lower = 1.0 - _t_above(crit, df, (effect_sd + margin_sd) * math.sqrt(n))
    upper = 1.0 - _t_above(crit, df, (margin_sd - effect_sd) * math.sqrt(n))
    return max(0.0, 1.0 - lower - upper)


def detectable_difference(diff: Difference, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest true |difference| the test at `alpha` detects with `power` at diff's n and spread."""
    if diff.sd == 0:
        return 0.0

    def shortfall(effect_sd: float) -> float:
        return _difference_power(effect_sd, diff.n, alpha) - power

    high = 1.0
    while shortfall(high) < 0:
        high *= 2
    return float(optimize.brentq(shortfall, 0.0, high, xtol=1e-6)) * diff.sd


def seeds_to_decide(diff: Difference, alpha: float = ALPHA, power: float = POWER) -> int | None:
    """About how many seeds decide the row at the observed difference and spread (None: over
    MAX_SEEDS_SEARCHED, e.g. an observed difference of zero that sits on the margin)."""
    if diff.sd == 0:
        return diff.n
    effect, margin = abs(diff.mean) / diff.sd, diff.margin / diff.sd
    for n in range(max(diff.n, 2), MAX_SEEDS_SEARCHED + 1):
        if _difference_power(effect, n, alpha) >= power:
            return n
        if effect < margin and _equivalence_power(effect, margin, n, alpha) >= power:
            return n
    return None
