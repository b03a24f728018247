"""StudentModule: CaloFlow II's probability density distillation of flow-II into an inverse-autoregressive flow.

The student (model.student.enabled) is a CaloFlowModule whose flow2 is an IAF (flows.build_flow with
inverse_autoregressive): it samples with one MADE pass per block. Its flow-I is the teacher's, copied
in and frozen. The frozen teacher is held outside the module's children, so the state_dict holds
flow1.* and flow2.* (the student) exactly as CaloFlowFamily.module() builds them for a student config.
Per batch (features as in module.py, noise from the same generators):
- x-loss: real x with its condition c; z_T = teacher(x | c); x_S = student^-1(z_T | c);
  L_x = mean over the batch of sum_dim (x_S - x)^2;
- z-loss: z ~ N(0, z_width^2 I); the batch's E_inc with layer energies drawn from flow-I; x' = student^-1(z);
  z' = teacher(x'); L_z = mean of sum_dim (z' - z)^2;
- loss = (1 - beta) L_z + beta L_x. Logged as the family's LOSS_NAMES: loss; flow1_nll, the kept flow-I's
  negative log-likelihood; flow2_nll, the teacher's negative log-likelihood of the student's z-loss
  samples x' (the cross-entropy part of KL(student || teacher)).
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig

from calo_ablate.errors import TrainingError
from calo_ablate.model.caloflow.config import CaloFlowConfig
from calo_ablate.model.caloflow.module import CaloFlowModule
from calo_ablate.model.caloflow.preprocess import (
    flow1_condition,
    flow1_features,
    flow2_condition,
    flow2_features,
    layer_energies_from_flow1,
)
from calo_ablate.model.caloflow.schedule import FlowSchedules

__all__ = ["StudentModule", "checked_teacher", "x_loss", "z_loss"]


def x_loss(teacher: Any, student: Any, x: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of sum_dim (student^-1(teacher(x)) - x)^2: teacher and student are
    conditioned flows' transforms (data -> latent)."""
    return ((student.inv(teacher(x)) - x) ** 2).sum(dim=1).mean()


def z_loss(teacher: Any, student: Any, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean over the batch of sum_dim (teacher(student^-1(z)) - z)^2, the student's samples x')."""
    x_student = student.inv(z)
    return ((teacher(x_student) - z) ** 2).sum(dim=1).mean(), x_student


class StudentModule(CaloFlowModule):
    """The student of a student config (model.student.enabled), trained against the frozen `teacher`
    (a CaloFlowModule of the teacher's config, the same dataset and flow-I)."""

    teacher: CaloFlowModule  # set in __init__, outside the children

    def __init__(self, config: CaloFlowConfig | dict[str, Any], dataset: str, teacher: CaloFlowModule,
                 seed: int = 0) -> None:
        super().__init__(config, dataset, seed=seed)
        if not self.config.student.enabled:
            msg = "StudentModule: model.student.enabled is false; a student config is expected"
            raise TrainingError(msg)
        self.flow1.load_state_dict(teacher.flow1.state_dict())
        self.flow1.requires_grad_(False)
        teacher.eval().requires_grad_(False)
        object.__setattr__(self, "teacher", teacher)  # not a child: never in the state_dict

    def on_fit_start(self) -> None:
        self.teacher.to(self.device)

    def train(self, mode: bool = True) -> StudentModule:
        super().train(mode)
        self.flow1.eval()  # frozen: no dropout
        return self

    def nll(self, batch: tuple[torch.Tensor, ...] | list[torch.Tensor],
            generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, flow1_nll, flow2_nll) of one batch: see the module docstring."""
        e_inc, noisy = self.noisy_showers(batch, generator)
        dtype, c = self.flow_dtype, self.config
        x1, c1 = (t.to(dtype) for t in flow1_features(noisy[0], e_inc, self.slices, c))
        x2, c2 = (t.to(dtype) for t in flow2_features(noisy[1], e_inc, self.slices, c))
        flow1_nll = -self.flow1(c1).log_prob(x1).mean()
        loss_x = x_loss(self.teacher.flow2(c2).transform, self.flow2(c2).transform, x2)
        z1, z = (torch.randn(shape, generator=generator, dtype=dtype).to(x2.device)
                 for shape in (x1.shape, x2.shape))
        with torch.no_grad():
            s1 = self.flow1(flow1_condition(e_inc).to(dtype)).transform.inv(z1)
            layers = layer_energies_from_flow1(s1.double(), e_inc, c)
        cz = flow2_condition(e_inc, layers, c.layer_log_offset).to(dtype)
        z = c.student.z_width * z
        teacher_z = self.teacher.flow2(cz)
        loss_z, x_student = z_loss(teacher_z.transform, self.flow2(cz).transform, z)
        flow2_nll = -teacher_z.log_prob(x_student.detach()).mean()
        beta = c.student.beta
        return (1.0 - beta) * loss_z + beta * loss_x, flow1_nll.detach(), flow2_nll.detach()

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        optimizer = torch.optim.Adam([{"params": list(self.flow2.parameters()), "name": "student"}])
        total = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = FlowSchedules(optimizer, [self.config.student.schedule], total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def checked_teacher(teacher: pl.LightningModule) -> CaloFlowModule:
    """The teacher as a CaloFlowModule of a teacher config; a TrainingError otherwise."""
    if not isinstance(teacher, CaloFlowModule) or teacher.config.student.enabled:
        msg = f"CaloFlow student: the teacher must be a CaloFlow teacher module, got {type(teacher).__name__}"
        raise TrainingError(msg)
    return teacher
