"""A network evaluated on a few showers at a time: what bounds the activations' memory of a large sampling batch.

Used inside the diffusion families' samplers, around the network alone: the noise draws and the sampler's
updates still run on the whole batch, so the showers do not depend on the chunk size (within float rounding).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["chunked"]


def chunked(network: Callable[..., torch.Tensor], chunk_showers: int) -> Callable[..., torch.Tensor]:
    """network(*per-shower tensors (B, ...)) -> (B, ...) evaluated `chunk_showers` rows at a time into one
    output (of the first chunk's dtype); a batch of at most chunk_showers rows is one call, as unchunked.

    A ValueError when chunk_showers is not positive.
    """
    if chunk_showers < 1:
        msg = f"chunk_showers={chunk_showers}: expected a positive number of showers per network call"
        raise ValueError(msg)

    def call(*per_shower: torch.Tensor) -> torch.Tensor:
        n = per_shower[0].shape[0]
        if n <= chunk_showers:
            return network(*per_shower)
        parts = [slice(start, start + chunk_showers) for start in range(0, n, chunk_showers)]
        first = network(*(x[parts[0]] for x in per_shower))
        out = first.new_empty((n, *first.shape[1:]))
        out[parts[0]] = first
        for part in parts[1:]:
            out[part] = network(*(x[part] for x in per_shower))
        return out

    return call
