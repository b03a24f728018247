"""The published CPU generation times that `make bench` sets beside ours: which CaloChallenge submission
each bench case re-implements. The times and their source are report/published.py's (one home).
"""

from __future__ import annotations

from calo_ablate.report.published import SOURCE, TIME_UNIT, PublishedTime, published_cpu_ms

__all__ = ["PUBLISHED_SOURCE", "SUBMISSION_OF_CASE", "published_case_ms"]

PUBLISHED_SOURCE = f"{SOURCE}, {TIME_UNIT}, CPU not stated"
SUBMISSION_OF_CASE = {"caloscore_v2": "CaloScore", "calodiffusion": "CaloDiffusion",
                      "caloflow": "CaloFlow teacher", "caloflow_student": "CaloFlow student"}


def published_case_ms(case: str, dataset: str, batch_size: int) -> PublishedTime | None:
    """The published CPU time per shower of the submission a bench case re-implements; None where there is
    none (CaloScore on pions, batch sizes other than 1, 100 and 10,000, datasets 2 and 3)."""
    submission = SUBMISSION_OF_CASE.get(case)
    return None if submission is None else published_cpu_ms(submission, dataset, batch_size)
