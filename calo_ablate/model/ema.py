"""Exponential moving average of a network's weights, the copy CaloScore v2 samples with."""

from __future__ import annotations

import copy
from typing import Generic, TypeVar

import torch
from torch import nn

__all__ = ["EMA"]

NetT = TypeVar("NetT", bound=nn.Module)


class EMA(nn.Module, Generic[NetT]):
    """A frozen copy of `start` updated as ema <- decay_n * ema + (1 - decay_n) * net after each step.

    With warmup, decay_n = min(decay, (1 + n) / (10 + n)) after n updates (the warm-up of
    TensorFlow's ExponentialMovingAverage with num_updates): identical to the plain decay after about
    10 / (1 - decay) steps (10,000 for 0.999), while a short run's average is not dominated by its
    starting weights. Without warmup decay_n = decay, as in the published code, whose average starts
    from a freshly initialised copy (pass such a net as `start`): after n steps a fraction decay^n of
    it (0.94 after 60 steps at 0.999) is still those random weights. The copy and the update count
    live in the state dict (hence in checkpoints). `net` has the class of `start`.
    """

    updates: torch.Tensor  # a registered buffer: the number of updates so far

    def __init__(self, start: NetT, decay: float, warmup: bool = True) -> None:
        super().__init__()
        self.decay = decay
        self.warmup = warmup
        self.net: NetT = copy.deepcopy(start).requires_grad_(False).eval()
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def current_decay(self) -> float:
        """The decay the next update uses."""
        if not self.warmup:
            return self.decay
        n = int(self.updates)
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        """Move the average towards `net`'s current parameters (same architecture as the copy)."""
        weight = 1.0 - self.current_decay()
        ema_params: list[torch.Tensor] = list(self.net.parameters())
        params = [p.detach() for p in net.parameters()]
        torch._foreach_lerp_(ema_params, params, weight)
        for ema_buffer, buffer in zip(self.net.buffers(), net.buffers(), strict=True):
            ema_buffer.copy_(buffer)
        self.updates += 1

    def train(self, mode: bool = True) -> EMA[NetT]:
        """The copy always stays in eval mode (no dropout when sampling)."""
        super().train(mode)
        self.net.eval()
        return self
