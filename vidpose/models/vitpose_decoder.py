"""ViTPose's classic decoder, exactly: what ``model.decoder: vitpose`` builds.

ViTPose (Xu et al., NeurIPS 2022; ``TopdownHeatmapSimpleHead`` in ViTAE-Transformer/
ViTPose, ``HeatmapHead`` in mmpose 1.x) decodes the ViT's token map with two
transposed convolutions (kernel 4, stride 2, padding 1, no bias), each followed by
BatchNorm and ReLU, and a 1x1 convolution to the K heatmaps. vidpose's own
:class:`~vidpose.models.pyramid.FeaturePyramid` has the same two upsamplings but a 1x1
lateral projection first, GroupNorm instead of BatchNorm, and its heatmap head adds a
3x3 convolution: a ViTPose checkpoint cannot be loaded into it. These two modules are
ViTPose's layers under ViTPose's own parameter names (``deconv_layers.{0,1,3,4}``,
``final_layer``), so an imported checkpoint maps one to one
(``vidpose.models.vitpose_import``) and BatchNorm keeps its running statistics: the
imported model computes what ViTPose computes, and fine-tuning it trains what ViTPose
trains (rather than folding BatchNorm into the deconvolutions, which is exact only in
evaluation mode).
"""

from __future__ import annotations

import torch
from torch import nn


class ViTPoseDecoder(nn.Module):
    """Fused map [B, C, h, w] -> levels ([B, C, h, w], [B, D, 2h, 2w], [B, D, 4h, 4w]).

    Stands where the feature pyramid stands (``PoseEstimator.pyramid``): its levels,
    coarse to fine, are the ViT map itself and the outputs of the two deconvolution
    stages. Only the finest is read by the heatmap head; level 0 keeps the ViT's C
    channels (ViTPose has no projection), so heads that read every level at D
    channels cannot sit on it (``build_model`` allows the heatmap head only).

    Args:
        in_channels: C, the backbone width.
        channels: D, the deconvolutions' width (ViTPose: 256).
        num_deconvs: upsampling stages (ViTPose: 2, the 4x heatmap grid).
    """

    def __init__(self, *, in_channels: int, channels: int = 256, num_deconvs: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_channels
        for _ in range(num_deconvs):
            layers += [
                nn.ConvTranspose2d(
                    width,
                    channels,
                    kernel_size=4,
                    stride=2,
                    padding=1,
                    output_padding=0,
                    bias=False,
                ),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            ]
            width = channels
        # indices 0, 1, (2), 3, 4, (5): ViTPose's state-dict names
        self.deconv_layers = nn.Sequential(*layers)
        self.channels = channels

    def forward(self, fused: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """fused [B, C, h, w] -> levels coarse to fine (see the class docstring)."""
        levels = [fused]
        features = fused
        for start in range(0, len(self.deconv_layers), 3):
            features = self.deconv_layers[start : start + 3](features)
            levels.append(features)
        return tuple(levels)


class ViTPoseFinalLayer(nn.Module):
    """Features [B, D, H, W] -> heatmaps [B, K, H, W]: ViTPose's 1x1 convolution.

    The heatmap head's predictor under ``model.decoder: vitpose``, in place of
    :class:`~vidpose.models.heads.heatmap.HeatmapConv` (the parameter names are
    ViTPose's: ``final_layer.weight``, ``final_layer.bias``).

    Args:
        channels: D.
        num_joints: K.
    """

    def __init__(self, *, channels: int, num_joints: int) -> None:
        super().__init__()
        self.num_joints = num_joints
        self.final_layer = nn.Conv2d(channels, num_joints, kernel_size=1)

    @property
    def layers(self) -> tuple[nn.Module, ...]:
        """Its layers in order, as :class:`~vidpose.models.heads.heatmap.HeatmapConv`
        lists its own (``layers[-1]`` is the output convolution)."""
        return (self.final_layer,)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.final_layer(features)
