"""CaloFlowFamily: CaloFlow (Krause, Pang and Shih) as a model family, for dataset 1 only.

Its section is `model` (CaloFlowConfig, model.family: caloflow), resolved for the dataset's particle.
Batches are (E_inc, showers) in units of 100 GeV; the losses are the negative log-likelihoods of
flow-I, flow-II and their sum (LOSS_NAMES); sampling runs flow-I then flow-II with the weights of the
best validation loss (the tool's checkpoint rule, the published model selection; no EMA). Datasets 2
and 3 are refused with a
ConfigError naming iCaloFlow, their flow model, which is not built.

Shared keys it reads: those every family reads (train.seed: the random orders of the flows' blocks;
train.batch_size, train.max_epochs: the one-cycle horizon; data.*), none of the optional ones: no
sample.steps (a flow samples in one pass: sampling_steps() is None) and no train.lr (each flow's
schedule carries its own rates).
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch

from calo_ablate.config import Config, model_section
from calo_ablate.data.preprocessing import Preprocessing
from calo_ablate.model.caloflow.config import CaloFlowConfig, caloflow_dataset
from calo_ablate.model.caloflow.module import LOSS_NAMES, CaloFlowModule
from calo_ablate.model.caloflow.preprocess import caloflow_preprocessing
from calo_ablate.model.caloflow.student import StudentModule, checked_teacher
from calo_ablate.model.interface import ModelFamily, checked_module, count_trainable

__all__ = ["SAMPLE_CHUNK_SHOWERS", "CaloFlowFamily"]

# Showers per flow call in sampling: unchunked, the MAF teacher's batch of 10,000 passed 11.9 GiB resident
# (docs/performance/families.md); 256 keeps it near batch 100's memory.
SAMPLE_CHUNK_SHOWERS = 256


class CaloFlowFamily(ModelFamily):
    title = "CaloFlow"
    section = CaloFlowConfig
    loss_names = LOSS_NAMES

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.dataset = caloflow_dataset(config.data.dataset)

    def check_dataset(self) -> None:
        """Dataset 1 only: a ConfigError naming iCaloFlow, the flow model of datasets 2 and 3 (not built)."""
        caloflow_dataset(self.config.data.dataset)

    @property
    def settings(self) -> CaloFlowConfig:
        """This config's CaloFlow section (model.*), not yet resolved for the particle."""
        return model_section(self.config, CaloFlowConfig)

    def preprocessing(self) -> Preprocessing:
        return caloflow_preprocessing(self.dataset, self.settings.resolved(self.dataset))

    def module(self) -> CaloFlowModule:
        return CaloFlowModule(self.settings, self.dataset, seed=self.config.train.seed)

    def derived_module(self, teacher: pl.LightningModule) -> pl.LightningModule:
        """A student config (model.student.enabled): the IAF student distilled from the frozen teacher
        (student.py); otherwise the default, fine-tuning from the teacher's weights."""
        if not self.settings.student.enabled:
            return super().derived_module(teacher)
        return StudentModule(self.settings, self.dataset, checked_teacher(teacher), seed=self.config.train.seed)

    def sample(self, module: pl.LightningModule, cond: torch.Tensor, *, steps: int | None, batch_size: int, seed: int,
               progress: bool, precision: str | None = None,
               chunk_showers: int = SAMPLE_CHUNK_SHOWERS) -> tuple[torch.Tensor, ...]:
        """(flow-I sample, flow-II sample) in logit space for the incident energies cond (N, 1) in units.

        steps is None (sampling_steps(): a flow has no steps) and ignored; precision is ignored too (the flows sample in
        caloflow.dtype); progress is not shown. Costs one network pass per feature per block: a MAF's
        inverse is sequential (368 x 8 passes for photons, 533 x 8 for pions, per batch). The flows run on at
        most chunk_showers showers at a time (their memory grows by about 1.7 MiB per shower for the
        teacher); the noise is drawn for the whole batch, so the showers do not depend on the chunking.
        """
        module = checked_module(module, CaloFlowModule)
        return module.sample(cond, batch_size=min(batch_size, chunk_showers), seed=seed)

    def parameter_breakdown(self, module: pl.LightningModule) -> dict[str, int]:
        module = checked_module(module, CaloFlowModule)
        return {"flow1": count_trainable(module.flow1), "flow2": count_trainable(module.flow2)}
