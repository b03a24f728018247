"""CaloScore v2 as a model family: batches (cond, layer, voxel), losses loss = voxel_loss + layer_loss,
validation several times per epoch in short runs, DDIM sampling with the EMA weights."""

from __future__ import annotations

import lightning.pytorch as pl
import torch

from calo_ablate.config import model_section
from calo_ablate.data.preprocessing import Preprocessing
from calo_ablate.errors import ConfigError
from calo_ablate.geometry import load_geometry
from calo_ablate.model.caloscore.config import CaloScoreConfig
from calo_ablate.model.caloscore.distill import DistillModule
from calo_ablate.model.caloscore.module import LOSS_NAMES, CaloScoreModule, validation_interval
from calo_ablate.model.caloscore.preprocess import caloscore_preprocessing
from calo_ablate.model.interface import ModelFamily, checked_module

__all__ = ["CaloScoreFamily"]


class CaloScoreFamily(ModelFamily):
    title = "CaloScore v2"
    section = CaloScoreConfig
    loss_names = LOSS_NAMES

    @property
    def settings(self) -> CaloScoreConfig:
        """This config's CaloScore section (model.*)."""
        return model_section(self.config, CaloScoreConfig)

    def preprocessing(self) -> Preprocessing:
        return caloscore_preprocessing(self.config.data)

    def module(self) -> CaloScoreModule:
        geometry = load_geometry(self.config.data.dataset)
        return CaloScoreModule(self.config, geometry.n_voxels, geometry.n_layers)

    def derived_module(self, teacher: pl.LightningModule) -> pl.LightningModule:
        """Progressive distillation of `teacher` (a CaloScoreModule) when model.diffusion.distill.enabled,
        else fine-tuning."""
        if not self.settings.diffusion.distill.enabled:
            return super().derived_module(teacher)
        if self.config.train.teacher is None:
            msg = "model.diffusion.distill.enabled is true but train.teacher is not set: give the entry a `from:`"
            raise ConfigError(msg)
        geometry = load_geometry(self.config.data.dataset)
        return DistillModule(checked_module(teacher, CaloScoreModule), self.config, geometry.n_voxels, geometry.n_layers)

    def validation_interval(self, steps_per_epoch: int) -> int | float:
        """At least four validations per run (several per epoch in runs of fewer epochs)."""
        return validation_interval(steps_per_epoch, self.config.train.max_epochs)

    def sample(self, module: pl.LightningModule, cond: torch.Tensor, *, steps: int | None, batch_size: int, seed: int,
               progress: bool, precision: str | None = None) -> tuple[torch.Tensor, ...]:
        """(layer, voxel) with the EMA weights; precision: the run's sample.precision when None."""
        return checked_module(module, CaloScoreModule).sample(cond, steps=steps, batch_size=batch_size, seed=seed,
                                                             progress=progress, precision=precision)

    def parameter_breakdown(self, module: pl.LightningModule) -> dict[str, int]:
        net = checked_module(module, CaloScoreModule).net
        return {k: v for k, v in net.parameter_breakdown().items() if k != "total"}
