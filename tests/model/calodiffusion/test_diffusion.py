"""CaloDiffusion schedule, objectives and sampler against hand-computed values and exact oracles."""

from __future__ import annotations

import math

import pytest
import torch

from calo_ablate.errors import ConfigError
from calo_ablate.model.calodiffusion.objective import eps_from_output, training_loss
from calo_ablate.model.calodiffusion.sampler import ddpm_sample
from calo_ablate.model.calodiffusion.schedule import DDPMSchedule


def _f(t: float, n: int) -> float:
    return math.cos((t / n + 0.008) / 1.008 * math.pi / 2) ** 2


@pytest.mark.parametrize("n_steps", [400, 200, 100, 50])
def test_cosine_schedule_by_hand(n_steps: int) -> None:
    schedule = DDPMSchedule.cosine(n_steps)
    assert schedule.n_steps == n_steps
    for t in (0, 1, n_steps // 2):
        assert float(schedule.betas[t]) == pytest.approx(max(1e-4, 1 - _f(t + 1, n_steps) / _f(t, n_steps)))
    assert float(schedule.betas[-1]) == pytest.approx(0.9999)   # 1 - f(T)/f(T-1) = 1, clipped
    assert float(schedule.alphabar[n_steps // 2]) == pytest.approx(_f(n_steps // 2 + 1, n_steps) / _f(0, n_steps),
                                                                    rel=1e-3)
    sigmas = schedule.sigmas
    assert torch.all(sigmas[1:] > sigmas[:-1]) and 0 < float(sigmas[0]) < 0.05 and float(sigmas[-1]) > 0.9999
    variance = schedule.posterior_variance
    assert float(variance[0]) == 0.0 and torch.all(variance[1:] <= schedule.betas[1:])


def test_rebuilt_schedule_spans_the_same_noise_range() -> None:
    full, short = DDPMSchedule.cosine(400), DDPMSchedule.cosine(50)
    # the network sees sigma: step 25 of 50 is the noise level of step 200 of 400 (to 1/400 of the range)
    assert float(short.sigmas[24]) == pytest.approx(float(full.sigmas[199]), abs=0.01)


def _oracle(x0: torch.Tensor, schedule: DDPMSchedule):
    """The exact noise of x_t for data that is the single point x0."""
    def eps_model(x: torch.Tensor, t: int) -> torch.Tensor:
        ab = float(schedule.alphabar[t])
        return (x - math.sqrt(ab) * x0) / math.sqrt(1 - ab)
    return eps_model


@pytest.mark.parametrize(("steps", "offset"), [(400, 2), (200, 0), (50, 2)])
def test_ddpm_sampler_recovers_a_point_mass_with_steps_minus_offset_calls(steps: int, offset: int) -> None:
    schedule = DDPMSchedule.cosine(steps)
    x0 = torch.linspace(-1, 1, 6, dtype=torch.float64).expand(3, 6)
    oracle, calls = _oracle(x0, schedule), []

    def counting(x: torch.Tensor, t: int) -> torch.Tensor:
        calls.append(t)
        return oracle(x, t)

    g = torch.Generator().manual_seed(0)
    out = ddpm_sample(counting, torch.randn(3, 6, generator=g, dtype=torch.float64), schedule, offset, g)
    assert calls == list(range(steps - 1 - offset, -1, -1))
    torch.testing.assert_close(out, x0)


def test_sampler_refuses_an_offset_past_the_schedule() -> None:
    with pytest.raises(ConfigError, match="offset"):
        ddpm_sample(lambda x, t: x, torch.zeros(1, 2), DDPMSchedule.cosine(10), offset=10)


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, 5, generator=g), torch.tensor([0, 17, 200, 399]), torch.randn(4, 5, generator=g)


def test_noise_pred_loss_is_the_mse_to_the_noise() -> None:
    schedule = DDPMSchedule.cosine(400)
    x0, t, noise = _batch()
    assert float(training_loss("noise_pred", lambda x, s: noise, x0, t, schedule, noise)) == 0.0
    zero = training_loss("noise_pred", lambda x, s: torch.zeros_like(x), x0, t, schedule, noise)
    assert float(zero) == pytest.approx(float((noise ** 2).mean()))


def test_hybrid_weight_loss_and_its_noise_estimate() -> None:
    schedule = DDPMSchedule.cosine(400)
    x0, t, noise = _batch()
    ab = schedule.alphabar[t].float()[:, None]
    s2 = 1 - ab
    x_t = ab.sqrt() * x0 + s2.sqrt() * noise
    perfect = (x0 - x_t / (1 + s2)) / torch.sqrt(s2 / (1 + s2))     # the F with x0_hat = x0
    seen = []

    def predict(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        seen.append(sigma)
        return perfect

    assert float(training_loss("hybrid_weight", predict, x0, t, schedule, noise)) == pytest.approx(0.0, abs=1e-8)
    torch.testing.assert_close(seen[0], schedule.sigmas[t].float())
    torch.testing.assert_close(eps_from_output("hybrid_weight", perfect, x_t, ab), noise, rtol=1e-4, atol=1e-3)
    # off by one in every x0 entry: sum_b w_b * D / (mean(w) * D) = batch size
    off = perfect + 1 / torch.sqrt(s2 / (1 + s2))
    assert float(training_loss("hybrid_weight", lambda x, s: off, x0, t, schedule, noise)) == pytest.approx(4.0)
    assert torch.equal(eps_from_output("noise_pred", perfect, x_t, ab), perfect)
