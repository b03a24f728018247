"""Consistency distillation of CaloDiffusion (the authors' train_consis.py and Consistency sampler) and its sampler.

Variance-exploding view of the discrete cosine schedule rebuilt at N = model.consistency.teacher_steps:
sigma_t = sqrt(1 - alphabar_t) / sqrt(alphabar_t), x_t = x0 + sigma_t eps. A network of the family (fed
the variance-preserving input sqrt(alphabar_t) x_t and sqrt(1 - alphabar_t), as in training) is a
denoiser: x0_hat = x_t - sigma_t eps_hat, eps_hat from the network output by the family's objective.
Per training step: one t in {1..N-1} for the whole batch, eps ~ N(0, I), x_t = x0 + sigma_t eps;
the frozen teacher takes one DDIM (eta 0) step, x_{t-1} = x0_T + sigma_{t-1} (x_t - x0_T) / sigma_t;
the target network (an EMA of the online one) denoises x_{t-1} at t - 1, the online network x_t at t;
loss = mean squared difference of the two x0 estimates. The online network starts as a copy of the
teacher, and so does the target: target <- decay target + (1 - decay) online after every optimizer step,
with the decay of ema_pytorch's EMA(beta = ema_decay, update_after_step = ema_start, update_every = 1) and
its default warm-up (inv_gamma 1, power 2/3; target_decay).

Sampling with k = 1..5 evaluations: the noise levels sigma of the schedule in descending order,
s_i = sigma(t = N - 1 - i); the k-step grid is the first k of the positions 0, round(0.5 N),
round(0.7 N), round(0.9 N), round(0.95 N) (Python's round, half to even), so one step evaluates
once at sigma_max = sigma(N - 1). x = sigma_max z; then for each grid level: x0 = denoise(x, level);
before the next level x = x0 + sqrt(level_next^2 - SIGMA_MIN^2) z. The last x0 is the sample.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import lightning.pytorch as pl
import torch

from calo_ablate.errors import ConfigError, TrainingError
from calo_ablate.model.calodiffusion.config import CONSISTENCY_MAX_STEPS, CaloDiffusionConfig
from calo_ablate.model.calodiffusion.module import NETWORK_CHUNK_SHOWERS, CaloDiffusionModule, Network
from calo_ablate.model.calodiffusion.network import CaloDiffusionNetwork
from calo_ablate.model.calodiffusion.objective import eps_from_output
from calo_ablate.model.calodiffusion.schedule import DDPMSchedule
from calo_ablate.model.chunks import chunked

__all__ = ["GRID_FRACTIONS", "SIGMA_MIN", "ConsistencyModule", "consistency_grid", "consistency_loss",
           "consistency_sample", "denoiser", "target_decay", "ve_sigmas"]

GRID_FRACTIONS = (0.0, 0.5, 0.7, 0.9, 0.95)   # positions in the descending noise levels, times N
SIGMA_MIN = 0.002
ONLINE_KEY = "consistency_online"             # the online network's weights in a checkpoint

Denoiser = Callable[[torch.Tensor, int], torch.Tensor]   # (x_t (B, D) variance-exploding, step t) -> x0 (B, D)
WARMUP_POWER = 2.0 / 3.0                                  # ema_pytorch's default power (inv_gamma 1)


def target_decay(step: int, ema_start: int, ema_decay: float, warmup: bool = True) -> float:
    """The target's decay after optimizer step `step` (1, 2, ...): 0 (a copy of the online weights) while
    step - 1 <= ema_start; then ema_decay, or with the warm-up 0 at k = step - ema_start - 2 <= 0 and
    min(ema_decay, 1 - (1 + k)^(-2/3)) after (ema_pytorch counts its updates from 0)."""
    if step - 1 <= ema_start:
        return 0.0
    if not warmup:
        return ema_decay
    k = step - ema_start - 2
    return 0.0 if k <= 0 else min(ema_decay, 1.0 - (1.0 + k) ** -WARMUP_POWER)


def ve_sigmas(schedule: DDPMSchedule) -> torch.Tensor:
    """(N,) float64 sqrt(1 - alphabar_t) / sqrt(alphabar_t)."""
    return torch.sqrt((1 - schedule.alphabar) / schedule.alphabar)


def denoiser(net: Network, objective: str, condition: torch.Tensor, schedule: DDPMSchedule) -> Denoiser:
    """x0 estimates of the family's network `net` (x_vp, sqrt(1 - alphabar), condition) -> output."""
    alphabar = schedule.alphabar.tolist()

    def denoise(x: torch.Tensor, t: int) -> torch.Tensor:
        scale, noise_level = alphabar[t] ** 0.5, (1 - alphabar[t]) ** 0.5
        x_vp = scale * x
        sigma = torch.full((x.shape[0],), noise_level, device=x.device, dtype=x.dtype)
        eps = eps_from_output(objective, net(x_vp, sigma, condition), x_vp,
                              torch.tensor(alphabar[t], device=x.device, dtype=x.dtype))
        return x - noise_level / scale * eps

    return denoise


def consistency_loss(online: Denoiser, target: Denoiser, teacher: Denoiser, x0: torch.Tensor, t: int,
                     noise: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Mean over all elements of (online(x_t, t) - target(teacher DDIM step to t - 1, t - 1))^2;
    x0, noise (B, D); t in 1..N-1; sigmas (N,) the variance-exploding noise levels."""
    if not 1 <= t < len(sigmas):
        msg = f"consistency step t={t}: expected 1 <= t <= {len(sigmas) - 1}"
        raise ConfigError(msg)
    sigma, sigma_prev = float(sigmas[t]), float(sigmas[t - 1])
    x_t = x0 + sigma * noise
    with torch.no_grad():
        x0_teacher = teacher(x_t, t)
        x_prev = x0_teacher + sigma_prev / sigma * (x_t - x0_teacher)
        wanted = target(x_prev, t - 1)
    return torch.mean((online(x_t, t) - wanted) ** 2)


def consistency_grid(steps: int, teacher_steps: int) -> list[int]:
    """Schedule indices t (descending noise) of a `steps`-evaluation consistency sampler on N = teacher_steps."""
    if not 1 <= steps <= CONSISTENCY_MAX_STEPS:
        msg = f"consistency sampling: sample.steps x sample.steps_factor = {steps}, expected 1 to " \
              f"{CONSISTENCY_MAX_STEPS} network evaluations"
        raise ConfigError(msg)
    positions = [round(teacher_steps * f) for f in GRID_FRACTIONS[:steps]]
    if positions[-1] >= teacher_steps:
        msg = f"consistency sampling in {steps} steps: grid position {positions[-1]} lies outside the " \
              f"model.consistency.teacher_steps={teacher_steps} noise levels; use more teacher steps or fewer steps"
        raise ConfigError(msg)
    return [teacher_steps - 1 - p for p in positions]


@torch.no_grad()
def consistency_sample(denoise: Denoiser, noise: torch.Tensor, grid: list[int], sigmas: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """x0 (B, D) from the unit noise (B, D) with one denoiser call per grid index (descending noise);
    the re-noising draws from `generator`."""
    x = float(sigmas[grid[0]]) * noise
    x0 = denoise(x, grid[0])
    for t in grid[1:]:
        level = max(float(sigmas[t]) ** 2 - SIGMA_MIN ** 2, 0.0) ** 0.5
        x = x0 + level * torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x0 = denoise(x, t)
    return x0


class ConsistencyModule(CaloDiffusionModule):
    """The consistency student of a trained CaloDiffusionModule (`teacher`, frozen).

    `net` is the target (EMA) network: the weights saved in the state_dict (CaloDiffusionModule's keys)
    and sampled with; it gets no gradient (its outputs are computed without one) and is not optimised,
    but counts as the student's parameters. The online network, which the optimizer updates, and the
    teacher are held outside the submodules (not in the state_dict; the optimizer holds the online's
    parameters only); the online weights travel in checkpoints under ONLINE_KEY, so that a resumed
    training continues them.
    """

    def __init__(self, teacher: pl.LightningModule, config: CaloDiffusionConfig | dict[str, Any], dataset: str,
                 lr: float, seed: int = 0) -> None:
        super().__init__(config, dataset, lr, seed=seed)
        if not self.config.consistency.enabled:
            msg = "ConsistencyModule: model.consistency.enabled is false; a consistency config is expected"
            raise TrainingError(msg)
        if not isinstance(teacher, CaloDiffusionModule) or teacher.layer_net is not None:
            msg = f"CaloDiffusion consistency distillation: the teacher must be a CaloDiffusion module without " \
                  f"LayerDiffusion, got {type(teacher).__name__}"
            raise TrainingError(msg)
        try:
            self.net.load_state_dict(teacher.net.state_dict())
        except RuntimeError as error:
            msg = f"CaloDiffusion consistency distillation: the student's architecture (model.*) differs from " \
                  f"the teacher's: {error}"
            raise TrainingError(msg) from error
        self.teacher_schedule = DDPMSchedule.cosine(self.config.consistency.teacher_steps)
        self.sigmas = ve_sigmas(self.teacher_schedule)
        online = copy.deepcopy(self.net).requires_grad_(True)
        object.__setattr__(self, "online", online)       # not a submodule: not in the state_dict
        object.__setattr__(self, "teacher_net", teacher.net.eval().requires_grad_(False))

    online: CaloDiffusionNetwork
    teacher_net: CaloDiffusionNetwork

    def trained_parameters(self) -> Iterator[torch.nn.Parameter]:
        return iter(self.online.parameters())

    def _place(self) -> None:
        self.online.to(self.device)
        self.teacher_net.to(self.device)

    def losses(self, batch: tuple[torch.Tensor, ...] | list[torch.Tensor],
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, None]:
        """(consistency loss, None): one t in 1..N-1 for the batch, unit noise per shower."""
        self._place()
        cond, x0 = batch[0], batch[-1]
        energy = cond.reshape(x0.shape[0])
        n = self.teacher_schedule.n_steps
        t = int(torch.randint(1, n, (1,), generator=generator))
        noise = torch.randn(x0.shape, generator=generator).to(device=x0.device, dtype=x0.dtype)
        objective, schedule = self.config.objective, self.teacher_schedule
        loss = consistency_loss(denoiser(self.online, objective, energy, schedule),
                                denoiser(self.net, objective, energy, schedule),
                                denoiser(self.teacher_net, objective, energy, schedule), x0, t, noise, self.sigmas)
        return loss, None

    @torch.no_grad()
    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Move the target towards the online network (target_decay)."""
        super().on_train_batch_end(outputs, batch, batch_idx)
        c = self.config.consistency
        decay = target_decay(self.global_step, c.ema_start, c.ema_decay, c.ema_warmup)
        target: list[torch.Tensor] = list(self.net.parameters())
        online = [p.detach() for p in self.online.parameters()]
        if decay == 0.0:
            torch._foreach_copy_(target, online)
        else:
            torch._foreach_lerp_(target, online, 1.0 - decay)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[ONLINE_KEY] = {k: v.detach().cpu() for k, v in self.online.state_dict().items()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if ONLINE_KEY in checkpoint:
            self.online.load_state_dict(checkpoint[ONLINE_KEY])


def sample_consistency_model(module: CaloDiffusionModule, cond: torch.Tensor, steps: int, batch_size: int,
                             seed: int, *, chunk_showers: int = NETWORK_CHUNK_SHOWERS) -> torch.Tensor:
    """Showers (N, n_features) in preprocessed units from a trained consistency model's `net`, run on at most
    chunk_showers showers per call (the noise is drawn for the whole batch, as in CaloDiffusionModule.sample)."""
    config = module.config
    schedule = DDPMSchedule.cosine(config.consistency.teacher_steps)
    sigmas, grid = ve_sigmas(schedule), consistency_grid(steps, schedule.n_steps)
    generator = torch.Generator(device=module.device).manual_seed(int(seed))
    cond = cond.reshape(-1).to(device=module.device, dtype=torch.float32)
    network = chunked(module.net, chunk_showers)
    showers = []
    with torch.no_grad():
        for start in range(0, len(cond), batch_size):
            energy = cond[start:start + batch_size]
            noise = torch.randn((len(energy), module.n_features), generator=generator, device=module.device)
            denoise = denoiser(network, config.objective, energy, schedule)
            showers.append(consistency_sample(denoise, noise, grid, sigmas, generator))
    return torch.cat(showers)
