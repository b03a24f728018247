"""Choosing a model family: built-in names, a user's dotted path, the errors a wrong choice gives, and
each family's own config section (keys, shared keys it reads, hashes, loss-defining fields)."""

from __future__ import annotations

from pathlib import Path

import pytest

from calo_ablate.cli import main as cli_main
from calo_ablate.config import resolve_config, train_key, with_value
from calo_ablate.data.feature_cache import cache_key
from calo_ablate.data.source import DataFiles
from calo_ablate.errors import ConfigError
from calo_ablate.model.calodiffusion.config import CaloDiffusionConfig
from calo_ablate.model.calodiffusion.family import CaloDiffusionFamily
from calo_ablate.model.caloscore.config import CaloScoreConfig
from calo_ablate.model.caloscore.family import CaloScoreFamily
from calo_ablate.model.caloscore.preprocess import caloscore_preprocessing
from calo_ablate.model.families import family_class, load_family
from calo_ablate.runs.provenance import config_params
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
    assert family.loss_names == ("loss",) and family.module().lr == 1e-3  # train.lr is shared
    assert isinstance(config.model, CaloDiffusionConfig)
    assert isinstance(resolve_config("1", "smoke").model, CaloScoreConfig)  # the default family


@pytest.mark.parametrize(("value", "expected"), [
    ("calodifusion", ["model.family", "calodifusion", "caloscore_v2, calodiffusion", "package.module:ClassName"]),
    ("no_such_package.models:Mine", ["cannot import module 'no_such_package.models'"]),
    ("tests.study.user_family:Missing", ["has no attribute 'Missing'"]),
    ("tests.study.user_family:LogShowers", ["is not a subclass of calo_ablate.model.interface.ModelFamily"]),
    ("calo_ablate.model.interface:ModelFamily", ["does not implement module, preprocessing, sample"]),
    ("tests.study.user_family:UnnamedTotal", ["loss_names ('nll', 'mse') must start with 'loss'"]),
])
def test_a_wrong_family_is_a_config_error_naming_it(value: str, expected: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        load_family(resolve_config("1", "smoke", cli_set=[f"model.family={value}"]))
    for text in expected:
        assert text in str(err.value)


def test_a_key_of_another_family_is_refused_with_the_family_and_its_keys() -> None:
    with pytest.raises(ConfigError) as err:
        resolve_config("1", "smoke", cli_set=["model.family=calodiffusion", "model.voxel.widths=[8]"])
    text = str(err.value)
    assert "'model.voxel.widths' is not a key of model family 'calodiffusion'" in text
    assert "model.widths" in text and "model.glam" in text and "train.lr" in text  # its valid keys
    with pytest.raises(ConfigError, match="'model.glam' is not a key of model family 'caloscore_v2'"):
        resolve_config("1", "smoke", cli_set=["model.glam=fixed"])


@pytest.mark.parametrize("key", ["train.grad_clip=2.0", "train.ema_decay=0.9", "data.max_deposit=2.0",
                                 "train.early_stopping_patience=5"])
def test_a_shared_key_the_family_does_not_read_is_refused(key: str) -> None:
    with pytest.raises(ConfigError, match=f"model family 'calodiffusion' does not read '{key.split('=')[0]}'"):
        resolve_config("1", "smoke", cli_set=["model.family=calodiffusion", key])
    resolve_config("1", "smoke", cli_set=[key])  # CaloScore v2 reads it


def test_the_train_key_hashes_the_shared_keys_the_family_reads_and_its_section() -> None:
    diffusion = resolve_config("1", "smoke", cli_set=["model.family=calodiffusion"])
    unread = diffusion.model_copy(update={"train": diffusion.train.model_copy(update={"grad_clip": 5.0})})
    assert train_key(unread, {}) == train_key(diffusion, {})  # the profile may set it; CaloDiffusion ignores it
    assert train_key(with_value(diffusion, "train.lr", 1e-3), {}) != train_key(diffusion, {})
    assert train_key(with_value(diffusion, "model.glam", "fixed"), {}) != train_key(diffusion, {})
    score = resolve_config("1", "smoke")
    assert train_key(with_value(score, "train.grad_clip", 5.0), {}) != train_key(score, {})


def test_a_dataset_file_sets_each_family_its_own_settings() -> None:
    assert resolve_config("2", "smoke").model.voxel.attention == [False] * 4
    diffusion = resolve_config("3", "smoke", cli_set=["model.family=calodiffusion"]).model
    assert (diffusion.glam, diffusion.phi_channel, diffusion.objective) == ("fixed", False, "hybrid_weight")


def test_a_families_scoped_key_is_set_for_rows_of_that_family_only() -> None:
    sets = ["families.calodiffusion.model.widths=[8,8]", "families.caloscore_v2.model.embed_dim=16"]
    assert resolve_config("1", "smoke", cli_set=[*sets, "model.family=calodiffusion"]).model.widths == [8, 8]
    assert resolve_config("1", "smoke", cli_set=sets).model.embed_dim == 16
    with pytest.raises(ConfigError, match="model.family 'calodifusion'"):
        resolve_config("1", "smoke", cli_set=["families.calodifusion.model.widths=[8]"])


def test_loss_defining_keys_are_the_family_own() -> None:
    assert "model.diffusion." in CaloScoreFamily.loss_defining_keys()
    assert "data.max_deposit" in CaloScoreFamily.loss_defining_keys()
    assert "model.glam" in CaloDiffusionFamily.loss_defining_keys()
    assert "model.diffusion." not in CaloDiffusionFamily.loss_defining_keys()


def test_user_options_are_free_form_and_in_the_train_key() -> None:
    user = "model.family=tests.study.user_family:GaussianFamily"
    config = resolve_config("1", "smoke", cli_set=[user, "model.options.hidden=8", "model.options.kind=wide"])
    assert config.model.options == {"hidden": 8, "kind": "wide"}
    with pytest.raises(ConfigError, match="'model.options.hidden' is not a key of model family 'caloscore_v2'"):
        resolve_config("1", "smoke", cli_set=["model.options.hidden=8"])


def test_params_prints_the_published_calodiffusion_count(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["params", "--dataset", "1", "--set", "model.family=calodiffusion"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("CaloDiffusion, dataset 1-photons")
    counts = {line.split()[0]: int(line.split()[1].replace(",", "")) for line in out.splitlines()[1:]}
    assert counts == {"unet": 518_401, "glam": 3_180, "total": 521_581}


def test_calodiffusion_registry_steps_rows_reuse_the_base_training() -> None:
    registry = load_registry(REGISTRY, dataset="1", profile="smoke")
    plan = make_plan(registry, seeds=1, checksums={"f.hdf5": "0" * 32})
    keys = {c.ablation.name: c.train_key for c in plan.cells}
    for row in ("steps_200", "steps_100", "steps_50", "naive_1", "naive_2", "naive_4"):
        assert keys[row] == keys["base"]
    assert keys["layer_diffusion_steps_25"] == keys["layer_diffusion"]
    assert keys["consistency_2"] == keys["consistency_4"] == keys["consistency_1"]
    assert len(set(keys.values())) == len(keys) - 9  # every other row trains its own model
    assert {c.ablation.name: c.ablation.compare for c in plan.cells if c.ablation.compare} == \
        {f"consistency_{n}": f"naive_{n}" for n in (1, 2, 4)}
    comparable = {c.ablation.name: plan.loss_comparable(c) for c in plan.cells}
    assert not comparable["glam_off"]  # another diffusion space: the loss is not the base's
    assert all(comparable[r] for r in ("no_cylindrical", "no_rz_channels", "no_phi_channel", "no_attention"))
    assert {c.config.model.family for c in plan.cells} == {"calodiffusion"}


def test_the_feature_cache_key_holds_the_family_and_its_preprocessing_settings() -> None:
    files = DataFiles([Path("train.hdf5")], [Path("eval.hdf5")], "synthetic", {"train.hdf5": "0" * 32})
    configs = [resolve_config("1", "smoke", cli_set=s) for s in
               ([], ["model.family=calodiffusion"], ["model.family=calodiffusion", "model.glam=fixed"],
                ["model.family=calodiffusion", "model.cylindrical=false"])]
    keys = [cache_key(files, c.data, preprocessing=load_family(c).preprocessing()) for c in configs]
    assert keys[0] == cache_key(files, configs[0].data, caloscore_preprocessing(configs[0].data))
    assert len(set(keys[:3])) == 3  # another family, another diffusion space: other features
    assert keys[3] == keys[1]  # a network switch leaves the features alone


def test_mlflow_params_hold_only_the_keys_the_family_reads() -> None:
    flow = config_params(resolve_config("1", "smoke", cli_set=["model.family=caloflow"]))
    assert "model.spline_bins" in flow and "train.seed" in flow
    assert "train.lr" not in flow and "sample.steps" not in flow  # CaloFlow reads neither
    assert "train.lr" in config_params(resolve_config("1", "smoke"))
