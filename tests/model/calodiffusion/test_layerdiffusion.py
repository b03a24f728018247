"""LayerDiffusion: the layer vector's preprocessing, the per-layer renormalisation, the layer model, and the
base (option off) left as it was."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from calo_ablate.config import resolve_config
from calo_ablate.errors import ConfigError, TrainingError
from calo_ablate.model.calodiffusion.config import CaloDiffusionConfig
from calo_ablate.model.calodiffusion.family import CaloDiffusionFamily
from calo_ablate.model.calodiffusion.layer_diffusion import LayerResNet
from calo_ablate.model.calodiffusion.module import CaloDiffusionModule
from calo_ablate.model.calodiffusion.preprocess import (
    PUBLISHED_LAYER_STANDARDISATION,
    RENORM_FLOOR,
    CaloDiffusionPreprocessor,
    layer_features,
    layer_sums,
    layer_targets,
    renormalise_layers,
)
from calo_ablate.model.interface import count_trainable

from .conftest import TINY, published_config

TINY_LAYERS = {"enabled": True, "hidden": 16, "blocks": 1}
# The paper model's losses and sample on this tiny config, computed with the code of c847989 (before
# LayerDiffusion existed): seed 0, three Adam steps at 1e-3 on a fixed batch, then 4 sampling steps.
BASE_LOSSES = (47.509613037109375, 3.2284460067749023, 4.877129077911377)
BASE_SAMPLE_SUM, BASE_SAMPLE_ABS_SUM = -441.8400968569331, 4948.45731648989
pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny(dataset: str = "1-photons", **changes: object) -> CaloDiffusionModule:
    torch.manual_seed(0)
    values = published_config(dataset).model_dump() | TINY | changes
    return CaloDiffusionModule(CaloDiffusionConfig.model_validate(values), dataset, 1e-3, seed=3)


def _showers(n_voxels: int, n: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Incident energies (MeV), showers (MeV): a third of the voxels empty, the rest above 0.1 MeV."""
    rng = np.random.default_rng(seed)
    energies_mev = rng.uniform(1_000.0, 100_000.0, n)
    showers = rng.exponential(1.0, (n, n_voxels)) * (rng.random((n, n_voxels)) > 0.33)
    showers = showers / showers.sum(axis=1, keepdims=True) * energies_mev[:, None] * rng.uniform(0.5, 1.0, (n, 1))
    return energies_mev, np.where(showers < 0.1, 0.0, showers)


# ---- preprocessing ----------------------------------------------------------------------------------
def test_the_layer_vector_inverts_exactly_empty_layers_and_an_empty_shower_included() -> None:
    standard = PUBLISHED_LAYER_STANDARDISATION["1-photons"]
    rng = np.random.default_rng(1)
    energies = rng.uniform(0.0, 0.1, (6, 5))
    energies[1, 2] = 0.0          # an empty layer
    energies[2] = 0.0             # an empty shower
    features = layer_features(energies, standard)
    assert features.shape == (6, 6)
    np.testing.assert_allclose(features[:, 0], (energies.sum(axis=1) - standard.energy_mean) / standard.energy_std)
    np.testing.assert_allclose(layer_targets(features, standard), energies, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(("dataset", "glam"), [("1-photons", "learned"), ("1-pions", "fixed"), ("2", "fixed")])
def test_the_preprocessor_round_trip_with_layers_gives_back_the_showers(dataset: str, glam: str) -> None:
    config = CaloDiffusionConfig.model_validate(published_config(dataset).model_dump()
                                                | {"glam": glam, "layer_diffusion": {"enabled": True}})
    pre = CaloDiffusionPreprocessor(dataset, config)
    energies, showers = _showers(pre.geometry.n_voxels)
    cond, layers, features = pre.forward(energies, showers)
    assert layers.dtype == np.float32 and layers.shape == (5, pre.geometry.n_layers + 1)
    assert features.shape == (5, pre.n_features) and cond.shape == (5, 1)
    # float32 features hold about 7 digits; every layer is renormalised to its float32 target
    np.testing.assert_allclose(pre.inverse(features, energies, layers), showers, rtol=2e-4, atol=1e-3)
    with pytest.raises(Exception, match="layer vector"):
        pre.inverse(features, energies)


def test_a_dataset_without_published_layer_constants_needs_them_in_the_config() -> None:
    unset = CaloDiffusionConfig.model_validate(published_config("3").model_dump() | {"layer_diffusion": {"enabled": True}})
    with pytest.raises(ConfigError, match="model.layer_diffusion.energy_mean"):
        CaloDiffusionPreprocessor("3", unset)
    given = {"enabled": True, "energy_mean": 0.4, "energy_std": 0.05, "fraction_mean": -7.0, "fraction_std": 4.0}
    config = CaloDiffusionConfig.model_validate(published_config("3").model_dump() | {"layer_diffusion": given})
    assert CaloDiffusionPreprocessor("3", config).layers.fraction_std == 4.0
    with pytest.raises(ValueError, match="give all four"):
        CaloDiffusionConfig(layer_diffusion={"enabled": True, "energy_mean": 0.4})


# ---- renormalisation --------------------------------------------------------------------------------
def test_renormalisation_gives_every_layer_its_target_and_leaves_small_layers_alone() -> None:
    rng = np.random.default_rng(2)
    voxel_layer = np.repeat(np.arange(4), [3, 5, 2, 6])
    x = rng.normal(0.01, 0.02, (3, 16))                 # some voxels negative
    targets = rng.uniform(0.01, 0.2, (3, 4))
    targets[0, 1] = 0.5 * RENORM_FLOOR                  # target below the floor: factor 1
    x[1, voxel_layer == 2] = 0.2 * RENORM_FLOOR         # generated sum below the floor: factor 1
    out = renormalise_layers(x, targets, voxel_layer)
    assert np.all(out >= 0.0)
    sums, kept = layer_sums(out, voxel_layer, 4), np.maximum(x, 0.0)
    small = np.zeros((3, 4), dtype=bool)
    small[0, 1] = small[1, 2] = True
    np.testing.assert_allclose(sums[~small], targets[~small], rtol=1e-8)
    for event, layer in zip(*np.nonzero(small), strict=True):
        np.testing.assert_array_equal(out[event, voxel_layer == layer], kept[event, voxel_layer == layer])


# ---- the model ---------------------------------------------------------------------------------------
def test_the_base_is_unchanged_with_the_option_off() -> None:
    """The paper model's losses and sample, computed before LayerDiffusion existed, to the last digits."""
    module = _tiny(layer_diffusion={"enabled": False})
    assert module.layer_net is None and not any(k.startswith("layer_net") for k in module.state_dict())
    g = torch.Generator().manual_seed(0)
    batch = (torch.rand(4, 1, generator=g), torch.randn(4, module.n_features, generator=g))
    optimizer = module.configure_optimizers()["optimizer"]
    losses = []
    for i in range(3):
        loss = module.loss(batch, torch.Generator().manual_seed(10 + i))
        losses.append(float(loss.detach()))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    sample = module.sample(batch[0], steps=4, batch_size=4, seed=5).double()
    np.testing.assert_allclose(losses, BASE_LOSSES, rtol=1e-5)
    np.testing.assert_allclose([float(sample.sum()), float(sample.abs().sum())],
                               [BASE_SAMPLE_SUM, BASE_SAMPLE_ABS_SUM], rtol=1e-4)


def test_the_layer_net_has_the_reference_parameter_count() -> None:
    config = CaloDiffusionConfig(layer_diffusion={"enabled": True})
    assert count_trainable(LayerResNet(config, 6)) == 674_438       # dataset 1 photons: 5 layers + 1
    assert count_trainable(LayerResNet(config, 46)) == 694_958      # dataset 2: 45 layers + 1


def test_layer_diffusion_trains_both_nets_and_conditions_the_voxels_on_the_layers() -> None:
    module = _tiny(layer_diffusion=TINY_LAYERS)
    g = torch.Generator().manual_seed(0)
    batch = (torch.rand(4, 1, generator=g), torch.randn(4, 6, generator=g), torch.randn(4, 368, generator=g))
    optimizer = module.configure_optimizers()["optimizer"]

    def fixed() -> tuple[torch.Tensor, torch.Tensor]:
        voxel, layer = module.losses(batch, torch.Generator().manual_seed(1))
        assert layer is not None
        return voxel, layer

    before = [float(v) for v in fixed()]
    for _ in range(5):
        optimizer.zero_grad()
        sum(fixed()).backward()
        optimizer.step()
    after = [float(v) for v in fixed()]
    assert after[0] < before[0] and after[1] < before[1]
    shifted = (batch[0], batch[1] + 1.0, batch[2])      # other layer values, the same voxels: another voxel loss
    assert float(module.losses(shifted, torch.Generator().manual_seed(1))[0]) != after[0]
    with pytest.raises(TrainingError, match="cond, layers, voxels"):
        module.loss((batch[0], batch[2]))


def test_the_family_samples_layers_then_voxels_renormalised_to_the_layer_energies() -> None:
    config = resolve_config("1", "smoke", cli_set=["model.family=calodiffusion", "model.widths=[8,8,8]",
                                                    "model.embed_hidden=8", "model.embed_dim=8",
                                                    "model.attention_head_dim=8", "model.norm_groups=4",
                                                    "model.layer_diffusion.enabled=true",
                                                    "model.layer_diffusion.hidden=16",
                                                    "model.layer_diffusion.blocks=1"])
    family = CaloDiffusionFamily(config)
    torch.manual_seed(0)
    module = family.module()
    assert family.parameter_breakdown(module)["layer_net"] == count_trainable(module.layer_net)
    energies = np.array([2_000.0, 50_000.0, 400_000.0])
    pre = family.preprocessing().new()
    cond = torch.from_numpy(pre.condition(energies))
    layers, voxels = family.sample(module, cond, steps=3, batch_size=2, seed=0, progress=False)
    assert layers.shape == (3, 6) and voxels.shape == (3, 368)
    showers = pre.inverse(energies, layers.numpy(), voxels.numpy())
    standard = PUBLISHED_LAYER_STANDARDISATION["1-photons"]
    targets = layer_targets(layers.numpy(), standard) * 3.1 * energies[:, None]   # MeV
    sums = layer_sums(showers, pre.preprocessor.voxel_layer, 5)
    ok = targets > RENORM_FLOOR * 3.1 * energies[:, None]
    # the voxel cut (1e-7 GeV = 1e-4 MeV per voxel) may remove at most that much per voxel from a layer
    assert np.all(np.abs(sums - targets)[ok] <= 1e-4 * 368 + 1e-6 * targets[ok])
