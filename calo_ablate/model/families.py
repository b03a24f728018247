"""The built-in model families (CaloScore v2, CaloDiffusion) and the resolution of `model.family`.

CaloScore v2: batches (cond, layer, voxel), losses loss = voxel_loss + layer_loss, DDIM sampling with
the EMA weights (model/calo_score.py). CaloDiffusion: batches (cond, features), one loss, ancestral
DDPM sampling from the final weights (model/calodiffusion/); its section is model.calodiffusion with
train.lr as its learning rate and sample.steps as its sampling steps; its sampling offset (the
noisiest steps skipped) is capped at steps - 1, so a very short schedule still makes one network call.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from calo_ablate.config import CaloDiffusionConfig, Config
from calo_ablate.data.preprocessing import Preprocessing, caloscore_preprocessing
from calo_ablate.errors import ConfigError
from calo_ablate.geometry import load_geometry
from calo_ablate.model.calo_score import LOSS_NAMES, CaloScoreModule
from calo_ablate.model.calodiffusion import CaloDiffusionModule, CaloDiffusionPreprocessor
from calo_ablate.model.family import ModelFamily, count_trainable

__all__ = ["BUILTIN_FAMILIES", "CaloDiffusionFamily", "CaloScoreFamily", "family_class", "load_family"]


class CaloScoreFamily(ModelFamily):
    title = "CaloScore v2"
    loss_names = LOSS_NAMES

    def preprocessing(self) -> Preprocessing:
        return caloscore_preprocessing(self.config.data)

    def module(self) -> CaloScoreModule:
        geometry = load_geometry(self.config.data.dataset)
        return CaloScoreModule(self.config, geometry.n_voxels, geometry.n_layers)

    def sample(self, module: CaloScoreModule, cond: torch.Tensor, *, steps: int, batch_size: int, seed: int,
               progress: bool, precision: str | None = None) -> tuple[torch.Tensor, ...]:
        """(layer, voxel) with the EMA weights; precision: the run's sample.precision when None."""
        return module.sample(cond, steps=steps, batch_size=batch_size, seed=seed, progress=progress,
                             precision=precision)

    def parameter_breakdown(self, module: CaloScoreModule) -> dict[str, int]:
        return {k: v for k, v in module.net.parameter_breakdown().items() if k != "total"}


class _CaloDiffusionFeatures:
    """CaloDiffusionPreprocessor in the Preprocessor protocol: nothing to fit, (cond, features) arrays."""

    def __init__(self, preprocessor: CaloDiffusionPreprocessor) -> None:
        self.preprocessor = preprocessor

    def fit(self, energies_mev: np.ndarray, showers_mev: np.ndarray) -> None:
        """Nothing is fitted: the standardisation is the reference's table (or model.calodiffusion's)."""

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
    loss_names = ("loss",)

    @property
    def section(self) -> CaloDiffusionConfig:
        """model.calodiffusion with the shared learning rate train.lr."""
        return self.config.model.calodiffusion.model_copy(update={"lr": self.config.train.lr})

    def preprocessing(self) -> Preprocessing:
        dataset, section = self.config.data.dataset, self.section
        pre = CaloDiffusionPreprocessor(dataset, section)

        def restore(arrays: Mapping[str, np.ndarray], source: str) -> _CaloDiffusionFeatures:
            return _CaloDiffusionFeatures(CaloDiffusionPreprocessor(dataset, section))

        settings: dict[str, Any] = {"glam": section.glam, "voxel_mean": pre.mean, "voxel_std": pre.std}
        return Preprocessing(family="calodiffusion", settings=settings, new=lambda: _CaloDiffusionFeatures(pre),
                             restore=restore)

    def module(self) -> CaloDiffusionModule:
        return CaloDiffusionModule(self.section, self.config.data.dataset, seed=self.config.train.seed)

    def sample(self, module: CaloDiffusionModule, cond: torch.Tensor, *, steps: int, batch_size: int, seed: int,
               progress: bool, precision: str | None = None) -> tuple[torch.Tensor, ...]:
        """(features,) from the final weights; bf16-mixed autocasts the network (the DDPM update stays fp32)."""
        offset = min(self.section.sample_offset, steps - 1)
        bf16 = (precision or self.config.sample.precision) == "bf16-mixed"
        with torch.autocast(module.device.type, dtype=torch.bfloat16, enabled=bf16):
            return (module.sample(cond, steps=steps, batch_size=batch_size, seed=seed, offset=offset).float(),)

    def parameter_breakdown(self, module: CaloDiffusionModule) -> dict[str, int]:
        glam = module.net.glam
        return {"unet": count_trainable(module.net.unet), "glam": count_trainable(glam) if glam is not None else 0}


BUILTIN_FAMILIES: dict[str, type[ModelFamily]] = {"caloscore_v2": CaloScoreFamily,
                                                  "calodiffusion": CaloDiffusionFamily}


def _import_family(path: str) -> type[ModelFamily]:
    module_name, _, class_name = path.partition(":")
    try:
        found = getattr(importlib.import_module(module_name), class_name)
    except ImportError as err:
        msg = f"model.family {path!r}: cannot import module {module_name!r} ({err})"
        raise ConfigError(msg) from err
    except AttributeError:
        msg = f"model.family {path!r}: module {module_name!r} has no attribute {class_name!r}"
        raise ConfigError(msg) from None
    if not (isinstance(found, type) and issubclass(found, ModelFamily)):
        msg = f"model.family {path!r}: {found!r} is not a subclass of calo_ablate.model.family.ModelFamily"
        raise ConfigError(msg)
    missing = sorted(getattr(found, "__abstractmethods__", ()))
    if missing:
        msg = f"model.family {path!r}: {class_name} does not implement {', '.join(missing)}"
        raise ConfigError(msg)
    if not found.loss_names or found.loss_names[0] != "loss":
        msg = f"model.family {path!r}: {class_name}.loss_names {found.loss_names!r} must start with 'loss' (the total)"
        raise ConfigError(msg)
    return found


def family_class(name: str) -> type[ModelFamily]:
    """The family class of a `model.family` value (ConfigError naming the value when there is none)."""
    if name in BUILTIN_FAMILIES:
        return BUILTIN_FAMILIES[name]
    if ":" not in name:
        msg = f"model.family {name!r}: expected one of {', '.join(BUILTIN_FAMILIES)} or 'package.module:ClassName'"
        raise ConfigError(msg)
    return _import_family(name)


def load_family(config: Config) -> ModelFamily:
    """The family of `config` (model.family), built on that config."""
    return family_class(config.model.family)(config)
