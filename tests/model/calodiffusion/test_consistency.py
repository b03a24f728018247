"""Consistency distillation of CaloDiffusion: the loss, the student's weights, the few-step sampler."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from calo_ablate.config import resolve_config
from calo_ablate.errors import ConfigError, TrainingError
from calo_ablate.model.calodiffusion.config import CaloDiffusionConfig
from calo_ablate.model.calodiffusion.consistency import (
    ONLINE_KEY,
    SIGMA_MIN,
    ConsistencyModule,
    consistency_grid,
    consistency_loss,
    consistency_sample,
    target_decay,
    ve_sigmas,
)
from calo_ablate.model.calodiffusion.family import CaloDiffusionFamily
from calo_ablate.model.calodiffusion.module import CaloDiffusionModule
from calo_ablate.model.calodiffusion.schedule import DDPMSchedule
from calo_ablate.study.plan import make_plan
from calo_ablate.study.registry import load_registry

from .conftest import TINY, published_config

TINY_SET = ["model.family=calodiffusion", "model.widths=[8,8,8]", "model.embed_hidden=8", "model.embed_dim=8",
            "model.attention_head_dim=8", "model.norm_groups=4", "model.diffusion_steps=20"]
CONSISTENCY = {"enabled": True, "teacher_steps": 10, "ema_start": 2}
REGISTRY = Path(__file__).resolve().parents[3] / "experiments" / "calodiffusion.yaml"
pytestmark = pytest.mark.usefixtures("one_thread")


def _config(**changes: object) -> CaloDiffusionConfig:
    return CaloDiffusionConfig.model_validate(published_config("1-photons").model_dump() | TINY | changes)


def _teacher() -> CaloDiffusionModule:
    torch.manual_seed(0)
    return CaloDiffusionModule(_config(), "1-photons", 1e-3).requires_grad_(False).eval()


def _student(teacher: CaloDiffusionModule | None = None, lr: float = 1e-3) -> ConsistencyModule:
    return ConsistencyModule(teacher or _teacher(), _config(consistency=CONSISTENCY), "1-photons", lr, seed=1)


def _batch(n: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, generator=g), torch.randn(n, 368, generator=g)


# ---- the loss on a toy whose exact consistency function is known -------------------------------------
def _gaussian_toy(data_std: float):
    """Data N(0, s^2) per element. Its probability-flow trajectories keep x / sqrt(s^2 + sigma^2), so
    f(x, sigma) = x s / sqrt(s^2 + sigma^2) is the exact consistency function; the toy teacher's x0 is the
    one whose DDIM step from sigma_t lands exactly on the trajectory at sigma_{t-1}."""
    sigmas = ve_sigmas(DDPMSchedule.cosine(12)).tolist()

    def consistent(s: float):
        return lambda x, t: x * s / math.sqrt(s ** 2 + sigmas[t] ** 2)

    def teacher(x: torch.Tensor, t: int) -> torch.Tensor:
        ratio = math.sqrt(data_std ** 2 + sigmas[t - 1] ** 2) / math.sqrt(data_std ** 2 + sigmas[t] ** 2)
        q = sigmas[t - 1] / sigmas[t]
        return x * (ratio - q) / (1 - q)

    return consistent, teacher, torch.tensor(sigmas, dtype=torch.float64)


def test_the_loss_is_zero_when_online_target_and_teacher_agree_and_positive_otherwise() -> None:
    consistent, teacher, sigmas = _gaussian_toy(0.7)
    g = torch.Generator().manual_seed(0)
    x0 = 0.7 * torch.randn(64, 5, generator=g, dtype=torch.float64)
    noise = torch.randn(64, 5, generator=g, dtype=torch.float64)
    f = consistent(0.7)
    for t in range(1, len(sigmas)):
        assert float(consistency_loss(f, f, teacher, x0, t, noise, sigmas)) < 1e-20
        assert float(consistency_loss(consistent(0.5), f, teacher, x0, t, noise, sigmas)) > 1e-6   # online off
        assert float(consistency_loss(f, consistent(0.9), teacher, x0, t, noise, sigmas)) > 1e-6   # target off
    # a teacher that only denoises (the Gaussian's posterior mean) is not an exact step: a nonzero loss
    posterior_mean = lambda x, t: x * 0.49 / (0.49 + float(sigmas[t]) ** 2)
    assert float(consistency_loss(f, f, posterior_mean, x0, 5, noise, sigmas)) > 1e-6
    with pytest.raises(ConfigError, match="1 <= t <= 11"):
        consistency_loss(f, f, teacher, x0, 0, noise, sigmas)


# ---- the student -----------------------------------------------------------------------------------
def test_the_student_state_dict_has_the_module_keys_only_and_the_teacher_stays_out() -> None:
    teacher = _teacher()
    student = _student(teacher)
    plain = CaloDiffusionModule(_config(consistency=CONSISTENCY), "1-photons", 1e-3)
    state = student.state_dict()
    assert list(state) == list(plain.state_dict())
    for key, value in teacher.state_dict().items():              # both start as the teacher
        assert torch.equal(state[key], value)
    optimised = {id(p) for group in student.configure_optimizers()["optimizer"].param_groups for p in group["params"]}
    assert optimised == {id(p) for p in student.online.parameters()}
    assert not optimised & {id(p) for p in teacher.parameters()} and not optimised & {id(p) for p in student.net.parameters()}
    plain.load_state_dict(state)                                 # strict: what generate rebuilds loads it


def test_the_teacher_must_match_the_student() -> None:
    torch.manual_seed(0)
    wider = CaloDiffusionModule(_config(widths=[8, 8, 16]), "1-photons", 1e-3)
    with pytest.raises(TrainingError, match="architecture"):
        _student(wider)
    with pytest.raises(TrainingError, match="consistency config is expected"):
        ConsistencyModule(_teacher(), _config(), "1-photons", 1e-3)


def test_a_few_training_steps_reduce_the_consistency_loss() -> None:
    # the loss is in x0 units, where an eps error counts sigma_t times (here t = 5, sigma 1.4): at 1e-3
    # Adam's first steps overshoot on this untrained tiny net, at 1e-5 they descend
    student = _student(lr=1e-5)
    batch = _batch()
    optimizer = student.configure_optimizers()["optimizer"]

    def fixed() -> torch.Tensor:
        return student.loss(batch, torch.Generator().manual_seed(3))

    before = float(fixed().detach())
    for _ in range(4):
        optimizer.zero_grad()
        fixed().backward()
        optimizer.step()
    assert 0.0 < float(fixed().detach()) < before


def test_the_target_copies_then_follows_ema_pytorch_s_warm_up_to_the_decay() -> None:
    decays = [target_decay(step, 10, 0.95) for step in range(1, 200)]
    assert decays[:12] == [0.0] * 12                        # steps 1..11 copy, 12 is the warm-up's k = 0
    assert decays[12] == pytest.approx(1 - 2 ** (-2 / 3))   # k = 1: 0.370
    assert decays[15] == pytest.approx(1 - 5 ** (-2 / 3))
    assert all(a <= b for a, b in itertools.pairwise(decays)) and decays[-1] == 0.95
    assert 0.9 < decays[80] < 0.95                           # 0.95 from k = 89 on
    assert [target_decay(step, 10, 0.95, warmup=False) for step in (11, 12)] == [0.0, 0.95]


@pytest.mark.slow
def test_lightning_training_moves_the_target_by_ema_and_checkpoints_the_online_net(tmp_path: Path) -> None:
    student = _student()
    start = [p.detach().clone() for p in student.net.parameters()]
    cond, x = _batch(8)
    loader = DataLoader(TensorDataset(cond, x), batch_size=2)
    trainer = pl.Trainer(max_steps=5, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(student, loader, loader)
    assert all(torch.isfinite(trainer.callback_metrics[k]) for k in ("train/loss", "val/loss"))
    target, online = list(student.net.parameters()), list(student.online.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(target, start, strict=True))   # the target moved
    assert any(not torch.equal(a, b) for a, b in zip(target, online, strict=True))  # and lags after ema_start
    trainer.save_checkpoint(tmp_path / "student.ckpt")
    checkpoint = torch.load(tmp_path / "student.ckpt", weights_only=True)
    assert ONLINE_KEY in checkpoint and not any(k.startswith(("online", "teacher")) for k in checkpoint["state_dict"])
    resumed = _student()
    resumed.on_load_checkpoint(checkpoint)
    for a, b in zip(resumed.online.parameters(), online, strict=True):
        assert torch.equal(a, b)


# ---- the sampler -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("steps", "grid"), [(1, [29]), (2, [29, 14]), (3, [29, 14, 8]), (5, [29, 14, 8, 2, 1])])
def test_the_grid_is_the_reference_positions_in_descending_noise(steps: int, grid: list[int]) -> None:
    assert consistency_grid(steps, 30) == grid    # positions 0, 15, 21, 27, round(28.5) = 28


@pytest.mark.parametrize("steps", [0, 6])
def test_a_grid_of_more_than_five_or_no_steps_is_refused(steps: int) -> None:
    with pytest.raises(ConfigError, match="expected 1 to 5"):
        consistency_grid(steps, 30)


def test_a_grid_beyond_the_teacher_s_noise_levels_is_refused() -> None:
    assert consistency_grid(5, 20) == [19, 9, 5, 1, 0]
    with pytest.raises(ConfigError, match="teacher_steps=10"):   # round(9.5) = 10: no such level
        consistency_grid(5, 10)


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_the_sampler_evaluates_once_per_grid_level_and_renoises_to_it(steps: int) -> None:
    sigmas = ve_sigmas(DDPMSchedule.cosine(30))
    grid = consistency_grid(steps, 30)
    calls = []

    def denoise(x: torch.Tensor, t: int) -> torch.Tensor:
        calls.append((t, x.clone()))
        return 0.1 * x + t                          # a recognisable x0 per call

    noise = torch.randn(3, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = consistency_sample(denoise, noise, grid, sigmas, torch.Generator().manual_seed(1))
    assert [t for t, _ in calls] == grid
    torch.testing.assert_close(calls[0][1], float(sigmas[grid[0]]) * noise)
    replay = torch.Generator().manual_seed(1)
    for (t_prev, x_prev), (t, x) in itertools.pairwise(calls):
        z = torch.randn(x.shape, generator=replay, dtype=x.dtype)
        expected = 0.1 * x_prev + t_prev + math.sqrt(float(sigmas[t]) ** 2 - SIGMA_MIN ** 2) * z
        torch.testing.assert_close(x, expected)
    torch.testing.assert_close(out, 0.1 * calls[-1][1] + grid[-1])


def test_the_family_trains_a_student_from_a_teacher_and_samples_it_in_k_steps() -> None:
    base = resolve_config("1", "smoke", cli_set=TINY_SET)
    student_config = resolve_config("1", "smoke", cli_set=[*TINY_SET, "model.consistency.enabled=true",
                                                           "model.consistency.teacher_steps=10",
                                                           "train.teacher=base", "sample.steps=2"])
    torch.manual_seed(0)
    teacher = CaloDiffusionFamily(base).module().requires_grad_(False).eval()
    family = CaloDiffusionFamily(student_config)
    student = family.derived_module(teacher)
    assert isinstance(student, ConsistencyModule)
    assert family.n_parameters(student) == CaloDiffusionFamily(base).n_parameters(CaloDiffusionFamily(base).module())
    rebuilt = family.module()                       # what generate loads the finished student into
    rebuilt.load_state_dict(student.state_dict())
    seen = []
    rebuilt.net.register_forward_hook(lambda net, args, out: seen.append(round(float(args[1][0]), 6)))
    (showers,) = family.sample(rebuilt, torch.rand(5, 1), steps=family.sampling_steps(), batch_size=5, seed=0,
                               progress=False)
    assert showers.shape == (5, 368) and bool(torch.isfinite(showers).all())
    noise_levels = DDPMSchedule.cosine(10).sigmas.tolist()     # what the network is fed: sqrt(1 - alphabar)
    assert seen == [round(noise_levels[t], 6) for t in consistency_grid(2, 10)]
    no_teacher = resolve_config("1", "smoke", cli_set=[*TINY_SET, "model.consistency.enabled=true"])
    with pytest.raises(ConfigError, match="train.teacher is not set"):
        CaloDiffusionFamily(no_teacher).module()


def test_the_registry_rows_share_trainings_as_stated_and_chain_the_base() -> None:
    registry = load_registry(REGISTRY, dataset="1", profile="smoke")
    plan = make_plan(registry, seeds=1, checksums={"f.hdf5": "0" * 32})
    cells = {c.ablation.name: c for c in plan.cells}
    keys = {name: c.train_key for name, c in cells.items()}
    assert keys["consistency_1"] == keys["consistency_2"] == keys["consistency_4"] != keys["base"]
    assert keys["layer_diffusion_steps_25"] == keys["layer_diffusion"] != keys["base"]
    assert {cells[f"consistency_{k}"].config.sample.effective_steps for k in (1, 2, 4)} == {1, 2, 4}
    assert all(cells[f"consistency_{k}"].config.train.teacher == "base" for k in (1, 2, 4))
    for row in ("layer_diffusion", "consistency_1"):
        assert not plan.loss_comparable(cells[row])     # another loss: not comparable with the base's
