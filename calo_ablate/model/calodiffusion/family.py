"""CaloDiffusion as a model family: batches (cond, features), one loss, ancestral DDPM sampling from
the final weights; its learning rate is train.lr, its sampling steps sample.steps, and its sampling
offset (the noisiest steps skipped) is capped at steps - 1, so a very short schedule still makes one
network call. Its early stopping is its own (model.early_stopping_patience, in the module)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from calo_ablate.data.preprocessing import Preprocessing
from calo_ablate.model.calodiffusion.config import CaloDiffusionConfig
from calo_ablate.model.calodiffusion.module import CaloDiffusionModule
from calo_ablate.model.calodiffusion.preprocess import CaloDiffusionPreprocessor
from calo_ablate.model.interface import ModelFamily, count_trainable

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
        return self.preprocessor.inverse(sampled[0], energies_mev)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {}


class CaloDiffusionFamily(ModelFamily):
    title = "CaloDiffusion"
    section = CaloDiffusionConfig
    loss_names = ("loss",)

    def preprocessing(self) -> Preprocessing:
        dataset, section = self.config.data.dataset, self.config.model
        pre = CaloDiffusionPreprocessor(dataset, section)

        def restore(arrays: Mapping[str, np.ndarray], source: str) -> _CaloDiffusionFeatures:
            return _CaloDiffusionFeatures(CaloDiffusionPreprocessor(dataset, section))

        settings: dict[str, Any] = {"glam": section.glam, "voxel_mean": pre.mean, "voxel_std": pre.std}
        return Preprocessing(family="calodiffusion", settings=settings, new=lambda: _CaloDiffusionFeatures(pre),
                             restore=restore)

    def module(self) -> CaloDiffusionModule:
        return CaloDiffusionModule(self.config.model, self.config.data.dataset, self.config.train.lr,
                                   seed=self.config.train.seed)

    def sample(self, module: CaloDiffusionModule, cond: torch.Tensor, *, steps: int | None, batch_size: int,
               seed: int, progress: bool, precision: str | None = None) -> tuple[torch.Tensor, ...]:
        """(features,) from the final weights; bf16-mixed autocasts the network (the DDPM update stays fp32)."""
        steps = steps or self.config.sample.effective_steps
        offset = min(self.config.model.sample_offset, steps - 1)
        bf16 = (precision or self.config.sample.precision) == "bf16-mixed"
        with torch.autocast(module.device.type, dtype=torch.bfloat16, enabled=bf16):
            return (module.sample(cond, steps=steps, batch_size=batch_size, seed=seed, offset=offset).float(),)

    def parameter_breakdown(self, module: CaloDiffusionModule) -> dict[str, int]:
        glam = module.net.glam
        return {"unet": count_trainable(module.net.unet), "glam": count_trainable(glam) if glam is not None else 0}
