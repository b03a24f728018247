"""CaloFlowModule: flow-I and flow-II trained together on the same batches, and sampled one after the other.

Batches are (E_inc (B, 1), showers (B, V)) in units of 100 GeV (CaloFlowPreprocessor). Each training
step draws fresh uniform noise for each flow (U[0, flow1.noise) and U[0, flow2.noise), per voxel, in
units, from the (seed, step) keyed generator of model/noise.py: so every epoch sees new noise, as the
published data loaders draw it per item, and every row of a seed the same noise), builds the
flows' inputs (preprocess.py) in float64 whatever caloflow.dtype (a float32 logit near u = 1 would
quantise the data itself), casts them to caloflow.dtype and takes the mean negative log-likelihood of
each flow in its logit space: loss = flow1_nll + flow2_nll. The two flows share no parameter, so the
sum trains each as the published separate trainings do. Validation uses noise from a fixed generator
per batch, so a given model always gets the same validation loss. Logged per epoch as train/<name>
and val/<name> for LOSS_NAMES, the step curve train_steps/<name> with train_steps/lr_flow1 and
lr_flow2 (model/curves.py) and the seconds per epoch. Adam (default betas, no weight decay, no
clipping) with one group per flow and each flow's published schedule (schedule.py), stepped per
optimizer step.
"""

from __future__ import annotations

import time
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig

from calo_ablate.errors import TrainingError
from calo_ablate.geometry import load_geometry
from calo_ablate.model.caloflow.config import CaloFlowConfig, caloflow_dataset
from calo_ablate.model.caloflow.flows import build_flow, flow1_orders, flow2_orders
from calo_ablate.model.caloflow.preprocess import (
    flow1_condition,
    flow1_features,
    flow2_condition,
    flow2_features,
    layer_energies_from_flow1,
    layer_slices,
)
from calo_ablate.model.caloflow.schedule import FlowSchedules
from calo_ablate.model.curves import EPOCH_SECONDS, EpochLosses, StepCurve
from calo_ablate.model.noise import step_generator, validation_generator

__all__ = ["LOSS_NAMES", "CaloFlowModule"]

LOSS_NAMES = ("loss", "flow1_nll", "flow2_nll")  # logged as train/<name> and val/<name>; the first is the total
DTYPES = {"float32": torch.float32, "float64": torch.float64}


class CaloFlowModule(pl.LightningModule):
    """Flow-I and flow-II of one CaloFlow teacher for dataset 1 ('1-photons', '1-pions'; '1' = photons).

    config: the CaloFlow section (resolved here for the dataset); seed: draws the random orders of
    flow-I and flow-II (the published code took them from torch's global seed) and keys the training
    noise (model/noise.py).
    """

    def __init__(self, config: CaloFlowConfig | dict[str, Any], dataset: str, seed: int = 0) -> None:
        super().__init__()
        config = config if isinstance(config, CaloFlowConfig) else CaloFlowConfig.model_validate(config)
        self.dataset = caloflow_dataset(dataset)  # refuses datasets 2 and 3 before anything is built
        self.config = config.resolved(self.dataset)
        geometry = load_geometry(self.dataset)
        self.save_hyperparameters({"config": config.model_dump(mode="json"), "dataset": self.dataset,
                                   "seed": seed}, logger=False)
        self.seed = seed
        self.slices = layer_slices(geometry)
        self.n_layers, self.n_voxels = len(self.slices), geometry.n_voxels
        generator = torch.Generator().manual_seed(seed)
        c = self.config
        self.flow1 = build_flow(self.n_layers, 1, c.flow1, c, flow1_orders(self.n_layers, c.flow1.blocks, generator))
        orders2 = flow2_orders(self.slices, c.flow2.blocks, generator, c.flow2_permutation == "within_layer")
        if c.student.enabled:  # the distilled IAF takes flow-II's place (student.py trains it)
            orders2 = flow2_orders(self.slices, c.student.blocks, generator, c.flow2_permutation == "within_layer")
            self.flow2 = build_flow(self.n_voxels, 1 + self.n_layers, c.student, c, orders2,
                                    inverse_autoregressive=True)
        else:
            self.flow2 = build_flow(self.n_voxels, 1 + self.n_layers, c.flow2, c, orders2)
        self.to(DTYPES[c.dtype])
        # (loss, flow1, flow2) x showers of the epoch ("train", "val")
        self.epoch_losses = EpochLosses(LOSS_NAMES, dtype=torch.float64)
        self.curve = StepCurve(LOSS_NAMES)
        self._epoch_start = 0.0

    @property
    def flow_dtype(self) -> torch.dtype:
        """The flows' dtype (caloflow.dtype); the features are made in float64, then cast to it."""
        return DTYPES[self.config.dtype]

    # ---- losses ---------------------------------------------------------------------------------
    def noisy_showers(self, batch: tuple[torch.Tensor, ...] | list[torch.Tensor],
                      generator: torch.Generator | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(E_inc (B, 1), [showers + flow-I noise, showers + flow-II noise]) in float64 units."""
        e_inc, showers = (t.double() for t in batch[:2])
        noisy = []
        for level in (self.config.flow1.noise, self.config.flow2.noise):
            if generator is None:
                u = torch.rand_like(showers)
            else:
                u = torch.rand(showers.shape, generator=generator, dtype=torch.float64).to(showers.device)
            noisy.append(showers + float(level or 0.0) * u)
        return e_inc, noisy

    def nll(self, batch: tuple[torch.Tensor, ...] | list[torch.Tensor],
            generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, flow1_nll, flow2_nll): mean NLLs of one batch with fresh noise (from `generator`, on the
        CPU, when given)."""
        e_inc, noisy = self.noisy_showers(batch, generator)
        x1, c1 = (t.to(self.flow_dtype) for t in flow1_features(noisy[0], e_inc, self.slices, self.config))
        x2, c2 = (t.to(self.flow_dtype) for t in flow2_features(noisy[1], e_inc, self.slices, self.config))
        nll1 = -self.flow1(c1).log_prob(x1).mean()
        nll2 = -self.flow2(c2).log_prob(x2).mean()
        return nll1 + nll2, nll1, nll2

    # ---- training -------------------------------------------------------------------------------
    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        losses = self.nll(batch, step_generator(self.seed, self.global_step, self.global_rank))
        if not bool(torch.isfinite(losses[0])):
            values = ", ".join(f"{n} {float(v)}" for n, v in zip(LOSS_NAMES, losses, strict=True))
            msg = (f"non-finite CaloFlow training loss at epoch {self.current_epoch}, step {self.global_step} "
                   f"(batch {batch_idx}): {values}; try a lower caloflow schedule max_lr")
            raise TrainingError(msg)
        n = batch[0].shape[0]
        self.epoch_losses.add("train", losses, n)
        self.curve.add(losses, n)
        return losses[0]

    def on_train_start(self) -> None:
        self.curve.start(self.trainer.estimated_stepping_batches)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.curve.after_step(self, per_group_lr=True)

    def on_train_epoch_start(self) -> None:
        self._epoch_start = time.perf_counter()
        self.epoch_losses.reset("train")

    def on_train_epoch_end(self) -> None:
        self.epoch_losses.log(self, "train")
        for group in self.trainer.optimizers[0].param_groups:
            self.log(f"lr_{group['name']}", group["lr"], on_step=False, on_epoch=True, sync_dist=True)
        self.log(EPOCH_SECONDS, time.perf_counter() - self._epoch_start, on_step=False, on_epoch=True,
                 sync_dist=True)

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        c = self.config
        optimizer = torch.optim.Adam([{"params": list(self.flow1.parameters()), "name": "flow1"},
                                      {"params": list(self.flow2.parameters()), "name": "flow2"}])
        # FlowSchedules sets every group's lr (and one-cycle's beta1) at once and at every step
        total = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = FlowSchedules(optimizer, [c.flow1.schedule, c.flow2.schedule], total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ---- validation -----------------------------------------------------------------------------
    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        generator = validation_generator(batch_idx)
        self.epoch_losses.add("val", self.nll(batch, generator), batch[0].shape[0])

    def on_validation_epoch_start(self) -> None:
        self.epoch_losses.reset("val")

    def on_validation_epoch_end(self) -> None:
        self.epoch_losses.log(self, "val")

    # ---- sampling -------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, e_inc: torch.Tensor, batch_size: int = 100,
               seed: int | torch.Generator = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """(flow-I sample (N, L), flow-II sample (N, V)) in logit space, in the module's dtype and device:
        flow-I from the incident energies e_inc (N, 1) in units, then flow-II conditioned on flow-I's
        layer energies. Dropout is off while sampling; the noise is drawn for all N at once, so the sample
        does not depend on batch_size. The MAF inverse takes one network pass per
        feature per block (L x flow1.blocks + V x flow2.blocks passes per batch)."""
        generator = seed if isinstance(seed, torch.Generator) else \
            torch.Generator(device=self.device).manual_seed(int(seed))
        was_training = self.training
        self.eval()
        try:
            e_inc = e_inc.reshape(-1, 1).to(device=self.device, dtype=torch.float64)
            n = len(e_inc)
            z1 = torch.randn((n, self.n_layers), generator=generator, device=self.device, dtype=self.flow_dtype)
            z2 = torch.randn((n, self.n_voxels), generator=generator, device=self.device, dtype=self.flow_dtype)
            parts1, parts2 = [], []
            for start in range(0, n, batch_size):
                e, part = e_inc[start:start + batch_size], slice(start, start + batch_size)
                s1 = self.flow1(flow1_condition(e).to(self.flow_dtype)).transform.inv(z1[part])
                layers = layer_energies_from_flow1(s1.double(), e, self.config)
                c2 = flow2_condition(e, layers, self.config.layer_log_offset).to(self.flow_dtype)
                parts2.append(self.flow2(c2).transform.inv(z2[part]))
                parts1.append(s1)
        finally:
            self.train(was_training)
        return torch.cat(parts1), torch.cat(parts2)
