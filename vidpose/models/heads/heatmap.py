"""The heatmap baseline head: a convolution on the finest pyramid level.

Together with the pyramid's two deconvolutions it is ViTPose's classic decoder
(Xu et al., NeurIPS 2022; SimpleBaseline, Xiao et al., ECCV 2018). With T = 1 it
is the single-frame baseline, with T > 1 a temporal heatmap baseline (the same
linear temporal fusion, no diffusion).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy.typing as npt
import torch
from torch import nn

from vidpose.codecs.heatmap import HeatmapCodec
from vidpose.losses import weighted_heatmap_mse
from vidpose.models.heads.contract import HeadPrediction, Targets, merge_flipped_heatmaps
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
        codec: encodes the training heatmaps and decodes predictions into input-crop
            pixels (argmax + DARK).
    """

    loss_names = ("heatmap",)

    def __init__(self, *, predictor: HeatmapConv, codec: HeatmapCodec) -> None:
        super().__init__()
        self.predictor = predictor
        self.codec = codec

    @property
    def input_size(self) -> tuple[int, int]:
        return self.codec.input_size

    def forward(
        self,
        features: Sequence[torch.Tensor],
        targets: Targets | None = None,
        sample_seeds: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Predict heatmaps (targets and seeds are accepted for a uniform call and unused).

        Args:
            features: pyramid levels coarse to fine; the last is [B, D, H, W].

        Returns:
            {"heatmaps": [B, K, H, W]}.
        """
        return {"heatmaps": self.predictor(features[-1])}

    def loss_terms(
        self, outputs: Mapping[str, torch.Tensor], targets: Targets
    ) -> dict[str, torch.Tensor]:
        """{"heatmap": visibility-weighted heatmap MSE} (targets "heatmaps", "target_weight")."""
        return {
            "heatmap": weighted_heatmap_mse(
                outputs["heatmaps"], targets["heatmaps"], targets["target_weight"]
            )
        }

    def predict(
        self,
        features: Sequence[torch.Tensor],
        *,
        return_trajectory: bool = False,
        **sampling: Any,
    ) -> HeadPrediction:
        """Inference in one pass. The diffusion sampler's keywords (steps, hypotheses,
        eta, init, generator, sample_seeds) are accepted and ignored, so step and
        hypothesis sweeps can run over every head.

        Returns:
            keypoints and scores decoded by the codec, the heatmaps; no uncertainty;
            an empty trajectory when asked (one pass, nothing to show step by step);
            extras "hypothesis_heatmaps" [B, 1, K, H, W].
        """
        heatmaps = self.predictor(features[-1])
        keypoints, scores = self.codec.decode(heatmaps.float())
        return HeadPrediction(
            keypoints=keypoints,
            scores=scores,
            heatmaps=heatmaps,
            trajectory=[] if return_trajectory else None,
            extras={"hypothesis_heatmaps": heatmaps.unsqueeze(1)},
        )

    def merge_flipped(
        self, prediction: HeadPrediction, mirrored: HeadPrediction, flip_permutation: npt.ArrayLike
    ) -> HeadPrediction:
        """The flip test: heatmaps averaged (``merge_flipped_heatmaps``)."""
        return merge_flipped_heatmaps(prediction, mirrored, flip_permutation, codec=self.codec)
