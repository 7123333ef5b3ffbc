"""PoseEstimator: backbone + temporal fusion + feature pyramid + head.

Encode once, decode many (as Segment Anything's predictor): :meth:`encode` runs
the expensive part once per clip; sampling steps and hypotheses only call the
head on those features. :meth:`predict_from_features` lets a caller encode once
and sample many times (step / hypothesis sweeps, the search visualisation).

Encode each frame once: :meth:`encode` is :meth:`encode_frames` (the backbone, frame by
frame) followed by :meth:`encode_tokens` (temporal fusion and pyramid, per clip), so a
caller whose clips share frames (own-box crops: ``data.neighbour_boxes: own``) encodes
each crop once and fuses cached tokens (:meth:`predict_from_tokens`;
``vidpose.inference.token_cache``).

Whatever the head, inference answers with a
:class:`~vidpose.models.heads.contract.HeadPrediction` (keypoints [B, K, 2] in
input-crop pixels, scores [B, K], and what the head has of heatmaps, uncertainty and
trajectory); the flip test (:func:`predict_with_flip`) is the head's own merge of
the clip's answer and its mirror image's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from vidpose.models.backbone import ViTBackbone
from vidpose.models.heads.contract import HeadPrediction, PoseHead, Targets
from vidpose.models.pyramid import FeaturePyramid
from vidpose.models.temporal import LinearTemporalFusion, TransformerTemporalFusion

Features = tuple[torch.Tensor, ...]


def predict_with_flip(
    predict: Callable[..., HeadPrediction],
    frames: torch.Tensor,
    *,
    head: PoseHead,
    flip_permutation: npt.ArrayLike,
    **options: Any,
) -> HeadPrediction:
    """The flip test: ``predict`` on the clip and on its horizontal mirror image, merged
    by the head (heatmap heads average heatmaps, coordinate heads mirror coordinates
    back and swap left and right joints; ``merge_flipped`` of each head).

    A mirrored crop is the image mirrored about the box centre (the crop-centre
    convention of ``vidpose.codecs.geometry``), so input pixel x maps to W_in - 1 - x.

    Args:
        predict: frames [B, T, 3, H_in, W_in] -> HeadPrediction (one pass, no flip).
        frames: [B, T, 3, H_in, W_in].
        head: the head whose ``merge_flipped`` combines the two answers.
        flip_permutation: [K] the skeleton's left/right swap.
        options: passed to both ``predict`` calls (e.g. the sampler's).
    """
    prediction = predict(frames, **options)
    mirrored = predict(frames.flip(-1), **options)
    return head.merge_flipped(prediction, mirrored, flip_permutation)


class PoseEstimator(nn.Module):
    """Clip -> pose of the key frame's person.

    Args:
        backbone: frames [B, T, 3, Hin, Win] -> tokens [B, T, N, C].
        temporal: tokens [B, T, N, C] -> fused map [B, C, h, w].
        pyramid: fused map -> levels [B, D, h, w], [B, D, 2h, 2w], [B, D, H, W].
        head: any head of ``vidpose.models.heads`` (the contract of
            ``vidpose.models.heads.contract``).
        flip_permutation: [K] the skeleton's left/right joint swap, for the flip test
            (``Skeleton.flip_permutation``); None: no flip test.
    """

    # the trainer's dataset decodes frames for models that read them (PCT's tokenizer,
    # a pose-only model, does not)
    needs_images = True

    def __init__(
        self,
        *,
        backbone: ViTBackbone,
        temporal: LinearTemporalFusion | TransformerTemporalFusion,
        pyramid: FeaturePyramid,
        head: nn.Module,
        flip_permutation: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.temporal = temporal
        self.pyramid = pyramid
        self.head = head
        self.flip_permutation = (
            None if flip_permutation is None else np.asarray(flip_permutation, dtype=np.int64)
        )

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
        # the backbone folds time into the batch: the same computation as
        # encode_frames(frames.flatten(0, 1)), reshaped to [B, T, N, C]
        return self.encode_tokens(self.backbone(frames))

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """The backbone on single crops: frames [N, 3, Hin, Win] -> tokens [N, n, C].

        Each crop is encoded independently, so tokens of crops shared by several clips
        can be computed once and stacked into the clips (:meth:`encode_tokens`).
        """
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(
                f"PoseEstimator.encode_frames: expected frames [N, 3, H, W], got "
                f"{tuple(frames.shape)}"
            )
        return self.backbone(frames[:, None])[:, 0]

    def encode_tokens(self, tokens: torch.Tensor) -> Features:
        """A clip's feature pyramid from its frames' tokens (temporal fusion + pyramid).

        Args:
            tokens: [B, T, n, C] per-frame patch tokens (:meth:`encode_frames`), the key
                frame at the temporal module's ``key_frame_index``.

        Returns:
            the pyramid levels coarse to fine, as :meth:`encode`.
        """
        if tokens.ndim != 4 or tokens.shape[1] != self.num_frames:
            raise ValueError(
                f"PoseEstimator.encode_tokens: expected tokens [B, {self.num_frames}, n, C], "
                f"got {tuple(tokens.shape)}"
            )
        fused = self.temporal(tokens)  # [B, C, h, w]
        return self.pyramid(fused)

    def forward(
        self,
        frames: torch.Tensor,
        targets: Targets | None = None,
        sample_seeds: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The training / validation pass (same keys in train and eval mode).

        Args:
            frames: [B, T, 3, Hin, Win].
            targets: the training targets of ``vidpose.models.heads.contract``
                ("keypoints" [B, K, 2] input-crop pixels, "target_weight" [B, K], and
                "heatmaps" [B, K, H, W] for heads with a codec); heads that make their
                input from the targets (diffusion) require them.
            sample_seeds: [B] int64 per-sample seeds of the head's random draws.

        Returns:
            the head's outputs, which its ``loss_terms`` read (e.g. diffusion:
            "heatmaps", "coarse_heatmaps", "t"; heatmap: "heatmaps").
        """
        features = self.encode(frames)
        return self.head(features, targets=targets, sample_seeds=sample_seeds)

    @torch.no_grad()
    def predict(
        self, frames: torch.Tensor, *, flip_test: bool = False, **options: Any
    ) -> HeadPrediction:
        """Inference on clips: :meth:`encode` once, then the head's ``predict``.

        Call ``model.eval()`` first (drop path is active in training mode).

        Args:
            frames: [B, T, 3, Hin, Win].
            flip_test: also predict the mirrored clip and merge the two answers the
                head's way (:func:`predict_with_flip`).
            options: the head's inference options. The diffusion head reads steps (S),
                hypotheses (G), eta, init ("noise" | "coarse"), generator (one for
                every random draw of the call), sample_seeds ([B] per-sample seeds
                instead) and return_trajectory; every head accepts them all and ignores
                what it does not use (so sweeps run over any head).

        Returns:
            keypoints [B, K, 2] in input-crop pixels, scores [B, K], and what the head
            has of heatmaps, uncertainty and trajectory.
        """
        if flip_test:
            if self.flip_permutation is None:
                raise ValueError("PoseEstimator.predict: flip_test needs a flip_permutation")
            return predict_with_flip(
                self._predict_once,
                frames,
                head=self.head,
                flip_permutation=self.flip_permutation,
                **options,
            )
        return self._predict_once(frames, **options)

    def _predict_once(self, frames: torch.Tensor, **options: Any) -> HeadPrediction:
        return self.predict_from_features(self.encode(frames), **options)

    @torch.no_grad()
    def predict_from_tokens(
        self,
        tokens: torch.Tensor,
        *,
        mirrored_tokens: torch.Tensor | None = None,
        **options: Any,
    ) -> HeadPrediction:
        """Inference on clips whose frames were encoded already (:meth:`encode_frames`).

        ``predict_from_tokens(tokens of the clip's crops)`` is ``predict(crops)``, and
        with ``mirrored_tokens`` (the tokens of the mirrored crops, ``crops.flip(-1)``)
        it is ``predict(crops, flip_test=True)``: the same head calls in the same order,
        so the sampler draws the same noise.

        Args:
            tokens: [B, T, n, C].
            mirrored_tokens: [B, T, n, C] of the mirrored crops, for the flip test.
            options: the head's inference options (:meth:`predict`).
        """
        prediction = self.predict_from_features(self.encode_tokens(tokens), **options)
        if mirrored_tokens is None:
            return prediction
        if self.flip_permutation is None:
            raise ValueError(
                "PoseEstimator.predict_from_tokens: the flip test needs a flip_permutation"
            )
        mirrored = self.predict_from_features(self.encode_tokens(mirrored_tokens), **options)
        return self.head.merge_flipped(prediction, mirrored, self.flip_permutation)

    @torch.no_grad()
    def predict_from_features(self, features: Features, **options: Any) -> HeadPrediction:
        """Inference on features from :meth:`encode` (encode once, sample many times).

        Options and result as :meth:`predict` (no flip test: the mirrored clip has its
        own features), with ``features`` the pyramid levels coarse to fine
        ([B, D, h, w], [B, D, 2h, 2w], [B, D, H, W]).
        """
        return self.head.predict(features, **options)
