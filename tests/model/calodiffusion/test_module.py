"""CaloDiffusionModule: a tiny model trains and samples on every geometry; Lightning wiring; sampling steps."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import lightning.pytorch as pl
import pandas as pd
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from calo_ablate.errors import TrainingError
from calo_ablate.model.calodiffusion import module as module_namespace
from calo_ablate.model.calodiffusion.config import CaloDiffusionConfig
from calo_ablate.model.calodiffusion.early_stopping import TrainValGapStopping
from calo_ablate.model.calodiffusion.module import CaloDiffusionModule

from .conftest import published_config

TINY = {"widths": [8, 8, 8], "embed_hidden": 8, "embed_dim": 8, "attention_head_dim": 8, "norm_groups": 4,
        "diffusion_steps": 20, "sample_offset": 1}
LR, STEPS = 1e-3, 4  # train.lr and sample.steps in a study
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny convolutions: one thread is fastest




def _tiny(dataset: str, **changes: object) -> CaloDiffusionModule:
    torch.manual_seed(0)
    values = published_config(dataset).model_dump() | TINY | changes
    return CaloDiffusionModule(CaloDiffusionConfig.model_validate(values), dataset, LR)


def _batch(module: CaloDiffusionModule, n: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, generator=g), torch.randn(n, module.n_features, generator=g)


@pytest.mark.parametrize(("dataset", "n_features"), [("1-photons", 368), ("1-pions", 533), ("2", 6_480),
                                                     ("3", 40_500)])
def test_tiny_model_trains_and_samples_on_every_geometry(dataset: str, n_features: int) -> None:
    module = _tiny(dataset)
    assert module.n_features == n_features
    batch = _batch(module)
    optimizer = module.configure_optimizers()["optimizer"]

    def fixed_loss() -> torch.Tensor:   # the same t and noise every time: a deterministic objective
        return module.loss(batch, torch.Generator().manual_seed(1))

    before = float(fixed_loss())
    glam_before = [p.detach().clone() for p in module.net.glam.parameters()] if module.net.glam else []
    for _ in range(4):
        optimizer.zero_grad()
        fixed_loss().backward()
        optimizer.step()
    after = float(fixed_loss())
    assert torch.isfinite(torch.tensor([before, after])).all() and after < before
    if glam_before:   # GLaM learned: trained jointly with the U-Net
        assert any(not torch.equal(a, b) for a, b in zip(glam_before, module.net.glam.parameters(), strict=True))
    showers = module.sample(batch[0], STEPS, batch_size=2, seed=3)
    assert showers.shape == (2, n_features) and bool(torch.isfinite(showers).all())
    torch.testing.assert_close(module.sample(batch[0], STEPS, batch_size=2, seed=3), showers)


@pytest.mark.parametrize(("steps", "offset", "calls"), [(STEPS, None, 3), (6, 2, 4), (5, 0, 5)])
def test_sampling_makes_steps_minus_offset_network_calls(steps, offset, calls) -> None:
    module = _tiny("1-photons")
    seen = []
    module.net.register_forward_hook(lambda net, args, out: seen.append(float(args[1][0])))
    module.sample(torch.rand(3, 1), steps=steps, offset=offset, batch_size=3)
    assert len(seen) == calls and seen == sorted(seen, reverse=True)   # from the noisiest sigma down


def test_a_non_finite_loss_stops_training_with_a_message() -> None:
    module = _tiny("1-photons")
    cond, x = _batch(module)
    x[0, 0] = float("nan")
    with pytest.raises(TrainingError, match="non-finite CaloDiffusion training loss"):
        module.training_step((cond, x), 0)


def test_lightning_fit_logs_losses_steps_the_plateau_scheduler_and_reloads(tmp_path: Path) -> None:
    module = _tiny("1-photons", lr_plateau_patience=0)
    cond, x = _batch(module, n=8)
    loader = DataLoader(TensorDataset(cond, x), batch_size=4)
    logger = CSVLogger(tmp_path, name="fit")
    trainer = pl.Trainer(max_epochs=3, accelerator="cpu", logger=logger, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, loader, loader)
    metrics = trainer.callback_metrics
    assert {"train/loss", "val/loss"} <= set(metrics) and all(torch.isfinite(metrics[k]) for k in metrics)
    logged = pd.read_csv(Path(logger.log_dir) / "metrics.csv")
    curve = logged.dropna(subset=["train_steps/loss"])  # the step curve: 6 optimizer steps, one point each
    assert list(curve["step"]) == list(range(6)) and (curve["train_steps/lr"] == LR).all()
    scheduler = trainer.lr_scheduler_configs[0]
    assert isinstance(scheduler.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert scheduler.monitor == "train/loss"
    assert scheduler.scheduler.last_epoch == 3   # stepped once per epoch on the training loss
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    loaded = CaloDiffusionModule.load_from_checkpoint(tmp_path / "model.ckpt")
    assert loaded.config == module.config and loaded.dataset == "1-photons" and loaded.lr == LR
    generator = torch.Generator().manual_seed(5)
    expected = module.loss((cond, x), generator)
    torch.testing.assert_close(loaded.loss((cond, x), torch.Generator().manual_seed(5)), expected)


@pytest.mark.parametrize(("changes", "n_features"), [
    ({"glam": "fixed"}, 1_500),
    ({"cylindrical": False}, 368),
    ({"rz_channels": False, "phi_channel": False}, 368),
    ({"block_attention": False, "mid_attention": False}, 368),
    ({"objective": "hybrid_weight"}, 368),
])
def test_every_registry_switch_trains_and_samples(changes: dict, n_features: int) -> None:
    module = _tiny("1-photons", **changes)
    assert module.n_features == n_features
    batch = _batch(module)
    loss = module.training_step(batch, 0)
    loss.backward()
    assert bool(torch.isfinite(loss))
    assert module.sample(batch[0], steps=2, offset=0).shape == (2, n_features)


def test_early_stopping_counts_consecutive_epochs_with_validation_not_below_training() -> None:
    callback = TrainValGapStopping(patience=3)
    trainer = SimpleNamespace(callback_metrics={}, should_stop=False)
    history = [(1.0, 1.1), (1.0, 1.0), (1.0, 0.9), (1.0, 1.2), (1.0, 1.3)]   # (train, val): reset at epoch 3
    for train, val in history:
        trainer.callback_metrics = {"train/loss": torch.tensor(train), "val/loss": torch.tensor(val)}
        callback.on_train_epoch_end(trainer, None)
    assert (callback.count, trainer.should_stop) == (2, False)
    callback.on_train_epoch_end(trainer, None)
    assert trainer.should_stop
    assert isinstance(_tiny("2").configure_callbacks()[0], TrainValGapStopping)
    assert _tiny("2", early_stopping_patience=None).configure_callbacks() == []


def test_training_noise_is_keyed_by_seed_and_step_not_the_global_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    """Common random numbers: the same seed and step give the same t and noise, whatever the global RNG did."""
    drawn: list[tuple[torch.Tensor, torch.Tensor]] = []
    real = module_namespace.training_loss

    def recording(objective: str, model: object, x0: torch.Tensor, t: torch.Tensor, schedule: object,
                  noise: torch.Tensor) -> torch.Tensor:
        drawn.append((t.clone(), noise.clone()))
        return real(objective, model, x0, t, schedule, noise)

    monkeypatch.setattr(module_namespace, "training_loss", recording)
    modules = [_tiny("1-photons"), _tiny("1-photons", widths=[8, 8]), _tiny("1-photons")]
    modules[2].seed = 1
    batch = _batch(modules[0])
    for module in modules:
        torch.rand(17 * (len(drawn) + 1))  # the global stream moves differently before every call
        module.training_step(batch, 0)
    assert torch.equal(drawn[0][0], drawn[1][0]) and torch.equal(drawn[0][1], drawn[1][1])  # other architecture
    assert not torch.equal(drawn[0][1], drawn[2][1])  # another seed
