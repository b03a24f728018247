"""The multiclass stage of a study's report: one classifier over every row's cached samples.

Run by write_report before the table is written, so `calo-ablate report --study X` of a finished study
gains it. The pool (study/cached_stage.py): every row with a finished cell whose sample is cached in
results/<study>/samples/, at the seeds where every such row and the seed's reference sample have one (the
rows' samples of those seeds pooled per row; the seeds' reference samples pooled as the showers scored).
The classifier settings are the base's `evaluate.classifier` (its cell's logged params), the inputs
INPUTS, the seed SEED.

Cache: results/<study>/multiclass.json holds the result with its key, a digest of the sample files'
contents, the settings, inputs, seed and VERSION; when the key is unchanged nothing is trained. The
result goes to the parent run as the JSON tag report.multiclass.TAG (what the report reads) and as
metrics multiclass/<row> and multiclass_std/<row> (for the MLflow UI).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from calo_ablate.evaluation.multiclass import multiclass_scores
from calo_ablate.report.multiclass import SKIPPED, TAG, MulticlassSummary
from calo_ablate.report.table import StudyTable
from calo_ablate.runs.tracker import Tracker
from calo_ablate.study.cached_stage import Stage, StageInputs, pooled, run_stage

__all__ = ["CACHE_FILE", "INPUTS", "SEED", "VERSION", "add_multiclass"]

CACHE_FILE = "multiclass.json"
INPUTS = "cls-low"  # evaluation/multiclass.py: the voxels learn within a study's few classifier epochs
SEED = 0  # training t uses SEED + t
VERSION = 1  # a cached result of another version is computed again


def _compute(inputs: StageInputs, key: str) -> MulticlassSummary:
    started = time.perf_counter()
    result = multiclass_scores({n: pooled(ps) for n, ps in inputs.files.items()}, pooled(inputs.references),
                               inputs.dataset or "1-photons", inputs.settings, seed=SEED, inputs=INPUTS,
                               threshold_mev=inputs.threshold_mev)
    return MulticlassSummary(result.mean(), result.std(), len(result.rows), SEED, inputs.settings.trainings,
                             inputs.seeds, INPUTS, result.showers_per_class, result.reference_showers,
                             time.perf_counter() - started, key, inputs.left_out)


def _metrics(summary: MulticlassSummary) -> dict[str, float]:
    return {**{f"{TAG}/{n}": v for n, v in summary.means.items()},
            **{f"{TAG}_std/{n}": v for n, v in summary.stds.items()}}


def _describe(inputs: StageInputs) -> str:
    return (f"{inputs.settings.trainings} classifier training(s) over {len(inputs.files)} rows "
            f"(seeds {', '.join(map(str, inputs.seeds))})")


STAGE = Stage(TAG, SKIPPED, CACHE_FILE, {"version": VERSION, "inputs": INPUTS, "seed": SEED}, _compute,
              lambda found: MulticlassSummary(**found), _metrics, _describe)


def add_multiclass(table: StudyTable, folder: Path, tracker: Tracker, log: Callable[[str], None] = print) -> None:
    """Compute (or take from the cache) the study's multiclass scores and put them where the report reads
    them: table.header[TAG] now, the parent run's tag TAG for later reports (study/cached_stage.run_stage).
    Without a pool of two rows the parent's earlier result (if any) stays and table.header[SKIPPED] says why
    nothing was computed."""
    run_stage(table, folder, tracker, STAGE, log)
