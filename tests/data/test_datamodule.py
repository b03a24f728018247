"""CaloDataModule: batches, reproducible shuffling, the fixed split, the held-out evaluation file."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from calo_ablate.config import Config
from calo_ablate.data.calochallenge import file_md5, read_showers
from calo_ablate.data.datamodule import CaloDataModule
from calo_ablate.data.source import DataFiles
from calo_ablate.errors import DataError
from calo_ablate.model.caloscore.preprocess import caloscore_preprocessing


@pytest.fixture(scope="module")
def files(photon_dir: Path) -> DataFiles:
    train, evaluation = (photon_dir / "synthetic" / f"dataset_1_photons_{i}.hdf5" for i in (1, 2))
    return DataFiles(train=[train], eval=[evaluation], source="synthetic",
                     checksums={p.name: file_md5(p) for p in (train, evaluation)})


def _config(seed: int = 0, batch_size: int = 64, max_train_events: int | None = 500) -> Config:
    return Config.model_validate({"data": {"dataset": "1-photons", "max_train_events": max_train_events},
                                  "train": {"seed": seed, "batch_size": batch_size}})


@pytest.fixture
def module(files, tmp_path) -> CaloDataModule:
    dm = CaloDataModule(_config(), files, tmp_path / "cache", caloscore_preprocessing(_config().data))
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_batches_are_float32_tuples_of_the_right_shapes(module):
    assert (module.n_voxels, module.n_layers, module.geometry.name) == (368, 5, "1-photons")
    batches = list(module.train_dataloader())
    assert len(batches) == 7                                  # 400 training showers in batches of 64
    cond, layer, voxel = batches[0]
    assert isinstance(batches[0], tuple)
    assert cond.shape == (64, 1) and layer.shape == (64, 5) and voxel.shape == (64, 368)
    assert all(t.dtype == torch.float32 for t in batches[0])
    assert sum(len(b[0]) for b in module.val_dataloader()) == 100


def test_shuffling_follows_the_run_seed_but_the_split_does_not(files, tmp_path):
    cache = tmp_path / "cache"
    first, again, other = (CaloDataModule(_config(seed=s), files, cache, caloscore_preprocessing(_config().data))
                           for s in (0, 0, 1))
    batch = next(iter(first.train_dataloader()))[2]
    assert torch.equal(batch, next(iter(again.train_dataloader()))[2])
    assert not torch.equal(batch, next(iter(other.train_dataloader()))[2])
    assert other.prepared.from_cache                          # same split and statistics for every seed
    np.testing.assert_array_equal(first.prepared.val.voxel, other.prepared.val.voxel)
    loader = again.train_dataloader()
    epochs = [next(iter(loader))[2] for _ in range(2)]
    assert not torch.equal(epochs[0], epochs[1])            # a new order every epoch, the same for every run


def test_train_and_validation_are_disjoint_showers_of_the_training_file(module, files):
    energies, showers = read_showers(files.train[0], "1-photons")
    features = module.preprocessor.transform(energies, showers)
    rows = {row.tobytes(): i for i, row in enumerate(features.voxel)}
    train_rows = {rows[r.tobytes()] for r in module.prepared.train.voxel}
    val_rows = {rows[r.tobytes()] for r in module.prepared.val.voxel}
    assert len(train_rows) == 400 and len(val_rows) == 100 and not train_rows & val_rows


def test_eval_sample_is_deterministic_and_from_the_evaluation_file(module, files):
    energies, showers = module.eval_sample(50, seed=3)
    again = module.eval_sample(50, seed=3)
    np.testing.assert_array_equal(showers, again[1])
    assert not np.array_equal(showers, module.eval_sample(50, seed=4)[1])
    eval_rows = {r.tobytes() for r in read_showers(files.eval[0], "1-photons")[1]}
    train_rows = {r.tobytes() for r in read_showers(files.train[0], "1-photons")[1]}
    assert all(r.tobytes() in eval_rows and r.tobytes() not in train_rows for r in showers)
    assert energies.shape == (50,) and showers.shape == (50, 368)
    with pytest.raises(DataError, match="asked for 601 showers"):
        module.eval_sample(601, seed=0)


def test_evaluation_file_in_training_is_refused(files, tmp_path):
    leaking = DataFiles(files.train + files.eval, files.eval, files.source, files.checksums)
    with pytest.raises(DataError, match="also a training file"):
        CaloDataModule(_config(), leaking, tmp_path)


def test_lightning_fit_consumes_the_batches(module):
    class Probe(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))
            self.shapes: list[tuple[int, ...]] = []

        def training_step(self, batch, batch_idx):
            cond, layer, voxel = batch
            self.shapes.append(tuple(voxel.shape))
            return ((voxel.mean() + layer.mean() + cond.mean()) * self.weight).sum() + self.weight.pow(2).sum()

        def validation_step(self, batch, batch_idx):
            self.log("val/loss", batch[2].mean())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    probe = Probe()
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(probe, datamodule=module)
    assert probe.shapes[0] == (64, 368) and len(probe.shapes) == 7
