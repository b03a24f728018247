"""CaloFlow's two masked autoregressive flows, built from zuko's public pieces.

Each block is zuko's MaskedAutoregressiveTransform (a MADE hyper-network predicting, per feature, the
parameters of a monotonic rational-quadratic spline on [-tail_bound, tail_bound] with identity tails,
or of an affine map) with the context concatenated to its input; DropoutMADE inserts the published
dropout after every hidden layer but the first (zuko's MaskedMLP has none). The published network
applies a permutation after each block; here the equivalent per-block feature order is given to each
block instead (a permutation before an i.i.d. standard-normal base changes no density):
- flow-I: a random permutation of the N layer variables after every block;
- flow-II: between blocks, the order inside every calorimeter layer reversed (even blocks) or shuffled
  (odd blocks), layers kept in their order, so no permutation mixes voxels of two layers.
Random orders come from a generator seeded by the caller, and are buffers of the blocks (checkpointed).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
import zuko
from torch import nn
from torch.distributions import Transform
from zuko.flows import Flow, LazyInverse, MaskedAutoregressiveTransform, UnconditionalDistribution
from zuko.transforms import MonotonicAffineTransform, MonotonicRQSTransform

from calo_ablate.model.caloflow.config import CaloFlowConfig, FlowConfig, StudentConfig

__all__ = ["DropoutMADE", "FastKnotsRQS", "build_flow", "flow1_orders", "flow2_orders"]


class DropoutMADE(MaskedAutoregressiveTransform):
    """zuko's masked autoregressive transform with nn.Dropout(dropout) after every activation but the
    first, as the published MADE (nflows, use_residual_blocks=False) places it."""

    hyper: nn.Sequential  # zuko's MaskedMLP (a Sequential), set by zuko's __init__

    def __init__(self, features: int, context: int, *, order: torch.Tensor, dropout: float,
                 univariate: Callable[..., Transform], shapes: tuple[tuple[int, ...], ...],
                 hidden_features: tuple[int, ...]) -> None:
        super().__init__(features, context, order=order, univariate=univariate, shapes=shapes,
                         hidden_features=hidden_features, activation=nn.ReLU)
        if dropout > 0:
            layers: list[nn.Module] = []
            for layer in self.hyper:
                layers.append(layer)
                if isinstance(layer, nn.ReLU) and any(isinstance(m, nn.ReLU) for m in layers[:-1]):
                    layers.append(nn.Dropout(dropout))
            self.hyper = nn.Sequential(*layers)


class FastKnotsRQS(MonotonicRQSTransform):
    """zuko's MonotonicRQSTransform, the same knots and spline, with the softmax over the K bins taken as
    exp / sum: torch's CPU softmax over a last dimension of 8 is about 10x slower, and it dominated
    the MAF's sequential sampling. zuko's soft clip keeps the logits within |log slope| / 2, so the
    exponential cannot overflow. tests/model/caloflow/test_flows.py checks the knots against zuko's."""

    def __init__(self, widths: torch.Tensor, heights: torch.Tensor, derivatives: torch.Tensor,
                 bound: float = 5.0, slope: float = 1e-3, **kwargs: Any) -> None:
        Transform.__init__(self, **kwargs)
        log_slope = math.log(slope)
        widths = _bin_fractions(widths / (1 + abs(2 * widths / log_slope)))
        heights = _bin_fractions(heights / (1 + abs(2 * heights / log_slope)))
        derivatives = derivatives / (1 + abs(derivatives / log_slope))
        self.horizontal = bound * (2 * torch.cumsum(widths, dim=-1) - 1)
        self.vertical = bound * (2 * torch.cumsum(heights, dim=-1) - 1)
        self.derivatives = torch.exp(F.pad(derivatives, (1, 1), value=0))


def _bin_fractions(logits: torch.Tensor) -> torch.Tensor:
    """softmax over the last dimension, a 0 prepended (the first knot)."""
    e = torch.exp(logits.contiguous())
    return F.pad(e / e.sum(dim=-1, keepdim=True), (1, 0), value=0)


def _ranks(positions: torch.Tensor) -> torch.Tensor:
    """The order zuko takes (rank of each feature) of a vector laid out as x[positions]."""
    return torch.argsort(positions)


def flow1_orders(n_features: int, blocks: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Feature ranks per block: block 0 natural, then a random permutation after every block."""
    positions = torch.arange(n_features)
    orders = []
    for _ in range(blocks):
        orders.append(_ranks(positions))
        positions = positions[torch.randperm(n_features, generator=generator)]
    return orders


def flow2_orders(slices: tuple[slice, ...], blocks: int, generator: torch.Generator,
                 within_layer: bool) -> list[torch.Tensor]:
    """Feature ranks per block: after block i the order inside every layer is reversed (i even) or
    shuffled (i odd); the layers stay in order. within_layer False: natural order in every block."""
    n_features = slices[-1].stop
    positions = torch.arange(n_features)
    orders = []
    for i in range(blocks):
        orders.append(_ranks(positions))
        if not within_layer:
            continue
        parts = []
        for s in slices:
            part = positions[s]
            n = len(part)
            parts.append(torch.flip(part, [0]) if i % 2 == 0 else part[torch.randperm(n, generator=generator)])
        positions = torch.cat(parts)
    return orders


def _univariate(config: CaloFlowConfig) -> tuple[Callable[..., Transform], tuple[tuple[int, ...], ...]]:
    """The per-feature transform and the shapes of its parameters."""
    if config.transform == "affine":
        return partial(MonotonicAffineTransform, slope=config.min_slope), ((), ())
    k = config.spline_bins
    spline = partial(FastKnotsRQS, bound=config.tail_bound, slope=config.min_slope)
    return spline, ((k,), (k,), (k - 1,))


def build_flow(n_features: int, n_context: int, flow: FlowConfig | StudentConfig, config: CaloFlowConfig,
               orders: list[torch.Tensor], inverse_autoregressive: bool = False) -> Flow:
    """A conditional MAF of `flow.blocks` DropoutMADE blocks with the given per-block orders and a
    standard-normal base. flow.hidden_features must be resolved (CaloFlowConfig.resolved).
    inverse_autoregressive: an IAF instead, every block inverted, so that sampling (transform.inv) takes
    one MADE pass per block and the density (transform) is the sequential direction."""
    if flow.hidden_features is None:
        msg = "caloflow hidden_features is unresolved: call CaloFlowConfig.resolved(dataset) first"
        raise ValueError(msg)
    univariate, shapes = _univariate(config)
    hidden = (flow.hidden_features,) * flow.hidden_layers
    transforms = [DropoutMADE(n_features, n_context, order=order, dropout=flow.dropout, univariate=univariate,
                              shapes=shapes, hidden_features=hidden) for order in orders]
    if inverse_autoregressive:
        transforms = [LazyInverse(t) for t in reversed(transforms)]
    base = UnconditionalDistribution(zuko.distributions.DiagNormal, torch.zeros(n_features),
                                     torch.ones(n_features), buffer=True)
    return Flow(transforms, base)
