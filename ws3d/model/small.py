"""A small CPU-friendly backbone for the embedded synthetic default.

An hourglass with three scales (1/4, 1/8, 1/16) and additive skip connections: enough
receptive field to see a whole person in a 64-128 px crop, ~0.5 M parameters.
GroupNorm instead of BatchNorm, so a sample's output does not depend on the rest of its
batch: distributed runs then equal one process on the same global batch.

Shapes: images (B, 3, H, W) -> features (B, width, H/4, W/4); H, W divisible by 16.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ws3d.errors import InputError


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.GroupNorm(8, c_out), nn.ReLU(inplace=True)
    )


class Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(_conv(channels, channels), nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
                                  nn.GroupNorm(8, channels))  # fmt: skip

    def forward(self, x):
        return torch.relu(x + self.body(x))

    def reset_parameters(self) -> None:
        for module in self.body.modules():
            if isinstance(module, (nn.Conv2d, nn.GroupNorm)):
                module.reset_parameters()


class SmallNet(nn.Module):
    """(B, 3, H, W) -> (B, width, H/4, W/4)."""

    stride = 4

    def __init__(self, width: int = 32):
        super().__init__()
        if width % 16:
            raise InputError(f"width must be a multiple of 16 (GroupNorm groups of the half-width stem), got {width}")
        w1, w2, w3 = width, 2 * width, 3 * width
        self.out_channels = w1
        self.stem = nn.Sequential(_conv(3, w1 // 2, 2), _conv(w1 // 2, w1, 2))
        self.high = Residual(w1)
        self.down1 = nn.Sequential(_conv(w1, w2, 2), Residual(w2))
        self.down2 = nn.Sequential(_conv(w2, w3, 2), Residual(w3), Residual(w3))
        self.up2 = nn.Conv2d(w3, w2, 1)
        self.mid = Residual(w2)
        self.up1 = nn.Conv2d(w2, w1, 1)
        self.out = Residual(w1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.high(self.stem(x))
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x2 = self.mid(x2 + F.interpolate(self.up2(x3), size=x2.shape[-2:], mode="nearest"))
        return self.out(x1 + F.interpolate(self.up1(x2), size=x1.shape[-2:], mode="nearest"))
