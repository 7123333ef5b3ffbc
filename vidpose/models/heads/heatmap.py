"""The heatmap baseline head: a convolution on the finest pyramid level.

Together with the pyramid's two deconvolutions it is ViTPose's classic decoder
(Xu et al., NeurIPS 2022; SimpleBaseline, Xiao et al., ECCV 2018). With T = 1 it
is the single-frame baseline, with T > 1 a temporal heatmap baseline (the same
linear temporal fusion, no diffusion).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from vidpose.models.layers import group_norm, init_output_conv


class HeatmapConv(nn.Module):
    """Features [B, D, H, W] -> heatmaps [B, K, H, W]: conv3x3 + GroupNorm + ReLU + conv1x1.

    Used as the baseline head's predictor and as the diffusion head's coarse branch.

    Args:
        channels: D.
        num_joints: K.
    """

    def __init__(self, *, channels: int, num_joints: int) -> None:
        super().__init__()
        self.num_joints = num_joints
        self.layers = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False),
            group_norm(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, num_joints, kernel_size=1),
        )
        init_output_conv(self.layers[-1])

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


class HeatmapHead(nn.Module):
    """Direct heatmap regression from the finest pyramid level.

    Args:
        predictor: the :class:`HeatmapConv` applied to the finest level.
    """

    def __init__(self, *, predictor: HeatmapConv) -> None:
        super().__init__()
        self.predictor = predictor

    def forward(
        self,
        features: Sequence[torch.Tensor],
        target_heatmaps: torch.Tensor | None = None,
        sample_seeds: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Predict heatmaps (targets and seeds are accepted for a uniform call and unused).

        Args:
            features: pyramid levels coarse to fine; the last is [B, D, H, W].

        Returns:
            {"heatmaps": [B, K, H, W]}.
        """
        return {"heatmaps": self.predictor(features[-1])}

    def predict(
        self,
        features: Sequence[torch.Tensor],
        *,
        steps: int | None = None,
        hypotheses: int | None = None,
        eta: float | None = None,
        init: str | None = None,
        generator: torch.Generator | None = None,
        sample_seeds: torch.Tensor | None = None,
        return_trajectory: bool = False,
        decode: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> dict[str, Any]:
        """Inference: the heatmaps. The sampling arguments are accepted and ignored,
        so step/hypothesis sweeps can run over every head.

        Returns:
            "heatmaps": [B, K, H, W]; "hypothesis_heatmaps": [B, 1, K, H, W] (one
            hypothesis); "trajectory": [] when ``return_trajectory``.
        """
        heatmaps = self.predictor(features[-1])
        result: dict[str, Any] = {
            "heatmaps": heatmaps,
            "hypothesis_heatmaps": heatmaps.unsqueeze(1),
        }
        if return_trajectory:
            result["trajectory"] = []
        return result
