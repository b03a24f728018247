"""The 1-D U-Net of the CaloScore v2 voxel net: one channel over the flat voxel vector.

Layout for widths [w_0 .. w_n] (the last one is the bottleneck):
- lift: 1x1 conv, 1 -> lift_channels;
- down, for w_0 .. w_{n-1}: block_depth residual blocks (each output kept as a skip), then
  average pooling by 2;
- bottleneck: block_depth residual blocks at w_n;
- up, for w_{n-1} .. w_0: nearest upsampling by 2, then block_depth times: concatenate the
  latest skip, residual block;
- output: 1x1 conv to 1 channel, initialised to zero (the net predicts v = 0 at init).
A single width ([128]) is the U-Net without sampling layers: every block runs at full length.

Lengths that do not halve evenly: the voxel axis is zero-padded at its end to a multiple of
2^(n_widths - 1) before the lift and the output is cropped back (533 -> 536 for dataset 1 pions,
40500 -> 40504 for dataset 3; 368 and 6480 need no padding).

Memory layout (speed only; the parameters are those of nn.Conv1d and the results those of conv1d
within float rounding): activations run as (B, C, 1, N) tensors in channels-last memory, i.e. stored
as (B, N, C), and each Conv1d is applied as a conv2d with a (1, K) kernel: oneDNN's channels-last
convolutions ran 1.2-3x faster than its (B, C, N) conv1d at the base's shapes (forward and backward,
AVX-512 CPU), and the attention's (B, N, C) view of the same memory is contiguous, so LayerNorm and
the projections need no transposed copies.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from calo_ablate.errors import ConfigError

__all__ = ["ResidualBlock1d", "SelfAttention1d", "UNet1d"]


class SelfAttention1d(nn.Module):
    """x + MHA(LN(x)) over the length axis: 1 head, key dim = width, q/k/v/out projections with bias.

    LayerNorm over channels without learned scale or shift; the attention runs through
    scaled_dot_product_attention, which picks a memory-efficient kernel where one exists.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False)
        self.qkv = nn.Linear(width, 3 * width)  # the three Keras dense layers of width x width, fused
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x (B, C, 1, N) channels-last: its (B, N, C) view is contiguous
        batch, width, _, length = x.shape
        tokens = x.squeeze(2).transpose(1, 2)  # (B, N, C)
        q, k, v = self.qkv(self.norm(tokens)).unsqueeze(1).chunk(3, dim=-1)  # each (B, 1 head, N, C)
        h = F.scaled_dot_product_attention(q, k, v).reshape(batch * length, width)  # scale 1/sqrt(C)
        # x + out(h) as one GEMM that accumulates onto the residual: (x + bias) + h W^T
        out = torch.addmm((tokens + self.out.bias).reshape(batch * length, width), h, self.out.weight.t())
        return out.view(batch, length, width).transpose(1, 2).unsqueeze(2)  # (B, C, 1, N)


def conv_as_2d(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """conv(x) for x (B, C_in, 1, N) in channels-last memory -> (B, C_out, 1, N), the same layout.

    The Conv1d's own weight (C_out, C_in, K) and bias, as a (1, K) conv2d; stride 1, no dilation,
    groups 1 and the padding of the module ("same" or 0 for a 1x1 conv)."""
    padding = conv.padding if isinstance(conv.padding, str) else (0, conv.padding[0])
    return F.conv2d(x, conv.weight.unsqueeze(2), conv.bias, padding=padding)


class ResidualBlock1d(nn.Module):
    """out = res(x) + conv(swish(conv(swish(x)) + Linear(cond))), optionally followed by attention.

    res is the identity, or a 1x1 conv when the width changes; no normalisation. Dropout (if > 0)
    acts before the second convolution. Takes and returns (B, C, 1, N) channels-last tensors (the
    module docstring's memory layout).
    """

    def __init__(self, in_channels: int, width: int, cond_dim: int, kernel_size: int,
                 attention: bool, dropout: float) -> None:
        super().__init__()
        self.residual = nn.Identity() if in_channels == width else nn.Conv1d(in_channels, width, 1)
        self.conv1 = nn.Conv1d(in_channels, width, kernel_size, padding="same")
        self.cond = nn.Linear(cond_dim, width)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv1d(width, width, kernel_size, padding="same")
        self.attention = SelfAttention1d(width) if attention else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        # x (B, C_in, 1, N) channels-last, cond (B, E) -> (B, width, 1, N) channels-last
        h = conv_as_2d(self.conv1, F.silu(x)).add_(self.cond(cond)[:, :, None, None])
        h = conv_as_2d(self.conv2, self.dropout(F.silu(h)))
        residual = x if isinstance(self.residual, nn.Identity) else conv_as_2d(self.residual, x)
        return self.attention(residual + h)


class UNet1d(nn.Module):
    """(B, V) voxel vector and (B, cond_dim) condition -> (B, V) output (the predicted velocity)."""

    def __init__(self, lift_channels: int, widths: list[int], attention: list[bool], block_depth: int,
                 kernel_size: int, cond_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        if len(widths) != len(attention) or not widths:
            msg = (f"model.voxel.widths={widths} and model.voxel.attention={attention}: expected non-empty "
                   f"lists of equal length")
            raise ConfigError(msg)
        self.pad_multiple = 2 ** (len(widths) - 1)
        self.lift = nn.Conv1d(1, lift_channels, 1)

        def block(c_in: int, width: int, attn: bool) -> ResidualBlock1d:
            return ResidualBlock1d(c_in, width, cond_dim, kernel_size, attn, dropout)

        channels = lift_channels
        skip_channels: list[int] = []
        self.down = nn.ModuleList()
        for width, attn in zip(widths[:-1], attention[:-1], strict=True):
            stage = nn.ModuleList()
            for _ in range(block_depth):
                stage.append(block(channels, width, attn))
                channels = width
                skip_channels.append(width)
            self.down.append(stage)

        self.bottleneck = nn.ModuleList()
        for _ in range(block_depth):
            self.bottleneck.append(block(channels, widths[-1], attention[-1]))
            channels = widths[-1]

        self.up = nn.ModuleList()
        for width, attn in zip(reversed(widths[:-1]), reversed(attention[:-1]), strict=True):
            stage = nn.ModuleList()
            for _ in range(block_depth):
                stage.append(block(channels + skip_channels.pop(), width, attn))
                channels = width
            self.up.append(stage)

        self.output = nn.Conv1d(channels, 1, 1)
        nn.init.zeros_(self.output.weight)
        if self.output.bias is not None:  # always: a Conv1d has a bias unless bias=False
            nn.init.zeros_(self.output.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        n_voxels = x.shape[1]
        pad = -n_voxels % self.pad_multiple
        h = conv_as_2d(self.lift, F.pad(x, (0, pad))[:, None, None, :])  # (B, lift, 1, V + pad)
        h = h.contiguous(memory_format=torch.channels_last)
        skips: list[torch.Tensor] = []
        for stage in cast("Iterable[nn.ModuleList]", self.down):  # each stage a ModuleList of blocks
            for blk in stage:
                h = blk(h, cond)
                skips.append(h)
            h = F.avg_pool2d(h, (1, 2))
        for blk in self.bottleneck:
            h = blk(h, cond)
        for stage in cast("Iterable[nn.ModuleList]", self.up):
            h = F.interpolate(h, scale_factor=(1, 2), mode="nearest")
            for blk in stage:
                h = blk(torch.cat([h, skips.pop()], dim=1), cond)
        return conv_as_2d(self.output, h).flatten(1)[:, :n_voxels]  # (B, V)
