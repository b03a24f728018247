"""CaloDiffusionModule: the CaloDiffusion LightningModule (training, validation, sampling).

Training step: t ~ U{0..T-1} and unit noise per shower, x_t on the cosine schedule, the loss of
config.objective (see objective.py), logged once per epoch as train/loss and on the step curve
train_steps/loss (model/curves.py); validation the same loss as
val/loss, with t and the noise drawn from a fixed generator per batch so a given model always gets the
same validation loss (the reference draws fresh ones each epoch). Adam (default betas, no weight decay,
no clipping, no EMA) on every trainable parameter, U-Net and learned GLaM together, at lr (train.lr);
ReduceLROnPlateau(config.lr_plateau_factor, config.lr_plateau_patience) stepped each epoch on the
training loss; early stopping (TrainValGapStopping, config.early_stopping_patience) comes with the
module through configure_callbacks. Batches are (cond (B, 1), ..., x (B, D)): the first tensor is the
energy condition, the last the preprocessed showers (anything in between is ignored).
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch

from calo_ablate.config import canonical_dataset
from calo_ablate.errors import TrainingError
from calo_ablate.geometry import load_geometry
from calo_ablate.model.calodiffusion.config import CaloDiffusionConfig
from calo_ablate.model.calodiffusion.early_stopping import TrainValGapStopping
from calo_ablate.model.calodiffusion.network import CaloDiffusionNetwork, count_trainable
from calo_ablate.model.calodiffusion.objective import eps_from_output, training_loss
from calo_ablate.model.calodiffusion.sampler import EpsModel, ddpm_sample
from calo_ablate.model.calodiffusion.schedule import DDPMSchedule
from calo_ablate.model.curves import StepCurve
from calo_ablate.model.noise import step_generator, validation_generator

__all__ = ["CaloDiffusionModule"]



class CaloDiffusionModule(pl.LightningModule):
    """One CaloDiffusion model of `dataset` ('1-photons', '1-pions', '2', '3'; '1' = photons)."""

    def __init__(self, config: CaloDiffusionConfig | dict[str, Any], dataset: str, lr: float,
                 seed: int = 0) -> None:
        """seed: the run's train.seed, which keys the training noise (model/noise.py)."""
        super().__init__()
        config = config if isinstance(config, CaloDiffusionConfig) else CaloDiffusionConfig.model_validate(config)
        self.dataset = canonical_dataset(dataset)
        self.seed = seed
        self.save_hyperparameters({"config": config.model_dump(mode="json"), "dataset": self.dataset, "lr": lr,
                                   "seed": seed},
                                  logger=False)
        self.config = config
        self.lr = lr
        self.curve = StepCurve(("loss",))
        self.net = CaloDiffusionNetwork(config, load_geometry(self.dataset))
        self.schedule = DDPMSchedule.cosine(config.diffusion_steps)

    @property
    def n_features(self) -> int:
        """Length of a shower in the diffusion space."""
        return self.net.n_features

    def n_trainable_parameters(self) -> int:
        """Trainable parameters: U-Net plus the learned GLaM maps."""
        return count_trainable(self.net)

    # ---- losses ---------------------------------------------------------------------------------
    def loss(self, batch: tuple[torch.Tensor, ...] | list[torch.Tensor],
             generator: torch.Generator | None = None) -> torch.Tensor:
        """The objective's scalar loss on one batch; t and noise from `generator` (CPU) when given."""
        cond, x0 = batch[0], batch[-1]                                       # (B, 1), (B, D)
        b = x0.shape[0]
        if generator is None:
            t = torch.randint(0, self.schedule.n_steps, (b,), device=x0.device)
            noise = torch.randn_like(x0)
        else:
            t = torch.randint(0, self.schedule.n_steps, (b,), generator=generator)
            noise = torch.randn(x0.shape, generator=generator).to(device=x0.device, dtype=x0.dtype)
        energy = cond.reshape(b)
        return training_loss(self.config.objective, lambda x, sigma: self.net(x, sigma, energy), x0, t,
                             self.schedule, noise)

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch, step_generator(self.seed, self.global_step, self.global_rank))
        if not bool(torch.isfinite(loss)):
            msg = (f"non-finite CaloDiffusion training loss {float(loss)} at epoch {self.current_epoch}, "
                   f"step {self.global_step} (batch {batch_idx}); try a lower train.lr than {self.lr}")
            raise TrainingError(msg)
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=batch[0].shape[0], sync_dist=True)
        self.curve.add((loss,), batch[0].shape[0])
        return loss

    def on_train_start(self) -> None:
        self.curve.start(self.trainer.estimated_stepping_batches)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.curve.after_step(self)

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        generator = validation_generator(batch_idx)
        self.log("val/loss", self.loss(batch, generator), on_step=False, on_epoch=True,
                 batch_size=batch[0].shape[0], sync_dist=True)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.Adam([p for p in self.parameters() if p.requires_grad], lr=self.lr)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=self.config.lr_plateau_factor, patience=self.config.lr_plateau_patience)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "monitor": "train/loss", "interval": "epoch"}}

    def configure_callbacks(self) -> list[pl.Callback]:
        patience = self.config.early_stopping_patience
        return [TrainValGapStopping(patience)] if patience is not None else []

    # ---- sampling -------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, cond: torch.Tensor, steps: int, batch_size: int = 100,
               seed: int | torch.Generator = 0, offset: int | None = None) -> torch.Tensor:
        """Showers (N, n_features) float32 in preprocessed units, on the module's device.

        cond (N, 1) or (N,): the energy condition; steps: the cosine schedule rebuilt at this many steps
        (sample.steps); offset: the noisiest steps skipped (default config.sample_offset),
        so steps - offset network calls; seed: an int or a torch.Generator on the module's device.
        """
        schedule = DDPMSchedule.cosine(steps)
        offset = self.config.sample_offset if offset is None else offset
        generator = seed if isinstance(seed, torch.Generator) else \
            torch.Generator(device=self.device).manual_seed(int(seed))
        cond = cond.reshape(-1).to(device=self.device, dtype=torch.float32)
        showers = []
        for start in range(0, len(cond), batch_size):
            energy = cond[start:start + batch_size]
            noise = torch.randn((len(energy), self.n_features), generator=generator, device=self.device)
            showers.append(ddpm_sample(self._eps_model(energy, schedule), noise, schedule, offset, generator))
        return torch.cat(showers)

    def _eps_model(self, energy: torch.Tensor, schedule: DDPMSchedule) -> EpsModel:
        """The noise estimate at step t of `schedule` for showers of the conditions `energy` (B,)."""
        sigmas, alphabar = schedule.sigmas.tolist(), schedule.alphabar.tolist()

        def eps_model(x: torch.Tensor, t: int) -> torch.Tensor:
            output = self.net(x, torch.full((len(energy),), sigmas[t], device=x.device), energy)
            return eps_from_output(self.config.objective, output, x, torch.tensor(alphabar[t], device=x.device))

        return eps_model
