"""Every MLflow name calo-ablate writes or reads, and the names no registry entry may take.

Writers (training, the study's cells, the report's parent run) and readers (the report, `generate`,
the benchmark) take every tag, param and metric name from here. Layout in MLflow:
- a study is one experiment (named as the study) with one parent run (tag calo_ablate.role=study)
  and one child run per cell (calo_ablate.role=cell, calo_ablate.cell=<ablation>/s<seed>); search
  trials are runs nested under their cell's run (role search_trial);
- `calo-ablate train` alone makes one run (role train) in the experiment train-<dataset>.
How runs are opened, found again and closed: runs/tracker.py.
"""

from __future__ import annotations

from calo_ablate.model.curves import TRAIN_CURVE_PREFIX
from calo_ablate.model.interface import TOTAL_LOSS

BASE = "base"  # the registry's reference entry: its cells are what every other row is compared with
# the noise floor's name: its queue unit, its cached samples (samples/reference-s<seed>.npz) and its report row;
# reserved: no registry entry may take a name of RESERVED_NAMES (its samples would overwrite the floor's)
REFERENCE = "reference"
RESERVED_NAMES = frozenset({REFERENCE})

# ---- tags -------------------------------------------------------------------------------------------
TAG_ROLE = "calo_ablate.role"
ROLE_STUDY, ROLE_CELL, ROLE_SEARCH_TRIAL, ROLE_TRAIN = "study", "cell", "search_trial", "train"
TAG_CELL = "calo_ablate.cell"
TAG_PARENT = "mlflow.parentRunId"
TAG_ERROR = "calo_ablate.error"
TAG_DESCRIPTION = "mlflow.note.content"  # a run's description, rendered as Markdown by the UI
# a model-training experiment: MLflow 3's UI then opens on its runs, not on the GenAI views
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
# every training or cell run
TAG_DATASET = "dataset"
TAG_DATA_SOURCE = "data_source"
TAG_DATA_CHECKSUMS = "data_checksums"  # JSON {file name: md5}
TAG_SEED = "seed"
TAG_GIT_REVISION = "git_revision"
TAG_TRAIN_KEY = "train_key"
TAG_MODEL_FAMILY = "model_family"  # the config's model.family
TAG_LOSS_NAMES = "loss_names"  # JSON list: the family's losses, logged as train/<name> and val/<name>
TAG_CURVE_METRICS = "curve_metrics"  # JSON list: the family's step-curve metrics (train_steps/<name>)
TAG_RUN_DIR = "run_dir"
TAG_CHECKPOINT = "checkpoint_path"
TAG_LAST_CHECKPOINT = "last_checkpoint_path"
TAG_PREPROCESSOR = "preprocessor_path"
# a study's cell runs
TAG_ABLATION = "ablation"
TAG_TITLE = "title"
TAG_WHY = "why"
TAG_PROFILE = "profile"
TAG_EVAL_KEY = "eval_key"
TAG_LOSS_COMPARABLE = "loss_comparable"
TAG_SHARES_TRAINING_OF = "shares_training_of"
TAG_SHARES_TRAINING_RUN = "shares_training_run"
TAG_SEARCH_PARAM = "search_param"
TAG_SEARCH_BEST_TRIAL = "search_best_trial"
TAG_PRUNED = "pruned"
TAG_INTERRUPTED = "interrupted"  # a search trial killed with its worker (replaced by a new trial)
# the study's parent run
TAG_STUDY = "study"
TAG_SEEDS = "seeds"
TAG_MACHINE = "machine"
TAG_ROWS = "rows"  # JSON [{"name": ..., "title": ...}] in registry order
TAG_CLI_SET = "cli_set"  # JSON list of --set options
TAG_WORKERS = "workers"
TAG_EVALUATE = "evaluate"  # "true" / "false"
TAG_SEEDS_BY_ROW = "seeds_by_row"  # JSON {ablation: seeds planned}; absent: every row has TAG_SEEDS
TAG_SEED_DESIGN = "seed_design"  # JSON {"first": n, "cap": n} of `--seeds auto`; absent: a fixed number
TAG_MARGINS = "margins"  # JSON {aspect: margin}: the registry's equivalence margins over the defaults
TAG_ESTIMATED_SECONDS = "estimated_seconds"  # the study's wall time estimated from the rates before the start
TAG_ESTIMATE_BASIS = "estimate_basis"  # the rates it came from: 'AMD EPYC, 2 cores, ..., 91 GFLOP/s matmul; ...'
MAX_TAG_CHARS = 8000  # MLflow 3 refuses longer tag values

# ---- metrics ------------------------------------------------------------------------------------------
# per epoch, from the module: train/<name> and val/<name> of every loss name of the run's family (tag
# loss_names); val/loss is every family's total; the step curve train_steps/<name> (tag curve_metrics)
VAL_PREFIX = "val/"
VAL_LOSS = f"{VAL_PREFIX}{TOTAL_LOSS}"
CURVE_PREFIX = TRAIN_CURVE_PREFIX
N_PARAMS = "n_params"
BEST_VAL_LOSS = "best_val_loss"
SECONDS_PER_EPOCH = "seconds_per_epoch"
EPOCHS = "epochs"
TRAIN_SECONDS = "train_seconds"
TEACHER_TRAIN_SECONDS = "teacher_train_seconds"  # a derived cell: its teacher chain's train_seconds, summed
EVAL_SECONDS = "eval_seconds"
SAMPLE_STEPS = "sample_steps"
GEN_MS_PREFIX = "gen_ms_per_shower_b"  # + batch size
SEARCH_TRIALS = "search_trials"
SEARCH_PRUNED = "search_pruned"
SEARCH_FAILED = "search_failed"
SEARCH_BEST_VALUE = "search_best_value"
# the parent run
REFERENCE_PREFIX = "refref/"  # + a metric of the reference-vs-reference noise floor (mean over its draws)
REFERENCE_STD_PREFIX = "refref_std/"  # + its std (ddof 1) over evaluate.noise_floor_samples draws, when > 1
REFERENCE_SECONDS = "reference_seconds"
INVOCATION_SECONDS = "invocation_seconds"  # one value per `ablate` call

# ---- artifacts ----------------------------------------------------------------------------------------
CONFIG_ARTIFACT = "config.yaml"
REPORT_ARTIFACTS = "report"


def val_losses(loss_names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The validation metrics of a family's losses: ('val/loss', ...); the first is the total."""
    return tuple(f"{VAL_PREFIX}{name}" for name in loss_names)
