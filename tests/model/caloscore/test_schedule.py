"""The published run's learning-rate schedule and the switches of the update rule (dropout, EMA start)."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import pytest
import torch

from calo_ablate.config import PUBLISHED_LR_HORIZON_STEPS, resolve_config
from calo_ablate.model.caloscore.module import CaloScoreModule, cosine_lr_factor, validation_interval
from calo_ablate.model.caloscore.network import CaloScoreNetwork


def _steps_per_run(profile: str) -> int:
    """Optimizer steps of a dataset-1 run with the profile's sizes (the last batch of an epoch kept)."""
    config = resolve_config("1", profile)
    n_train = round(config.data.max_train_events * (1 - config.data.val_fraction))
    return math.ceil(n_train / config.train.batch_size) * config.train.max_epochs


def test_default_horizon_is_the_published_run() -> None:
    # 300 epochs of 80 % of the 121,000 training showers at batch 128
    assert PUBLISHED_LR_HORIZON_STEPS == 300 * math.ceil(0.8 * 121_000 / 128) == 227_100
    for profile in ("smoke", "quick", "full"):
        assert resolve_config("1", profile).train.lr_horizon_steps == PUBLISHED_LR_HORIZON_STEPS


def test_cosine_factor_at_start_middle_horizon_and_beyond() -> None:
    assert cosine_lr_factor(0, 1000) == 1.0
    assert cosine_lr_factor(500, 1000) == pytest.approx(0.5)
    assert cosine_lr_factor(1000, 1000) == pytest.approx(0.0, abs=1e-15)
    assert cosine_lr_factor(5000, 1000) == pytest.approx(0.0, abs=1e-15)


def test_quick_profile_trains_at_the_published_runs_first_rates() -> None:
    last = _steps_per_run("quick")
    assert last == 60
    assert cosine_lr_factor(last, PUBLISHED_LR_HORIZON_STEPS) >= 0.99
    # the published run after two of its epochs (the seed study's budget) is still above 0.999
    assert cosine_lr_factor(2 * 757, PUBLISHED_LR_HORIZON_STEPS) > 0.999


def _lrs(module: CaloScoreModule, steps: int) -> list[float]:
    module.trainer = pl.Trainer(max_steps=steps, logger=False, enable_checkpointing=False,
                                enable_progress_bar=False)
    setup = module.configure_optimizers()
    optimizer, scheduler = setup["optimizer"], setup["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(steps + 1):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


@pytest.mark.parametrize(("horizon", "at_end"), [(None, 0.0), (40, 0.5), (PUBLISHED_LR_HORIZON_STEPS, 1.0)])
def test_scheduler_follows_the_configured_horizon(horizon: int | None, at_end: float) -> None:
    config = resolve_config("1", "smoke", cli_set=[f"train.lr_horizon_steps={'null' if horizon is None else horizon}"])
    lrs = _lrs(CaloScoreModule(config, 368, 5), 20)
    assert lrs[0] == pytest.approx(config.train.lr)
    assert lrs[20] / lrs[0] == pytest.approx(at_end, abs=1e-6)


def _dropout_rates(net: CaloScoreNetwork) -> set[float]:
    return {m.p for m in net.layer_net.modules() if isinstance(m, torch.nn.Dropout)}


def test_layer_net_dropout_only_with_the_switch() -> None:
    config = resolve_config("1", "smoke")
    assert config.model.layer.dropout == 0.1
    assert _dropout_rates(CaloScoreNetwork(config.model, 368, 5)) == {0.0}
    config = resolve_config("1", "smoke", cli_set=["model.layer.dropout_in_training=true"])
    assert _dropout_rates(CaloScoreNetwork(config.model, 368, 5)) == {0.1}


def test_ema_start_published_is_a_fresh_net_with_plain_decay() -> None:
    torch.manual_seed(0)
    warm = CaloScoreModule(resolve_config("1", "smoke"), 368, 5)
    assert all(torch.equal(a, b) for a, b in zip(warm.net.parameters(), warm.ema.net.parameters(), strict=True))
    assert warm.ema.current_decay() == pytest.approx(0.1)
    published = CaloScoreModule(resolve_config("1", "smoke", cli_set=["train.ema_start=published"]), 368, 5)
    trained = dict(published.net.named_parameters())
    differs = [name for name, p in published.ema.net.named_parameters() if p.any() and not torch.equal(p, trained[name])]
    assert "voxel_net.unet.lift.weight" in differs
    assert published.ema.current_decay() == published.config.train.ema_decay


@pytest.mark.parametrize(("steps_per_epoch", "epochs", "expected"), [
    (30, 2, 15),     # quick: validations after steps 15, 30, 45, 60
    (757, 300, 1.0),  # full: once per epoch
    (2, 1, 1),        # smoke: after each of its 2 steps
    (12, 1, 3),
    (31, 2, 1.0),     # no divisor of 31 in 2..8: once per epoch
])
def test_validation_interval_ends_on_the_last_step(steps_per_epoch: int, epochs: int, expected: float) -> None:
    assert validation_interval(steps_per_epoch, epochs) == expected
