"""Common random numbers: rows of one seed see the same batches, training noise and initial weights."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch

from calo_ablate.config import resolve_config
from calo_ablate.data.source import ensure_data
from calo_ablate.model.caloscore.module import CaloScoreModule
from calo_ablate.model.noise import step_generator
from calo_ablate.runs.tracker import Tracker
from calo_ablate.runs.train import run_training

TINY = ["data.max_train_events=96", "train.batch_size=32", "sample.steps=2", "trainer.threads=1",
        "train.max_epochs=1"]


class _Batches(pl.Callback):
    def __init__(self) -> None:
        self.batches: list[list[torch.Tensor]] = []
        self.first_weights: dict[str, torch.Tensor] = {}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.first_weights = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self.batches.append([x.detach().clone() for x in batch])


def _train(data_dir: Path, tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch,
           *extra: str) -> tuple[_Batches, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Train one tiny run; returns its batches and the (t, noise) of every training loss term."""
    module_namespace = sys.modules[CaloScoreModule.__module__]
    real_v_loss = module_namespace.v_loss
    draws: list[tuple[torch.Tensor, torch.Tensor]] = []

    def recording_v_loss(velocity_fn: Any, x: torch.Tensor, t: torch.Tensor, schedule: Any,
                         noise: torch.Tensor | None = None) -> torch.Tensor:
        if torch.is_grad_enabled():  # training, not validation
            draws.append((t.clone(), noise.clone()))
        return real_v_loss(velocity_fn, x, t, schedule, noise=noise)

    monkeypatch.setattr(module_namespace, "v_loss", recording_v_loss)
    config = resolve_config("1", "smoke", cli_set=[*TINY, f"data.data_dir={data_dir}", *extra], seed=0)
    recorder = _Batches()
    run_training(config, files=ensure_data("1", data_dir, log=lambda _: None), run_dir=tmp_path / name,
                 tracker=Tracker(f"sqlite:///{tmp_path}/mlflow.db"), experiment_name="crn", run_name=name,
                 extra_callbacks=[recorder])
    monkeypatch.setattr(module_namespace, "v_loss", real_v_loss)
    return recorder, draws


def _same(a: list[torch.Tensor] | list[tuple[torch.Tensor, ...]], b: list[Any]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for xs, ys in zip(a, b, strict=True)
                                    for x, y in zip(xs, ys, strict=True))


def test_rows_differing_in_sampling_or_optimizer_see_the_same_batches_noise_and_weights(
        photon_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, base_draws = _train(photon_dir, tmp_path, "base", monkeypatch)
    runs = {"fewer steps": _train(photon_dir, tmp_path, "steps", monkeypatch, "sample.steps_factor=0.5"),
            "higher lr": _train(photon_dir, tmp_path, "lr", monkeypatch, "train.lr=1e-3")}
    assert len(base.batches) == 3 and len(base_draws) == 6  # 3 steps x (layer, voxel)
    for name, (other, draws) in runs.items():
        assert _same(base.batches, other.batches), name
        assert _same(base_draws, draws), name
        assert base.first_weights.keys() == other.first_weights.keys()
        assert all(torch.equal(v, other.first_weights[k]) for k, v in base.first_weights.items()), name
    # the layer and voxel nets of a step share t, and each step draws afresh
    assert torch.equal(base_draws[0][0], base_draws[1][0])
    assert not torch.equal(base_draws[0][0], base_draws[2][0])


def test_training_noise_does_not_move_with_the_parameter_count(
        photon_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A row with another architecture draws more numbers at initialisation; its noise stays the base's."""
    _, base_draws = _train(photon_dir, tmp_path, "base", monkeypatch)
    _, deeper_draws = _train(photon_dir, tmp_path, "deeper", monkeypatch, "model.layer.num_layer=4")
    assert _same(base_draws, deeper_draws)


def test_step_generator_depends_on_seed_step_and_rank_only() -> None:
    def draw(*key: int) -> torch.Tensor:
        return torch.rand(4, generator=step_generator(*key))

    torch.manual_seed(123)
    first = draw(0, 5)
    torch.rand(1000)  # the global stream moves; the keyed one does not
    assert torch.equal(first, draw(0, 5))
    assert not torch.equal(first, draw(1, 5))
    assert not torch.equal(first, draw(0, 6))
    assert not torch.equal(first, draw(0, 5, 1))
    with pytest.raises(ValueError, match="step"):
        step_generator(0, -1)


def test_generation_of_one_seed_starts_from_the_same_noise_in_every_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """Paired generation: rows of one seed (other architecture, other steps) draw the same initial noise."""
    module_namespace = sys.modules[CaloScoreModule.__module__]
    real = module_namespace.sample_layers_then_voxels
    states: list[list[torch.Tensor]] = []

    def recording(*args: Any, generator: torch.Generator, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        states[-1].append(generator.get_state().clone())
        return real(*args, generator=generator, **kwargs)

    monkeypatch.setattr(module_namespace, "sample_layers_then_voxels", recording)
    cond = torch.linspace(0.1, 0.9, 4).reshape(4, 1)
    torch.set_num_threads(1)
    for i, overrides in enumerate(([], ["model.layer.num_layer=4"], ["sample.steps_factor=0.5"])):
        states.append([])
        torch.manual_seed(i)  # another global stream in every row
        module = CaloScoreModule(resolve_config("1", "smoke", cli_set=overrides), 368, 5)
        module.sample(cond, steps=1, batch_size=2, seed=3)
    assert len(states[0]) == 2  # two batches
    for other in states[1:]:
        assert all(torch.equal(a, b) for a, b in zip(states[0], other, strict=True))
