"""Keras-equivalent initialisation of the CaloScore v2 nets (the published model's starting point).

Keras's defaults for Dense, Conv1D and MultiHeadAttention: kernels glorot-uniform, U(-a, a) with
a = sqrt(6 / (fan_in + fan_out)), so variance 2 / (fan_in + fan_out); biases zero. Fans as Keras
computes them from the kernel's shape: a Dense kernel (in, out) has fan_in = in, fan_out = out; a
Conv1D kernel (k, in, out) has fan_in = k in, fan_out = k out (the same numbers PyTorch derives from
its (out, in, k) weight). MultiHeadAttention's query, key and value kernels have the shape
(width, heads, key_dim), and Keras treats every leading axis as receptive field: fan_in =
heads * width, fan_out = key_dim * width, i.e. width and width^2 for 1 head with key_dim = width.
The attention's output kernel (heads, key_dim, width) has fan_in = key_dim, fan_out = width.

PyTorch's defaults (Kaiming-uniform with a = sqrt(5), non-zero biases) stay with `model.init: pytorch`.
A weight that is all zeros when this runs (the U-Net's output convolution) was zeroed on purpose,
as in the published model, and is left so.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from calo_ablate.errors import ConfigError
from calo_ablate.model.caloscore.unet1d import SelfAttention1d

__all__ = ["glorot_bound", "initialise", "keras_fans"]


def glorot_bound(fan_in: int, fan_out: int) -> float:
    """The half-width a of glorot-uniform U(-a, a) (variance a^2 / 3 = 2 / (fan_in + fan_out))."""
    return math.sqrt(6.0 / (fan_in + fan_out))


def keras_fans(model: nn.Module) -> dict[str, tuple[int, int]]:
    """{module name: (fan_in, fan_out)} as Keras computes them, for every Linear and Conv1d of `model`.

    The fused q/k/v projection of SelfAttention1d is three Keras kernels of shape (width, 1, width):
    fan_in = width, fan_out = width^2 each.
    """
    qkv = {id(m.qkv) for m in model.modules() if isinstance(m, SelfAttention1d)}
    fans = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv1d):
            out_channels, in_channels, kernel = module.weight.shape
            fans[name] = (in_channels * kernel, out_channels * kernel)
        elif isinstance(module, nn.Linear):
            width = module.weight.shape[1]
            fans[name] = (width, width * width) if id(module) in qkv else (width, module.weight.shape[0])
    return fans


@torch.no_grad()
def initialise(model: nn.Module, scheme: str) -> None:
    """Re-initialise every Linear and Conv1d of `model` by `scheme`: "keras", or "pytorch" (keep torch's)."""
    if scheme == "pytorch":
        return
    if scheme != "keras":
        msg = f"model.init={scheme!r}: expected 'keras' or 'pytorch'"
        raise ConfigError(msg)
    modules = dict(model.named_modules())
    for name, (fan_in, fan_out) in keras_fans(model).items():
        module = modules[name]
        if not bool(module.weight.any()):  # deliberately zero-initialised (the output conv)
            continue
        bound = glorot_bound(fan_in, fan_out)
        nn.init.uniform_(module.weight, -bound, bound)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
