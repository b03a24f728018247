"""The train/validation split and the on-disk cache of preprocessed training features.

A study trains many cells on one training file: the first cell reads it, takes the deterministic
subset and split, fits the model family's preprocessor on the training part
only and writes everything (statistics, train and validation features) to one .npz under the cache
folder; every later cell loads that file in seconds. The file name carries a key over the training
files' MD5 checksums, every data setting that changes the arrays and the family's name and
preprocessing settings, so a changed file or setting never meets a stale cache.
"""

from __future__ import annotations

import logging
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from calo_ablate.config import DataConfig, digest
from calo_ablate.data.calochallenge import read_showers
from calo_ablate.data.preprocessing import FeatureArrays, Preprocessing, Preprocessor, write_npz_atomic
from calo_ablate.data.source import DataFiles
from calo_ablate.errors import DataError

__all__ = [
    "DEFAULT_CACHE_DIR",
    "SPLIT_SEED",
    "PreparedData",
    "cache_key",
    "cache_path",
    "load_or_build_features",
    "split_indices",
]

# Fixed, never the run seed: every cell of every study sees the same subset and split.
SPLIT_SEED = 20230803
DEFAULT_CACHE_DIR = Path("data/cache")
_CACHE_FORMAT = 2  # 2: the family and its settings in the key; parts stored by position
_SPLITS = ("train", "val")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedData:
    """The fitted preprocessor and the features of the training and validation parts (float32 arrays,
    the condition first, packed as the family's preprocessing says)."""

    preprocessor: Preprocessor
    train: FeatureArrays
    val: FeatureArrays
    cache_path: Path
    from_cache: bool


def split_indices(n_events: int, val_fraction: float, max_events: int | None = None,
                  seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices), disjoint and sorted, into `n_events` events.

    One seeded permutation: its first min(max_events, n_events) entries are the subset, of which the
    first round(val_fraction * size) are the validation part.
    """
    order = np.random.default_rng(seed).permutation(n_events)
    if max_events is not None:
        order = order[:max_events]
    n_val = round(val_fraction * len(order))
    if n_val < 1 or n_val >= len(order):
        msg = f"data.val_fraction={val_fraction} of {len(order)} events leaves {n_val} validation and " \
              f"{len(order) - n_val} training events: both need at least 1"
        raise DataError(msg)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _train_checksums(files: DataFiles) -> list[tuple[str, str]]:
    pairs = []
    for path in files.train:
        name = Path(path).name
        if name not in files.checksums:
            msg = f"no MD5 for training file {name} in DataFiles.checksums (has: {sorted(files.checksums)})"
            raise DataError(msg)
        pairs.append((name, files.checksums[name]))
    return pairs


def cache_key(files: DataFiles, data_config: DataConfig, preprocessing: Preprocessing,
              split_seed: int = SPLIT_SEED) -> str:
    """16 hex digits over the training files' MD5s, the data settings that shape the features and the
    family's preprocessing (name and settings)."""
    payload = {
        "format": _CACHE_FORMAT,
        "files": _train_checksums(files),
        "split_seed": split_seed,
        "family": preprocessing.family,
        "preprocessing": preprocessing.settings,
        **data_config.model_dump(include={"dataset", "max_train_events", "val_fraction", "max_deposit",
                                          "energy_min_gev", "energy_max_gev", "voxel_cut_gev"}),
    }
    return digest(payload)


def cache_path(cache_dir: str | Path, files: DataFiles, data_config: DataConfig, preprocessing: Preprocessing,
               split_seed: int = SPLIT_SEED) -> Path:
    """Where the features of these files and settings are cached."""
    key = cache_key(files, data_config, preprocessing, split_seed)
    return Path(cache_dir) / f"features_{data_config.dataset}_{key}.npz"


def _read_training_events(files: DataFiles, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """All training files concatenated: energies (N,) MeV, showers (N, V) MeV."""
    if not files.train:
        msg = f"no training file for dataset {dataset!r}"
        raise DataError(msg)
    parts = [read_showers(path, dataset) for path in files.train]
    return np.concatenate([e for e, _ in parts]), np.concatenate([s for _, s in parts])


def _build(files: DataFiles, data_config: DataConfig, split_seed: int, preprocessing: Preprocessing,
           ) -> tuple[Preprocessor, FeatureArrays, FeatureArrays]:
    energies, showers = _read_training_events(files, data_config.dataset)
    train_idx, val_idx = split_indices(len(energies), data_config.val_fraction,
                                       data_config.max_train_events, split_seed)
    preprocessor = preprocessing.new()
    preprocessor.fit(energies[train_idx], showers[train_idx])   # statistics from the training part only
    train = preprocessor.transform(energies[train_idx], showers[train_idx])
    val = preprocessor.transform(energies[val_idx], showers[val_idx])
    return preprocessor, train, val


def _read_cache(path: Path, key: str, preprocessing: Preprocessing) -> PreparedData:
    with np.load(path, allow_pickle=False) as arrays:
        if str(arrays["cache_key"]) != key:
            msg = f"{path}: holds cache key {arrays['cache_key']}, expected {key}"
            raise DataError(msg)
        state = {name[len("pre_"):]: arrays[name] for name in arrays.files if name.startswith("pre_")}
        preprocessor = preprocessing.restore(state, str(path))
        train, val = (preprocessing.pack(*(arrays[f"{split}_{i}"] for i in range(int(arrays["n_parts"]))))
                      for split in _SPLITS)
    return PreparedData(preprocessor, train, val, path, from_cache=True)


def load_or_build_features(files: DataFiles, data_config: DataConfig, cache_dir: str | Path = DEFAULT_CACHE_DIR,
                           *, preprocessing: Preprocessing, split_seed: int = SPLIT_SEED) -> PreparedData:
    """The preprocessor and train/validation features: from the cache if it holds them, else built and cached.

    preprocessing: the model family's."""
    key = cache_key(files, data_config, preprocessing, split_seed)
    path = cache_path(cache_dir, files, data_config, preprocessing, split_seed)
    if path.is_file():
        try:
            return _read_cache(path, key, preprocessing)
        except (OSError, KeyError, ValueError, zipfile.BadZipFile, DataError) as err:
            log.warning("feature cache %s is unreadable (%s): rebuilding it", path, err)
    start = time.perf_counter()
    preprocessor, train, val = _build(files, data_config, split_seed, preprocessing)
    arrays = {"cache_key": np.array(key), "n_parts": np.array(len(list(train))),
              **{f"pre_{k}": v for k, v in preprocessor.to_arrays().items()}}
    for split, features in zip(_SPLITS, (train, val)):
        arrays.update({f"{split}_{i}": part for i, part in enumerate(features)})
    write_npz_atomic(path, arrays)
    log.info("preprocessed %d training + %d validation showers in %.1f s; cached in %s",
             len(next(iter(train))), len(next(iter(val))), time.perf_counter() - start, path)
    return PreparedData(preprocessor, train, val, path, from_cache=False)
