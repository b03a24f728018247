"""GFlash-style shower parametrisation: longitudinal gamma profiles and core-plus-tail radial profiles.

Formulas and constants of Grindhammer, Rudowicz and Peters (NIM A290 (1990) 469; hep-ex/0001020), as
used by the Geant4 GFlash parameterisation; nothing here knows about files or datasets. Units: energies
in MeV at the public interface (converted to GeV where the paper's formulas want GeV), depths t in
radiation lengths X0, radii in Moliere radii R_M unless a name ends in _mm.

Choices where the paper leaves one:
- The fluctuation widths sigma(ln T) and sigma(ln alpha) diverge at small y = E / E_c (their
  denominators cross zero at ln y ~ 1.1 and ~ 0.7). ln y is floored at LN_Y_FLOOR = 3.0 (y ~ 20) in
  every longitudinal formula, so a shower below ~20 E_c keeps the profile and fluctuations of a 20 E_c
  shower (sigma(ln T) <= 0.42, sigma(ln alpha) <= 0.50).
- alpha is floored at ALPHA_FLOOR = 1.2 so that beta = (alpha - 1) / T stays positive.
- The radial profile uses tau = t / T with the event's own (fluctuated) T, so depth fluctuations move
  the lateral widening with them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import gammainc

__all__ = [
    "ALPHA_FLOOR",
    "LN_Y_FLOOR",
    "Medium",
    "depth_fractions",
    "mean_longitudinal",
    "radial_bin_probabilities",
    "radial_parameters",
    "sample_longitudinal",
]

LN_Y_FLOOR = 3.0
ALPHA_FLOOR = 1.2


@dataclass(frozen=True)
class Medium:
    """An (effective) calorimeter medium for the GFlash formulas."""

    z_eff: float                # effective atomic number
    critical_energy_mev: float  # E_c, MeV
    moliere_radius_mm: float    # R_M, mm


def _ln_y(energy_mev: np.ndarray, medium: Medium) -> np.ndarray:
    return np.maximum(np.log(np.asarray(energy_mev, dtype=np.float64) / medium.critical_energy_mev), LN_Y_FLOOR)


def mean_longitudinal(energy_mev: np.ndarray, medium: Medium) -> tuple[np.ndarray, np.ndarray]:
    """Average profile: depth of maximum T (X0) and shape alpha, each shaped like energy_mev."""
    ln_y = _ln_y(energy_mev, medium)
    t_max = ln_y - 0.858
    alpha = 0.21 + (0.492 + 2.38 / medium.z_eff) * ln_y
    return t_max, np.maximum(alpha, ALPHA_FLOOR)


def sample_longitudinal(
    energy_mev: np.ndarray, medium: Medium, rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Event-by-event (T in X0, alpha), each (N,): correlated log-normal fluctuations of GFlash."""
    ln_y = _ln_y(energy_mev, medium)
    mean_ln_t = np.log(ln_y - 0.812)
    sigma_ln_t = 1.0 / (-1.4 + 1.26 * ln_y)
    mean_ln_a = np.log(0.81 + (0.458 + 2.26 / medium.z_eff) * ln_y)
    sigma_ln_a = 1.0 / (-0.58 + 0.86 * ln_y)
    rho = 0.705 - 0.023 * ln_y
    z1 = rng.standard_normal(ln_y.shape)
    z2 = rng.standard_normal(ln_y.shape)
    plus, minus = np.sqrt((1 + rho) / 2), np.sqrt((1 - rho) / 2)
    t_max = np.exp(mean_ln_t + sigma_ln_t * (plus * z1 + minus * z2))
    alpha = np.exp(mean_ln_a + sigma_ln_a * (plus * z1 - minus * z2))
    return t_max, np.maximum(alpha, ALPHA_FLOOR)


def depth_fractions(t_max: np.ndarray, alpha: np.ndarray, t_edges: np.ndarray) -> np.ndarray:
    """Fraction of the energy deposited between consecutive depths.

    t_max, alpha: (N,) profile of each event; t_edges: (S + 1,) or (N, S + 1) increasing depths (same
    unit as t_max) measured from each shower's start; depths before the start count as 0.
    Returns (N, S): P(alpha, beta t2) - P(alpha, beta t1).
    """
    beta = (alpha - 1.0) / t_max                                                # (N,)
    cdf = gammainc(alpha[:, None], beta[:, None] * np.maximum(t_edges, 0.0))  # (N, S + 1)
    return np.diff(cdf, axis=1)


def radial_parameters(
    tau: np.ndarray, energy_mev: np.ndarray, z_eff: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GFlash core radius R_C, tail radius R_T (both in R_M) and core weight p at relative depth tau = t / T.

    tau and energy_mev broadcast together; p is clamped to [0, 1].
    """
    ln_e = np.log(np.asarray(energy_mev, dtype=np.float64) / 1000.0)  # ln(E / GeV)
    r_core = (0.0251 + 0.00319 * ln_e) + (0.1162 - 0.000381 * z_eff) * tau
    k1, k2, k3 = 0.659 - 0.00309 * z_eff, 0.645, -2.59
    k4 = 0.3585 + 0.0421 * ln_e
    r_tail = k1 * (np.exp(k3 * (tau - k2)) + np.exp(k4 * (tau - k2)))
    p1, p2 = 2.632 - 0.00094 * z_eff, 0.401 + 0.00187 * z_eff
    p3 = 1.313 - 0.0686 * ln_e
    x = (p2 - tau) / p3
    p = np.clip(p1 * np.exp(x - np.exp(x)), 0.0, 1.0)
    return r_core, r_tail, p


def radial_bin_probabilities(
    r_edges: np.ndarray, r_core: np.ndarray, r_tail: np.ndarray, p: np.ndarray,
) -> np.ndarray:
    """Probability of each radial bin under f(r) = p f_C(r) + (1 - p) f_T(r).

    f_i(r) = 2 r R_i^2 / (r^2 + R_i^2)^2 has the closed-form CDF r^2 / (r^2 + R_i^2). r_edges: (B + 1,) in
    the same unit as the radii; r_core, r_tail, p: any shape (...). Returns (..., B); the remainder up to
    1 is the lateral leakage beyond the last edge.
    """
    r2 = np.asarray(r_edges, dtype=np.float64) ** 2
    core = r2 / (r2 + r_core[..., None] ** 2)
    tail = r2 / (r2 + r_tail[..., None] ** 2)
    cdf = p[..., None] * core + (1.0 - p[..., None]) * tail   # (..., B + 1)
    return np.diff(cdf, axis=-1)
