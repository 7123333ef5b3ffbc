"""PoseEstimator: backbone + temporal fusion + feature pyramid + head.

Encode once, decode many (as Segment Anything's predictor): :meth:`encode` runs
the expensive part once per clip; sampling steps and hypotheses only call the
head on those features. :meth:`predict_from_features` lets a caller encode once
and sample many times (step / hypothesis sweeps, the search visualisation).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import nn

from vidpose.models.backbone import ViTBackbone
from vidpose.models.heads import DiffusionHead, HeatmapHead
from vidpose.models.pyramid import FeaturePyramid
from vidpose.models.temporal import LinearTemporalFusion

Features = tuple[torch.Tensor, ...]
Decode = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class PoseEstimator(nn.Module):
    """Clip -> heatmaps of the key frame's person.

    Args:
        backbone: frames [B, T, 3, Hin, Win] -> tokens [B, T, N, C].
        temporal: tokens [B, T, N, C] -> fused map [B, C, h, w].
        pyramid: fused map -> levels [B, D, h, w], [B, D, 2h, 2w], [B, D, H, W].
        head: :class:`DiffusionHead` or :class:`HeatmapHead`.
    """

    def __init__(
        self,
        *,
        backbone: ViTBackbone,
        temporal: LinearTemporalFusion,
        pyramid: FeaturePyramid,
        head: DiffusionHead | HeatmapHead,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.temporal = temporal
        self.pyramid = pyramid
        self.head = head

    @property
    def num_frames(self) -> int:
        return self.temporal.num_frames

    def encode(self, frames: torch.Tensor) -> Features:
        """The clip's feature pyramid (backbone + temporal fusion + pyramid, once).

        Args:
            frames: [B, T, 3, Hin, Win] normalised crops, the key frame at the
                temporal module's ``key_frame_index``.

        Returns:
            pyramid levels coarse to fine: [B, D, h, w], [B, D, 2h, 2w], [B, D, H, W]
            (h x w the token grid, H x W = 4h x 4w the heatmap grid).
        """
        if frames.ndim != 5 or frames.shape[1] != self.num_frames or frames.shape[2] != 3:
            raise ValueError(
                f"PoseEstimator: expected frames [B, {self.num_frames}, 3, H, W], got "
                f"{tuple(frames.shape)}"
            )
        tokens = self.backbone(frames)  # [B, T, N, C]
        fused = self.temporal(tokens)  # [B, C, h, w]
        return self.pyramid(fused)

    def forward(
        self,
        frames: torch.Tensor,
        target_heatmaps: torch.Tensor | None = None,
        sample_seeds: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The training / validation pass (same keys in train and eval mode).

        Args:
            frames: [B, T, 3, Hin, Win].
            target_heatmaps: [B, K, H, W] in [0, 1]; required by the diffusion head.
            sample_seeds: [B] int64 per-sample seeds of the head's random draws.

        Returns:
            diffusion head: "heatmaps" [B, K, H, W] (x0 estimate), "coarse_heatmaps"
            [B, K, H, W], "t" [B]; heatmap head: "heatmaps" [B, K, H, W].
        """
        features = self.encode(frames)
        return self.head(features, target_heatmaps=target_heatmaps, sample_seeds=sample_seeds)

    @torch.no_grad()
    def predict(
        self,
        frames: torch.Tensor,
        *,
        steps: int | None = None,
        hypotheses: int | None = None,
        eta: float | None = None,
        init: Literal["noise", "coarse"] | None = None,
        generator: torch.Generator | None = None,
        sample_seeds: torch.Tensor | None = None,
        return_trajectory: bool = False,
        decode: Decode | None = None,
    ) -> dict[str, Any]:
        """Inference on clips: :meth:`encode` once, then the head's ``predict``.

        Call ``model.eval()`` first (drop path is active in training mode).

        Args:
            frames: [B, T, 3, Hin, Win].
            steps: S DDIM steps (None: the config's ``sampling_steps``).
            hypotheses: G random starts averaged (None: the config's).
            eta: DDIM eta (None: the config's).
            init: "noise" or "coarse" (None: the config's).
            generator: one generator for every random draw of the call.
            sample_seeds: [B] per-sample seeds instead (batch-independent results).
            return_trajectory: also return every sampling step.
            decode: heatmaps [N, K, H, W] -> (keypoints [N, K, 2], scores [N, K]) for
                the trajectory; default integer argmax (heatmap pixels).
            The heatmap head ignores all of these.

        Returns:
            "heatmaps" [B, K, H, W] and "hypothesis_heatmaps" [B, G, K, H, W] for every
            head (G = 1 for the heatmap head); the diffusion head adds
            "coarse_heatmaps" [B, K, H, W] with init "coarse"; "trajectory" when
            asked (a list with one dict per step, see :meth:`DiffusionHead.predict`;
            empty for the heatmap head).
        """
        return self.predict_from_features(
            self.encode(frames),
            steps=steps,
            hypotheses=hypotheses,
            eta=eta,
            init=init,
            generator=generator,
            sample_seeds=sample_seeds,
            return_trajectory=return_trajectory,
            decode=decode,
        )

    @torch.no_grad()
    def predict_from_features(
        self,
        features: Features,
        *,
        steps: int | None = None,
        hypotheses: int | None = None,
        eta: float | None = None,
        init: Literal["noise", "coarse"] | None = None,
        generator: torch.Generator | None = None,
        sample_seeds: torch.Tensor | None = None,
        return_trajectory: bool = False,
        decode: Decode | None = None,
    ) -> dict[str, Any]:
        """Inference on features from :meth:`encode` (encode once, sample many times).

        Arguments and result as :meth:`predict`, with ``features`` the pyramid levels
        coarse to fine ([B, D, h, w], [B, D, 2h, 2w], [B, D, H, W]).
        """
        return self.head.predict(
            features,
            steps=steps,
            hypotheses=hypotheses,
            eta=eta,
            init=init,
            generator=generator,
            sample_seeds=sample_seeds,
            return_trajectory=return_trajectory,
            decode=decode,
        )
