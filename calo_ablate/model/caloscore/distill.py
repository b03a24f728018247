"""Progressive distillation of CaloScore v2 (Salimans & Ho 2022, Algorithm 2 in v-form, as CaloScore v2).

One round: a student of N = sample.steps DDIM steps learns, per step, what two DDIM half-steps of the
frozen teacher give. Draw i in {0..N-1}, u = (i+1)/N, z_u = alpha_u x + sigma_u eps; the teacher steps
u -> u - 1/(2N) -> s = u - 1/N, and the student's x target is
  x~ = (z_s - (sigma_s / sigma_u) z_u) / (alpha_s - (sigma_s / sigma_u) alpha_u)
(for s = 0, x~ is the teacher's x0 estimate at the midpoint), the x for which one student DDIM step
u -> s lands on z_s. It is turned into a v target; loss = mean (v_student(z_u, u) - v~)^2, for the layer
net and for the voxel net (conditioned on the clean layer variables), as the base training.
"""

from __future__ import annotations

import torch

from calo_ablate.errors import ConfigError
from calo_ablate.model.caloscore.diffusion import (
    CosineLogSNR,
    VelocityFn,
    ddim_step,
    noisy_sample,
    velocity_target,
)
from calo_ablate.model.caloscore.module import CaloScoreModule

__all__ = ["DistillModule", "distill_target", "distill_v_loss", "student_times"]


def student_times(i: torch.Tensor, student_steps: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(u, midpoint, s) for student step indices i (B,) in {0..N-1}: u = (i+1)/N, s = i/N."""
    u = (i + 1).float() / student_steps
    return u, u - 0.5 / student_steps, u - 1.0 / student_steps


@torch.no_grad()
def distill_target(teacher_fn: VelocityFn, z_u: torch.Tensor, i: torch.Tensor, student_steps: int,
                   schedule: CosineLogSNR) -> torch.Tensor:
    """The student's v target at z_u (B, ...) for step indices i (B,): two teacher DDIM half-steps."""
    u, mid, s = student_times(i, student_steps)
    z_mid, _ = ddim_step(teacher_fn, z_u, u, mid, schedule)
    z_s, x0_mid = ddim_step(teacher_fn, z_mid, mid, s, schedule)
    alpha_u, sigma_u = schedule.alpha_sigma(u)
    alpha_s, sigma_s = schedule.alpha_sigma(s)
    ratio = (sigma_s / sigma_u).reshape(-1, *([1] * (z_u.dim() - 1)))
    a_u = alpha_u.reshape_as(ratio)
    a_s = alpha_s.reshape_as(ratio)
    x_target = (z_s - ratio * z_u) / (a_s - ratio * a_u)
    x_target = torch.where((i == 0).reshape_as(ratio), x0_mid, x_target)
    eps_target = (z_u - a_u * x_target) / sigma_u.reshape_as(ratio)
    return velocity_target(x_target, eps_target, alpha_u, sigma_u)


def distill_v_loss(student_fn: VelocityFn, teacher_fn: VelocityFn, x: torch.Tensor, i: torch.Tensor,
                   eps: torch.Tensor, student_steps: int, schedule: CosineLogSNR) -> torch.Tensor:
    """Mean over all elements of (student v - distillation v target)^2 at z_u = alpha_u x + sigma_u eps."""
    u, _, _ = student_times(i, student_steps)
    alpha_u, sigma_u = schedule.alpha_sigma(u)
    z_u = noisy_sample(x, eps, alpha_u, sigma_u)
    target = distill_target(teacher_fn, z_u, i, student_steps, schedule)
    return torch.mean((student_fn(z_u, u) - target) ** 2)


class DistillModule(CaloScoreModule):
    """A CaloScoreModule whose training and validation losses are the distillation losses.

    The teacher (a trained CaloScoreModule; its EMA nets are used, frozen) is held outside the module's
    submodules, so it enters neither the state_dict nor the optimizer; the state_dict is the student's,
    with CaloScoreModule's keys, and the student samples with CaloScoreModule.sample at sample.steps.
    """

    def __init__(self, teacher: CaloScoreModule, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.student_steps = self.config.sample.effective_steps
        if self.student_steps < 1:
            msg = f"model.diffusion.distill: sample.steps x steps_factor = {self.student_steps}, expected >= 1"
            raise ConfigError(msg)
        teacher_net = teacher.ema.net.eval().requires_grad_(False)
        object.__setattr__(self, "_teacher_net", teacher_net)  # not a submodule: not saved, not optimised
        if self.config.model.diffusion.distill.student_init == "teacher":
            self.load_state_dict(teacher.state_dict())

    def losses(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, voxel_loss, layer_loss) of distillation; the same student step index for both nets."""
        cond, layer, voxel = batch
        batch_size = cond.shape[0]
        teacher = self._teacher_net.to(cond.device)
        i = torch.randint(0, self.student_steps, (batch_size,), generator=generator).to(cond.device)
        layer_eps = torch.randn(layer.shape, generator=generator).to(layer.device)
        voxel_eps = torch.randn(voxel.shape, generator=generator).to(voxel.device)
        layer_loss = distill_v_loss(lambda x, t: self.net.layer_velocity(x, t, cond),
                                    lambda x, t: teacher.layer_velocity(x, t, cond),
                                    layer, i, layer_eps, self.student_steps, self.schedule)
        voxel_loss = distill_v_loss(lambda x, t: self.net.voxel_velocity(x, t, layer, cond),
                                    lambda x, t: teacher.voxel_velocity(x, t, layer, cond),
                                    voxel, i, voxel_eps, self.student_steps, self.schedule)
        return voxel_loss + layer_loss, voxel_loss, layer_loss
