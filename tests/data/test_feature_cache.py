"""The fixed train/validation split and the feature cache: hits, invalidation, statistics from train only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calo_ablate.config import DataConfig
from calo_ablate.data import feature_cache
from calo_ablate.data.calochallenge import file_md5, read_showers
from calo_ablate.data.feature_cache import cache_path, load_or_build_features, split_indices
from calo_ablate.data.source import DataFiles
from calo_ablate.errors import DataError
from calo_ablate.geometry import load_geometry
from calo_ablate.model.caloscore.preprocess import CaloScorePreprocessor, caloscore_preprocessing

CONFIG = DataConfig(dataset="1-photons", max_train_events=500)


@pytest.fixture(scope="module")
def files(photon_dir: Path) -> DataFiles:
    train, evaluation = (photon_dir / "synthetic" / f"dataset_1_photons_{i}.hdf5" for i in (1, 2))
    return DataFiles(train=[train], eval=[evaluation], source="synthetic",
                     checksums={p.name: file_md5(p) for p in (train, evaluation)})


@pytest.fixture
def read_counter(monkeypatch) -> list[Path]:
    """Records every training-file read made by the cache builder."""
    calls: list[Path] = []

    def counting_read(path, dataset, **kwargs):
        calls.append(Path(path))
        return read_showers(path, dataset, **kwargs)

    monkeypatch.setattr(feature_cache, "read_showers", counting_read)
    return calls


def test_split_is_deterministic_disjoint_and_sized():
    train, val = split_indices(1000, 0.2, max_events=600)
    again_train, again_val = split_indices(1000, 0.2, max_events=600)
    np.testing.assert_array_equal(train, again_train)
    np.testing.assert_array_equal(val, again_val)
    assert len(val) == 120 and len(train) == 480
    assert not set(train) & set(val) and max(train.max(), val.max()) < 1000
    other_train, _ = split_indices(1000, 0.2, max_events=600, seed=1)
    assert not np.array_equal(train, other_train)
    everything_train, everything_val = split_indices(1000, 0.2)
    assert len(everything_train) + len(everything_val) == 1000


def test_split_needs_both_parts():
    with pytest.raises(DataError, match="leaves 0 validation"):
        split_indices(2, 0.2)


def test_second_load_comes_from_the_cache(files, tmp_path, read_counter):
    first = load_or_build_features(files, CONFIG, tmp_path, preprocessing=caloscore_preprocessing(CONFIG))
    assert not first.from_cache and first.cache_path.is_file() and len(read_counter) == 1
    mtime = first.cache_path.stat().st_mtime_ns
    second = load_or_build_features(files, CONFIG, tmp_path, preprocessing=caloscore_preprocessing(CONFIG))
    assert second.from_cache and len(read_counter) == 1 and second.cache_path.stat().st_mtime_ns == mtime
    assert (len(second.train), len(second.val)) == (400, 100)
    for part in ("cond", "layer", "voxel"):
        np.testing.assert_array_equal(getattr(first.train, part), getattr(second.train, part))
        np.testing.assert_array_equal(getattr(first.val, part), getattr(second.val, part))
    assert second.train.voxel.dtype == np.float32
    assert [p.name for p in tmp_path.iterdir()] == [first.cache_path.name]   # no temporary left behind


def test_changed_checksum_or_setting_rebuilds(files, tmp_path, read_counter):
    first = load_or_build_features(files, CONFIG, tmp_path, preprocessing=caloscore_preprocessing(CONFIG))
    name = files.train[0].name
    changed = DataFiles(files.train, files.eval, files.source, {**files.checksums, name: "0" * 32})
    rebuilt = load_or_build_features(changed, CONFIG, tmp_path, preprocessing=caloscore_preprocessing(CONFIG))
    assert not rebuilt.from_cache and rebuilt.cache_path != first.cache_path and len(read_counter) == 2
    other = CONFIG.model_copy(update={"max_deposit": 2.5})
    assert cache_path(tmp_path, files, other, caloscore_preprocessing(other)) != first.cache_path
    assert cache_path(tmp_path, files, CONFIG.model_copy(update={"num_workers": 3}), caloscore_preprocessing(CONFIG)) == first.cache_path


def test_unreadable_cache_is_rebuilt(files, tmp_path, read_counter):
    path = load_or_build_features(files, CONFIG, tmp_path, preprocessing=caloscore_preprocessing(CONFIG)).cache_path
    path.write_bytes(b"truncated")
    again = load_or_build_features(files, CONFIG, tmp_path, preprocessing=caloscore_preprocessing(CONFIG))
    assert not again.from_cache and len(read_counter) == 2 and len(again.train) == 400


def test_statistics_come_from_the_training_part_only(files, tmp_path):
    prepared = load_or_build_features(files, CONFIG, tmp_path, preprocessing=caloscore_preprocessing(CONFIG))
    energies, showers = read_showers(files.train[0], "1-photons")
    train, val = split_indices(len(energies), CONFIG.val_fraction, CONFIG.max_train_events)
    geometry = load_geometry("1-photons")
    on_train = CaloScorePreprocessor(geometry, CONFIG).fit(energies[train], showers[train])
    np.testing.assert_array_equal(prepared.preprocessor._voxel_scaler.mean, on_train._voxel_scaler.mean)
    np.testing.assert_array_equal(prepared.train.voxel, on_train.transform(energies[train], showers[train]).voxel)
    np.testing.assert_array_equal(prepared.val.layer, on_train.transform(energies[val], showers[val]).layer)
    np.testing.assert_allclose(prepared.train.layer.mean(axis=0), 0.0, atol=1e-5)   # standardised on train


def test_missing_checksum_is_named(files, tmp_path):
    bare = DataFiles(files.train, files.eval, files.source, {})
    with pytest.raises(DataError, match="no MD5 for training file dataset_1_photons_1.hdf5"):
        load_or_build_features(bare, CONFIG, tmp_path, preprocessing=caloscore_preprocessing(CONFIG))
