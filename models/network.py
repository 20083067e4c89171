"""The network: a fully convolutional residual encoder–decoder with skip connections.

No layer normalises over space (no group or instance norm), so a cell's output depends only
on the inputs inside its receptive field: tiled inference with a halo at least that wide
reproduces whole-domain inference. On a global domain longitude wraps (circular padding).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class Conv3(nn.Module):
    """3×3 convolution; zero padding in latitude, circular or zero padding in longitude."""

    def __init__(self, c_in: int, c_out: int, wrap_lon: bool):
        super().__init__()
        # zeros are padded inside the convolution: a padded copy of every activation (and of
        # its gradient) took about a sixth of a training step's time on CPUs
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=(1, 0) if wrap_lon else 1)
        self.wrap_lon = wrap_lon

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.wrap_lon:
            x = F.pad(x, (1, 1, 0, 0), mode="circular")
        return self.conv(x)


class ResBlock(nn.Module):
    """Two 3×3 convolutions with a residual connection (1×1 when channels change)."""

    def __init__(self, c_in: int, c_out: int, wrap_lon: bool):
        super().__init__()
        self.conv1 = Conv3(c_in, c_out, wrap_lon)
        self.conv2 = Conv3(c_out, c_out, wrap_lon)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        nn.init.zeros_(self.conv2.conv.weight)  # each block starts as (a projection of) identity
        assert self.conv2.conv.bias is not None  # Conv2d has a bias by default
        nn.init.zeros_(self.conv2.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.conv1(x))
        return self.skip(x) + self.conv2(h)


class UNet(nn.Module):
    """Residual U-Net: ``depth`` halvings, channels doubling from ``base``.

    Inputs whose height and width are not multiples of ``2**depth`` are padded with zeros at
    the bottom and right and the output is cropped back.
    """

    def __init__(self, in_channels: int, base: int = 16, depth: int = 3,
                 wrap_lon: bool = False):
        super().__init__()
        self.depth = depth
        chans = [base * 2**k for k in range(depth + 1)]
        self.stem = Conv3(in_channels, base, wrap_lon)
        self.down = nn.ModuleList(
            [ResBlock(chans[0], chans[0], wrap_lon)]
            + [ResBlock(chans[k - 1], chans[k], wrap_lon) for k in range(1, depth + 1)])
        self.up = nn.ModuleList(
            [ResBlock(chans[k + 1] + chans[k], chans[k], wrap_lon) for k in range(depth)])
        self.head = nn.Conv2d(base, 1, 1)
        nn.init.zeros_(self.head.weight)
        assert self.head.bias is not None  # Conv2d has a bias by default
        nn.init.zeros_(self.head.bias)

    @property
    def multiple(self) -> int:
        return 2**self.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.multiple, (-w) % self.multiple
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        x = F.gelu(self.stem(x))
        skips = []
        for k, block in enumerate(self.down):
            if k > 0:
                x = F.avg_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        for k in reversed(range(self.depth)):
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = self.up[k](torch.cat([x, skips[k]], dim=1))
        return self.head(x)[..., :h, :w]


def receptive_radius(depth: int) -> int:
    """A safe bound on the receptive-field radius (cells) of :class:`UNet`."""
    radius = 1  # stem
    for k in range(depth + 1):
        radius += 2 * 2**k  # encoder block at level k
    for k in range(depth):
        radius += 2 * 2**k + 2**k  # decoder block and the upsampling at level k
    return radius + 2**depth
