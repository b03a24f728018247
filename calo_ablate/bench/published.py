"""Published CPU generation times of the built-in families, set beside ours by `make bench`.

Source: the CaloChallenge 2022 final results (arXiv:2410.21611), github CaloChallenge/homepage @9b41df7,
`final_results/CaloChallenge_results_ds1_photons.hdf` and `..._ds1_pions.hdf`, columns
`time CPU {1,100,10000}` with their std (mean and std of 10 repetitions), as compiled in
shared/reference/caloflow.md ("Generation time per shower") and fewstep-and-challenge.md (B.2, B.3).
The unit is not stated in the files: milliseconds per shower is the reference's reading (not verified);
the CPU (model, cores, threads) is not stated either. The published CaloScore ran 512 steps; that the
CaloDiffusion entry ran 400 steps (398 network calls) is not verified. There is no CaloScore entry for
pions, and the sources give no training times (training speeds are ours alone).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PUBLISHED_CPU_MS", "PUBLISHED_SOURCE", "PublishedTime", "published_cpu_ms"]

PUBLISHED_SOURCE = ("CaloChallenge final results (arXiv:2410.21611; CaloChallenge/homepage @9b41df7 "
                    "final_results/*.hdf), ms/shower inferred, CPU not stated")


@dataclass(frozen=True)
class PublishedTime:
    """A published generation time per shower: mean and std over 10 repetitions, milliseconds (inferred)."""

    mean_ms: float
    std_ms: float


# (bench case, dataset) -> {batch size: time}
PUBLISHED_CPU_MS: dict[tuple[str, str], dict[int, PublishedTime]] = {
    ("caloscore_v2", "1-photons"): {1: PublishedTime(19_324, 729), 100: PublishedTime(9_425, 322),
                                    10_000: PublishedTime(12_871, 1_197)},
    ("calodiffusion", "1-photons"): {1: PublishedTime(15_677, 633), 100: PublishedTime(4_266, 106),
                                     10_000: PublishedTime(4_500, 357)},
    ("calodiffusion", "1-pions"): {1: PublishedTime(15_144, 1_126), 100: PublishedTime(4_571, 333),
                                   10_000: PublishedTime(4_501, 181)},
    ("caloflow", "1-photons"): {1: PublishedTime(42_875, 3_085), 100: PublishedTime(2_053, 170),
                                10_000: PublishedTime(1_912, 141)},
    ("caloflow", "1-pions"): {1: PublishedTime(197_570, 34_423), 100: PublishedTime(5_430, 489),
                              10_000: PublishedTime(3_509, 177)},
    ("caloflow_student", "1-photons"): {1: PublishedTime(576, 22), 100: PublishedTime(11.1, 1.3),
                                        10_000: PublishedTime(6.11, 0.60)},
    ("caloflow_student", "1-pions"): {1: PublishedTime(620, 18), 100: PublishedTime(14.2, 2.2),
                                      10_000: PublishedTime(10.2, 0.6)},
}


def published_cpu_ms(case: str, dataset: str, batch_size: int) -> PublishedTime | None:
    """The published CPU time per shower of a bench case on a dataset at a batch size; None where the
    sources have none (another batch size, CaloScore on pions, datasets 2 and 3 here)."""
    return PUBLISHED_CPU_MS.get((case, dataset), {}).get(batch_size)
