"""Keras-equivalent initialisation: glorot-uniform kernels with Keras's fans, zero biases."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from calo_ablate.config import resolve_config
from calo_ablate.model.caloscore.init import glorot_bound, keras_fans
from calo_ablate.model.caloscore.network import CaloScoreNetwork


@pytest.fixture(scope="module")
def base_net() -> CaloScoreNetwork:
    torch.manual_seed(0)
    return CaloScoreNetwork(resolve_config("1", "quick").model, 368, 5)


def _layers(net: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in net.named_modules() if isinstance(m, (nn.Linear, nn.Conv1d))}


def test_every_kernel_has_glorot_variance_within_sampling_error(base_net: CaloScoreNetwork) -> None:
    fans = keras_fans(base_net)
    layers = _layers(base_net)
    assert set(fans) == set(layers)
    checked = 0
    for name, module in layers.items():
        weight = module.weight.detach().double().flatten()
        if name == "voxel_net.unet.output":
            assert not weight.any()  # the published output conv starts at zero
            continue
        fan_in, fan_out = fans[name]
        variance = 2.0 / (fan_in + fan_out)
        # the sample variance of n draws of U(-a, a) has relative standard error sqrt(0.8 / n)
        tolerance = 5 * variance * math.sqrt(0.8 / weight.numel())
        assert abs(float(weight.pow(2).mean()) - variance) < tolerance, name
        assert float(weight.abs().max()) <= glorot_bound(fan_in, fan_out), name
        checked += 1
    assert checked == len(layers) - 1


def test_every_bias_starts_at_zero(base_net: CaloScoreNetwork) -> None:
    biases = [m.bias for m in _layers(base_net).values() if m.bias is not None]
    assert biases and all(not b.any() for b in biases)


def test_keras_fans_of_dense_conv_and_attention(base_net: CaloScoreNetwork) -> None:
    fans = keras_fans(base_net)
    assert fans["energy_embedding.0"] == (1, 64)
    assert fans["voxel_net.unet.lift"] == (1, 16)                    # Conv1D kernel (1, 1, 16)
    assert fans["voxel_net.unet.down.0.0.conv1"] == (3 * 16, 3 * 32)  # Conv1D kernel (3, 16, 32)
    assert fans["voxel_net.unet.bottleneck.0.attention.qkv"] == (128, 128 * 128)  # each (128, 1 head, 128)
    assert fans["voxel_net.unet.bottleneck.0.attention.out"] == (128, 128)


def test_pytorch_init_keeps_torchs_defaults() -> None:
    torch.manual_seed(0)
    config = resolve_config("1", "quick", cli_set=["model.init=pytorch"])
    net = CaloScoreNetwork(config.model, 368, 5)
    lift = net.voxel_net.unet.lift  # Kaiming-uniform(a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in 1
    assert lift.bias.any()
    assert float(lift.weight.abs().max()) > glorot_bound(1, 16)
