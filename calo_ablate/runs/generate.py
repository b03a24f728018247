"""Showers from a trained run: rebuild it from MLflow (config, weights, preprocessor) and sample.

`load_run` finds a run's config artifact, best checkpoint and fitted preprocessor and rebuilds the
module of its model family (model.family); `generate_showers` draws one shower per incident energy with
the family's sampler at the family's sampling steps of the run's config (sample.steps x
sample.steps_factor, or none for a one-pass family), in MeV.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import mlflow.artifacts
import numpy as np
import torch
import yaml
from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR
from mlflow.exceptions import MlflowException

from calo_ablate.config import Config
from calo_ablate.data.datamodule import CaloDataModule
from calo_ablate.data.preprocessing import Preprocessor
from calo_ablate.data.source import ensure_data
from calo_ablate.errors import CaloAblateError, ConfigError
from calo_ablate.model.families import load_family
from calo_ablate.model.interface import ModelFamily
from calo_ablate.model.precision import check_precision
from calo_ablate.runs.devices import resolve_device
from calo_ablate.runs.names import CONFIG_ARTIFACT, TAG_CHECKPOINT, TAG_PREPROCESSOR, TAG_RUN_DIR
from calo_ablate.runs.tracker import Tracker
from calo_ablate.runs.train import CONFIG_FILE, LAST_CHECKPOINT, PREPROCESSOR_FILE

__all__ = ["TrainedModel", "generate_showers", "load_run"]


@dataclass
class TrainedModel:
    """A trained run ready to sample: its family, module (eval mode, with the weights the family samples with),
    preprocessor, config."""

    run_id: str
    module: pl.LightningModule
    preprocessor: Preprocessor
    config: Config
    checkpoint_path: Path
    family: ModelFamily


def _run_config(tracker: Tracker, run_id: str, run_dir: Path | None) -> Config:
    """The run's resolved config: its config.yaml artifact, else the copy in its run folder."""
    os.environ[MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name] = "false"  # one small file: no bar
    text = None
    try:
        text = mlflow.artifacts.load_text(f"{tracker.client.get_run(run_id).info.artifact_uri}/{CONFIG_ARTIFACT}")
    except (MlflowException, OSError):
        if run_dir is not None and (run_dir / CONFIG_FILE).is_file():
            text = (run_dir / CONFIG_FILE).read_text()
    if text is None:
        msg = (f"run {run_id}: no {CONFIG_ARTIFACT} artifact and no run folder copy ({run_dir}); "
               "cannot rebuild its model")
        raise CaloAblateError(msg)
    try:
        return Config.model_validate(yaml.safe_load(text))
    except ValueError as err:
        msg = f"run {run_id}: its {CONFIG_ARTIFACT} does not fit this version's config schema ({err})"
        raise ConfigError(msg) from err


def _checkpoint(run_id: str, tags: dict[str, str], run_dir: Path | None) -> Path:
    """The run's best checkpoint (tag), else its last.ckpt (an unfinished run), else an error."""
    if TAG_CHECKPOINT in tags and Path(tags[TAG_CHECKPOINT]).is_file():
        return Path(tags[TAG_CHECKPOINT])
    if run_dir is not None and (run_dir / LAST_CHECKPOINT).is_file():
        print(f"calo-ablate: run {run_id} has not finished; using its latest checkpoint "
              f"{run_dir / LAST_CHECKPOINT}", file=sys.stderr)
        return run_dir / LAST_CHECKPOINT
    msg = (f"run {run_id}: no checkpoint found (tag {TAG_CHECKPOINT}={tags.get(TAG_CHECKPOINT)!r}, "
           f"run folder {run_dir}); train it first")
    raise CaloAblateError(msg)


def _preprocessor(config: Config, family: ModelFamily, tags: dict[str, str], run_dir: Path | None) -> Preprocessor:
    """The preprocessor saved with the run, else the one of the data module's cache (refitted if missing)."""
    preprocessing = family.preprocessing()
    candidates = [tags.get(TAG_PREPROCESSOR)] + ([str(run_dir / PREPROCESSOR_FILE)] if run_dir else [])
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return preprocessing.load(candidate)
    files = ensure_data(config.data.dataset, config.data.data_dir)
    return CaloDataModule(config, files, Path(config.data.data_dir) / "cache", preprocessing).preprocessor


def load_run(run_id: str, tracker: Tracker, device: str | torch.device | None = None) -> TrainedModel:
    """Rebuild a trained run from MLflow: config artifact, its family's module from the best checkpoint
    (with whatever weights the module keeps for sampling), saved preprocessor. device: where the module goes (default: the
    run's trainer.accelerator, as training)."""
    try:
        run = tracker.client.get_run(run_id)
    except MlflowException as err:
        msg = f"run {run_id!r} not found in the tracking store {tracker.uri}"
        raise CaloAblateError(msg) from err
    tags = run.data.tags
    run_dir = Path(tags[TAG_RUN_DIR]) if TAG_RUN_DIR in tags else None
    config = _run_config(tracker, run_id, run_dir)
    checkpoint_path = _checkpoint(run_id, tags, run_dir)
    family = load_family(config)
    module = family.module()
    state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)["state_dict"]
    module.load_state_dict(state)
    device = torch.device(device) if device is not None else resolve_device(config.trainer.accelerator)
    module.to(device).eval()
    return TrainedModel(run_id, module, _preprocessor(config, family, tags, run_dir), config, checkpoint_path, family)


def generate_showers(trained: TrainedModel, energies_mev: np.ndarray, *, steps: int | None = None,
                     batch_size: int | None = None, seed: int = 0, progress: bool = True,
                     precision: str | None = None) -> np.ndarray:
    """One shower per incident energy: energies_mev (N,) MeV -> showers (N, V) MeV, float32.

    steps: sampling steps (default the family's sampling_steps(); None for a one-pass family); batch_size: showers per network
    call (default sample.batch_size); seed: the sampler noise; progress: a tqdm bar over batches
    (shown only on a terminal, where the family has one); precision: "32-true" or "bf16-mixed" for
    the nets while sampling (default the run's sample.precision).
    """
    check_precision(precision or trained.config.sample.precision, trained.module.device, "sample.precision")
    energies_mev = np.asarray(energies_mev, dtype=np.float32).reshape(-1)
    cond = torch.from_numpy(np.ascontiguousarray(trained.preprocessor.condition(energies_mev), dtype=np.float32))
    sample = trained.config.sample
    sampled = trained.family.sample(trained.module, cond, steps=steps or trained.family.sampling_steps(),
                                    batch_size=batch_size or sample.batch_size, seed=seed,
                                    progress=progress and sys.stderr.isatty(), precision=precision)
    showers = trained.preprocessor.inverse(energies_mev, *(part.float().cpu().numpy() for part in sampled))
    return np.asarray(showers, dtype=np.float32)
