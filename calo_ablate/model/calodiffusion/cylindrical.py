"""Cylindrical convolutions: layout (B, C, z, alpha, r), alpha periodic.

CylindricalConv pads alpha circularly by the conv's padding, then convolves with zero padding in z and
r only. CylindricalConvTranspose pads alpha circularly by 1, then runs a transposed conv whose alpha
padding is kernel - 1, which crops the padded copies back off: a shift of the input in alpha by one
bin shifts the output by `stride` bins. cylindrical=False gives the plain (zero-padded) convolutions
with the same parameters and output sizes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CylindricalConv", "CylindricalConvTranspose"]

Triple = tuple[int, int, int]


def _triple(value: int | Triple) -> Triple:
    if isinstance(value, int):
        return value, value, value
    a, b, c = value
    return a, b, c


def _pad_alpha(x: torch.Tensor, amount: int) -> torch.Tensor:
    """Circular padding of the alpha axis (dim 3) by `amount` bins on each side."""
    return F.pad(x, (0, 0, amount, amount, 0, 0), mode="circular") if amount else x


class CylindricalConv(nn.Module):
    """Conv3d with circular padding in alpha (cylindrical) or zero padding everywhere."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Triple, stride: int | Triple = 1,
                 padding: int = 0, cylindrical: bool = True) -> None:
        super().__init__()
        self.alpha_padding = padding if cylindrical else 0
        conv_padding = (padding, 0, padding) if cylindrical else (padding, padding, padding)
        self.conv = nn.Conv3d(in_channels, out_channels, _triple(kernel_size), _triple(stride), conv_padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(_pad_alpha(x, self.alpha_padding))


class CylindricalConvTranspose(nn.Module):
    """ConvTranspose3d (padding 1) whose alpha axis wraps around (cylindrical) or is zero-padded."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Triple, stride: int | Triple = 1,
                 output_padding: int | Triple = 0, cylindrical: bool = True) -> None:
        super().__init__()
        kernel = _triple(kernel_size)
        self.alpha_padding = 1 if cylindrical else 0
        conv_padding = (1, kernel[1] - 1, 1) if cylindrical else (1, 1, 1)
        self.conv = nn.ConvTranspose3d(in_channels, out_channels, kernel, _triple(stride), conv_padding,
                                       _triple(output_padding))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(_pad_alpha(x, self.alpha_padding))
