"""CaloDiffusion as a model family: batches (cond, features), one loss, ancestral DDPM sampling from
the final weights; its learning rate is train.lr, its sampling steps sample.steps, and its sampling
offset (the noisiest steps skipped) is capped at steps - 1, so a very short schedule still makes one
network call. Its early stopping is its own (model.early_stopping_patience, in the module).

Few-step options (docs/models/calodiffusion-fewstep.md): model.layer_diffusion.enabled makes the batches
(cond, layers, features) and the samples (layers, features): the layer model (DDIM, the same steps and
offset) first, then the voxels conditioned on its layers, renormalised layer by layer in the inverse.
model.consistency.enabled is a derived training (train.teacher, a registry entry's `from:`): its
derived_module distils the teacher (consistency.py), and it samples in sample.steps (1 to 5) evaluations."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

from calo_ablate.config import model_section
from calo_ablate.data.preprocessing import Preprocessing
from calo_ablate.errors import ConfigError
from calo_ablate.model.calodiffusion.config import CaloDiffusionConfig
from calo_ablate.model.calodiffusion.consistency import ConsistencyModule, sample_consistency_model
from calo_ablate.model.calodiffusion.module import CaloDiffusionModule
from calo_ablate.model.calodiffusion.preprocess import CaloDiffusionPreprocessor
from calo_ablate.model.interface import ModelFamily, checked_module, count_trainable

__all__ = ["CaloDiffusionFamily"]


class _CaloDiffusionFeatures:
    """CaloDiffusionPreprocessor in the Preprocessor protocol: nothing to fit, (cond, features) arrays."""

    def __init__(self, preprocessor: CaloDiffusionPreprocessor) -> None:
        self.preprocessor = preprocessor

    def fit(self, energies_mev: np.ndarray, showers_mev: np.ndarray) -> None:
        """Nothing is fitted: the standardisation is the reference's table (or model.voxel_mean/std)."""

    def transform(self, energies_mev: np.ndarray, showers_mev: np.ndarray) -> tuple[np.ndarray, ...]:
        return self.preprocessor.forward(energies_mev, showers_mev)

    def condition(self, energies_mev: np.ndarray) -> np.ndarray:
        return self.preprocessor.condition(energies_mev)

    def inverse(self, energies_mev: np.ndarray, *sampled: np.ndarray) -> np.ndarray:
        """sampled: (features,), or (layers, features) with LayerDiffusion."""
        layers = sampled[0] if len(sampled) > 1 else None
        return self.preprocessor.inverse(sampled[-1], energies_mev, layers)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {}


class CaloDiffusionFamily(ModelFamily):
    title = "CaloDiffusion"
    section = CaloDiffusionConfig
    loss_names = ("loss",)

    @property
    def settings(self) -> CaloDiffusionConfig:
        """This config's CaloDiffusion section (model.*)."""
        return model_section(self.config, CaloDiffusionConfig)

    def preprocessing(self) -> Preprocessing:
        dataset, section = self.config.data.dataset, self.settings
        pre = CaloDiffusionPreprocessor(dataset, section)

        def restore(arrays: Mapping[str, np.ndarray], source: str) -> _CaloDiffusionFeatures:
            return _CaloDiffusionFeatures(CaloDiffusionPreprocessor(dataset, section))

        settings: dict[str, Any] = {"glam": section.glam, "voxel_mean": pre.mean, "voxel_std": pre.std}
        if pre.layers is not None:   # only then: the base's feature cache key stays the paper model's
            settings["layer_standardisation"] = dataclasses.asdict(pre.layers)
        return Preprocessing(family="calodiffusion", settings=settings, new=lambda: _CaloDiffusionFeatures(pre),
                             restore=restore)

    def module(self) -> CaloDiffusionModule:
        """A new module; a consistency config needs train.teacher (it is trained by derived_module only)."""
        if self.settings.consistency.enabled and self.config.train.teacher is None:
            msg = "model.consistency.enabled is true but train.teacher is not set: a consistency model is " \
                  "distilled from a trained CaloDiffusion; give its registry entry a `from:`"
            raise ConfigError(msg)
        return CaloDiffusionModule(self.settings, self.config.data.dataset, self.config.train.lr,
                                   seed=self.config.train.seed)

    def derived_module(self, teacher: pl.LightningModule) -> pl.LightningModule:
        """Consistency distillation of `teacher` when model.consistency.enabled, else fine-tuning."""
        if not self.settings.consistency.enabled:
            return super().derived_module(teacher)
        return ConsistencyModule(teacher, self.settings, self.config.data.dataset, self.config.train.lr,
                                 seed=self.config.train.seed)

    def sample(self, module: pl.LightningModule, cond: torch.Tensor, *, steps: int | None, batch_size: int,
               seed: int, progress: bool, precision: str | None = None) -> tuple[torch.Tensor, ...]:
        """(features,) from the final weights, or (layers, features) with LayerDiffusion; a consistency model
        makes `steps` (1 to 5) network evaluations. bf16-mixed autocasts the networks (the sampler's
        updates stay fp32)."""
        module = checked_module(module, CaloDiffusionModule)
        steps = steps or self.config.sample.effective_steps
        section = self.settings
        bf16 = (precision or self.config.sample.precision) == "bf16-mixed"
        with torch.autocast(module.device.type, dtype=torch.bfloat16, enabled=bf16):
            if section.consistency.enabled:
                return (sample_consistency_model(module, cond, steps, batch_size, seed).float(),)
            offset = min(section.sample_offset, steps - 1)
            if not section.layer_diffusion.enabled:
                return (module.sample(cond, steps=steps, batch_size=batch_size, seed=seed, offset=offset).float(),)
            generator = torch.Generator(device=module.device).manual_seed(int(seed))
            layers = module.sample_layers(cond, steps=steps, batch_size=batch_size, seed=generator,
                                          offset=offset).float()
            voxels = module.sample(cond, steps=steps, batch_size=batch_size, seed=generator, offset=offset,
                                   layers=layers)
            return layers, voxels.float()

    def parameter_breakdown(self, module: pl.LightningModule) -> dict[str, int]:
        module = checked_module(module, CaloDiffusionModule)
        glam = module.net.glam
        parts = {"unet": count_trainable(module.net.unet), "glam": count_trainable(glam) if glam is not None else 0}
        if module.layer_net is not None:
            parts["layer_net"] = count_trainable(module.layer_net)
        return parts
