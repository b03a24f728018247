"""Choosing a model family: built-in names, a user's dotted path, and the errors a wrong choice gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from calo_ablate.cli import main as cli_main
from calo_ablate.config import resolve_config
from calo_ablate.data.feature_cache import cache_key
from calo_ablate.data.source import DataFiles
from calo_ablate.errors import ConfigError
from calo_ablate.model.families import CaloDiffusionFamily, CaloScoreFamily, family_class, load_family
from calo_ablate.study.plan import make_plan
from calo_ablate.study.registry import load_registry
from tests.study.user_family import GaussianFamily

REGISTRY = Path(__file__).resolve().parents[2] / "experiments" / "calodiffusion.yaml"


def test_builtin_and_dotted_families_resolve() -> None:
    assert family_class("caloscore_v2") is CaloScoreFamily
    assert family_class("calodiffusion") is CaloDiffusionFamily
    assert family_class("tests.study.user_family:GaussianFamily") is GaussianFamily
    config = resolve_config("1", "smoke", cli_set=["model.family=calodiffusion", "train.lr=1e-3"])
    family = load_family(config)
    assert family.loss_names == ("loss",) and family.section.lr == 1e-3  # train.lr is shared


@pytest.mark.parametrize(("value", "expected"), [
    ("calodifusion", ["model.family", "calodifusion", "caloscore_v2, calodiffusion", "package.module:ClassName"]),
    ("no_such_package.models:Mine", ["cannot import module 'no_such_package.models'"]),
    ("tests.study.user_family:Missing", ["has no attribute 'Missing'"]),
    ("tests.study.user_family:LogShowers", ["is not a subclass of calo_ablate.model.family.ModelFamily"]),
    ("calo_ablate.model.family:ModelFamily", ["does not implement module, preprocessing, sample"]),
    ("tests.study.user_family:UnnamedTotal", ["loss_names ('nll', 'mse') must start with 'loss'"]),
])
def test_a_wrong_family_is_a_config_error_naming_it(value: str, expected: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        load_family(resolve_config("1", "smoke", cli_set=[f"model.family={value}"]))
    for text in expected:
        assert text in str(err.value)


@pytest.mark.parametrize(("key", "shared"), [("lr", "train.lr"), ("sample_steps", "sample.steps")])
def test_calodiffusion_lr_and_steps_are_the_shared_keys(key: str, shared: str) -> None:
    with pytest.raises(ConfigError, match=f"model.calodiffusion.{key}: set {shared} instead"):
        resolve_config("1", "smoke", cli_set=[f"model.calodiffusion.{key}=100"])


def test_user_options_are_free_form_and_in_the_train_key() -> None:
    config = resolve_config("1", "smoke", cli_set=["model.options.hidden=8", "model.options.kind=wide"])
    assert config.model.options == {"hidden": 8, "kind": "wide"}
    with pytest.raises(ConfigError, match="unknown config key 'model.optons.hidden'"):
        resolve_config("1", "smoke", cli_set=["model.optons.hidden=8"])


def test_params_prints_the_published_calodiffusion_count(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["params", "--dataset", "1", "--set", "model.family=calodiffusion"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("CaloDiffusion, dataset 1-photons")
    counts = {line.split()[0]: int(line.split()[1].replace(",", "")) for line in out.splitlines()[1:]}
    assert counts == {"unet": 518_401, "glam": 3_180, "total": 521_581}


def test_calodiffusion_registry_steps_rows_reuse_the_base_training() -> None:
    registry = load_registry(REGISTRY, dataset="1", profile="smoke")
    plan = make_plan(registry, dataset="1", profile="smoke", seeds=1, checksums={"f.hdf5": "0" * 32})
    keys = {c.ablation.name: c.train_key for c in plan.cells}
    for row in ("steps_200", "steps_100", "steps_50"):
        assert keys[row] == keys["base"]
    assert len(set(keys.values())) == len(keys) - 3  # every other row trains its own model
    comparable = {c.ablation.name: plan.loss_comparable(c) for c in plan.cells}
    assert not comparable["glam_off"]  # another diffusion space: the loss is not the base's
    assert all(comparable[r] for r in ("no_cylindrical", "no_rz_channels", "no_phi_channel", "no_attention"))
    assert {c.config.model.family for c in plan.cells} == {"calodiffusion"}


def test_the_feature_cache_key_holds_the_family_and_its_preprocessing_settings() -> None:
    files = DataFiles([Path("train.hdf5")], [Path("eval.hdf5")], "synthetic", {"train.hdf5": "0" * 32})
    configs = [resolve_config("1", "smoke", cli_set=s) for s in
               ([], ["model.family=calodiffusion"], ["model.family=calodiffusion", "model.calodiffusion.glam=fixed"],
                ["model.family=calodiffusion", "model.calodiffusion.cylindrical=false"])]
    keys = [cache_key(files, c.data, preprocessing=load_family(c).preprocessing()) for c in configs]
    assert keys[0] == cache_key(files, configs[0].data)  # CaloScore v2's is the default
    assert len(set(keys[:3])) == 3  # another family, another diffusion space: other features
    assert keys[3] == keys[1]  # a network switch leaves the features alone
