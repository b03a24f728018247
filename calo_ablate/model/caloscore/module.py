"""CaloScoreModule: the CaloScore v2 LightningModule (training, validation, EMA, sampling).

Training step (reference semantics): one t ~ U(0, 1) per shower shared by both nets; the layer net
learns v on the layer variables, the voxel net on the voxels conditioned on the clean layer
variables; loss = voxel loss + layer loss (each the mean over all elements of (v_pred - v)^2).

Optimisation: one Adamax with two parameter groups (layer net; voxel net with the shared energy
embedding). The groups are disjoint and Adamax keeps its state per parameter, so one backward pass of
the summed loss and one step is exactly the reference's two optimisers each stepping its own net with
its own loss's gradient. Learning rate train.lr (times the number of processes, as the reference
scales by workers) with cosine decay to 0 over train.lr_horizon_steps optimizer steps (the published
run's 227,100 by default, so a short run trains at the published run's first rates; None: over this
run's own steps); each parameter tensor's gradient clipped to norm train.grad_clip on its own; an EMA
copy (train.ema_decay, start per train.ema_start) updated after every step, used for sampling.

Logged per epoch: train/loss, train/voxel_loss, train/layer_loss, lr and epoch_seconds (training
plus validation wall time); per validation (once per epoch, or several times per epoch in runs of
fewer than VAL_CURVE_POINTS epochs, see validation_interval): val/loss, val/voxel_loss,
val/layer_loss; the step curve train_steps/{loss,voxel_loss,layer_loss} and train_steps/lr (model/curves.py).
Every metric's MLflow step is, as Lightning logs it, the 0-based index of the last optimizer step before it.
Validation draws t and the noise from a fixed generator per batch, so a given model always gets the
same validation loss.
"""

from __future__ import annotations

import math
import time
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig
from tqdm.auto import tqdm

from calo_ablate.config import Config, model_section
from calo_ablate.errors import TrainingError
from calo_ablate.model.caloscore.config import CaloScoreConfig
from calo_ablate.model.caloscore.diffusion import CosineLogSNR, sample_layers_then_voxels, v_loss
from calo_ablate.model.caloscore.network import CaloScoreNetwork
from calo_ablate.model.chunks import chunked
from calo_ablate.model.curves import EPOCH_SECONDS, EpochLosses, StepCurve
from calo_ablate.model.ema import EMA
from calo_ablate.model.noise import step_generator, validation_generator

__all__ = ["LOSS_NAMES", "NETWORK_CHUNK_SHOWERS", "CaloScoreModule", "cosine_lr_factor", "validation_interval"]

LOSS_NAMES = ("loss", "voxel_loss", "layer_loss")  # logged as train/<name> and val/<name>
VAL_CURVE_POINTS = 4  # validations per run at least (where the epochs allow, see validation_interval)
# Showers per network evaluation in sampling. Unchunked, batch 10,000 peaked at 11 GiB and ran at 33% of the
# matmul rate (activations beyond the caches); in chunks of 256 it keeps batch 100's rate (68-70%) and
# peaks near 1.1 GiB, model and interpreter included (docs/performance/families.md).
NETWORK_CHUNK_SHOWERS = 256


def cosine_lr_factor(step: int, horizon_steps: int) -> float:
    """Factor on train.lr after `step` optimizer steps: cosine from 1 at step 0 to 0 at the horizon.

    As Keras's CosineDecay (alpha 0), the schedule of the published run, whose horizon is its whole
    training (train.lr_horizon_steps); it stays at 0 beyond the horizon.
    """
    return 0.5 * (1.0 + math.cos(math.pi * min(step, horizon_steps) / horizon_steps))


def validation_interval(steps_per_epoch: int, max_epochs: int, points: int = VAL_CURVE_POINTS) -> int | float:
    """Lightning's val_check_interval for at least `points` validations per run, the last at the last step.

    1.0 (once per epoch) when the run has `points` epochs or more. Otherwise k validations per epoch,
    every steps_per_epoch / k batches, with k the smallest divisor of steps_per_epoch from
    ceil(points / max_epochs) up to 4x that (an interval that does not divide the epoch would leave
    its last steps unvalidated, and the final validation loss is the one the report reads); 1.0 when
    there is no such divisor. An epoch of fewer steps than needed validates after each step.
    """
    if max_epochs >= points:
        return 1.0
    per_epoch = math.ceil(points / max_epochs)
    if steps_per_epoch <= per_epoch:
        return 1
    for k in range(per_epoch, 4 * per_epoch + 1):
        if steps_per_epoch % k == 0:
            return steps_per_epoch // k
    return 1.0


class CaloScoreModule(pl.LightningModule):
    """Both CaloScore v2 nets, their EMA copy and the diffusion schedule.

    config: the resolved Config (or its model_dump, as stored in checkpoints); n_voxels, n_layers:
    of the dataset's geometry. Batches are (cond (B, 1), layer (B, L), voxel (B, V)) preprocessed
    float32 tensors.
    """

    def __init__(self, config: Config | dict[str, Any], n_voxels: int, n_layers: int) -> None:
        super().__init__()
        config = config if isinstance(config, Config) else Config.model_validate(config)
        self.save_hyperparameters({"config": config.model_dump(mode="json"), "n_voxels": n_voxels,
                                   "n_layers": n_layers}, logger=False)
        self.config = config
        self.settings = model_section(config, CaloScoreConfig)  # config.model
        self.net = CaloScoreNetwork(self.settings, n_voxels, n_layers)
        if config.train.ema_start == "published":  # a fresh net, as Keras's clone_model, plain decay
            self.ema = EMA(CaloScoreNetwork(self.settings, n_voxels, n_layers), config.train.ema_decay, warmup=False)
        else:
            self.ema = EMA(self.net, config.train.ema_decay)
        self.schedule = CosineLogSNR.from_config(self.settings.diffusion)
        self.epoch_losses = EpochLosses(LOSS_NAMES)
        self.curve = StepCurve(LOSS_NAMES)
        self._epoch_start = 0.0

    # ---- losses ---------------------------------------------------------------------------------
    def losses(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, voxel_loss, layer_loss) scalars for one batch; the same t for both nets.

        generator: draw t and the noise from it (on the CPU, then moved) instead of the global RNG.
        """
        cond, layer, voxel = batch  # (B, 1), (B, L), (B, V)
        if generator is None:
            t = torch.rand(cond.shape[0], device=cond.device)
            layer_noise = voxel_noise = None
        else:
            t = torch.rand(cond.shape[0], generator=generator).to(cond.device)
            layer_noise = torch.randn(layer.shape, generator=generator).to(layer.device)
            voxel_noise = torch.randn(voxel.shape, generator=generator).to(voxel.device)
        layer_loss = v_loss(lambda x, tt: self.net.layer_velocity(x, tt, cond), layer, t, self.schedule,
                            noise=layer_noise)
        voxel_loss = v_loss(lambda x, tt: self.net.voxel_velocity(x, tt, layer, cond), voxel, t,
                            self.schedule, noise=voxel_noise)
        return voxel_loss + layer_loss, voxel_loss, layer_loss

    # ---- training -------------------------------------------------------------------------------
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        losses = self.losses(batch, step_generator(self.config.train.seed, self.global_step, self.global_rank))
        if not bool(torch.isfinite(losses[0])):
            values = ", ".join(f"{n} {float(v)}" for n, v in zip(LOSS_NAMES, losses, strict=True))
            msg = (f"non-finite training loss at epoch {self.current_epoch}, step {self.global_step} "
                   f"(batch {batch_idx}): {values}; try a lower train.lr={self.config.train.lr}")
            raise TrainingError(msg)
        self.epoch_losses.add("train", losses, batch[0].shape[0])
        self.curve.add(losses, batch[0].shape[0])
        return losses[0]

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Clip each parameter tensor's gradient to norm train.grad_clip on its own (g * c / max(|g|, c))."""
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not grads:
            return
        clip = self.config.train.grad_clip
        norms = torch.stack(torch._foreach_norm(grads))  # (n_tensors,)
        scales = clip / norms.float().clamp(min=clip)
        torch._foreach_mul_(grads, list(scales.to(grads[0].dtype).unbind()))

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.ema.update(self.net)
        self.curve.after_step(self)

    def on_train_start(self) -> None:
        self.curve.start(self.trainer.estimated_stepping_batches)

    def on_train_epoch_start(self) -> None:
        self._epoch_start = time.perf_counter()
        self.epoch_losses.reset("train")

    def on_train_epoch_end(self) -> None:
        self.epoch_losses.log(self, "train")
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=False, on_epoch=True,
                 sync_dist=True)
        seconds = time.perf_counter() - self._epoch_start
        self.log(EPOCH_SECONDS, seconds, on_step=False, on_epoch=True, sync_dist=True)

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        lr = self.config.train.lr * self.trainer.world_size
        optimizer = torch.optim.Adamax([
            {"params": list(self.net.layer_parameters()), "name": "layer"},
            {"params": list(self.net.voxel_parameters()), "name": "voxel"},
        ], lr=lr)
        horizon = self.config.train.lr_horizon_steps or max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: cosine_lr_factor(step, horizon))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ---- validation -----------------------------------------------------------------------------
    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        generator = validation_generator(batch_idx)
        self.epoch_losses.add("val", self.losses(batch, generator), batch[0].shape[0])

    def on_validation_epoch_start(self) -> None:
        self.epoch_losses.reset("val")

    def on_validation_epoch_end(self) -> None:
        self.epoch_losses.log(self, "val")

    # ---- sampling -------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, cond: torch.Tensor, steps: int | None = None, batch_size: int | None = None,
               seed: int | torch.Generator = 0, progress: bool = False, precision: str | None = None,
               *, chunk_showers: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Generate with the EMA weights: layer variables first, then voxels conditioned on them.

        cond (N, 1): incident-energy condition (preprocessed); steps: DDIM steps (default
        sample.effective_steps); batch_size: showers per batch (default sample.batch_size);
        seed: an int or a torch.Generator on the module's device (the noise depends on batch_size).
        precision: "32-true" or "bf16-mixed" (bf16 autocast of the nets; the DDIM update stays fp32),
        default sample.precision.
        chunk_showers: showers per network evaluation inside a batch (default NETWORK_CHUNK_SHOWERS):
        bounds the activations' memory of a large batch. The batch's noise is drawn whole and its DDIM
        update runs on the whole batch, so the showers do not depend on it (within float rounding).
        Returns (layer (N, L), voxel (N, V)) float32 in preprocessed units, on the module's device.
        """
        steps = steps or self.config.sample.effective_steps
        batch_size = batch_size or self.config.sample.batch_size
        chunk = chunk_showers or NETWORK_CHUNK_SHOWERS
        device = self.device
        generator = seed if isinstance(seed, torch.Generator) else \
            torch.Generator(device=device).manual_seed(int(seed))
        net = self.ema.net
        autocast = torch.autocast(device.type, dtype=torch.bfloat16,
                                  enabled=(precision or self.config.sample.precision) == "bf16-mixed")

        def layer_velocity(x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
            with autocast:
                return net.layer_velocity(x, t, c).float()

        def voxel_velocity(x: torch.Tensor, t: torch.Tensor, layer: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
            with autocast:
                return net.voxel_velocity(x, t, layer, c).float()

        layer_in_chunks, voxel_in_chunks = chunked(layer_velocity, chunk), chunked(voxel_velocity, chunk)
        layers, voxels = [], []
        for start in tqdm(range(0, cond.shape[0], batch_size), desc="batches", unit="batch",
                          disable=not progress):
            c = cond[start:start + batch_size].to(device=device, dtype=torch.float32)
            layer, voxel = sample_layers_then_voxels(
                layer_in_chunks, voxel_in_chunks, c, net.n_layers, net.n_voxels, self.schedule, steps,
                generator=generator)
            layers.append(layer)
            voxels.append(voxel)
        return torch.cat(layers), torch.cat(voxels)
