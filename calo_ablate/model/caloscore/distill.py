"""Progressive distillation of CaloScore v2 (Salimans & Ho 2022, Algorithm 2 in v-form, as CaloScore v2).

One round: a student of N = model.diffusion.distill.steps DDIM steps learns, per step, what two DDIM
half-steps of the frozen teacher give. Draw i in {0..N-1}, u = (i+1)/N, z_u = alpha_u x + sigma_u eps; the
teacher steps u -> u - 1/(2N) -> s = u - 1/N, and the student's x target is
  x~ = (z_s - (sigma_s / sigma_u) z_u) / (alpha_s - (sigma_s / sigma_u) alpha_u),
the x for which one student DDIM step u -> s lands on z_s (for i = 0, s = 0, x~ is the teacher's x0
estimate at the midpoint, what the teacher's sampler returns). It is turned into a v target; loss = mean
(v_student(z_u, u) - v~)^2, for the layer net and for the voxel net (conditioned on the clean layer
variables), as the base training.
"""

from __future__ import annotations

from typing import Any

import torch

from calo_ablate.config import Config, model_section
from calo_ablate.errors import ConfigError
from calo_ablate.model.caloscore.config import CaloScoreConfig
from calo_ablate.model.caloscore.diffusion import (
    CosineLogSNR,
    VelocityFn,
    ddim_step,
    noisy_sample,
    velocity_target,
)
from calo_ablate.model.caloscore.module import CaloScoreModule
from calo_ablate.model.caloscore.network import CaloScoreNetwork

__all__ = ["DistillModule", "check_round", "distill_target", "distill_v_loss", "student_times"]


def student_times(i: torch.Tensor, student_steps: int, dtype: torch.dtype = torch.float32,
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(u, midpoint, s) in diffusion time for student step indices i (B,) in {0..N-1}: u = (i+1)/N, s = i/N."""
    u = (i + 1).to(dtype) / student_steps
    return u, u - 0.5 / student_steps, u - 1.0 / student_steps


@torch.no_grad()
def distill_target(teacher_fn: VelocityFn, z_u: torch.Tensor, i: torch.Tensor, student_steps: int,
                   schedule: CosineLogSNR) -> torch.Tensor:
    """The student's v target at z_u (B, ...) for step indices i (B,): two teacher DDIM half-steps."""
    u, mid, s = student_times(i, student_steps, z_u.dtype)
    z_mid, _ = ddim_step(teacher_fn, z_u, u, mid, schedule)
    z_s, x0_mid = ddim_step(teacher_fn, z_mid, mid, s, schedule)
    alpha_u, sigma_u = schedule.alpha_sigma(u)
    alpha_s, sigma_s = schedule.alpha_sigma(s)
    shape = (-1, *([1] * (z_u.dim() - 1)))
    a_u, s_u = alpha_u.reshape(shape), sigma_u.reshape(shape)
    ratio = (sigma_s / sigma_u).reshape(shape)
    x_target = (z_s - ratio * z_u) / (alpha_s.reshape(shape) - ratio * a_u)
    x_target = torch.where((i == 0).reshape(shape), x0_mid, x_target)
    eps_target = (z_u - a_u * x_target) / s_u
    return velocity_target(x_target, eps_target, alpha_u, sigma_u)


def distill_v_loss(student_fn: VelocityFn, teacher_fn: VelocityFn, x: torch.Tensor, i: torch.Tensor,
                   eps: torch.Tensor, student_steps: int, schedule: CosineLogSNR) -> torch.Tensor:
    """Mean over all elements of (student v - distillation v target)^2 at z_u = alpha_u x + sigma_u eps."""
    u, _, _ = student_times(i, student_steps, x.dtype)
    alpha_u, sigma_u = schedule.alpha_sigma(u)
    z_u = noisy_sample(x, eps, alpha_u, sigma_u)
    target = distill_target(teacher_fn, z_u, i, student_steps, schedule)
    return torch.mean((student_fn(z_u, u) - target) ** 2)


def check_round(student: Config, teacher: Config) -> int:
    """Raise a ConfigError unless `student` is one progressive-distillation round of `teacher`; return
    the student's steps N.

    A student of N = model.diffusion.distill.steps steps halves its teacher's 2N: a distilled teacher must
    have learnt 2N steps (its distill.steps), a base teacher must sample in 2N (sample.steps x
    steps_factor); the student itself samples in N; both share the noise schedule (the target is computed
    in the student's schedule from the teacher's velocities).
    """
    student_model = model_section(student, CaloScoreConfig)
    n = student_model.diffusion.distill.steps
    if n is None:
        msg = "model.diffusion.distill.steps is not set: the student's DDIM steps N are needed"
        raise ConfigError(msg)
    if teacher.model.family != student.model.family:
        msg = f"train.teacher={student.train.teacher!r}: its model.family={teacher.model.family!r}, " \
              f"expected {student.model.family!r} to distil it"
        raise ConfigError(msg)
    teacher_model = model_section(teacher, CaloScoreConfig)
    teacher_distill = teacher_model.diffusion.distill
    if teacher_distill.enabled:
        if teacher_distill.steps is None:  # DistillConfig refuses enabled without steps: a bug if reached
            msg = f"train.teacher={student.train.teacher!r}: model.diffusion.distill.enabled without steps"
            raise ConfigError(msg)
        teacher_steps, key = teacher_distill.steps, "model.diffusion.distill.steps"
    else:
        teacher_steps, key = teacher.sample.effective_steps, "sample.steps x sample.steps_factor"
    if teacher_steps != 2 * n:
        msg = f"model.diffusion.distill.steps={n}: a student of N steps learns a teacher of 2N = {2 * n} steps, " \
              f"but train.teacher={student.train.teacher!r} has {key} = {teacher_steps}; set distill.steps " \
              f"to {teacher_steps / 2:g} or distil from the round of {2 * n} steps"
        raise ConfigError(msg)
    if student.sample.effective_steps != n:
        msg = f"sample.steps x sample.steps_factor = {student.sample.steps} x {student.sample.steps_factor} = " \
              f"{student.sample.effective_steps}, expected model.diffusion.distill.steps={n}: the student " \
              "samples in the steps it learnt"
        raise ConfigError(msg)
    for field in ("logsnr_min", "logsnr_max", "noise_scale"):
        mine, theirs = getattr(student_model.diffusion, field), getattr(teacher_model.diffusion, field)
        if mine != theirs:
            msg = f"model.diffusion.{field}={mine}, but train.teacher={student.train.teacher!r} has {theirs}: " \
                  "a student shares its teacher's noise schedule"
            raise ConfigError(msg)
    return n


class DistillModule(CaloScoreModule):
    """A CaloScoreModule whose training and validation losses are the distillation losses.

    The teacher (a trained CaloScoreModule; its EMA nets are used, frozen) is held outside the module's
    submodules, so it enters neither the state_dict nor the optimizer; the state_dict is the student's,
    with CaloScoreModule's keys, and the student samples with CaloScoreModule.sample at sample.steps
    (= distill.steps, checked by check_round). student_init teacher: the student's net and its EMA copy
    start from the teacher's EMA weights (the EMA's update count restarts at 0, so its warm-up runs as in
    a fresh training); fresh: both keep CaloScoreModule's new weights.
    """

    _teacher_net: CaloScoreNetwork  # the teacher's EMA net, set in __init__ outside the submodules

    def __init__(self, teacher: CaloScoreModule, config: Config | dict[str, Any], n_voxels: int,
                 n_layers: int) -> None:
        super().__init__(config, n_voxels, n_layers)
        self.student_steps: int = check_round(self.config, teacher.config)
        teacher_net = teacher.ema.net.eval().requires_grad_(False)
        object.__setattr__(self, "_teacher_net", teacher_net)  # not a submodule: not saved, not optimised
        if self.settings.diffusion.distill.student_init == "teacher":
            weights = teacher_net.state_dict()
            try:
                self.net.load_state_dict(weights)
            except RuntimeError as err:
                msg = "model.diffusion.distill.student_init=teacher needs the teacher's architecture " \
                      f"(model.voxel.*, model.layer.*, embeddings); use student_init=fresh for another: {err}"
                raise ConfigError(msg) from None
            self.ema.net.load_state_dict(weights)
            self.ema.updates.zero_()

    def losses(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, voxel_loss, layer_loss) of distillation; the same student step index for both nets."""
        cond, layer, voxel = batch
        teacher = self._teacher_net.to(cond.device)
        i = torch.randint(0, self.student_steps, (cond.shape[0],), generator=generator).to(cond.device)
        layer_eps = torch.randn(layer.shape, generator=generator).to(layer.device)
        voxel_eps = torch.randn(voxel.shape, generator=generator).to(voxel.device)
        layer_loss = distill_v_loss(lambda x, t: self.net.layer_velocity(x, t, cond),
                                    lambda x, t: teacher.layer_velocity(x, t, cond),
                                    layer, i, layer_eps, self.student_steps, self.schedule)
        voxel_loss = distill_v_loss(lambda x, t: self.net.voxel_velocity(x, t, layer, cond),
                                    lambda x, t: teacher.voxel_velocity(x, t, layer, cond),
                                    voxel, i, voxel_eps, self.student_steps, self.schedule)
        return voxel_loss + layer_loss, voxel_loss, layer_loss
