"""Lightning data module: cached features of the training file(s) and the evaluation sample.

Training file(s) -> deterministic subset (data.max_train_events) -> 80/20 train/validation split with a
fixed split seed (the same for every cell) -> the model family's preprocessor fitted on the train part -> features cached (feature_cache.py). The evaluation file(s) never enter training; eval_sample() draws from them.
"""

from __future__ import annotations

import functools
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from calo_ablate.config import Config
from calo_ablate.data.calochallenge import read_showers
from calo_ablate.data.feature_cache import DEFAULT_CACHE_DIR, PreparedData, load_or_build_features
from calo_ablate.data.preprocessing import FeatureArrays, Preprocessing, Preprocessor
from calo_ablate.data.source import DataFiles
from calo_ablate.errors import DataError
from calo_ablate.geometry import load_geometry

__all__ = ["CaloDataModule", "FeatureDataset"]

Batch = tuple[torch.Tensor, ...]   # cond (B, C) first, then the family's other feature arrays


class FeatureDataset(Dataset):
    """Feature arrays as float32 tensors; a batch is fetched with one index operation per tensor."""

    def __init__(self, features: FeatureArrays) -> None:
        self.tensors = tuple(torch.from_numpy(np.ascontiguousarray(part, dtype=np.float32)) for part in features)

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, index: int) -> Batch:
        return tuple(t[index] for t in self.tensors)

    def __getitems__(self, indices: list[int]) -> Batch:
        index = torch.as_tensor(indices, dtype=torch.long)
        return tuple(t[index] for t in self.tensors)


def _keep_batch(batch: Batch) -> Batch:
    """collate_fn: __getitems__ already returns the stacked tuple (cond, ...)."""
    return batch


def _check_disjoint(files: DataFiles) -> None:
    train = {Path(p).resolve() for p in files.train}
    train_md5 = {files.checksums.get(Path(p).name) for p in files.train} - {None}
    for path in files.eval:
        md5 = files.checksums.get(Path(path).name)
        if Path(path).resolve() in train or (md5 is not None and md5 in train_md5):
            msg = f"evaluation file {path} is also a training file (or has the same MD5 {md5}): " \
                  f"the evaluation reference must be held out from training"
            raise DataError(msg)


class CaloDataModule(pl.LightningDataModule):
    """Batches (cond, ...) float32 of the training file(s); held-out showers from the evaluation file(s).

    preprocessing: the model family's (model/interface.py); None for a module that only draws evaluation
    showers (eval_sample), which needs none.
    """

    def __init__(self, config: Config, files: DataFiles, cache_dir: str | Path = DEFAULT_CACHE_DIR,
                 preprocessing: Preprocessing | None = None) -> None:
        super().__init__()
        _check_disjoint(files)
        self.config = config
        self.files = files
        self.cache_dir = Path(cache_dir)
        self.preprocessing = preprocessing
        self.geometry = load_geometry(config.data.dataset)
        self.n_voxels = self.geometry.n_voxels
        self.n_layers = self.geometry.n_layers
        self._prepared: PreparedData | None = None

    @property
    def prepared(self) -> PreparedData:
        """Preprocessor and features, built or loaded from the cache on first use."""
        if self._prepared is None:
            if self.preprocessing is None:
                msg = "CaloDataModule without a preprocessing: pass the model family's to train on its features"
                raise DataError(msg)
            self._prepared = load_or_build_features(self.files, self.config.data, self.cache_dir,
                                                    preprocessing=self.preprocessing)
        return self._prepared

    @property
    def preprocessor(self) -> Preprocessor:
        return self.prepared.preprocessor

    def prepare_data(self) -> None:
        """Once per node: read, split, fit and cache (a no-op when the cache holds them)."""
        _ = self.prepared

    def setup(self, stage: str | None = None) -> None:
        _ = self.prepared

    def _loader(self, features: FeatureArrays, shuffle: bool) -> DataLoader:
        workers = self.config.data.num_workers
        generator = torch.Generator().manual_seed(self.config.train.seed) if shuffle else None
        # Ignored below: torch's stub types collate_fn as a function of a list of samples, but a dataset
        # with __getitems__ (this one) hands it what that method returns, here a Batch
        return DataLoader(FeatureDataset(features), batch_size=self.config.train.batch_size, shuffle=shuffle,
                          generator=generator, num_workers=workers, persistent_workers=workers > 0,
                          collate_fn=_keep_batch)  # type: ignore[arg-type]

    def train_dataloader(self) -> DataLoader:
        """Shuffled by a generator seeded with train.seed: the same run gives the same batches."""
        return self._loader(self.prepared.train, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.prepared.val, shuffle=False)

    def eval_sample(self, n_events: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """`n_events` showers drawn without replacement from the evaluation file(s) by `seed`:
        (incident energies (n,) MeV, showers (n, V) MeV), float32."""
        if not self.files.eval:
            msg = f"no evaluation file for dataset {self.config.data.dataset!r}"
            raise DataError(msg)
        files = tuple((str(p), p.stat().st_mtime_ns) for p in map(Path, self.files.eval))
        energies, showers = _read_eval_files(files, self.config.data.dataset)
        if not 1 <= n_events <= len(energies):
            msg = f"eval_sample asked for {n_events} showers; the evaluation file(s) " \
                  f"{[Path(p).name for p in self.files.eval]} hold {len(energies)}"
            raise DataError(msg)
        index = np.random.default_rng(seed).choice(len(energies), size=n_events, replace=False)
        return energies[index], showers[index]


@functools.lru_cache(maxsize=1)
def _read_eval_files(files: tuple[tuple[str, int], ...], dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """The evaluation file(s) (path, mtime) read once per process: a study worker evaluates many cells."""
    parts = [read_showers(path, dataset) for path, _ in files]
    return np.concatenate([e for e, _ in parts]), np.concatenate([s for _, s in parts])
