"""Cosine log-SNR schedule, noise control, v-parametrisation and the DDIM sampler against oracles."""

from __future__ import annotations

import math

import pytest
import torch

from calo_ablate.errors import ConfigError
from calo_ablate.model.caloscore.config import DiffusionConfig
from calo_ablate.model.caloscore.diffusion import (
    CosineLogSNR,
    ddim_sample,
    noisy_sample,
    predict_x0,
    sample_layers_then_voxels,
    v_loss,
    velocity_target,
)

T = torch.linspace(0.0, 1.0, 101, dtype=torch.float64)


def test_schedule_endpoints_and_monotonicity() -> None:
    schedule = CosineLogSNR.from_config(DiffusionConfig())
    logsnr = schedule.logsnr(T)
    assert logsnr[0].item() == pytest.approx(20.0, abs=1e-9)
    assert logsnr[-1].item() == pytest.approx(-20.0, abs=1e-9)
    assert (logsnr.diff() < 0).all()
    assert schedule.logsnr(torch.tensor(0.5, dtype=torch.float64)).item() == pytest.approx(0.0, abs=1e-9)


def test_variance_preserving() -> None:
    alpha, sigma = CosineLogSNR(noise_scale=0.5).alpha_sigma(T)
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones_like(T))
    assert (alpha.diff() < 0).all() and (sigma.diff() > 0).all()


@pytest.mark.parametrize("noise_scale", [0.5, 2.0])
def test_noise_scale_shifts_logsnr(noise_scale: float) -> None:
    base, scaled = CosineLogSNR(), CosineLogSNR(noise_scale=noise_scale)
    torch.testing.assert_close(scaled.logsnr(T) - base.logsnr(T), torch.full_like(T, -2 * math.log(noise_scale)))
    a0, s0 = base.alpha_sigma(T)
    a1, s1 = scaled.alpha_sigma(T)
    torch.testing.assert_close(s1 / a1, noise_scale * s0 / a0)


def test_invalid_schedules_are_refused() -> None:
    with pytest.raises(ConfigError, match="noise_scale"):
        CosineLogSNR(noise_scale=1e-4)  # log-SNR at t = 1 would be -20 + 18.4: not pure noise
    with pytest.raises(ConfigError, match="logsnr_min"):
        CosineLogSNR(logsnr_min=5.0, logsnr_max=5.0)


def test_v_parametrisation_identities() -> None:
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(6, 10, generator=g), torch.randn(6, 10, generator=g)
    alpha, sigma = CosineLogSNR().alpha_sigma(torch.rand(6, generator=g))
    x_t = noisy_sample(x, eps, alpha, sigma)
    v = velocity_target(x, eps, alpha, sigma)
    torch.testing.assert_close(predict_x0(x_t, v, alpha, sigma), x)
    torch.testing.assert_close(sigma[:, None] * x_t + alpha[:, None] * v, eps)


def test_v_loss_oracle_and_zero_predictor() -> None:
    schedule = CosineLogSNR()
    g = torch.Generator().manual_seed(1)
    x, eps, t = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g), torch.rand(8, generator=g)
    alpha, sigma = schedule.alpha_sigma(t)

    def oracle(x_t: torch.Tensor, t_: torch.Tensor) -> torch.Tensor:
        a, s = schedule.alpha_sigma(t_)
        return (a[:, None] * x_t - x) / s[:, None]

    assert v_loss(oracle, x, t, schedule, noise=eps).item() == pytest.approx(0.0, abs=1e-8)
    zero = v_loss(lambda x_t, t_: torch.zeros_like(x_t), x, t, schedule, noise=eps)
    assert zero.item() == pytest.approx(velocity_target(x, eps, alpha, sigma).square().mean().item())


def _point_mass_oracle(schedule: CosineLogSNR, point: torch.Tensor):
    """Exact v for data always equal to `point`: v = (alpha x_t - point) / sigma."""
    def velocity(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, s = schedule.alpha_sigma(t)
        return (a[:, None] * x_t - point) / s[:, None]
    return velocity


@pytest.mark.parametrize("steps", [512, 8, 1])
def test_ddim_returns_the_point_of_a_point_mass(steps: int) -> None:
    schedule = CosineLogSNR()
    point = torch.tensor([[0.3, -1.2, 2.0]], dtype=torch.float64)
    x_init = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    out = ddim_sample(_point_mass_oracle(schedule, point), x_init, schedule, steps)
    torch.testing.assert_close(out, point.expand(4, 3))


def test_ddim_time_grid() -> None:
    seen: list[float] = []

    def record(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append(t[0].item())
        return torch.zeros_like(x)

    ddim_sample(record, torch.zeros(2, 3), CosineLogSNR(), steps=4)
    assert seen == pytest.approx([1.0, 0.75, 0.5, 0.25])


def test_ddim_maps_noise_to_a_gaussian() -> None:
    """Data N(mu, s^2): the exact posterior mean gives v; the DDIM ODE must reproduce mean and spread."""
    schedule, mu, s = CosineLogSNR(), 1.5, 0.4

    def velocity(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, sig = (c[:, None] for c in schedule.alpha_sigma(t))
        x0 = mu + a * s**2 / (a**2 * s**2 + sig**2) * (x_t - a * mu)
        return (a * x_t - x0) / sig

    x_init = torch.randn(4000, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    out = ddim_sample(velocity, x_init, schedule, steps=200)
    assert out.mean().item() == pytest.approx(mu, abs=0.02)
    assert out.std().item() == pytest.approx(s, rel=0.03)
    # deterministic and monotone: the ordering of the noise survives
    assert torch.equal(out[:, 0].argsort(), x_init[:, 0].argsort())


def test_layers_then_voxels_conditions_voxels_on_sampled_layers() -> None:
    schedule = CosineLogSNR()
    layer_point = torch.tensor([[0.5, -0.5, 1.0]])
    cond = torch.tensor([[0.2], [0.7]])
    layer_oracle = _point_mass_oracle(schedule, layer_point)

    def layer_velocity(x_t: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return layer_oracle(x_t, t)

    def voxel_velocity(x_t: torch.Tensor, t: torch.Tensor, layer: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        target = layer.sum(dim=1, keepdim=True) + c  # voxels are a function of the layers and condition
        a, s = schedule.alpha_sigma(t)
        return (a[:, None] * x_t - target) / s[:, None]

    layer, voxel = sample_layers_then_voxels(layer_velocity, voxel_velocity, cond, 3, 6, schedule, 16,
                                             generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(layer, layer_point.expand(2, 3))
    torch.testing.assert_close(voxel, (1.0 + cond).expand(2, 6))
