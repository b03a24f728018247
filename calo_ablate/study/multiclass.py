"""The multiclass stage of a study's report: one classifier over every row's cached samples.

Run by write_report before the table is written, so `calo-ablate report --study X` of a finished study
gains it. The pool: every row with a finished cell whose sample is cached in results/<study>/samples/,
at the seeds where every such row and the seed's reference sample have one (the rows' samples of those
seeds pooled per row; the seeds' reference samples pooled as the showers scored). The classifier settings
are the base's `evaluate.classifier` (its cell's logged params), the inputs INPUTS, the seed SEED.

Cache: results/<study>/multiclass.json holds the result with its key, a digest of the sample files'
contents, the settings, inputs, seed and VERSION; when the key is unchanged nothing is trained. The
result goes to the parent run as the JSON tag report.multiclass.TAG (what the report reads) and as
metrics multiclass/<row> and multiclass_std/<row> (for the MLflow UI).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.entities import Metric

from calo_ablate.atomic import atomic_write
from calo_ablate.config import ClassifierConfig
from calo_ablate.errors import DataError
from calo_ablate.evaluation.multiclass import multiclass_scores
from calo_ablate.report.multiclass import SKIPPED, TAG, MulticlassSummary
from calo_ablate.report.table import StudyTable
from calo_ablate.runs import record
from calo_ablate.runs.record import BASE
from calo_ablate.runs.resume import read_json_or_discard

__all__ = ["CACHE_FILE", "INPUTS", "SEED", "VERSION", "add_multiclass", "multiclass_pool"]

CACHE_FILE = "multiclass.json"
INPUTS = "cls-low"  # evaluation/multiclass.py: the voxels learn within a study's few classifier epochs
SEED = 0  # training t uses SEED + t
VERSION = 1  # a cached result of another version is computed again
CLASSIFIER_PARAM = "evaluate.classifier."


def _param(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def _base_params(table: StudyTable) -> dict[str, str]:
    rows = sorted(table.rows, key=lambda r: r.name != BASE)
    return next((c.params for r in rows for c in r.finished() if c.params), {})


def classifier_settings(table: StudyTable) -> ClassifierConfig:
    """The base cell's evaluate.classifier settings (its logged params)."""
    params = _base_params(table)
    found = {k[len(CLASSIFIER_PARAM):]: _param(v) for k, v in params.items() if k.startswith(CLASSIFIER_PARAM)}
    if not found:
        msg = f"no logged {CLASSIFIER_PARAM}* params on the base's cells of study '{table.study}'"
        raise DataError(msg)
    return ClassifierConfig(**{k: v for k, v in found.items() if k in ClassifierConfig.model_fields})


def multiclass_pool(table: StudyTable, folder: Path) -> tuple[dict[str, list[Path]], list[Path], list[int],
                                                                 dict[str, str]]:
    """(row name -> its sample files, the reference files, the seeds, row name -> why it is left out)."""
    have: dict[str, set[int]] = {}
    left_out = {}
    for row in table.rows:
        cached = {c.seed for c in row.finished() if record.sample_path(folder, row.name, c.seed).is_file()}
        if cached:
            have[row.name] = cached
        else:
            left_out[row.name] = "no finished cell with a cached sample on this machine"
    common = set.intersection(*have.values()) if have else set()
    seeds = sorted(s for s in common if record.sample_path(folder, record.REFERENCE, s).is_file())
    files = {name: [record.sample_path(folder, name, s) for s in seeds] for name in have} if seeds else {}
    return files, [record.sample_path(folder, record.REFERENCE, s) for s in seeds], seeds, left_out


def _digest(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _key(files: dict[str, list[Path]], references: list[Path], settings: ClassifierConfig, dataset: str,
         threshold: float | None) -> str:
    content = {"version": VERSION, "dataset": dataset, "inputs": INPUTS, "seed": SEED, "threshold": threshold,
               "settings": settings.model_dump(), "rows": {n: [_digest(p) for p in ps] for n, ps in files.items()},
               "reference": [_digest(p) for p in references]}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _pooled(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    parts = [record.load_sample(p) for p in paths]
    return np.concatenate([e for e, _ in parts]), np.concatenate([s for _, s in parts])


def _compute(table: StudyTable, files: dict[str, list[Path]], references: list[Path], seeds: list[int],
             settings: ClassifierConfig, threshold: float | None, key: str,
             left_out: dict[str, str]) -> MulticlassSummary:
    started = time.perf_counter()
    result = multiclass_scores({n: _pooled(ps) for n, ps in files.items()}, _pooled(references),
                               table.header.get(record.TAG_DATASET, "1-photons"), settings, seed=SEED,
                               inputs=INPUTS, threshold_mev=threshold)
    return MulticlassSummary(result.mean(), result.std(), len(result.rows), SEED, settings.trainings, seeds,
                             INPUTS, result.showers_per_class, result.reference_showers,
                             time.perf_counter() - started, key, left_out)


def add_multiclass(table: StudyTable, folder: Path, tracking_uri: str, log: Callable[[str], None] = print) -> None:
    """Compute (or take from the cache) the study's multiclass scores and put them where the report reads
    them: table.header[TAG] now, the parent run's tag TAG for later reports. Without a pool of two rows the
    parent's earlier result (if any) stays and table.header[SKIPPED] says why nothing was computed."""
    if table.header.get(record.TAG_EVALUATE) == "false":
        return
    files, references, seeds, left_out = multiclass_pool(table, folder)
    if len(files) < 2:
        table.header[SKIPPED] = (f"{len(files)} row(s) with cached samples at a common seed in "
                                 f"{folder / record.SAMPLES_DIR}, at least 2 needed")
        return
    try:
        settings = classifier_settings(table)
    except DataError as err:
        table.header[SKIPPED] = str(err)
        return
    threshold = _param(_base_params(table).get("evaluate.threshold_mev", "null"))
    key = _key(files, references, settings, table.header.get(record.TAG_DATASET, ""), threshold)
    cache = folder / CACHE_FILE
    cached = read_json_or_discard(cache, log)
    if cached is not None and cached.get("key") == key:
        summary = MulticlassSummary(**cached)
        log(f"multiclass: unchanged samples and settings, the cached result of {cache} is used")
    else:
        log(f"multiclass: {settings.trainings} classifier training(s) over {len(files)} rows "
            f"(seeds {', '.join(map(str, seeds))})")
        try:
            summary = _compute(table, files, references, seeds, settings, threshold, key, left_out)
        except DataError as err:
            table.header[SKIPPED] = str(err)
            log(f"multiclass: not computed: {err}")
            return
        with atomic_write(cache) as handle:
            handle.write(summary.to_json())
        log(f"multiclass: {summary.seconds:.1f} s, written to {cache}")
    text = summary.to_json()
    if table.header.get(TAG) != text:
        _publish(tracking_uri, table.parent_run_id, summary, log)
    table.header[TAG] = text


def _publish(tracking_uri: str, parent_run_id: str, summary: MulticlassSummary, log: Callable[[str], None]) -> None:
    """The summary as the parent's tag and its scores as metrics (a newer value at step 0 replaces an older)."""
    text = summary.to_json()
    if len(text) <= record.MAX_TAG_CHARS:
        record.set_tags(tracking_uri, parent_run_id, {TAG: text})
    else:
        log(f"multiclass: the result ({len(text)} characters) is too long for an MLflow tag; reports read it "
            f"from {CACHE_FILE} in the study folder")
    now = int(time.time() * 1000)
    values = {**{f"{TAG}/{n}": v for n, v in summary.means.items()},
              **{f"{TAG}_std/{n}": v for n, v in summary.stds.items() if np.isfinite(v)}}
    record.client(tracking_uri).log_batch(parent_run_id, metrics=[
        Metric(record.metric_name(k), float(v), now, 0) for k, v in values.items()])
