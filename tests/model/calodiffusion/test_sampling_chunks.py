"""Sampling with the network on a few showers per call (chunk_showers) gives the showers of unchunked sampling,
for the base sampler, LayerDiffusion's layer model and consistency sampling.

Compared within 1e-6 of the showers' largest magnitude (about 8 float32 ulps there), not with torch.equal:
every row of a network call depends on its own shower alone, and the noise and the sampler's updates run on
the whole batch either way, but the CPU convolution kernels sum in an order that depends on the batch size,
so a chunk's rows round differently from the same rows of the whole batch (measured here: the U-Net's
output differs by 2.2e-7 of its largest magnitude, the sampled showers by 2.4e-7 to 2.9e-7). A chunking
that drew the noise per chunk or mixed up rows would be off by order one.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from calo_ablate.model.calodiffusion.config import CaloDiffusionConfig
from calo_ablate.model.calodiffusion.consistency import sample_consistency_model
from calo_ablate.model.calodiffusion.module import CaloDiffusionModule

from .conftest import TINY, published_config

TINY_LAYERS = {"enabled": True, "hidden": 16, "blocks": 1}
CONSISTENCY = {"enabled": True, "teacher_steps": 10}
SHOWERS, CHUNK, STEPS = 7, 3, 4
pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny(**changes: object) -> CaloDiffusionModule:
    torch.manual_seed(0)
    values = published_config("1-photons").model_dump() | TINY | changes
    return CaloDiffusionModule(CaloDiffusionConfig.model_validate(values), "1-photons", 1e-3).eval()


def _cond() -> torch.Tensor:
    return torch.rand(SHOWERS, 1, generator=torch.Generator().manual_seed(1))


def _calls(net: nn.Module) -> list[int]:
    """The batch size of every call of `net`, as it happens."""
    sizes: list[int] = []
    net.register_forward_hook(lambda module, args, out: sizes.append(len(args[0])))
    return sizes


def _assert_chunked_equals_whole(net: nn.Module, sample: Callable[[int], torch.Tensor], evaluations: int) -> None:
    sizes = _calls(net)
    whole = sample(SHOWERS)
    assert sizes == [SHOWERS] * evaluations
    sizes.clear()
    parts = sample(CHUNK)
    assert sizes == [3, 3, 1] * evaluations
    assert whole.shape == parts.shape and bool(torch.isfinite(whole).all())
    scale = float(whole.abs().max())
    torch.testing.assert_close(parts, whole, rtol=0.0, atol=1e-6 * scale)


def test_the_base_sampler_in_chunks_gives_the_unchunked_showers() -> None:
    module = _tiny()
    cond = _cond()
    _assert_chunked_equals_whole(
        module.net, lambda chunk: module.sample(cond, STEPS, batch_size=SHOWERS, seed=3, chunk_showers=chunk),
        STEPS - module.config.sample_offset)


def test_layer_diffusion_in_chunks_gives_the_unchunked_layers_and_voxels() -> None:
    module = _tiny(layer_diffusion=TINY_LAYERS)
    cond = _cond()
    evaluations = STEPS - module.config.sample_offset
    assert module.layer_net is not None
    _assert_chunked_equals_whole(
        module.layer_net,
        lambda chunk: module.sample_layers(cond, STEPS, batch_size=SHOWERS, seed=3, chunk_showers=chunk),
        evaluations)
    layers = module.sample_layers(cond, STEPS, batch_size=SHOWERS, seed=3)
    _assert_chunked_equals_whole(
        module.net,
        lambda chunk: module.sample(cond, STEPS, batch_size=SHOWERS, seed=4, layers=layers, chunk_showers=chunk),
        evaluations)


def test_consistency_sampling_in_chunks_gives_the_unchunked_showers() -> None:
    module = _tiny(consistency=CONSISTENCY)
    cond = _cond()
    _assert_chunked_equals_whole(
        module.net, lambda chunk: sample_consistency_model(module, cond, 2, SHOWERS, seed=3, chunk_showers=chunk), 2)


def test_a_batch_within_the_chunk_is_one_call_as_before() -> None:
    module = _tiny()
    sizes = _calls(module.net)
    module.sample(_cond(), STEPS, batch_size=SHOWERS, seed=3)   # the default chunk, well above 7 showers
    assert sizes == [SHOWERS] * (STEPS - module.config.sample_offset)


@pytest.mark.parametrize("chunk", [0, -2])
def test_a_non_positive_chunk_is_refused_by_every_sampler(chunk: int) -> None:
    module = _tiny(layer_diffusion=TINY_LAYERS)
    cond = _cond()
    message = f"chunk_showers={chunk}: expected a positive number of showers"
    with pytest.raises(ValueError, match=message):
        module.sample_layers(cond, STEPS, chunk_showers=chunk)
    with pytest.raises(ValueError, match=message):
        module.sample(cond, STEPS, layers=torch.zeros(SHOWERS, 6), chunk_showers=chunk)
    with pytest.raises(ValueError, match=message):
        sample_consistency_model(_tiny(consistency=CONSISTENCY), cond, 1, SHOWERS, seed=0, chunk_showers=chunk)
