"""What the report's stages on a study's cached samples share (the multiclass metric, study/multiclass.py;
the reference log-likelihood ratio, study/llr.py): their inputs, the key of those inputs, the cache file
in the study folder and the result's place on the parent run (run_stage).

Inputs: every row with a finished cell whose sample is cached in results/<study>/samples/, at the seeds
where every such row and the seed's reference sample have one; the classifier settings are the base's
`evaluate.classifier` (its cell's logged params), the readout threshold its `evaluate.threshold_mev`.
The key: a digest of the sample files' contents, the settings, the dataset, the threshold and what the
stage fixes (its version, inputs, seed); when it is unchanged the cached result is used.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
from mlflow.entities import Metric

from calo_ablate.atomic import atomic_write
from calo_ablate.config import ClassifierConfig
from calo_ablate.errors import DataError
from calo_ablate.report.table import StudyTable
from calo_ablate.runs.names import BASE, MAX_TAG_CHARS, REFERENCE, TAG_DATASET, TAG_EVALUATE
from calo_ablate.runs.resume import read_json_or_discard
from calo_ablate.runs.samples import SAMPLES_DIR, load_sample, sample_path
from calo_ablate.runs.tracker import Tracker, metric_name

__all__ = ["Stage", "StageInputs", "Summary", "classifier_settings", "pooled", "run_stage", "sample_pool",
           "stage_inputs"]

CLASSIFIER_PARAM = "evaluate.classifier."
Log = Callable[[str], None]


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


def sample_pool(table: StudyTable, folder: Path) -> tuple[dict[str, list[Path]], list[Path], list[int],
                                                                 dict[str, str]]:
    """(row name -> its sample files, the reference files, the seeds, row name -> why it is left out)."""
    have: dict[str, set[int]] = {}
    left_out = {}
    for row in table.rows:
        cached_seeds = {c.seed for c in row.finished() if sample_path(folder, row.name, c.seed).is_file()}
        if cached_seeds:
            have[row.name] = cached_seeds
        else:
            left_out[row.name] = "no finished cell with a cached sample on this machine"
    common = set.intersection(*have.values()) if have else set()
    seeds = sorted(s for s in common if sample_path(folder, REFERENCE, s).is_file())
    files = {name: [sample_path(folder, name, s) for s in seeds] for name in have} if seeds else {}
    return files, [sample_path(folder, REFERENCE, s) for s in seeds], seeds, left_out


def _digest(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@dataclass(frozen=True)
class StageInputs:
    """The samples and settings a stage computes from."""

    files: dict[str, list[Path]]  # row name -> its sample files, one per seed
    references: list[Path]  # one per seed
    seeds: list[int]
    left_out: dict[str, str]  # row name -> why it has no samples here
    settings: ClassifierConfig
    threshold_mev: float | None
    dataset: str
    compare: dict[str, str]  # row name -> the row its `compare:` names, where both have samples here

    def key(self, **fixed: object) -> str:
        """sha256 of the sample files' contents, the settings and `fixed` (the stage's version, inputs, seed)."""
        content = {"dataset": self.dataset, "threshold": self.threshold_mev, "settings": self.settings.model_dump(),
                   "rows": {n: [_digest(p) for p in ps] for n, ps in self.files.items()},
                   "reference": [_digest(p) for p in self.references], **fixed}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def stage_inputs(table: StudyTable, folder: Path, skipped: str) -> StageInputs | None:
    """The stage's inputs; None (with the reason in table.header[skipped], except for a study without
    evaluation) when there are no two rows with samples at a common seed or no classifier settings."""
    if table.header.get(TAG_EVALUATE) == "false":
        return None
    files, references, seeds, left_out = sample_pool(table, folder)
    if len(files) < 2:
        table.header[skipped] = (f"{len(files)} row(s) with cached samples at a common seed in "
                                 f"{folder / SAMPLES_DIR}, at least 2 needed")
        return None
    try:
        settings = classifier_settings(table)
    except DataError as err:
        table.header[skipped] = str(err)
        return None
    threshold = _param(_base_params(table).get("evaluate.threshold_mev", "null"))
    compare = {r.name: r.compare for r in table.rows if r.compare in files and r.name in files}
    return StageInputs(files, references, seeds, left_out, settings, threshold,
                       table.header.get(TAG_DATASET, ""), compare)


def pooled(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """The samples of `paths` concatenated: (incident energies (N,) MeV, showers (N, V) MeV)."""
    parts = [load_sample(p) for p in paths]
    return np.concatenate([e for e, _ in parts]), np.concatenate([s for _, s in parts])


class Summary(Protocol):
    """A stage's result: its wall time and its JSON."""

    seconds: float

    def to_json(self) -> str: ...


S = TypeVar("S", bound=Summary)


@dataclass(frozen=True)
class Stage(Generic[S]):
    """One stage: where its result goes and how it is computed."""

    tag: str  # the parent run's tag of its JSON (and table.header's key), the log lines' prefix
    skipped: str  # table.header's key of why it was not computed
    cache_file: str  # in the study folder
    fixed: dict[str, object]  # what the key holds besides the inputs: version, inputs, seed
    compute: Callable[[StageInputs, str], S]  # (inputs, key) -> result; DataError: not computed
    load: Callable[[dict[str, Any]], S]  # the cached JSON object -> result
    metrics: Callable[[S], dict[str, float]]  # the result's numbers logged to the parent run
    describe: Callable[[StageInputs], str]  # what computing means, for the log
    keyed: Callable[[StageInputs], dict[str, object]] = lambda _: {}  # what else of the inputs the key holds


def run_stage(table: StudyTable, folder: Path, tracker: Tracker, stage: Stage[S], log: Log) -> None:
    """Compute (or take from the cache) the stage's result and put it where the report reads it:
    table.header[stage.tag] now, the parent run's tag for later reports. Without inputs the parent's earlier
    result (if any) stays and table.header[stage.skipped] says why nothing was computed."""
    inputs = stage_inputs(table, folder, stage.skipped)
    if inputs is None:
        return
    key = inputs.key(**stage.fixed, **stage.keyed(inputs))
    cache = folder / stage.cache_file
    found = read_json_or_discard(cache, log)
    if found is not None and found.get("key") == key:
        summary = stage.load(found)
        log(f"{stage.tag}: unchanged samples and settings, the cached result of {cache} is used")
    else:
        log(f"{stage.tag}: {stage.describe(inputs)}")
        try:
            summary = stage.compute(inputs, key)
        except DataError as err:
            table.header[stage.skipped] = str(err)
            log(f"{stage.tag}: not computed: {err}")
            return
        with atomic_write(cache) as handle:
            handle.write(summary.to_json())
        log(f"{stage.tag}: {summary.seconds:.1f} s, written to {cache}")
    text = summary.to_json()
    if table.header.get(stage.tag) != text:
        _publish(tracker, table.parent_run_id, stage.tag, text, stage.metrics(summary), log)
    table.header[stage.tag] = text


def _publish(tracker: Tracker, parent_run_id: str, tag: str, text: str, metrics: dict[str, float],
             log: Log) -> None:
    """The result's JSON as the parent's tag `tag` and `metrics` at step 0 (for the MLflow UI; a newer value
    replaces an older)."""
    if len(text) <= MAX_TAG_CHARS:
        tracker.set_tags(parent_run_id, {tag: text})
    else:
        log(f"{tag}: the result ({len(text)} characters) is too long for an MLflow tag; reports read it from the "
            "cache file in the study folder")
    now = int(time.time() * 1000)
    tracker.client.log_batch(parent_run_id, metrics=[
        Metric(metric_name(k), float(v), now, 0) for k, v in metrics.items() if np.isfinite(v)])
