"""table.md of a fixed, hand-made study compared byte for byte with tests/report/golden/table.md: the one test of
the report's whole rendering (header, table, legend, Findings, Pareto, Expectations, Stability, what was not
measured). The other report tests assert on the table's data.

A change of the rendering that is intended: rewrite the file with
    CALO_ABLATE_UPDATE_GOLDEN=1 .venv/bin/pytest tests/report/test_golden.py
and review `git diff tests/report/golden/table.md` before committing it."""

from __future__ import annotations

import difflib
import json
import os
from datetime import UTC, datetime
from pathlib import Path

from calo_ablate.report import llr
from calo_ablate.report.findings import sections
from calo_ablate.report.multiclass import TAG, MulticlassSummary
from calo_ablate.report.pareto import quality_columns
from calo_ablate.report.table import CellResult, Row, StudyTable, markdown
from calo_ablate.report.verdicts import table_marks
from calo_ablate.runs.names import (
    TAG_CLI_SET,
    TAG_DATA_CHECKSUMS,
    TAG_DATA_SOURCE,
    TAG_DATASET,
    TAG_ERROR,
    TAG_ESTIMATE_BASIS,
    TAG_ESTIMATED_SECONDS,
    TAG_EVALUATE,
    TAG_GIT_REVISION,
    TAG_LOSS_COMPARABLE,
    TAG_LOSS_NAMES,
    TAG_MACHINE,
    TAG_MODEL_FAMILY,
    TAG_PROFILE,
    TAG_SHARES_TRAINING_OF,
    TAG_SHARES_TRAINING_RUN,
    TAG_STUDY,
    TAG_WORKERS,
)

GOLDEN = Path(__file__).parent / "golden" / "table.md"
UPDATE_ENV = "CALO_ABLATE_UPDATE_GOLDEN"

SEEDS = 3
JITTER = (-0.01, 0.0, 0.01)  # seed-to-seed variation shared by every row (common random numbers)
LOSS_NAMES = ["loss", "voxel_loss", "layer_loss"]
LOSSES = [("val/loss", "Loss"), ("val/voxel_loss", "Voxel Loss"), ("val/layer_loss", "Layer Loss")]
COLUMNS = [("n_params", "Parameters"), ("seconds_per_epoch", "s / epoch"),
           ("gen_ms_per_shower_b100", "Gen. ms / shower (batch 100)"), ("sep_mean", "Mean sep."),
           ("auc_low", "AUC low"), ("auc_high", "AUC high"), ("fpd", "FPD x1e3")]
BASE_PARAMS = {"data.max_train_events": "2000", "train.max_epochs": "3", "train.early_stopping_patience": "null",
               "sample.steps": "20", "evaluate.n_events": "500", "model.init": "default",
               "train.lr_horizon_steps": "null", "train.ema_start": "10"}
HEADER = {TAG_STUDY: "golden", TAG_DATASET: "1-photons", TAG_DATA_SOURCE: "synthetic",
          TAG_DATA_CHECKSUMS: json.dumps({"dataset_1_photons_1.hdf5": "0123456789abcdef0123456789abcdef"}),
          TAG_PROFILE: "quick", TAG_CLI_SET: json.dumps(["trainer.threads=1"]),
          TAG_WORKERS: "2", TAG_MACHINE: "golden test machine (2 cores)",
          TAG_GIT_REVISION: "0123abc", TAG_EVALUATE: "true", TAG_ESTIMATED_SECONDS: "900",
          TAG_ESTIMATE_BASIS: "golden CPU, 2 cores, 1 thread per worker; rates cached 2026-01-01"}
REFERENCE = {"sep_mean": 0.02, "auc_low": 0.51, "auc_high": 0.5, "fpd": 0.5}
MULTICLASS = MulticlassSummary(
    means={"base": -1.2, "higher_lr": -1.0, "fewer_steps": -2.1, "less_noise": -1.5, "wider": -1.25, "wider_lr": -1.1},
    stds={"base": 0.05, "higher_lr": 0.04, "fewer_steps": 0.06, "less_noise": 0.05, "wider": 0.03, "wider_lr": 0.04},
    n_classes=6, seed=7, trainings=3, seeds=[0, 1, 2], inputs="cls-low", showers_per_class=300, reference_showers=300,
    seconds=42.0, key="golden", left_out={"broken": "no finished cell with a cached sample on this machine"})
# the reference log-likelihood ratio: replicates chosen so that the verdicts are clear (not at rounding's mercy)
LLR = llr.LlrSummary(
    replicates={"higher_lr": [0.5, 0.6, 0.4, 0.55, 0.45, 0.5, 0.52, 0.48, 0.5],
                "fewer_steps": [-3.0, -2.5, -3.5, -2.8, -3.2, -3.1, -2.9, -3.0, -3.0],
                "less_noise": [0.01, -0.01, 0.0, 0.005, -0.005, 0.0, 0.01, -0.01, 0.0],
                "wider": [0.3, -0.4, 0.1, -0.2, 0.5, -0.3, 0.2, 0.0, -0.1],
                "wider_lr": [0.2, 0.25, 0.15, 0.22, 0.18, 0.2, 0.21, 0.19, 0.2]},
    seeds=[0, 1, 2], folds=3, seed=0, inputs="cls-low", showers_per_fold=100, seconds=12.0, key="golden",
    left_out={"broken": "no finished cell with a cached sample on this machine"},
    pairs={"wider_lr": [0.1, -0.1, 0.3, -0.2, 0.0, 0.2, -0.3, 0.1, -0.1]}, pair_of={"wider_lr": "wider"})


def _metrics(seed: int, loss: float, wobble: tuple[float, float, float] = (0.0, 0.0, 0.0), *, seconds: float = 2.0,
             gen_ms: float = 5.0, auc: float = 0.7, params: int = 120_000) -> dict[str, float]:
    """One cell's metrics: the row's values, the seed's JITTER and the row's own noise (wobble, per seed)."""
    j, w = JITTER[seed], wobble[seed]
    total = loss + j + w
    return {"val/loss": total, "val/voxel_loss": 0.6 * total, "val/layer_loss": 0.4 * total, "n_params": params,
            "seconds_per_epoch": seconds + j + w, "gen_ms_per_shower_b100": gen_ms + j - w,
            "sep_mean": auc / 4 + (j + w) / 10, "auc_low": auc + (j - w) / 10, "auc_high": auc - 0.05 + (j + w) / 10,
            "fpd": 20 * auc + j - w}


def _cells(name: str, per_seed: list[dict[str, float]], **tags: str) -> list[CellResult]:
    common = {TAG_LOSS_COMPARABLE: "true", TAG_MODEL_FAMILY: "caloscore_v2",
              TAG_LOSS_NAMES: json.dumps(LOSS_NAMES)}
    return [CellResult(seed, "FINISHED", metrics, {**common, **tags}, f"{name}-s{seed}", dict(BASE_PARAMS))
            for seed, metrics in enumerate(per_seed)]


def _history(values: list[float]) -> list[tuple[int, float]]:
    return [(15 * (i + 1) - 1, v) for i, v in enumerate(values)]  # validated after steps 15, 30, 45, 60


def golden_table() -> StudyTable:
    """Base; a lower loss; a row sharing the base's training (faster, worse samples); a row whose loss is not
    comparable; an undecided row; a row also compared with another (`compare:`); a row whose one run failed;
    expectations held, failed and undecided; an estimate of the wall time made before the start."""
    base = [_metrics(s, 1.0) for s in range(SEEDS)]
    fewer = [_metrics(s, 1.0, (0.004, -0.003, 0.001), gen_ms=2.5, auc=0.8) for s in range(SEEDS)]
    rows = [
        Row("base", "Base", _cells("base", base)),
        Row("higher_lr", "Increased learning rate",
            _cells("higher_lr", [_metrics(s, 0.9, (0.002, -0.001, 0.0)) for s in range(SEEDS)]),
            {"loss": "lower", "s_per_epoch": "same"}),
        Row("fewer_steps", "Fewer sampling steps",  # the base's training: its losses and time per epoch
            _cells("fewer_steps", [{**f, **{k: b[k] for k in ("val/loss", "val/voxel_loss", "val/layer_loss",
                                                               "seconds_per_epoch")}}
                                   for f, b in zip(fewer, base, strict=True)],
                   **{TAG_SHARES_TRAINING_OF: "base"}),
            {"gen_time": "lower", "quality": "same"}),
        Row("less_noise", "Decrease noise",
            _cells("less_noise", [_metrics(s, 1.5, (-0.003, 0.004, 0.002), auc=0.68) for s in range(SEEDS)],
                   **{TAG_LOSS_COMPARABLE: "false"}),
            {"loss": "higher"}),
        Row("wider", "Wider network",
            _cells("wider", [_metrics(s, 1.0, (0.03, -0.02, 0.005), seconds=3.1, params=480_000)
                             for s in range(SEEDS)])),
        Row("wider_lr", "Wider network, higher learning rate",
            _cells("wider_lr", [_metrics(s, 0.92, (0.02, -0.01, 0.004), seconds=3.1, params=480_000)
                                for s in range(SEEDS)]), compare="wider"),
        Row("broken", "Broken on purpose",
            [CellResult(0, "FAILED", {}, {TAG_ERROR: "TrainingError: non-finite training loss"}, "broken-s0"),
             CellResult(1, "not run", {}, {}, None), CellResult(2, "not run", {}, {}, None)]),
    ]
    for cell in rows[2].cells:  # fewer_steps
        cell.tags[TAG_SHARES_TRAINING_RUN] = f"base-s{cell.seed}"
    curves = {"base": [2.0, 1.5, 1.2, 1.0], "higher_lr": [1.6, 1.2, 1.0, 0.9], "fewer_steps": [2.0, 1.5, 1.2, 1.0],
              "wider": [2.2, 1.4, 1.1, 1.0], "wider_lr": [1.8, 1.3, 1.0, 0.92]}
    histories = {name: {"val/loss": [_history(v)] * SEEDS} for name, v in curves.items()}
    header = {**HEADER, TAG: MULTICLASS.to_json(), llr.TAG: LLR.to_json()}
    return StudyTable("golden", "0123456789abcdef0123456789abcdef", header, SEEDS, rows, REFERENCE, COLUMNS,
                      754.0, histories, LOSSES, {"caloscore_v2": LOSS_NAMES}, {}, None, {"auc_low": 0.01},
                      written=datetime(2026, 1, 2, 3, 4, tzinfo=UTC))


def test_table_md_matches_the_golden_file() -> None:
    table = golden_table()
    text = markdown(table, sections(table), table_marks(table), quality_columns(table))
    if os.environ.get(UPDATE_ENV) == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_bytes(text.encode())
    expected = GOLDEN.read_bytes().decode()
    diff = "".join(difflib.unified_diff(expected.splitlines(keepends=True), text.splitlines(keepends=True),
                                        str(GOLDEN), "rendered now"))
    assert text == expected, (
        f"table.md's rendering changed. If that is intended, rewrite the golden file with\n"
        f"    {UPDATE_ENV}=1 .venv/bin/pytest tests/report/test_golden.py\n"
        f"and review `git diff tests/report/golden/table.md` before committing it.\n{diff}")
