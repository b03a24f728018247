"""The model-family interface: everything a base model provides to the study, and nothing more.

`model.family` names the family (model/families.py holds the built-in list and resolves the value):
a built-in name or a dotted import path `package.module:ClassName` to a user's subclass. A family
provides, on the resolved Config:
- `section`: its config section, the `model` of the config tree (a calo_ablate.config.ModelSection:
  its own keys, the shared keys it reads in `section.reads`, its loss-defining fields);
- `preprocessing()`: the data layer's recipe (data/preprocessing.py): fitted on the training part,
  float32 feature arrays with the condition first, `condition(energies_mev)`,
  `inverse(energies_mev, *sampled) -> showers_mev`, saved and loaded with the run;
- `module()`: a LightningModule whose training and validation steps log train/<name> and val/<name>
  once per epoch for every name of `loss_names` (the first, named `loss`, is the total: early stopping,
  checkpoints, searches and the table's "Change vs base" use val/loss) and the step curve
  `curve_metrics` (model/curves.py); batches are the feature arrays in order;
- `validation_interval(steps_per_epoch)`: how often it validates (Lightning's val_check_interval);
- `derived_module(teacher)`: the module a derived training trains (a registry entry with `from:`, the
  config's train.teacher set): given the teacher's trained module (EMA weights where the family keeps
  them, frozen, in eval mode), a module whose training may use the teacher in its loss; its state_dict
  holds the student alone (never the teacher's parameters), with the keys of `module()` built from the
  same config, so that a finished student loads and samples like any trained model. Default: `module()`
  started from the teacher's weights (fine-tuning);
- `callbacks()`: what else acts on its training (early stopping on train.early_stopping_patience by
  default, for the families that read it);
- `sampling_steps()`: the number of sampling steps (sample.steps x sample.steps_factor), or None for a
  family that samples in one pass; `sample(module, cond, steps=..., ...)`: a tuple of tensors in
  preprocessed units, the arguments of the preprocessor's `inverse` after the energies;
- `parameter_breakdown(module)`: trainable parameters per part (`calo-ablate params`); their sum is
  the row's parameter count;
- `benchmark_batch(n)`: a batch of n showers in its feature shapes, what the benchmark times;
- `check_dataset()`: a ConfigError when the family cannot model the config's dataset.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, TypeVar

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping
from torch import nn

from calo_ablate.config import Config, ModelSection, UserFamilySection
from calo_ablate.data.preprocessing import Preprocessing
from calo_ablate.geometry import load_geometry
from calo_ablate.model.curves import curve_metrics

__all__ = ["TOTAL_LOSS", "ModelFamily", "checked_module", "count_trainable"]

TOTAL_LOSS = "loss"  # the first of every family's loss_names: logged as val/loss, what is minimised


def count_trainable(module: nn.Module) -> int:
    """Trainable parameters of `module`."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


ModuleT = TypeVar("ModuleT", bound=pl.LightningModule)


def checked_module(module: pl.LightningModule, expected: type[ModuleT]) -> ModuleT:
    """`module` as the module class a family's methods expect (its own, a student's being a subclass); a
    TypeError naming both classes when it is another's (a bug: each family is given its own modules)."""
    if not isinstance(module, expected):
        msg = f"expected a {expected.__name__} (or a subclass), got a {type(module).__name__}"
        raise TypeError(msg)
    return module


class ModelFamily(ABC):
    """A base model as the study sees it; subclass it to ablate your own model (see the module docstring).

    title: the name printed by `calo-ablate params` and the report; section: its config section class
    (a user's family keeps the free-form UserFamilySection: model.options.*); loss_names: logged as
    train/<name> and val/<name>, the first being the total, named 'loss'.
    """

    title: ClassVar[str] = "model"
    section: ClassVar[type[ModelSection]] = UserFamilySection
    loss_names: ClassVar[tuple[str, ...]] = (TOTAL_LOSS,)

    def __init__(self, config: Config) -> None:
        self.config = config
        self.check_dataset()

    # ---- what the study reads of a family ---------------------------------------------------------
    @classmethod
    def curve_metrics(cls) -> tuple[str, ...]:
        """The step-curve metrics its module logs: train_steps/<loss> for every loss name."""
        return curve_metrics(cls.loss_names)

    @classmethod
    def loss_defining_keys(cls) -> tuple[str, ...]:
        """Dotted keys (a trailing '.' for a whole section) whose change makes a row's loss not
        comparable with the base's: the section's loss-defining fields (model.* unless already a shared
        key) plus the dataset and the family itself."""
        own = tuple(k if k.startswith(("data.", "train.", "sample.")) else f"model.{k}"
                    for k in cls.section.loss_defining)
        return ("data.dataset", "model.family", *own)

    def check_dataset(self) -> None:
        """Raise a ConfigError when this family cannot model config.data.dataset (every dataset here)."""

    # ---- training -----------------------------------------------------------------------------------
    @abstractmethod
    def preprocessing(self) -> Preprocessing:
        """The preprocessing recipe of this config (its settings enter the feature cache's key)."""

    @abstractmethod
    def module(self) -> pl.LightningModule:
        """A new, untrained LightningModule of this config (also rebuilt to load a checkpoint)."""

    def derived_module(self, teacher: pl.LightningModule) -> pl.LightningModule:
        """A new module of this config started from `teacher` (train.teacher is set): by default `module()`
        with the teacher's weights copied in; a family overrides it to distil (see the module docstring)."""
        student = self.module()
        student.load_state_dict(teacher.state_dict())
        return student

    def validation_interval(self, steps_per_epoch: int) -> int | float:
        """Lightning's val_check_interval: once per epoch unless the family validates more often."""
        return 1.0

    def callbacks(self) -> list[Callback]:
        """Callbacks of its training: early stopping on val/loss after train.early_stopping_patience
        epochs without improvement, when the family reads that key and it is not None."""
        patience = self.config.train.early_stopping_patience
        if "train.early_stopping_patience" not in self.section.reads or patience is None:
            return []
        return [EarlyStopping(monitor=f"val/{TOTAL_LOSS}", mode="min", patience=patience)]

    # ---- sampling -----------------------------------------------------------------------------------
    def sampling_steps(self) -> int | None:
        """Sampling steps of this config (sample.steps x sample.steps_factor) when the family reads
        sample.steps; None when it samples in one pass."""
        if "sample.steps" not in self.section.reads:
            return None
        return self.config.sample.effective_steps

    @abstractmethod
    def sample(self, module: pl.LightningModule, cond: torch.Tensor, *, steps: int | None, batch_size: int,
               seed: int, progress: bool, precision: str | None = None) -> tuple[torch.Tensor, ...]:
        """One sample per condition row of cond (N, C), on the module's device: tensors in preprocessed
        units, the arguments of the preprocessor's inverse after the energies. steps: sampling_steps()
        or fewer (None for a one-pass family); batch_size: showers per network call; seed: the sampler's
        noise; progress: a progress bar may be shown; precision: '32-true' or 'bf16-mixed' (None: the
        config's sample.precision; a family may sample in float32 regardless)."""

    # ---- facts --------------------------------------------------------------------------------------
    def parameter_breakdown(self, module: pl.LightningModule) -> dict[str, int]:
        """Trainable parameters per part of the model; one part, 'model', unless a family says more."""
        return {"model": count_trainable(module)}

    def n_parameters(self, module: pl.LightningModule) -> int:
        """Trainable parameters in total (the table's parameter count)."""
        return sum(self.parameter_breakdown(module).values())

    def benchmark_batch(self, n: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
        """A batch of n showers in this family's feature shapes: random showers (exponential voxel
        energies, incident energies log-uniform over the dataset's range) through its preprocessing."""
        geometry = load_geometry(self.config.data.dataset)
        rng = np.random.default_rng(seed)
        energies_mev = np.exp(rng.uniform(np.log(1e3), np.log(1e6), n))
        showers_mev = rng.exponential(1.0, (n, geometry.n_voxels)) * energies_mev[:, None] / geometry.n_voxels
        preprocessor = self.preprocessing().new()
        preprocessor.fit(energies_mev, showers_mev)
        return tuple(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
                     for a in preprocessor.transform(energies_mev, showers_mev))
