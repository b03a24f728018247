"""CaloFlowModule and CaloFlowFamily: a tiny CaloFlow trains with Lightning, logs its losses and curve,
and samples finite, non-negative showers of the dataset's shape."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from calo_ablate.config import resolve_config
from calo_ablate.model.caloflow.family import CaloFlowFamily
from calo_ablate.model.caloflow.module import CaloFlowModule

from .conftest import TINY, features, tiny_sets


def _loader(dataset: str, n: int, seed: int, shuffle: bool) -> DataLoader:
    e_inc, showers = features(dataset, n, seed)
    return DataLoader(TensorDataset(torch.from_numpy(e_inc), torch.from_numpy(showers)), batch_size=64,
                      shuffle=shuffle)


def _fixed_nll(module: CaloFlowModule, batch: tuple[torch.Tensor, ...]) -> float:
    module.eval()
    with torch.no_grad():
        return float(module.nll(batch, torch.Generator().manual_seed(0))[0])


@pytest.mark.parametrize("dataset", ["1-photons", "1-pions"])
def test_tiny_caloflow_trains_logs_and_samples(dataset: str, tmp_path: Path) -> None:
    config = resolve_config(dataset, "smoke", cli_set=tiny_sets())
    family = CaloFlowFamily(config)
    torch.manual_seed(0)
    module = family.module()
    train, val = _loader(dataset, 256, 0, True), _loader(dataset, 64, 1, False)
    held_out = next(iter(val))
    before = _fixed_nll(module, held_out)
    trainer = pl.Trainer(max_epochs=3, logger=CSVLogger(tmp_path), enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, train, val)
    assert _fixed_nll(module, held_out) < before
    logged = set(trainer.callback_metrics)
    assert {f"{stage}/{name}" for stage in ("train", "val") for name in family.loss_names} <= logged
    assert family.loss_names[0] == "loss"
    with open(next(tmp_path.rglob("metrics.csv"))) as f:
        rows = list(csv.DictReader(f))
    curve = [r for r in rows if r.get("train_steps/loss")]
    assert len(curve) >= 3 and all(r["train_steps/flow2_nll"] for r in curve)

    energies_mev = np.array([256.0, 65536.0, 4194304.0])
    pre = family.preprocessing().new()
    cond = torch.from_numpy(pre.condition(energies_mev))
    sampled = family.sample(module, cond, steps=0, batch_size=2, seed=3, progress=False)
    showers = pre.inverse(energies_mev, *(part.float().numpy() for part in sampled))
    assert showers.shape == (3, 368 if dataset == "1-photons" else 533)
    assert np.isfinite(showers).all() and (showers >= 0).all()
    again = family.sample(module, cond, steps=0, batch_size=3, seed=3, progress=False)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(sampled, again, strict=True))  # seed, not batch
    assert set(family.parameter_breakdown(module)) == {"flow1", "flow2"}


def test_noise_is_fresh_every_step_and_fixed_in_validation() -> None:
    torch.manual_seed(0)
    module = CaloFlowModule(TINY, "1-photons").eval()
    batch = tuple(torch.from_numpy(a) for a in features("1-photons", 16))
    with torch.no_grad():
        assert float(module.nll(batch)[0]) != float(module.nll(batch)[0])
        assert _fixed_nll(module, batch) == _fixed_nll(module, batch)
