"""Histogram and integral-probability metrics: separation power, FPD, KPD (official definitions).

- Separation power (CaloChallenge `evaluate_plotting_helper._separation_power`):
  S = 1/2 sum_i (h1_i - h2_i)^2 / (h1_i + h2_i + 1e-16), h_i = count_i / (entries inside the edges).
  Values outside [first edge, last edge] are dropped (numpy.histogram: the last bin is closed on both
  sides); a sample with no entry inside the edges gives NaN. 0 = identical, 1 = disjoint.
- FPD and KPD as JetNet 0.2.5 (`jetnet.evaluation.fpd`, `kpd`) computes them when the CaloChallenge
  script calls `fpd(ref, gen, min_samples=10000)` and `kpd(ref, gen, batch_size=10000)`: every column
  divided by the reference's largest |value|; draws with replacement from numpy `default_rng(42)`
  (FPD) and `default_rng(42 + 1000 i)` (KPD batch i); FPD = intercept of a + b / N fitted (a, b >= 0)
  to the mean Frechet distance of 20 draws at each of 10 sizes N; KPD = median unbiased MMD^2 with
  the kernel (x.y / d + 1)^4 over 10 batches, error half the 16.275-83.725 percentile range.
  `replace=False` is the project's own variant (distinct showers per draw, sizes capped by the
  samples); it gives other numbers and is reported under its own name.
Both are dimensionless; the evaluation reports them x 1e3.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
from scipy.optimize import curve_fit
from scipy.stats import iqr

from calo_ablate.config import canonical_dataset
from calo_ablate.errors import DataError
from calo_ablate.geometry import Geometry

__all__ = [
    "FPD_MAX_SAMPLES",
    "FPD_MIN_SAMPLES",
    "KPD_BATCH_SIZE",
    "Draw",
    "feature_bins",
    "fpd",
    "fpd_sizes",
    "frechet_distance",
    "histogram_fractions",
    "kpd",
    "log_edges",
    "mmd2_poly_unbiased",
    "scale_by_reference_max",
    "separation_power",
]

FPD_MIN_SAMPLES = 10000  # the CaloChallenge call's min_samples
FPD_MAX_SAMPLES = 50000  # JetNet's default max_samples
KPD_BATCH_SIZE = 10000  # the CaloChallenge call's batch_size
SEED = 42  # JetNet's default seed


def histogram_fractions(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """count_i / (entries inside the edges) of `values` binned by `edges` (B+1,); outside values dropped.

    NaN in every bin when no value lies inside the edges (what matplotlib's density gives).
    """
    counts, _ = np.histogram(np.asarray(values).reshape(-1), bins=edges)
    total = counts.sum()
    if total == 0:
        return np.full(len(counts), np.nan)
    return counts / total


def separation_power(values_1: np.ndarray, values_2: np.ndarray, edges: np.ndarray) -> float:
    """The official S between two samples of one quantity, binned by `edges` (in [0, 1] or NaN)."""
    h1, h2 = histogram_fractions(values_1, edges), histogram_fractions(values_2, edges)
    return float(0.5 * np.sum((h1 - h2) ** 2 / (h1 + h2 + 1e-16)))


def log_edges(low: float, high: float, n_edges: int) -> np.ndarray:
    """`n_edges` log-spaced edges from `low` to `high` (numpy.logspace of the log10 of both ends).

    A reference whose largest value does not exceed `low` (nothing above the threshold) would give
    equal edges, which numpy refuses: the top edge is then 10 x low.
    """
    if not low > 0:
        msg = f"log-spaced histogram edges need a lower end > 0, got {low}"
        raise DataError(msg)
    high = high if high > low else 10.0 * low
    return np.logspace(np.log10(low), np.log10(high), n_edges)


def feature_bins(
    name: str,
    reference: np.ndarray,
    geometry: Geometry,
    dataset: str,
    threshold_mev: float,
) -> np.ndarray:
    """Histogram edges for feature `name` (features.py names); official where the script has one.

    Official (histograms the script reports): e_ratio 101 edges on [0.5, 1.5] (pions too);
    e_layer_* 40 log edges from the threshold to the reference's largest value of that layer;
    centre_eta/phi 101 edges on +-100 mm (dataset 1), +-500 mm (dataset-1 layers 12 and 13),
    +-30 mm (datasets 2, 3); width_eta/phi 101 on [0, 100], [0, 400], [0, 30] mm.
    Own (the script defines these plots but never calls them; their edges are used): sparsity 21
    edges on [0, 1]; centre_r, width_r 101 edges on [0, 500] mm (dataset 1; [0, 1500] for layers
    12-14), [0, 42] / [0, 20] mm (datasets 2, 3); e_tot (no official plot): 40 log edges like E_layer.
    A zero threshold (evaluate.threshold_mev: 0) starts the log edges at the smallest positive
    reference value instead.
    """
    dataset = canonical_dataset(dataset)
    if name == "e_ratio":
        return np.linspace(0.5, 1.5, 101)
    kind, _, suffix = name.rpartition("_")
    if name == "e_tot" or kind == "e_layer":
        positive = reference[reference > 0]
        low = threshold_mev if threshold_mev > 0 else (float(positive.min()) if positive.size else 1e-3)
        return log_edges(low, float(np.max(reference, initial=low)), 40)
    layer_id = int(suffix)
    ds1 = dataset.startswith("1")
    if kind == "sparsity":
        return np.linspace(0.0, 1.0, 21)
    if kind in ("centre_eta", "centre_phi"):
        lim = (500.0 if layer_id in (12, 13) else 100.0) if ds1 else 30.0
        return np.linspace(-lim, lim, 101)
    if kind in ("width_eta", "width_phi"):
        lim = (400.0 if layer_id in (12, 13) else 100.0) if ds1 else 30.0
        return np.linspace(0.0, lim, 101)
    if kind in ("centre_r", "width_r"):
        lim = (1500.0 if layer_id >= 12 else 500.0) if ds1 else (42.0 if kind == "centre_r" else 20.0)
        return np.linspace(0.0, lim, 101)
    msg = f"no histogram binning for feature {name!r} of the {geometry.name} geometry"
    raise DataError(msg)


def scale_by_reference_max(reference: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both (N, d) arrays divided column-wise by the reference's max |x| (1 where that is 0)."""
    scale = np.max(np.abs(reference), axis=0)
    scale = np.where(scale == 0, 1.0, scale)
    return reference / scale, other / scale


class Draw:
    """A multiset of rows of a sample: the distinct rows drawn and how often each was drawn.

    Statistics of a draw with replacement (duplicates) are computed from the distinct rows weighted
    by their counts: the same numbers as on the repeated rows, at a cost set by the distinct rows
    (at most the sample size), so JetNet's draws of 10,000 to 49,999 from a few hundred showers
    are cheap.
    """

    def __init__(self, sample: np.ndarray, picks: np.ndarray) -> None:
        counts = np.bincount(picks, minlength=len(sample))
        kept = np.flatnonzero(counts)
        self.rows, self.counts = sample[kept], counts[kept].astype(np.float64)

    @classmethod
    def whole(cls, sample: np.ndarray) -> Draw:
        return cls(sample, np.arange(len(sample)))

    @property
    def size(self) -> float:
        return float(self.counts.sum())

    def mean(self) -> np.ndarray:
        return self.counts @ self.rows / self.size

    def cov(self) -> np.ndarray:
        """numpy.cov (ddof 1) of the repeated rows."""
        return np.atleast_2d(np.cov(self.rows, rowvar=False, fweights=self.counts.astype(np.int64)))


def _frechet(x: Draw, y: Draw, eps: float = 1e-6) -> float:
    mu_x, mu_y = x.mean(), y.mean()
    c_x, c_y = x.cov(), y.cov()
    root = scipy.linalg.sqrtm(c_x @ c_y)
    if not np.isfinite(root).all():
        offset = np.eye(len(c_x)) * eps
        root = scipy.linalg.sqrtm((c_x + offset) @ (c_y + offset))
    diff = mu_x - mu_y
    return float(diff @ diff + np.trace(c_x) + np.trace(c_y) - 2.0 * np.trace(np.real(root)))


def frechet_distance(x: np.ndarray, y: np.ndarray) -> float:
    """||mu_x - mu_y||^2 + tr(C_x) + tr(C_y) - 2 tr(sqrtm(C_x C_y)) of Gaussian fits to (n, d) samples.

    C by numpy.cov (ddof 1); sqrtm of the product by scipy, its real part; when that is not finite,
    1e-6 is added to both diagonals and it is recomputed (JetNet's rule).
    """
    return _frechet(Draw.whole(np.asarray(x, np.float64)), Draw.whole(np.asarray(y, np.float64)))


def fpd_sizes(min_samples: int, max_samples: int, num_points: int = 10) -> np.ndarray:
    """The draw sizes: int32 of 1 / linspace(1 / min_samples, 1 / max_samples, num_points)."""
    return (1.0 / np.linspace(1.0 / min_samples, 1.0 / max_samples, num_points)).astype(np.int32)


def _line(inverse_n: np.ndarray, intercept: float, slope: float) -> np.ndarray:
    return intercept + slope * inverse_n


def fpd(
    reference: np.ndarray,
    generated: np.ndarray,
    *,
    min_samples: int = FPD_MIN_SAMPLES,
    max_samples: int = FPD_MAX_SAMPLES,
    num_batches: int = 20,
    num_points: int = 10,
    replace: bool = True,
    seed: int = SEED,
) -> tuple[float, float]:
    """(FPD, its error) of (n, d) feature arrays; the defaults are the official call.

    With replace=False (own variant) the sizes are capped at the smaller sample: max_samples becomes
    min(max_samples, n) and min_samples min(min_samples, max_samples // 5), keeping JetNet's ratio.
    """
    x, y = scale_by_reference_max(np.asarray(reference, np.float64), np.asarray(generated, np.float64))
    if not replace:
        max_samples = min(max_samples, len(x), len(y))
        min_samples = max(min(min_samples, max_samples // 5), x.shape[1] + 2)
        if min_samples >= max_samples:
            msg = (f"FPD without replacement: {max_samples} showers per sample are too few for "
                   f"{x.shape[1]} features (need more than {min_samples})")
            raise DataError(msg)
    sizes = fpd_sizes(min_samples, max_samples, num_points)
    rng = np.random.default_rng(seed)
    values = []
    for size in sizes:
        batch = []
        for _ in range(num_batches):
            draw_x = Draw(x, rng.choice(len(x), size, replace=replace))
            draw_y = Draw(y, rng.choice(len(y), size, replace=replace))
            batch.append(_frechet(draw_x, draw_y))
        values.append(np.mean(batch))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # covariance not estimable: reported as an infinite error
        params, cov = curve_fit(_line, 1.0 / sizes, np.array(values), bounds=([0.0, 0.0], [np.inf, np.inf]))
    return float(params[0]), float(np.sqrt(np.diag(cov)[0]))


def _kernel_block(a: np.ndarray, b: np.ndarray, degree: int) -> np.ndarray:
    block = a @ b.T
    block /= a.shape[1]
    block += 1.0
    if degree & (degree - 1):  # not a power of 2
        return block ** degree
    while degree > 1:  # repeated squaring in place: several times faster than ** 4
        np.square(block, out=block)
        degree //= 2
    return block


def _weighted_sum(a: Draw, b: Draw, degree: int, chunk: int = 512) -> float:
    """sum over all pairs of drawn rows of (a_i . b_j / d + 1)^degree, in row chunks."""
    return float(sum(a.counts[i:i + chunk] @ (_kernel_block(a.rows[i:i + chunk], b.rows, degree) @ b.counts)
                     for i in range(0, len(a.rows), chunk)))


def _weighted_self_sum(a: Draw, degree: int, chunk: int = 512) -> float:
    """_weighted_sum(a, a): symmetric, so only blocks on and above the diagonal are computed."""
    total = 0.0
    for i in range(0, len(a.rows), chunk):
        block = _kernel_block(a.rows[i:i + chunk], a.rows[i:], degree) @ a.counts[i:]  # (chunk,)
        diagonal = _kernel_block(a.rows[i:i + chunk], a.rows[i:i + chunk], degree) @ a.counts[i:i + chunk]
        total += float(a.counts[i:i + chunk] @ (2.0 * block - diagonal))
    return float(total)


def _mmd2(x: Draw, y: Draw, degree: int) -> float:
    d, m, n = x.rows.shape[1], x.size, y.size
    tr_xx = float(x.counts @ (((x.rows * x.rows).sum(axis=1) / d + 1.0) ** degree))
    tr_yy = float(y.counts @ (((y.rows * y.rows).sum(axis=1) / d + 1.0) ** degree))
    return ((_weighted_self_sum(x, degree) - tr_xx) / (m * (m - 1))
            + (_weighted_self_sum(y, degree) - tr_yy) / (n * (n - 1))
            - 2.0 * _weighted_sum(x, y, degree) / (m * n))


def mmd2_poly_unbiased(x: np.ndarray, y: np.ndarray, degree: int = 4) -> float:
    """Unbiased MMD^2 of (m, d) and (n, d) samples with k(a, b) = (a.b / d + 1)^degree.

    (sum K_xx - tr K_xx) / (m (m - 1)) + (sum K_yy - tr K_yy) / (n (n - 1)) - 2 mean K_xy.
    """
    return _mmd2(Draw.whole(np.asarray(x, np.float64)), Draw.whole(np.asarray(y, np.float64)), degree)


def kpd(
    reference: np.ndarray,
    generated: np.ndarray,
    *,
    num_batches: int = 10,
    batch_size: int = KPD_BATCH_SIZE,
    degree: int = 4,
    replace: bool = True,
    seed: int = SEED,
) -> tuple[float, float]:
    """(KPD = median MMD^2 over batches, error = half the 16.275-83.725 percentile range).

    The defaults are the official call. With replace=False (own variant) a batch holds
    min(batch_size, n // 2) distinct showers of each sample.
    """
    x, y = scale_by_reference_max(np.asarray(reference, np.float64), np.asarray(generated, np.float64))
    if not replace:
        batch_size = max(2, min(batch_size, len(x) // 2, len(y) // 2))
    values = []
    for i in range(num_batches):
        rng = np.random.default_rng(seed + 1000 * i)
        draw_x = Draw(x, rng.choice(len(x), batch_size, replace=replace))
        draw_y = Draw(y, rng.choice(len(y), batch_size, replace=replace))
        values.append(_mmd2(draw_x, draw_y, degree))
    return float(np.median(values)), float(iqr(values, rng=(16.275, 83.725)) / 2)
