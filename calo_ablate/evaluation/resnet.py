"""cls-resnet: a small 3D convolutional classifier on the cls-low vector (datasets 2 and 3 only).

The official mode reshapes the voxels of the cls-low vector to (1, layers, alpha, r) = (1, 45, 16, 9)
or (1, 45, 50, 18) and trains a 3D ResNet with the classifier procedure of classifier.py. This is the
project's own small network of that kind (its layer sizes are not the official ones, so its AUC is
reported as cls-resnet but is not number for number):
stem Conv3d(1 -> c, 3), then `blocks` residual blocks [Conv3d(c -> c, 3), LeakyReLU, Conv3d(c -> c, 3)]
+ skip, LeakyReLU, each after the first halving every spatial size (stride-2 convolution); global
average pooling; the pooled c values and log10 E_inc go through Linear(c + 1 -> 2c), LeakyReLU,
Linear(2c -> 1) to one logit. It trains in float32 (the official network is float64; float64 3D
convolutions are about 10x slower on CPU, and this network is not the official one anyway).
"""

from __future__ import annotations

import torch
from torch import nn

from calo_ablate.config import canonical_dataset
from calo_ablate.errors import ConfigError

__all__ = ["RESNET_SHAPES", "ShowerResNet"]

RESNET_SHAPES = {"2": (45, 16, 9), "3": (45, 50, 18)}  # (layers, alpha, r)


class _Block(nn.Module):
    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        self.down = nn.Conv3d(channels, channels, 3, stride=stride, padding=1) if stride > 1 else nn.Identity()
        self.conv1 = nn.Conv3d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv3d(channels, channels, 3, padding=1)
        self.act = nn.LeakyReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)
        return self.act(x + self.conv2(self.act(self.conv1(x))))


class ShowerResNet(nn.Module):
    """(N, 1 + layers * alpha * r) cls-low rows -> (N, 1) logits."""

    def __init__(self, dataset: str, channels: int = 8, blocks: int = 2) -> None:
        super().__init__()
        dataset = canonical_dataset(dataset)
        if dataset not in RESNET_SHAPES:
            msg = f"cls-resnet is defined for datasets 2 and 3 only, not {dataset!r} (as in the official script)"
            raise ConfigError(msg)
        self.shape = RESNET_SHAPES[dataset]
        self.stem = nn.Conv3d(1, channels, 3, padding=1)
        self.blocks = nn.Sequential(*[_Block(channels, 1 if i == 0 else 2) for i in range(blocks)])
        self.head = nn.Sequential(nn.Linear(channels + 1, 2 * channels), nn.LeakyReLU(), nn.Linear(2 * channels, 1))
        self.act = nn.LeakyReLU()

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        log_energy, voxels = rows[:, :1], rows[:, 1:].reshape(-1, 1, *self.shape)
        x = self.blocks(self.act(self.stem(voxels)))
        return self.head(torch.cat([x.mean(dim=(2, 3, 4)), log_energy], dim=1))
