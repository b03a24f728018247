"""The reference log-likelihood ratio stage of a study's report: each row's samples against the base's.

Run by write_report with the multiclass stage, on the same inputs (study/cached_stage.py: the rows' and
the reference's cached samples at the common seeds, the base's classifier settings). For every row but
the base and every seed s: evaluation/llr.py's replicates of the row's, the base's and the reference
sample of seed s, in settings.trainings folds, classifier seed SEED + s x folds (+ t for fold t; every
row uses the same folds and classifier seeds at a study seed). A row with a registry `compare:` is also
compared with the row it names, in the same way (the named row in the base's place). report/llr.py decides
the verdicts.

Cache: results/<study>/llr.json holds the result with its key (the sample files' contents, the settings,
inputs, seed and VERSION); when the key is unchanged nothing is trained. The result goes to the parent
run as the JSON tag report.llr.TAG (what the report reads) and as metrics llr/<row> (the mean in nats).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from calo_ablate.errors import DataError
from calo_ablate.evaluation.llr import Sample, llr_replicates
from calo_ablate.report.llr import SKIPPED, TAG, LlrSummary
from calo_ablate.report.table import StudyTable
from calo_ablate.runs.names import BASE
from calo_ablate.runs.samples import load_sample
from calo_ablate.runs.tracker import Tracker
from calo_ablate.study.cached_stage import Stage, StageInputs, run_stage

__all__ = ["CACHE_FILE", "INPUTS", "SEED", "VERSION", "add_llr"]

CACHE_FILE = "llr.json"
INPUTS = "cls-low"  # evaluation/llr.py: the multiclass metric's classifier and inputs
SEED = 0
VERSION = 1  # a cached result of another version is computed again


def _deltas(inputs: StageInputs, row: Sample, other: Sample, reference: Sample, seed: int) -> list[float]:
    """The replicates of `row` against `other` (the base, or the row its compare: names) at one study seed."""
    return [float(d) for d in llr_replicates(
        row, other, reference, inputs.dataset or "1-photons", inputs.settings,
        seed=SEED + seed * inputs.settings.trainings, threshold_mev=inputs.threshold_mev)]


def _compute(inputs: StageInputs, key: str) -> LlrSummary:
    if BASE not in inputs.files:
        msg = "the base has no cached sample at the common seeds"
        raise DataError(msg)
    started = time.perf_counter()
    replicates: dict[str, list[float]] = {name: [] for name in inputs.files if name != BASE}
    pairs: dict[str, list[float]] = {name: [] for name in inputs.compare}
    size = 0
    for i, seed in enumerate(inputs.seeds):
        reference = load_sample(inputs.references[i])
        samples = {name: load_sample(paths[i]) for name, paths in inputs.files.items()}  # each file read once
        size = len(reference[0]) // inputs.settings.trainings
        for name, values in replicates.items():
            values += _deltas(inputs, samples[name], samples[BASE], reference, seed)
        for name, values in pairs.items():
            values += _deltas(inputs, samples[name], samples[inputs.compare[name]], reference, seed)
    return LlrSummary(replicates, inputs.seeds, inputs.settings.trainings, SEED, INPUTS, size,
                      time.perf_counter() - started, key, inputs.left_out, pairs, dict(inputs.compare))


def _describe(inputs: StageInputs) -> str:
    pairs = f" and of {len(inputs.compare)} rows against the row of their compare:" if inputs.compare else ""
    return (f"{inputs.settings.trainings} fold(s) x {len(inputs.seeds)} seed(s) for each of "
            f"{len(inputs.files) - 1} rows against the base{pairs}")


def _metrics(summary: LlrSummary) -> dict[str, float]:
    """llr/<row> (against the base) and llr/<row>_vs_<other> (against its compare: row): the means in nats."""
    means = {f"{TAG}/{n}": float(np.mean(v)) for n, v in summary.replicates.items() if v}
    means.update({f"{TAG}/{n}_vs_{summary.pair_of[n]}": float(np.mean(v)) for n, v in summary.pairs.items() if v})
    return means


STAGE = Stage(TAG, SKIPPED, CACHE_FILE, {"version": VERSION, "inputs": INPUTS, "seed": SEED}, _compute,
              lambda found: LlrSummary(**found), _metrics, _describe,
              lambda inputs: {"pairs": inputs.compare} if inputs.compare else {})


def add_llr(table: StudyTable, folder: Path, tracker: Tracker, log: Callable[[str], None] = print) -> None:
    """Compute (or take from the cache) every row's replicates and put them where the report reads them:
    table.header[TAG] now, the parent run's tag TAG for later reports (study/cached_stage.run_stage)."""
    run_stage(table, folder, tracker, STAGE, log)
