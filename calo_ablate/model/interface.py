"""The model-family interface: what a base model provides to the study.

`model.family` names the family (model/families.py resolves it): `caloscore_v2` (the default),
`calodiffusion`, or a dotted import path `package.module:ClassName` to a user's subclass of
ModelFamily. A family provides:
- its config: the resolved Config (its own section: model.* of CaloScore v2, model.calodiffusion, or
  the free-form model.options of a user family; train.lr, train.batch_size, train.seed, train.max_epochs
  and sample.steps are shared by every family);
- `preprocessing()`: the data layer's recipe (data/preprocessing.py): fitted on the training part,
  float32 feature arrays with the condition first, `condition(energies_mev)`,
  `inverse(energies_mev, *sampled) -> showers_mev`, saved and loaded with the run;
- `module()`: a LightningModule whose training and validation steps log train/<name> and val/<name>
  once per epoch for every name of `loss_names`; the first is the total and is named `loss` (early
  stopping, checkpoints, searches and the table's "Change vs base" use val/loss); batches are the
  feature arrays in order;
- `sample(module, cond, steps, batch_size, seed, progress)`: a tuple of tensors in preprocessed units,
  the arguments of the preprocessor's `inverse` after the energies;
- `parameter_breakdown(module)`: trainable parameters per part (`calo-ablate params`); their sum is
  the row's parameter count.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import lightning.pytorch as pl
import torch
from torch import nn

from calo_ablate.config import Config
from calo_ablate.data.preprocessing import Preprocessing

__all__ = ["ModelFamily", "count_trainable"]


def count_trainable(module: nn.Module) -> int:
    """Trainable parameters of `module`."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


class ModelFamily(ABC):
    """A base model as the study sees it; subclass it to ablate your own model (see the module docstring).

    title: the name printed by `calo-ablate params`; loss_names: logged as train/<name> and val/<name>,
    the first being the total, named 'loss'.
    """

    title: ClassVar[str] = "model"
    loss_names: ClassVar[tuple[str, ...]] = ("loss",)

    def __init__(self, config: Config) -> None:
        self.config = config

    @abstractmethod
    def preprocessing(self) -> Preprocessing:
        """The preprocessing recipe of this config (its settings enter the feature cache's key)."""

    @abstractmethod
    def module(self) -> pl.LightningModule:
        """A new, untrained LightningModule of this config (also rebuilt to load a checkpoint)."""

    @abstractmethod
    def sample(self, module: pl.LightningModule, cond: torch.Tensor, *, steps: int, batch_size: int,
               seed: int, progress: bool, precision: str | None = None) -> tuple[torch.Tensor, ...]:
        """One sample per condition row of cond (N, C), on the module's device: tensors in preprocessed
        units, the arguments of the preprocessor's inverse after the energies. steps: sampling steps
        (sample.steps x sample.steps_factor); batch_size: showers per network call; seed: the sampler's
        noise; progress: a progress bar may be shown; precision: '32-true' or 'bf16-mixed' (None: the
        config's sample.precision; a family may sample in float32 regardless)."""

    def parameter_breakdown(self, module: pl.LightningModule) -> dict[str, int]:
        """Trainable parameters per part of the model; one part, 'model', unless a family says more."""
        return {"model": count_trainable(module)}

    def n_parameters(self, module: pl.LightningModule) -> int:
        """Trainable parameters in total (the table's parameter count)."""
        return sum(self.parameter_breakdown(module).values())
