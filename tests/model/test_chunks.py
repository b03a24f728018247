"""chunked (model/chunks.py): a network called on a few showers at a time, as the diffusion samplers use it."""

from __future__ import annotations

import pytest
import torch

from calo_ablate.model.chunks import chunked


def test_chunked_call_slices_every_per_shower_argument() -> None:
    calls = []

    def velocity(x: torch.Tensor, t: torch.Tensor, layer: torch.Tensor) -> torch.Tensor:
        calls.append(len(x))
        return x * t[:, None] + layer.sum(dim=1, keepdim=True)

    x, t, layer = torch.randn(7, 5), torch.rand(7), torch.randn(7, 2)
    out = chunked(velocity, 3)(x, t, layer)
    assert calls == [3, 3, 1]
    torch.testing.assert_close(out, x * t[:, None] + layer.sum(dim=1, keepdim=True))


def test_chunked_output_keeps_the_network_s_shape_and_dtype() -> None:
    """A bf16 network (autocast) gives bf16 chunks, whose products in the sampler round as the whole batch's."""
    def network(x: torch.Tensor) -> torch.Tensor:
        return x[:, :2].bfloat16()

    x = torch.randn(5, 4)
    out = chunked(network, 2)(x)
    assert out.dtype == torch.bfloat16 and out.shape == (5, 2)
    assert torch.equal(out, network(x))


def test_a_batch_within_the_chunk_is_the_network_s_own_output() -> None:
    x = torch.randn(3, 4)
    out = torch.zeros(3, 4)
    assert chunked(lambda _: out, 3)(x) is out


@pytest.mark.parametrize("chunk", [0, -1])
def test_a_non_positive_chunk_is_refused(chunk: int) -> None:
    with pytest.raises(ValueError, match=f"chunk_showers={chunk}: expected a positive number"):
        chunked(lambda x: x, chunk)
