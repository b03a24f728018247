"""CondUnet: the conditional cylindrical U-Net of CaloDiffusion on a (z, alpha, r) grid.

widths [w0, w1, ..., wL]: input 3x3x3 conv to w0 channels; down level l (w_{l-1} -> w_l): ResnetBlock,
ResnetBlock, linear attention, keep the skip, Downsample (kernel (3, 4, 4), stride 2; none on the last
level); bottleneck ResnetBlock, attention, ResnetBlock; up levels in reverse: concat the skip,
ResnetBlock(2 w_l -> w_{l-1}), ResnetBlock, attention, Upsample (transposed, kernel (3 or 4, 4, 4),
stride 2, output padding restoring the down level's size; none on the last); output ResnetBlock
without conditioning and a 1x1x1 conv to one channel.
Conditioning: sigma_t and the energy condition, each through Linear(1, h) - GELU - Linear(h, d) - GELU -
Linear(d, d), concatenated to 2d (with LayerDiffusion the condition is [energy, layer vector], so the
energy MLP's first Linear takes 2 + n_layers inputs); every conditioned ResnetBlock adds Linear(2d -> width)(SiLU(cond)) as
a per-channel shift after its first Block. The coordinate channels are fixed inputs concatenated to x.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import pairwise
from typing import cast

import torch
from torch import nn

from calo_ablate.errors import ConfigError
from calo_ablate.model.calodiffusion.config import CaloDiffusionConfig
from calo_ablate.model.calodiffusion.cylindrical import CylindricalConv, CylindricalConvTranspose

__all__ = ["CondUnet", "LinearAttention", "ResnetBlock", "embedding_mlp", "level_shapes"]

Shape = tuple[int, int, int]


def level_shapes(shape: Shape, n_levels: int) -> list[Shape]:
    """(z, alpha, r) of each resolution level: kernel (3, 4, 4), stride 2, padding 1 per downsampling."""
    shapes = [shape]
    for _ in range(n_levels - 1):
        z, a, r = shapes[-1]
        shapes.append(((z - 1) // 2 + 1, a // 2, r // 2))
    if min(min(s) for s in shapes) < 1:
        msg = f"grid {shape} cannot be downsampled {n_levels - 1} times (levels {shapes}): " \
              "use fewer calodiffusion.widths"
        raise ConfigError(msg)
    return shapes


class Block(nn.Module):
    """3x3x3 cylindrical conv, GroupNorm, SiLU."""

    def __init__(self, in_channels: int, out_channels: int, groups: int, cylindrical: bool) -> None:
        super().__init__()
        self.conv = CylindricalConv(in_channels, out_channels, 3, padding=1, cylindrical=cylindrical)
        self.norm = nn.GroupNorm(groups, out_channels)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class ResnetBlock(nn.Module):
    """Block, plus a per-channel shift from the condition (when cond_dim), Block, plus the residual."""

    def __init__(self, in_channels: int, out_channels: int, cond_dim: int | None, groups: int,
                 cylindrical: bool) -> None:
        super().__init__()
        self.shift = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, out_channels)) if cond_dim else None
        self.block1 = Block(in_channels, out_channels, groups, cylindrical)
        self.block2 = Block(out_channels, out_channels, groups, cylindrical)
        self.residual = nn.Conv3d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = self.block1(x)
        if self.shift is not None and cond is not None:
            h = h + self.shift(cond)[:, :, None, None, None]
        return self.block2(h) + self.residual(x)


class LinearAttention(nn.Module):
    """Linear attention over all positions: softmax of q over channels, of k over positions."""

    def __init__(self, channels: int, heads: int, head_dim: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        hidden = heads * head_dim
        self.to_qkv = nn.Conv3d(channels, 3 * hidden, 1, bias=False)
        self.to_out = nn.Sequential(nn.Conv3d(hidden, channels, 1), nn.GroupNorm(1, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, z, a, r = x.shape
        q, k, v = self.to_qkv(x).reshape(b, 3, self.heads, self.head_dim, z * a * r).unbind(1)  # (B, h, d, n)
        q = q.softmax(dim=-2) * self.head_dim ** -0.5
        k = k.softmax(dim=-1)
        context = torch.einsum("bhdn,bhen->bhde", k, v)                    # (B, h, d, e)
        out = torch.einsum("bhde,bhdn->bhen", context, q)                  # (B, h, e, n)
        return self.to_out(out.reshape(b, -1, z, a, r))


class Attention(nn.Module):
    """x + LinearAttention(GroupNorm(1)(x))."""

    def __init__(self, channels: int, heads: int, head_dim: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(1, channels)
        self.attn = LinearAttention(channels, heads, head_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attn(self.norm(x))


def embedding_mlp(hidden: int, dim: int, n_in: int = 1) -> nn.Sequential:
    """Linear(n_in, hidden) - GELU - Linear(hidden, dim) - GELU - Linear(dim, dim)."""
    return nn.Sequential(nn.Linear(n_in, hidden), nn.GELU(), nn.Linear(hidden, dim), nn.GELU(), nn.Linear(dim, dim))


def _upsample(channels: int, small: Shape, big: Shape, cylindrical: bool) -> CylindricalConvTranspose:
    """Transposed conv from `small` to `big`: z kernel 4 doubles exactly, 3 gives 2 z - 1."""
    z_kernel = 4 if big[0] % 2 == 0 else 3
    output_padding = (0, big[1] - 2 * small[1], big[2] - 2 * small[2])
    return CylindricalConvTranspose(channels, channels, (z_kernel, 4, 4), 2, output_padding, cylindrical)


class CondUnet(nn.Module):
    """forward(x (B, 1, z, alpha, r), sigma (B,), energy (B,)) -> (B, 1, z, alpha, r).

    coords: (n_coord, z, alpha, r) fixed channels concatenated to x (see geometry_map.coordinate_channels);
    n_cond: the width of the condition (energy (B,) or (B, n_cond)).
    """

    coords: torch.Tensor  # a buffer, registered in __init__

    def __init__(self, config: CaloDiffusionConfig, coords: torch.Tensor, n_cond: int = 1) -> None:
        super().__init__()
        self.register_buffer("coords", coords.clone(), persistent=False)
        _, z, alpha, r = coords.shape
        shape: Shape = (z, alpha, r)
        widths, groups, cyl = config.widths, config.norm_groups, config.cylindrical
        shapes = level_shapes(shape, len(widths) - 1)
        cond_dim = 2 * config.embed_dim

        def attention(channels: int, on: bool) -> nn.Module:
            return Attention(channels, config.attention_heads, config.attention_head_dim) if on else nn.Identity()

        self.time_mlp = embedding_mlp(config.embed_hidden, config.embed_dim)
        self.energy_mlp = embedding_mlp(config.embed_hidden, config.embed_dim, n_cond)
        self.init_conv = CylindricalConv(1 + coords.shape[0], widths[0], 3, padding=1, cylindrical=cyl)
        pairs = list(pairwise(widths))
        last = len(pairs) - 1
        self.down = nn.ModuleList()
        for level, (w_in, w_out) in enumerate(pairs):
            self.down.append(nn.ModuleList([
                ResnetBlock(w_in, w_out, cond_dim, groups, cyl),
                ResnetBlock(w_out, w_out, cond_dim, groups, cyl),
                attention(w_out, config.block_attention),
                CylindricalConv(w_out, w_out, (3, 4, 4), 2, padding=1, cylindrical=cyl)
                if level < last else nn.Identity(),
            ]))
        mid = widths[-1]
        self.mid1 = ResnetBlock(mid, mid, cond_dim, groups, cyl)
        self.mid_attention = attention(mid, config.mid_attention)
        self.mid2 = ResnetBlock(mid, mid, cond_dim, groups, cyl)
        self.up = nn.ModuleList()
        for level in reversed(range(len(pairs))):
            w_in, w_out = pairs[level]
            self.up.append(nn.ModuleList([
                ResnetBlock(2 * w_out, w_in, cond_dim, groups, cyl),
                ResnetBlock(w_in, w_in, cond_dim, groups, cyl),
                attention(w_in, config.block_attention),
                _upsample(w_in, shapes[level], shapes[level - 1], cyl) if level > 0 else nn.Identity(),
            ]))
        self.final_block = ResnetBlock(widths[0], widths[0], None, groups, cyl)
        self.final_conv = nn.Conv3d(widths[0], 1, 1)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, energy: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        h = torch.cat([x, self.coords.expand(b, -1, -1, -1, -1).to(x.dtype)], dim=1)
        cond = torch.cat([self.time_mlp(sigma.reshape(b, 1)), self.energy_mlp(energy.reshape(b, -1))], dim=1)
        h = self.init_conv(h)
        skips = []
        for res1, res2, attn, downsample in cast("Iterable[nn.ModuleList]", self.down):  # a ModuleList per level
            h = attn(res2(res1(h, cond), cond))
            skips.append(h)
            h = downsample(h)
        h = self.mid2(self.mid_attention(self.mid1(h, cond)), cond)
        for res1, res2, attn, upsample in cast("Iterable[nn.ModuleList]", self.up):
            h = torch.cat([h, skips.pop()], dim=1)
            h = upsample(attn(res2(res1(h, cond), cond)))
        return self.final_conv(self.final_block(h))
