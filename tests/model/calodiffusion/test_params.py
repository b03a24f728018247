"""CaloDiffusion sizes: published parameter counts, the photon block breakdown, level sizes, ablation effects."""

from __future__ import annotations

import pytest

from calo_ablate.errors import ConfigError
from calo_ablate.geometry import load_geometry
from calo_ablate.model.calodiffusion.config import CaloDiffusionConfig
from calo_ablate.model.calodiffusion.network import CaloDiffusionNetwork
from calo_ablate.model.calodiffusion.unet import level_shapes
from calo_ablate.model.interface import count_trainable

from .conftest import published_config

# CaloChallenge "Parameters training" of CaloDiffusion = U-Net + learned GLaM (reference table)
PUBLISHED_PARAMS = {"1-photons": 521_581, "1-pions": 525_901, "2": 517_969, "3": 1_221_153}
PHOTON_UNET = 518_401


def _net(dataset: str, **changes: object) -> CaloDiffusionNetwork:
    config = published_config(dataset).model_copy(update=changes)
    return CaloDiffusionNetwork(CaloDiffusionConfig.model_validate(config.model_dump()), load_geometry(dataset))


@pytest.mark.parametrize("dataset", list(PUBLISHED_PARAMS))
def test_trainable_parameters_match_the_calochallenge_entry(dataset: str) -> None:
    assert count_trainable(_net(dataset)) == PUBLISHED_PARAMS[dataset]


def test_photon_blocks_match_the_reference_breakdown() -> None:
    unet = _net("1-photons").unet

    def n(*modules: object) -> int:
        return sum(count_trainable(m) for m in modules)

    down_attention = n(*(level[2] for level in unet.down))
    up_attention = n(*(level[2] for level in unet.up))
    assert n(unet.init_conv) == 1_744
    assert n(unet.time_mlp) == n(unet.energy_mlp) == 6_336
    assert (n(unet.down) - down_attention, down_attention) == (194_496, 8_512)
    assert (n(unet.mid1), n(unet.mid_attention), n(unet.mid2)) == (59_616, 4_256, 59_616)
    assert (n(unet.up) - up_attention, up_attention) == (157_168, 6_384)
    assert n(unet.final_block, unet.final_conv) == 13_937
    assert count_trainable(unet) == PHOTON_UNET


@pytest.mark.parametrize(("dataset", "grid", "levels"), [
    ("1-photons", (5, 10, 30), [(5, 10, 30), (3, 5, 15), (2, 2, 7)]),
    ("1-pions", (7, 10, 23), [(7, 10, 23), (4, 5, 11), (2, 2, 5)]),
    ("2", (45, 16, 9), [(45, 16, 9), (23, 8, 4), (12, 4, 2)]),
    ("3", (45, 50, 18), [(45, 50, 18), (23, 25, 9), (12, 12, 4)]),
])
def test_unet_levels_have_the_reference_sizes(dataset: str, grid: tuple, levels: list) -> None:
    net = _net(dataset)
    assert net.grid.shape == grid
    assert level_shapes(grid, len(published_config(dataset).widths) - 1) == levels


def test_too_many_levels_for_the_grid_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot be downsampled"):
        level_shapes((5, 10, 30), 6)


@pytest.mark.parametrize(("changes", "effect"), [
    ({"glam": "fixed"}, -3_180),
    ({"rz_channels": False}, -864),
    ({"phi_channel": False}, -432),
    ({"rz_channels": False, "phi_channel": False}, -1_296),
    ({"block_attention": False, "mid_attention": False}, -19_152),
    ({"block_attention": False}, -14_896),
    ({"cylindrical": False}, 0),
    ({"sample_offset": 0}, 0),
])
def test_natural_ablations_change_the_parameters_as_in_the_reference(changes: dict, effect: int) -> None:
    assert count_trainable(_net("1-photons", **changes)) - PUBLISHED_PARAMS["1-photons"] == effect


def test_published_settings_per_dataset() -> None:
    ds3 = published_config("3")
    assert (ds3.widths, ds3.objective, ds3.sample_offset) == ([32, 32, 32, 32], "hybrid_weight", 0)
    ds2 = published_config("2")
    assert (ds2.phi_channel, ds2.glam, ds2.objective, ds2.sample_offset) == (False, "fixed", "noise_pred", 2)
    assert published_config("1") == published_config("1-pions") == CaloDiffusionConfig()


@pytest.mark.parametrize(("values", "message"), [
    ({"unknown_key": 1}, "unknown_key"),
    ({"widths": [16, 12, 16]}, "multiple of"),
    ({"voxel_mean": -10.0}, "both or neither"),
    ({"glam": "off"}, "glam"),
])
def test_config_refuses_bad_values(values: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CaloDiffusionConfig.model_validate(values)
