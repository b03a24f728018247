"""The config tree: every shipped dataset x profile resolves; keys ignore runtime fields; one-key edits."""

from __future__ import annotations

import pytest

from calo_ablate.config import (
    DATASET_ALIASES,
    PROFILES,
    ConfigError,
    eval_key,
    resolve_config,
    train_key,
    with_value,
)

CHECKSUMS = {"dataset_1_photons_1.hdf5": "0" * 32}


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("dataset", sorted(set(DATASET_ALIASES.values())))
def test_every_dataset_and_profile_resolves(dataset: str, profile: str) -> None:
    config = resolve_config(dataset, profile)
    assert config.data.dataset == dataset
    assert config.sample.effective_steps >= 1


def test_runtime_fields_leave_the_keys_alone() -> None:
    base = resolve_config("1", "smoke")
    moved = resolve_config("1", "smoke", cli_set=["data.data_dir=/elsewhere", "data.num_workers=3",
                                                  "trainer.threads=1"])
    assert train_key(moved, CHECKSUMS) == train_key(base, CHECKSUMS)
    assert eval_key(moved, CHECKSUMS) == eval_key(base, CHECKSUMS)
    assert train_key(with_value(base, "train.lr", 1e-3), CHECKSUMS) != train_key(base, CHECKSUMS)
    fewer = with_value(base, "sample.steps_factor", 0.5)
    assert train_key(fewer, CHECKSUMS) == train_key(base, CHECKSUMS)
    assert eval_key(fewer, CHECKSUMS) != eval_key(base, CHECKSUMS)


def test_with_value_sets_one_key_and_validates() -> None:
    base = resolve_config("1", "quick")
    changed = with_value(base, "model.voxel.block_depth", 6)
    assert changed.model.voxel.block_depth == 6 and base.model.voxel.block_depth == 4
    assert changed.model_dump() == {**base.model_dump(), "model": {**base.model_dump()["model"],
                                                                  "voxel": {**base.model_dump()["model"]["voxel"],
                                                                            "block_depth": 6}}}
    with pytest.raises(ConfigError, match="train.lrr"):
        with_value(base, "train.lrr", 1e-3)
    with pytest.raises(ConfigError, match="block_depth"):
        with_value(base, "model.voxel.block_depth", "six")
