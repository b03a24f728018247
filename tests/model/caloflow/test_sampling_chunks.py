"""CaloFlowFamily.sample runs the flows in chunks of chunk_showers: the showers equal one unchunked call's."""

from __future__ import annotations

import pytest
import torch

from calo_ablate.config import resolve_config
from calo_ablate.model.families import load_family

from .conftest import tiny_sets

pytestmark = pytest.mark.usefixtures("one_thread")


def test_chunked_flow_sampling_equals_one_call() -> None:
    family = load_family(resolve_config("1", "smoke", cli_set=tiny_sets()))
    torch.manual_seed(0)
    module = family.module().eval()
    cond = torch.rand(7, 1, generator=torch.Generator().manual_seed(1)) * 10
    whole = module.sample(cond, batch_size=7, seed=3)
    chunked = family.sample(module, cond, steps=None, batch_size=7, seed=3, progress=False, chunk_showers=3)
    for a, b in zip(whole, chunked, strict=True):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)  # float32 GEMMs round by batch shape
