"""The IAF student of flow-II: its losses, state_dict keys and sampling."""

from __future__ import annotations

import torch

from calo_ablate.model.caloflow.module import CaloFlowModule
from calo_ablate.model.caloflow.student import StudentModule, x_loss, z_loss
from tests.model.caloflow.conftest import synthetic, tiny_config

STUDENT = {"enabled": True, "blocks": 2, "hidden_features": 24, "hidden_layers": 2, "dropout": 0.0,
           "schedule": {"kind": "constant", "max_lr": 1e-3}}


def _batch(n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    energies, showers = synthetic("1-photons", n)
    return (torch.tensor(energies, dtype=torch.float32).reshape(-1, 1) / 1e5,
            torch.tensor(showers, dtype=torch.float32) / 1e5)


def _student() -> StudentModule:
    teacher = CaloFlowModule(tiny_config(), "1-photons", seed=0)
    return StudentModule(tiny_config(student=STUDENT), "1-photons", teacher, seed=0)


def test_losses_finite_and_decreasing() -> None:
    torch.manual_seed(0)
    student = _student()
    optimizer = torch.optim.Adam(student.flow2.parameters(), lr=1e-3)
    batch = _batch()
    losses = []
    for _ in range(15):
        loss, nll1, nll2 = student.nll(batch, torch.Generator().manual_seed(1))
        assert all(bool(torch.isfinite(v)) for v in (loss, nll1, nll2))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0]


def test_state_dict_keys_equal_module() -> None:
    student = _student()
    plain = CaloFlowModule(tiny_config(student=STUDENT), "1-photons", seed=0)
    assert set(student.state_dict()) == set(plain.state_dict())
    assert not any(k.startswith("teacher") for k in student.state_dict())
    plain.load_state_dict(student.state_dict())


def test_student_sampling_shape() -> None:
    s1, s2 = _student().sample(_batch(5)[0], batch_size=3, seed=0)
    assert s1.shape == (5, 5) and s2.shape == (5, 368)
    assert bool(torch.isfinite(s2).all())


def test_losses_match_direct_computation() -> None:
    student = _student().eval()
    c = torch.randn(4, 6)
    teacher_t, student_t = student.teacher.flow2(c).transform, student.flow2(c).transform
    x, z = torch.randn(4, 368), torch.randn(4, 368)
    with torch.no_grad():
        direct_x = sum(float(((student_t.inv(teacher_t(x))[i] - x[i]) ** 2).sum()) for i in range(4)) / 4
        direct_z = sum(float(((teacher_t(student_t.inv(z))[i] - z[i]) ** 2).sum()) for i in range(4)) / 4
        assert abs(float(x_loss(teacher_t, student_t, x)) - direct_x) < 1e-3 * max(1.0, direct_x)
        assert abs(float(z_loss(teacher_t, student_t, z)[0]) - direct_z) < 1e-3 * max(1.0, direct_z)
        # the IAF's sampling direction inverts its density direction
        assert torch.allclose(student_t(student_t.inv(z)), z, atol=1e-3)
