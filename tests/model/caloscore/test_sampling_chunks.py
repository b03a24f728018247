"""Sampling in network chunks (CaloScoreModule.sample's chunk_showers) gives the showers of unchunked sampling."""

from __future__ import annotations

import pytest
import torch

from calo_ablate.config import resolve_config
from calo_ablate.geometry import load_geometry
from calo_ablate.model.caloscore.module import CaloScoreModule

TINY = ["model.voxel.lift_channels=4", "model.voxel.widths=[8,16]", "model.voxel.attention=[false,true]",
        "model.voxel.block_depth=1", "model.layer.mlp_dim=16"]
pytestmark = pytest.mark.usefixtures("one_thread")


def _module() -> CaloScoreModule:
    torch.manual_seed(0)
    geometry = load_geometry("1-photons")
    module = CaloScoreModule(resolve_config("1", "smoke", cli_set=TINY), geometry.n_voxels, geometry.n_layers)
    with torch.no_grad():  # the output convolution starts at zero: give every weight a value
        for p in module.ema.net.parameters():
            p.normal_(0.0, 0.1)
    return module.eval()


@pytest.mark.parametrize("chunk", [1, 3, 4])
def test_chunked_sampling_equals_unchunked(chunk: int) -> None:
    module = _module()
    cond = torch.rand(10, 1, generator=torch.Generator().manual_seed(1))
    whole = module.sample(cond, steps=3, batch_size=10, seed=7, chunk_showers=10)
    parts = module.sample(cond, steps=3, batch_size=10, seed=7, chunk_showers=chunk)
    for a, b in zip(whole, parts, strict=True):
        assert a.shape == b.shape
        assert torch.isfinite(a).all()
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


def test_chunk_showers_must_be_positive() -> None:
    with pytest.raises(ValueError, match="chunk_showers=-1"):
        _module().sample(torch.rand(2, 1), steps=1, chunk_showers=-1)
