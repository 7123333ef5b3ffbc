"""The three-scale feature pyramid on top of the fused ViT map.

A ViT's stride-16 map is too coarse for 64 x 48 heatmaps; the author's notes
upsample it twice and let the heatmaps interact with all three maps. The two
learned upsamplings are ViTPose's "classic decoder" deconvolutions (Xu et al.,
NeurIPS 2022, after SimpleBaseline), so the largest map is also what the heatmap
baseline head reads.
"""

from __future__ import annotations

import torch
from torch import nn

from vidpose.models.layers import group_norm


class FeaturePyramid(nn.Module):
    """Fused map [B, C, h, w] -> three maps [B, D, h, w], [B, D, 2h, 2w], [B, D, 4h, 4w].

    Level 0 is a 1x1 projection of the fused map to D channels; each further level
    is a stride-2 transposed convolution (kernel 4, padding 1: exactly doubles the
    size) + GroupNorm + ReLU of the previous one.

    Args:
        in_channels: C, the backbone width.
        channels: D, the width of every level.
        num_upsamplings: levels after the first (2 gives the 4x heatmap grid).
    """

    def __init__(self, *, in_channels: int, channels: int, num_upsamplings: int = 2) -> None:
        super().__init__()
        self.lateral = nn.Conv2d(in_channels, channels, kernel_size=1)
        self.upsamplings = nn.ModuleList(
            nn.Sequential(
                nn.ConvTranspose2d(
                    channels, channels, kernel_size=4, stride=2, padding=1, bias=False
                ),
                group_norm(channels),
                nn.ReLU(inplace=True),
            )
            for _ in range(num_upsamplings)
        )
        self.channels = channels

    def forward(self, fused: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Build the pyramid.

        Args:
            fused: [B, C, h, w] the temporally fused ViT map.

        Returns:
            levels coarse to fine: ([B, D, h, w], [B, D, 2h, 2w], [B, D, 4h, 4w]).
        """
        levels = [self.lateral(fused)]
        for upsample in self.upsamplings:
            levels.append(upsample(levels[-1]))
        return tuple(levels)
