"""CaloFlowConfig: the published defaults per particle, strict keys, and the refusal of datasets 2 and 3."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from calo_ablate.config import resolve_config
from calo_ablate.errors import ConfigError
from calo_ablate.model.caloflow.config import CaloFlowConfig, particle_of
from calo_ablate.model.caloflow.family import CaloFlowFamily
from calo_ablate.model.families import load_family


def test_photon_defaults_are_the_published_ones() -> None:
    c = CaloFlowConfig().resolved("1")
    assert (c.u0_scale, c.flow1.noise, c.flow2.noise) == (2.42, 1e-8, 1e-8)
    assert (c.flow1.blocks, c.flow1.hidden_features, c.flow1.hidden_layers, c.flow1.dropout) == (6, 64, 3, 0.0)
    assert (c.flow2.blocks, c.flow2.hidden_features, c.flow2.hidden_layers, c.flow2.dropout) == (8, 378, 2, 0.05)
    assert (c.flow2.schedule.kind, c.flow2.schedule.max_lr, c.flow2.schedule.base_lr) == ("cyclic", 2e-3, 5e-5)
    assert (c.flow1.schedule.kind, c.flow1.schedule.max_lr) == ("one_cycle", 1e-3)
    assert (c.spline_bins, c.tail_bound, c.logit_alpha, c.validation_fraction) == (8, 14.0, 1e-6, 0.3)
    assert (c.sample_clip_mev, c.sample_threshold_mev) == (1e6, 0.01)


def test_pion_defaults_are_the_published_ones() -> None:
    c = CaloFlowConfig().resolved("1-pions")
    assert (c.u0_scale, c.flow1.noise, c.flow2.noise) == (6.93, 1e-9, 1e-8)
    assert c.flow2.hidden_features == 533
    assert (c.flow2.schedule.kind, c.flow2.schedule.max_lr, c.flow2.schedule.pct_start) == ("one_cycle", 1e-3, 0.45)


def test_a_set_value_wins_over_the_particle_default() -> None:
    c = CaloFlowConfig.model_validate({"flow1": {"blocks": 6, "hidden_layers": 3, "dropout": 0.0, "noise": 1e-8},
                                       "rescale_u0": False}).resolved("1-pions")
    assert (c.flow1.noise, c.u0_scale) == (1e-8, 1.0)


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(ValidationError, match="spline_bin"):
        CaloFlowConfig.model_validate({"spline_bin": 4})


@pytest.mark.parametrize("dataset", ["2", "3"])
def test_datasets_2_and_3_are_refused_naming_icaloflow(dataset: str) -> None:
    with pytest.raises(ConfigError, match=r"iCaloFlow.*not build"):
        particle_of(dataset)
    config = resolve_config(dataset, "smoke", cli_set=["model.family=caloflow"])
    with pytest.raises(ConfigError, match=rf"not dataset {dataset}.*iCaloFlow"):
        CaloFlowFamily(config)
    with pytest.raises(ConfigError, match=rf"not dataset {dataset}.*iCaloFlow"):
        load_family(config)  # where a study, `train` and `params` build the family


def test_a_bad_setting_names_its_key() -> None:
    with pytest.raises(ConfigError, match="'model.spline_bins'"):
        resolve_config("1", "smoke", cli_set=["model.family=caloflow", "model.spline_bins=1"])
    with pytest.raises(ConfigError, match="model family 'caloflow' does not read 'train.lr'"):
        resolve_config("1", "smoke", cli_set=["model.family=caloflow", "train.lr=1e-3"])
