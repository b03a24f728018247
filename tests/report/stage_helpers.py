"""What the tests of the report's stages on cached samples share (the multiclass metric, the reference
log-likelihood ratio): a small classifier as logged params, rows of finished cells, a table, and samples
written where the stages find them (a seed's samples share their incident energies, as a study's do)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from calo_ablate.data.synthetic import incident_energies, simulate
from calo_ablate.report.table import CellResult, Row, StudyTable
from calo_ablate.runs.names import REFERENCE
from calo_ablate.runs.samples import sample_path, save_sample
from calo_ablate.runs.tracker import Tracker, default_tracking_uri

CLASSIFIER = {"evaluate.classifier.hidden": "32", "evaluate.classifier.num_hidden_layers": "2",
              "evaluate.classifier.epochs": "8", "evaluate.classifier.lr": "0.002",
              "evaluate.classifier.batch_size": "100", "evaluate.classifier.trainings": "2",
              "evaluate.classifier.standardise_inputs": "false", "evaluate.threshold_mev": "null"}
HEADER = {"dataset": "1-photons", "data_source": "synthetic", "profile": "smoke", "evaluate": "true"}


def rows(names: list[str], seeds: int = 2) -> list[Row]:
    return [Row(n, n.title(), [CellResult(s, "FINISHED", {}, {}, f"{n}{s}", dict(CLASSIFIER)) for s in range(seeds)])
            for n in names]


def table(study_rows: list[Row], header: dict[str, str], parent: str = "parent") -> StudyTable:
    return StudyTable("t", parent, header, 2, study_rows, {}, [], 1.0)


def write_sample(folder: Path, entry: str, seed: int, scale: float = 1.0, n: int = 300) -> None:
    """A synthetic photon sample of `n` showers, voxels x `scale`; the seed alone draws the incident energies."""
    energies = incident_energies("1-photons", n, np.random.default_rng(seed))
    rng = np.random.default_rng(100 * seed + len(entry))
    save_sample(sample_path(folder, entry, seed), energies, scale * simulate("1-photons", energies, rng))


def study_parent(folder: Path) -> tuple[Tracker, str]:
    """A tracker on a store in `folder` and the parent run of a study 't'."""
    tracker = Tracker(default_tracking_uri(folder))
    tracker.ensure_experiment("t")
    return tracker, tracker.find_or_create_parent("t", {})


def write_base_and_scaled(folder: Path, seeds: tuple[int, ...] = (0, 1), scale: float = 1.3) -> None:
    """The reference, the base and a row 'scaled' (voxels x `scale`) at each of `seeds`."""
    for seed in seeds:
        write_sample(folder, REFERENCE, seed)
        write_sample(folder, "base", seed)
        write_sample(folder, "scaled", seed, scale=scale)
