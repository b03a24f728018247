"""Where a run comes from: code version, machine, resolved config and data, as MLflow tags and params."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch

from calo_ablate.config import Config, read_values, train_key
from calo_ablate.data.source import DataFiles
from calo_ablate.model.families import family_class
from calo_ablate.model.precision import cpu_model
from calo_ablate.runs.names import (
    TAG_ABLATION,
    TAG_CURVE_METRICS,
    TAG_DATA_CHECKSUMS,
    TAG_DATA_SOURCE,
    TAG_DATASET,
    TAG_EVAL_KEY,
    TAG_GIT_REVISION,
    TAG_LOSS_COMPARABLE,
    TAG_LOSS_NAMES,
    TAG_MODEL_FAMILY,
    TAG_PROFILE,
    TAG_SEED,
    TAG_SHARES_TRAINING_OF,
    TAG_TITLE,
    TAG_TRAIN_KEY,
    TAG_WHY,
)


@dataclass(frozen=True)
class CellTags:
    """What a study cell adds to its run's tags."""

    ablation: str
    title: str
    why: str
    profile: str
    loss_comparable: bool
    eval_key: str | None  # None for a search cell: its keys are its best trial's
    shares_training_of: str | None = None


def git_revision() -> str:
    """`git rev-parse HEAD` of the package's checkout with '-dirty' when tracked files changed; 'unknown'
    outside git."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if status else sha


@cache
def code_digest() -> str:
    """16 hex digits over the package's own source files (names and contents): equal digests run the same
    code, whatever else changed in the checkout (documents, results) or whether it is a git checkout.
    Read once per process, so it stays the digest of the code the process loaded (a forked worker has
    its parent's, whatever was edited since)."""
    package = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        h.update(str(path.relative_to(package)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def machine_description() -> str:
    """'<cpu model>, <n> cores, host <name>[, GPU: <name> x n]' of this machine."""
    cpu = cpu_model()
    text = f"{cpu}, {os.cpu_count()} cores, host {socket.gethostname()}"
    if torch.cuda.is_available():
        text += f", GPU: {torch.cuda.get_device_name(0)} x {torch.cuda.device_count()}"
    return text


def config_params(config: Config) -> dict[str, str]:
    """The resolved config as flat MLflow params: dotted keys, JSON-encoded values (strings as is), every
    key its family reads (a shared key it does not read is left out)."""
    flat = read_values(config)
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in sorted(flat.items())}


def run_tags(config: Config, files: DataFiles, cell: CellTags | None = None) -> dict[str, str]:
    """The tags of a training or cell run: data, seed, model family and its losses, code version, keys;
    plus the cell's when given."""
    family = family_class(config.model.family)
    tags = {
        TAG_DATASET: config.data.dataset,
        TAG_MODEL_FAMILY: config.model.family,
        TAG_LOSS_NAMES: json.dumps(list(family.loss_names)),
        TAG_CURVE_METRICS: json.dumps(list(family.curve_metrics())),
        TAG_DATA_SOURCE: str(files.source),
        TAG_DATA_CHECKSUMS: json.dumps(dict(sorted(files.checksums.items()))),
        TAG_SEED: str(config.train.seed),
        TAG_GIT_REVISION: git_revision(),
        TAG_TRAIN_KEY: train_key(config, files.checksums),
    }
    if cell is not None:
        tags.update({TAG_ABLATION: cell.ablation, TAG_TITLE: cell.title, TAG_WHY: cell.why,
                     TAG_PROFILE: cell.profile, TAG_LOSS_COMPARABLE: str(cell.loss_comparable).lower()})
        if cell.eval_key is None:
            del tags[TAG_TRAIN_KEY]
        else:
            tags[TAG_EVAL_KEY] = cell.eval_key
        if cell.shares_training_of is not None:
            tags[TAG_SHARES_TRAINING_OF] = cell.shares_training_of
    return tags
