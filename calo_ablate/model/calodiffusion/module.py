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

LayerDiffusion (config.layer_diffusion.enabled): batches are (cond, layers (B, n_layers + 1), x); the
voxel net is conditioned on [cond, layers] (the true layers in training), the layer net (layer_diffusion.py)
learns the layers with the same objective and schedule, from its own t and noise drawn after the voxel
ones; loss = voxel loss + layer loss, with train/ and val/ voxel_loss and layer_loss logged beside it.
With the option off nothing of this is built and the random draws are the paper model's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig

from calo_ablate.config import canonical_dataset
from calo_ablate.errors import TrainingError
from calo_ablate.geometry import load_geometry
from calo_ablate.model.calodiffusion.config import CaloDiffusionConfig
from calo_ablate.model.calodiffusion.early_stopping import TrainValGapStopping
from calo_ablate.model.calodiffusion.layer_diffusion import LayerResNet
from calo_ablate.model.calodiffusion.network import CaloDiffusionNetwork
from calo_ablate.model.calodiffusion.objective import eps_from_output, training_loss
from calo_ablate.model.calodiffusion.sampler import EpsModel, ddim_sample, ddpm_sample
from calo_ablate.model.calodiffusion.schedule import DDPMSchedule
from calo_ablate.model.chunks import chunked
from calo_ablate.model.curves import StepCurve
from calo_ablate.model.noise import step_generator, validation_generator

__all__ = ["NETWORK_CHUNK_SHOWERS", "CaloDiffusionModule"]

Network = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t, sigma, condition) -> F
# Showers per network call in sampling. Unchunked, dataset 1's U-Net grew the process by 1.8 MiB per shower
# (2.4 GiB peak at batch 1,000, about 18 GiB at 10,000) and ran at 27% of the matmul rate at batch 1,000
# against 45-51% at batch 100 (docs/performance/families.md); 100 is also sample.batch_size's default.
NETWORK_CHUNK_SHOWERS = 100


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
        geometry = load_geometry(self.dataset)
        self.net = CaloDiffusionNetwork(config, geometry)
        self.layer_net = LayerResNet(config, geometry.n_layers + 1) if config.layer_diffusion.enabled else None
        self.schedule = DDPMSchedule.cosine(config.diffusion_steps)

    @property
    def n_features(self) -> int:
        """Length of a shower in the diffusion space."""
        return self.net.n_features

    # ---- losses ---------------------------------------------------------------------------------
    def _draw(self, x0: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(t (B,), unit noise like x0) from `generator` (CPU) when given, else the global generator."""
        b = x0.shape[0]
        if generator is None:
            return torch.randint(0, self.schedule.n_steps, (b,), device=x0.device), torch.randn_like(x0)
        t = torch.randint(0, self.schedule.n_steps, (b,), generator=generator)
        return t, torch.randn(x0.shape, generator=generator).to(device=x0.device, dtype=x0.dtype)

    def losses(self, batch: tuple[torch.Tensor, ...] | list[torch.Tensor],
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(voxel loss, layer loss or None without LayerDiffusion) of one batch; t and noise from
        `generator` (CPU) when given."""
        cond, x0 = batch[0], batch[-1]                                       # (B, 1), (B, D)
        b = x0.shape[0]
        t, noise = self._draw(x0, generator)
        energy = cond.reshape(b)
        if self.layer_net is None:
            return training_loss(self.config.objective, lambda x, sigma: self.net(x, sigma, energy), x0, t,
                                 self.schedule, noise), None
        if len(batch) != 3:
            msg = f"model.layer_diffusion.enabled: batches are (cond, layers, voxels), got {len(batch)} tensors"
            raise TrainingError(msg)
        layers = batch[1]
        condition = torch.cat([cond.reshape(b, 1), layers], dim=1)
        voxel = training_loss(self.config.objective, lambda x, sigma: self.net(x, sigma, condition), x0, t,
                              self.schedule, noise)
        t_layer, noise_layer = self._draw(layers, generator)
        layer_net = self.layer_net
        layer = training_loss(self.config.objective, lambda z, sigma: layer_net(z, sigma, energy), layers,
                              t_layer, self.schedule, noise_layer)
        return voxel, layer

    def loss(self, batch: tuple[torch.Tensor, ...] | list[torch.Tensor],
             generator: torch.Generator | None = None) -> torch.Tensor:
        """The scalar loss on one batch (voxel loss, plus the layer loss with LayerDiffusion)."""
        voxel, layer = self.losses(batch, generator)
        return voxel if layer is None else voxel + layer

    def _log_losses(self, stage: str, batch: tuple[torch.Tensor, ...], generator: torch.Generator) -> torch.Tensor:
        """Log stage/loss (and stage/voxel_loss, stage/layer_loss with LayerDiffusion); return the loss."""
        voxel, layer = self.losses(batch, generator)
        loss = voxel if layer is None else voxel + layer
        n = batch[0].shape[0]
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        if layer is not None:
            for name, value in (("voxel_loss", voxel), ("layer_loss", layer)):
                self.log(f"{stage}/{name}", value.detach(), on_step=False, on_epoch=True, batch_size=n,
                         sync_dist=True)
        return loss

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        loss = self._log_losses("train", batch, step_generator(self.seed, self.global_step, self.global_rank))
        if not bool(torch.isfinite(loss)):
            msg = (f"non-finite CaloDiffusion training loss {float(loss)} at epoch {self.current_epoch}, "
                   f"step {self.global_step} (batch {batch_idx}); try a lower train.lr than {self.lr}")
            raise TrainingError(msg)
        self.curve.add((loss,), batch[0].shape[0])
        return loss

    def on_train_start(self) -> None:
        self.curve.start(self.trainer.estimated_stepping_batches)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.curve.after_step(self)

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        self._log_losses("val", batch, validation_generator(batch_idx))

    def trained_parameters(self) -> Iterator[torch.nn.Parameter]:
        """What the optimizer updates: every trainable parameter of the module."""
        return (p for p in self.parameters() if p.requires_grad)

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        optimizer = torch.optim.Adam(list(self.trained_parameters()), lr=self.lr)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=self.config.lr_plateau_factor, patience=self.config.lr_plateau_patience)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "monitor": "train/loss", "interval": "epoch"}}

    def configure_callbacks(self) -> list[pl.Callback]:
        patience = self.config.early_stopping_patience
        return [TrainValGapStopping(patience)] if patience is not None else []

    # ---- sampling -------------------------------------------------------------------------------
    def _generator(self, seed: int | torch.Generator) -> torch.Generator:
        return seed if isinstance(seed, torch.Generator) else \
            torch.Generator(device=self.device).manual_seed(int(seed))

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, steps: int, batch_size: int = 100,
               seed: int | torch.Generator = 0, offset: int | None = None,
               layers: torch.Tensor | None = None, *, chunk_showers: int = NETWORK_CHUNK_SHOWERS) -> torch.Tensor:
        """Showers (N, n_features) float32 in preprocessed units, on the module's device.

        cond (N, 1) or (N,): the energy condition; steps: the cosine schedule rebuilt at this many steps
        (sample.steps); offset: the noisiest steps skipped (default config.sample_offset),
        so steps - offset network calls; seed: an int or a torch.Generator on the module's device;
        layers (N, n_layers + 1): the layer vector the voxels are conditioned on, required with
        LayerDiffusion (sample_layers) and refused without; chunk_showers: showers per network call inside
        a batch (bounds the activations' memory; the noise and the sampler's updates run on the whole batch,
        so the showers do not depend on it).
        """
        schedule = DDPMSchedule.cosine(steps)
        offset = self.config.sample_offset if offset is None else offset
        generator = self._generator(seed)
        cond = cond.reshape(-1).to(device=self.device, dtype=torch.float32)
        if (layers is None) != (self.layer_net is None):
            msg = f"CaloDiffusion sample: model.layer_diffusion.enabled is {self.layer_net is not None}, so the " \
                  f"layer vector must be {'given' if self.layer_net is not None else 'absent'}"
            raise TrainingError(msg)
        condition = cond if layers is None else \
            torch.cat([cond[:, None], layers.to(device=self.device, dtype=torch.float32)], dim=1)
        network = chunked(self.net, chunk_showers)
        showers = []
        for start in range(0, len(cond), batch_size):
            part = condition[start:start + batch_size]
            noise = torch.randn((len(part), self.n_features), generator=generator, device=self.device)
            showers.append(ddpm_sample(self._eps_model(network, part, schedule), noise, schedule, offset,
                                       generator))
        return torch.cat(showers)

    @torch.no_grad()
    def sample_layers(self, cond: torch.Tensor, steps: int, batch_size: int = 100,
                      seed: int | torch.Generator = 0, offset: int | None = None, *,
                      chunk_showers: int = NETWORK_CHUNK_SHOWERS) -> torch.Tensor:
        """Layer vectors (N, n_layers + 1) float32 from the layer net, DDIM (eta 0) on the cosine schedule
        rebuilt at `steps`, skipping `offset` (default config.sample_offset) noisiest steps; the layer net
        runs on at most chunk_showers showers per call, as in sample."""
        if self.layer_net is None:
            msg = "CaloDiffusion sample_layers: model.layer_diffusion.enabled is false, there is no layer model"
            raise TrainingError(msg)
        schedule = DDPMSchedule.cosine(steps)
        offset = self.config.sample_offset if offset is None else offset
        generator = self._generator(seed)
        cond = cond.reshape(-1).to(device=self.device, dtype=torch.float32)
        network = chunked(self.layer_net, chunk_showers)
        layers = []
        for start in range(0, len(cond), batch_size):
            energy = cond[start:start + batch_size]
            noise = torch.randn((len(energy), self.layer_net.n_features), generator=generator, device=self.device)
            layers.append(ddim_sample(self._eps_model(network, energy, schedule), noise, schedule, offset))
        return torch.cat(layers)

    def _eps_model(self, net: Network, condition: torch.Tensor, schedule: DDPMSchedule) -> EpsModel:
        """The noise estimate of `net` at step t of `schedule` for the conditions (B,) or (B, n_cond)."""
        sigmas, alphabar = schedule.sigmas.tolist(), schedule.alphabar.tolist()

        def eps_model(x: torch.Tensor, t: int) -> torch.Tensor:
            output = net(x, torch.full((len(condition),), sigmas[t], device=x.device), condition)
            return eps_from_output(self.config.objective, output, x, torch.tensor(alphabar[t], device=x.device))

        return eps_model
