"""CaloScore v2 progressive distillation: the target's algebra, the module's weights and optimizer, a short
training, the round checks and the few-step registry's chain."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from calo_ablate.config import Config, experiments_dir, resolve_config, with_value
from calo_ablate.errors import ConfigError
from calo_ablate.model.caloscore.diffusion import CosineLogSNR, ddim_sample, ddim_step, predict_x0
from calo_ablate.model.caloscore.distill import DistillModule, check_round, distill_target, distill_v_loss
from calo_ablate.model.caloscore.module import CaloScoreModule
from calo_ablate.study.registry import load_registry

N_VOXELS, N_LAYERS = 368, 5
TINY = {  # a small CaloScore v2 (same structure) so that module tests run in seconds
    "model.embed_dim": 16, "model.voxel.lift_channels": 4, "model.voxel.widths": [8, 16],
    "model.voxel.attention": [False, True], "model.voxel.block_depth": 1, "model.layer.mlp_dim": 16,
    "model.layer.num_layer": 2,
}


def point_mass_velocity(c: torch.Tensor, schedule: CosineLogSNR):
    """v(z, t) = (alpha_t z - c) / sigma_t: the exact velocity of data that is the single point c (B, D).

    It is affine in z and its x0 estimate alpha z - sigma v is c everywhere, so every DDIM step lies on
    one exact trajectory: one step u -> s and two half-steps land on the same z_s.
    """
    def velocity(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alpha, sigma = schedule.alpha_sigma(t)
        return (alpha[:, None] * z - c) / sigma[:, None]
    return velocity


def curved_velocity(c: torch.Tensor, schedule: CosineLogSNR):
    """The point-mass velocity plus a term nonlinear in z and t: DDIM is no longer exact."""
    linear = point_mass_velocity(c, schedule)
    return lambda z, t: linear(z, t) + 0.5 * torch.tanh(1.7 * z + 3.0 * t[:, None]) * torch.sin(5.0 * t[:, None])


def draws(batch: int, dim: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(batch, dim, generator=g, dtype=torch.float64) for _ in range(3))


@pytest.mark.parametrize("student_steps", [2, 4, 64])
def test_one_student_step_with_the_target_lands_on_two_teacher_half_steps(student_steps: int) -> None:
    schedule = CosineLogSNR()
    c, z_u, _ = draws(12, 7)
    teacher = curved_velocity(c, schedule)
    i = torch.arange(12) % (student_steps - 1) + 1  # every i >= 1; i = 0 has its own test
    u, mid, s = ((i + k).double() / student_steps for k in (1, 0.5, 0))
    target = distill_target(teacher, z_u, i, student_steps, schedule)
    z_s_student, _ = ddim_step(lambda z, t: target, z_u, u, s, schedule)
    z_mid, _ = ddim_step(teacher, z_u, u, mid, schedule)
    z_s_teacher, _ = ddim_step(teacher, z_mid, mid, s, schedule)
    torch.testing.assert_close(z_s_student, z_s_teacher, rtol=1e-10, atol=1e-10)
    z_s_one_teacher_step, _ = ddim_step(teacher, z_u, u, s, schedule)
    assert (z_s_one_teacher_step - z_s_teacher).abs().max() > 1e-4  # the target is not the teacher's own v


def test_last_step_target_is_the_teacher_x0_at_the_midpoint() -> None:
    """i = 0 (u = 1/N, s = 0): the student's x0 estimate is what the teacher's 2N-step sampler returns, its
    x0 at the midpoint. With N = 1 that is the teacher's full 2-step DDIM sample from z_1."""
    schedule = CosineLogSNR()
    c, z_1, _ = draws(9, 6, seed=1)
    teacher = curved_velocity(c, schedule)
    i = torch.zeros(9, dtype=torch.long)
    target = distill_target(teacher, z_1, i, 1, schedule)
    alpha_u, sigma_u = schedule.alpha_sigma(torch.ones(9, dtype=torch.float64))
    x0_student = predict_x0(z_1, target, alpha_u, sigma_u)
    torch.testing.assert_close(x0_student, ddim_sample(teacher, z_1, schedule, 2), rtol=1e-12, atol=1e-12)


def test_student_equal_to_an_exact_teacher_has_zero_loss_and_to_a_curved_one_a_small_loss() -> None:
    schedule = CosineLogSNR()
    c, _, eps = draws(64, 10, seed=2)
    i = torch.arange(64) % 8
    exact, curved = point_mass_velocity(c, schedule), curved_velocity(c, schedule)
    exact_loss = distill_v_loss(exact, exact, c, i, eps, 8, schedule)
    curved_loss = distill_v_loss(curved, curved, c, i, eps, 8, schedule)
    zero_student = distill_v_loss(lambda z, t: torch.zeros_like(z), curved, c, i, eps, 8, schedule)
    assert float(exact_loss) < 1e-20
    assert 1e-8 < float(curved_loss) < 0.05 * float(zero_student)


@pytest.fixture(scope="module")
def configs() -> tuple[Config, Config]:
    """(teacher, student): a tiny base sampled in 16 steps and its 8-step distillation round."""
    teacher = resolve_config("1", "smoke", {**TINY, "sample.steps": 16, "train.lr": 3e-3})
    student = resolve_config("1", "smoke", {**TINY, "sample.steps": 16, "sample.steps_factor": 0.5,
                                            "train.lr": 3e-3, "train.teacher": "base",
                                            "model.diffusion.distill.enabled": True,
                                            "model.diffusion.distill.steps": 8})
    return teacher, student


def trained_like_teacher(config: Config, seed: int = 0) -> CaloScoreModule:
    """A CaloScoreModule whose every weight is random (the zero-initialised output layers too), so its
    velocity is a nonlinear function of z; EMA weights equal to the net's, as a loaded teacher's."""
    torch.manual_seed(seed)
    teacher = CaloScoreModule(config, N_VOXELS, N_LAYERS)
    with torch.no_grad():
        for p in teacher.net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    teacher.ema.net.load_state_dict(teacher.net.state_dict())
    return teacher.requires_grad_(False).eval()


def batch(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, generator=g), torch.randn(n, N_LAYERS, generator=g), torch.randn(n, N_VOXELS, generator=g)


def with_init(config: Config, init: str) -> Config:
    return with_value(config, "model.diffusion.distill.student_init", init)


def test_state_dict_is_the_student_alone_and_student_init_sets_its_start(configs: tuple[Config, Config]) -> None:
    teacher_config, student_config = configs
    teacher = trained_like_teacher(teacher_config)
    teacher_ptrs = {t.data_ptr() for t in teacher.state_dict().values()}
    plain_keys = set(CaloScoreModule(student_config, N_VOXELS, N_LAYERS).state_dict())
    for init in ("teacher", "fresh"):
        student = DistillModule(teacher, with_init(student_config, init), N_VOXELS, N_LAYERS)
        state = student.state_dict()
        assert set(state) == plain_keys
        assert not teacher_ptrs & {t.data_ptr() for t in state.values()}
        same = [torch.equal(a, b) for a, b in zip(student.net.parameters(), teacher.ema.net.parameters(), strict=True)]
        ema_same = [torch.equal(a, b) for a, b in
                    zip(student.ema.net.parameters(), teacher.ema.net.parameters(), strict=True)]
        if init == "teacher":
            assert all(same) and all(ema_same) and int(student.ema.updates) == 0
        else:
            assert not any(same) and not any(ema_same)


def test_student_started_from_its_teacher_has_a_small_nonzero_loss(configs: tuple[Config, Config]) -> None:
    teacher_config, student_config = configs
    teacher = trained_like_teacher(teacher_config)
    data = batch(32)
    losses = {init: DistillModule(teacher, with_init(student_config, init), N_VOXELS, N_LAYERS)
              .losses(data, torch.Generator().manual_seed(0))[0].item() for init in ("teacher", "fresh")}
    assert 1e-6 < losses["teacher"] < 0.1 * losses["fresh"]


def test_training_lowers_the_distillation_loss_and_never_touches_the_teacher(configs: tuple[Config, Config],
                                                                              one_thread: None) -> None:
    teacher_config, student_config = configs
    teacher = trained_like_teacher(teacher_config)
    before_teacher = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = DistillModule(teacher, with_init(student_config, "fresh"), N_VOXELS, N_LAYERS)
    probe = batch(64, seed=1)

    def probe_loss() -> float:
        with torch.no_grad():
            return student.losses(probe, torch.Generator().manual_seed(5))[0].item()

    start = probe_loss()
    loader = DataLoader(TensorDataset(*batch(256, seed=2)), batch_size=32, shuffle=True)
    trainer = pl.Trainer(max_steps=40, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, accelerator="cpu", devices=1)
    trainer.fit(student, loader)
    end = probe_loss()
    assert end < 0.7 * start
    optimised = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert not optimised & {id(p) for p in teacher.parameters()}
    assert optimised == {id(p) for p in student.net.parameters()}
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, before_teacher[key]), key


def test_round_checks_name_the_keys(configs: tuple[Config, Config]) -> None:
    teacher_config, student_config = configs
    check_round(student_config, teacher_config)
    four_step_teacher = resolve_config("1", "smoke", {**TINY, "sample.steps": 4})
    with pytest.raises(ConfigError, match=r"distill.steps=8: a student of N steps learns a teacher of 2N = 16.*= 4"):
        check_round(student_config, four_step_teacher)
    with pytest.raises(ConfigError, match=r"= 16, expected model.diffusion.distill.steps=8"):
        check_round(with_value(student_config, "sample.steps_factor", 1.0), teacher_config)
    with pytest.raises(ConfigError, match=r"noise_scale=0.5"):
        check_round(with_value(student_config, "model.diffusion.noise_scale", 0.5), teacher_config)
    with pytest.raises(ConfigError, match="student_init=teacher needs the teacher's architecture"):
        DistillModule(trained_like_teacher(with_value(teacher_config, "model.voxel.block_depth", 2)),
                      student_config, N_VOXELS, N_LAYERS)
    with pytest.raises(ConfigError, match="distill.steps is not set"):
        resolve_config("1", "smoke", {"train.teacher": "base", "model.diffusion.distill.enabled": True})


@pytest.mark.parametrize("profile", ["smoke", "quick"])
def test_fewstep_registry_rounds_halve_their_teachers(profile: str) -> None:
    registry = load_registry(experiments_dir() / "fewstep.yaml", dataset="1", profile=profile)
    configs = {a.name: resolve_config("1", profile, a.overrides) for a in registry.ablations}
    distilled = [name for name, config in configs.items() if config.model.diffusion.distill.enabled]
    steps = {name: config.sample.effective_steps for name, config in configs.items()}
    for name in distilled:
        check_round(configs[name], configs[configs[name].train.teacher])
    assert 1 in {steps[name] for name in distilled}
    naive = {steps[name] for name, config in configs.items()
             if config.train.teacher is None and name != "base"}
    assert naive <= {steps[name] for name in distilled}  # every naive row has its distilled counterpart
