"""Published CaloChallenge 2022 results of dataset 1 (photons, pions): the Pareto plot's fixed reference markers.

Source: the challenge's released result tables, github CaloChallenge/homepage @9b41df7 (2025-08-07),
`final_results/CaloChallenge_results_ds1_photons.hdf` and `..._ds1_pions.hdf` (one row per submission),
the numbers behind the figures of "CaloChallenge 2022: A Community Challenge for Fast Calorimeter
Simulation", arXiv:2410.21611; transcribed in ../shared/reference/fewstep-and-challenge.md, sections
B.2 and B.3. AUCs and multi-cls are means over 10 classifier runs; FPD x 1e3; times are per shower at
batch 100, in milliseconds as inferred from their scaling with the batch size (the unit is not stated in
the files); the CPU and GPU models are unknown. The GEANT4 rows are Geant4 against Geant4 (the published
noise floor; no time, no multi-cls). None: not in the files (CaloForest has no GPU time).

The CPU times of the submissions that calo-ablate's families re-implement are also kept at batch sizes 1,
100 and 10,000 with their std over the 10 repetitions (columns `time CPU {1,100,10000}`; compiled in
shared/reference/caloflow.md, "Generation time per shower"): `make bench` sets them beside ours, and their
batch-100 mean is the submission's Pareto marker. The published CaloScore ran 512 steps; that the
CaloDiffusion entry ran 400 steps (398 network calls) is not verified.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CPU_MS_BY_BATCH", "HARDWARE", "METRICS", "PUBLISHED", "SOURCE", "TIME_UNIT", "PublishedPoint",
           "PublishedTime", "published_cpu_ms", "published_points"]

SOURCE = ("CaloChallenge 2022 (arXiv:2410.21611), released results CaloChallenge/homepage@9b41df7 "
          "final_results")
HARDWARE = "hardware unknown"
TIME_UNIT = "ms / shower (inferred, not stated in the files)"
# the study's metric -> the PublishedPoint field holding the same quantity
METRICS = {"auc_low": "auc_low", "auc_high": "auc_high", "fpd": "fpd", "multiclass": "multi_cls"}


@dataclass(frozen=True)
class PublishedTime:
    """A published generation time per shower: mean and std over 10 repetitions, milliseconds (inferred)."""

    mean_ms: float
    std_ms: float


# (submission, dataset) -> {batch size: CPU time per shower}
CPU_MS_BY_BATCH: dict[tuple[str, str], dict[int, PublishedTime]] = {
    ("CaloScore", "1-photons"): {1: PublishedTime(19_324, 729), 100: PublishedTime(9_425, 322),
                                 10_000: PublishedTime(12_871, 1_197)},
    ("CaloDiffusion", "1-photons"): {1: PublishedTime(15_677, 633), 100: PublishedTime(4_266, 106),
                                     10_000: PublishedTime(4_500, 357)},
    ("CaloDiffusion", "1-pions"): {1: PublishedTime(15_144, 1_126), 100: PublishedTime(4_571, 333),
                                   10_000: PublishedTime(4_501, 181)},
    ("CaloFlow teacher", "1-photons"): {1: PublishedTime(42_875, 3_085), 100: PublishedTime(2_053, 170),
                                        10_000: PublishedTime(1_912, 141)},
    ("CaloFlow teacher", "1-pions"): {1: PublishedTime(197_570, 34_423), 100: PublishedTime(5_430, 489),
                                      10_000: PublishedTime(3_509, 177)},
    ("CaloFlow student", "1-photons"): {1: PublishedTime(576, 22), 100: PublishedTime(11.1, 1.3),
                                        10_000: PublishedTime(6.11, 0.60)},
    ("CaloFlow student", "1-pions"): {1: PublishedTime(620, 18), 100: PublishedTime(14.2, 2.2),
                                      10_000: PublishedTime(10.2, 0.6)},
}


def published_cpu_ms(submission: str, dataset: str, batch_size: int) -> PublishedTime | None:
    """The published CPU time per shower of a submission on a dataset at a batch size; None where
    CPU_MS_BY_BATCH has none (another submission or batch size, CaloScore on pions, datasets 2 and 3)."""
    return CPU_MS_BY_BATCH.get((submission, dataset), {}).get(batch_size)


@dataclass(frozen=True)
class PublishedPoint:
    submission: str
    kind: str  # model type as the reference sheet gives it
    auc_low: float
    auc_high: float
    fpd: float  # x 1e3
    multi_cls: float | None
    cpu_ms_b100: float | None
    gpu_ms_b100: float | None


def _p(submission: str, kind: str, auc_low: float, auc_high: float, fpd: float, multi_cls: float | None,
       cpu: float | None, gpu: float | None) -> PublishedPoint:
    return PublishedPoint(submission, kind, auc_low, auc_high, fpd, multi_cls, cpu, gpu)


def _ours(submission: str, dataset: str, kind: str, auc_low: float, auc_high: float, fpd: float,
          multi_cls: float, gpu: float) -> PublishedPoint:
    """A submission whose CPU times CPU_MS_BY_BATCH holds: its batch-100 mean is the marker's CPU time."""
    cpu = published_cpu_ms(submission, dataset, 100)
    assert cpu is not None, (submission, dataset)
    return _p(submission, kind, auc_low, auc_high, fpd, multi_cls, cpu.mean_ms, gpu)


PUBLISHED: dict[str, tuple[PublishedPoint, ...]] = {
    "1-photons": (
        _p("GEANT4 (vs Geant4)", "reference", 0.499, 0.499, 0.119, None, None, None),
        _ours("CaloDiffusion", "1-photons", "diffusion", 0.635, 0.536, 0.650, -2.19, 75.2),
        _p("CaloINN", "norm. flow (INN)", 0.626, 0.638, 3.90, -2.20, 2.78, 0.51),
        _ours("CaloScore", "1-photons", "diffusion", 0.751, 0.552, 0.438, -3.31, 60.4),
        _p("CaloScore distilled", "diffusion (PD)", 0.816, 0.641, 1.12, -4.20, 1078, 8.82),
        _p("CaloScore single-shot", "diffusion (PD, 1 step)", 0.866, 0.726, 3.09, -5.44, 20.5, 2.01),
        _ours("CaloFlow teacher", "1-photons", "norm. flow (MAF)", 0.733, 0.636, 3.11, -2.79, 45.5),
        _ours("CaloFlow student", "1-photons", "norm. flow (IAF)", 0.761, 0.667, 3.15, -2.98, 0.79),
        _p("CaloGraph", "graph diffusion (type not verified)", 0.820, 0.672, 15.8, -3.58, 914, 25.0),
        _p("CaloForest", "XGBoost diffusion/FM", 0.845, 0.924, 33.5, -3.62, 308, None),
        _p("CaloVAE+INN", "VAE + INN", 0.889, 0.966, 14.6, -5.22, 1.58, 0.64),
        _p("CaloShower3GAN", "GAN", 0.928, 0.947, 20.5, -6.79, 55.5, 63.8),
        _p("BoloGAN", "GAN", 0.927, 0.966, 142.4, -9.76, 1.73, 2.26),
        _p("CaloShower2GAN", "GAN", 0.938, 0.942, 52.1, -7.11, 65.6, 70.8),
        _p("Calo-VQ", "VQ-VAE (type not verified)", 0.998, 0.989, 36.0, -17.91, 10.4, 0.81),
        _p("CaloMan", "manifold AE + density", 1.000, 0.999, 141.4, -30.35, 3.20, 1.04),
    ),
    "1-pions": (
        _p("GEANT4 (vs Geant4)", "reference", 0.609, 0.558, 0.511, None, None, None),
        _ours("CaloDiffusion", "1-pions", "diffusion", 0.680, 0.652, 2.77, -2.32, 76.9),
        _p("DNN CaloSim", "type not verified", 0.676, 0.819, 464.7, -1.93, 0.47, 0.32),
        _p("CaloINN", "norm. flow (INN)", 0.784, 0.732, 29.3, -3.09, 3.92, 0.44),
        _p("CaloGraph", "graph diffusion (type not verified)", 0.811, 0.763, 22.3, -3.48, 1263, 28.4),
        _ours("CaloFlow teacher", "1-pions", "norm. flow (MAF)", 0.845, 0.797, 25.7, -3.71, 70.1),
        _p("CaloVAE+INN", "VAE + INN", 0.853, 0.921, 83.0, -4.06, 1.72, 0.68),
        _ours("CaloFlow student", "1-pions", "norm. flow (IAF)", 0.884, 0.827, 25.7, -4.56, 1.00),
        _p("CaloShowerGAN", "GAN", 0.889, 0.922, 113.2, -4.72, 70.7, 122.6),
        _p("CaloForest", "XGBoost diffusion/FM", 0.909, 0.965, 204.7, -4.88, 433, None),
        _p("BoloGAN", "GAN", 0.913, 0.969, 498.7, -8.02, 1.38, 1.59),
        _p("Calo-VQ", "VQ-VAE (type not verified)", 0.958, 0.976, 127.0, -8.60, 12.7, 0.83),
        _p("CaloMan", "manifold AE + density", 0.999, 0.999, 524.4, -25.95, 12.1, 2.07),
    ),
}


def published_points(dataset: str, metric: str) -> list[tuple[PublishedPoint, float]] | None:
    """(submission, its value of `metric`) for every published submission of `dataset` that has the metric;
    None when nothing comparable is stored (another dataset, or a metric the challenge did not publish)."""
    field = METRICS.get(metric)
    points = PUBLISHED.get(dataset)
    if field is None or points is None:
        return None
    return [(p, value) for p in points if (value := getattr(p, field)) is not None]
