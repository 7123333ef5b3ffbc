"""The head contract: what every head answers, whatever it predicts internally.

A head takes the clip's feature pyramid (levels coarse to fine, [B, D, h_s, w_s]) and

- **answers inference** with a :class:`HeadPrediction`: keypoints [B, K, 2] in
  *input-crop pixels* (pixels of the model input, H_in x W_in, pixel centres at
  integers, the crop spanning [-0.5, W_in - 0.5) x [-0.5, H_in - 0.5); see
  ``vidpose.codecs.geometry``) and per-joint scores [B, K], plus what it has of
  heatmaps [B, K, H, W], a per-joint uncertainty [B, K] (input-crop pixels) and its
  iterative trajectory (diffusion steps, decoder layers);
- **trains** through ``forward(features, targets, sample_seeds) -> outputs`` (the same
  keys in train and eval mode) and ``loss_terms(outputs, targets) -> {name: scalar}``,
  the unweighted terms named in ``loss_names``; the criterion is their weighted sum;
- **owns its codec** (``codec``): the object that turns keypoints into the targets it
  trains on (heatmaps), or None for a head that trains on keypoints alone. The dataset
  encodes codec targets only when the head has a codec.

Training targets (what the dataset gives every head, batched):
    "keypoints": [B, K, 2] float32 target joints in input-crop pixels;
    "target_weight": [B, K] float32, 1 for annotated joints inside the crop, else 0;
    "heatmaps": [B, K, H, W] float32 in [0, 1], only for heads with a codec.

Everything downstream (evaluation, ``vidpose test``, extraction, the flip test, the
search visualisation) reads a :class:`HeadPrediction` and assumes nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt
import torch

if TYPE_CHECKING:
    from vidpose.codecs.heatmap import HeatmapCodec

Targets = Mapping[str, torch.Tensor]


@dataclass
class HeadPrediction:
    """A head's answer for B clips of K joints.

    Attributes:
        keypoints: [B, K, 2] float32 x, y in input-crop pixels.
        scores: [B, K] float32 per-joint confidences (higher is surer; what PoseTrack
            mAP ranks by).
        heatmaps: [B, K, H, W] heatmaps (heads that have them), else None.
        uncertainty: [B, K] float32 per-joint uncertainty in input-crop pixels (an RMS
            distance: the spread of a diffusion head's hypotheses, a regression head's
            predicted error), else None.
        trajectory: the iterative search, one dict per step in order, when asked for
            (``return_trajectory``; an empty list for one-pass heads). Every entry has
            "step" int, "label" str (e.g. "t 999->-1", "layer 3"), "keypoints"
            [B, G, K, 2] (input-crop pixels) and "scores" [B, G, K], G the hypotheses
            (1 for one-pass heads); entries may add "heatmaps" [B, G, K, H, W], "masks"
            (per feature level, [B, G, K, h_s, w_s], each joint's map summing to 1:
            where the step looked), "x_t", "t", "t_prev" (diffusion).
        extras: head-specific outputs (e.g. "hypothesis_heatmaps" [B, G, K, H, W],
            "coarse_heatmaps" [B, K, H, W]); nothing downstream relies on them.
    """

    keypoints: torch.Tensor
    scores: torch.Tensor
    heatmaps: torch.Tensor | None = None
    uncertainty: torch.Tensor | None = None
    trajectory: list[dict[str, Any]] | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        batch, joints = self.keypoints.shape[:2]
        if self.keypoints.ndim != 3 or self.keypoints.shape[2] != 2:
            raise ValueError(
                f"HeadPrediction: keypoints must be [B, K, 2], got {tuple(self.keypoints.shape)}"
            )
        expected = {"scores": (self.scores, (batch, joints))}
        if self.uncertainty is not None:
            expected["uncertainty"] = (self.uncertainty, (batch, joints))
        for name, (tensor, shape) in expected.items():
            if tuple(tensor.shape) != shape:
                raise ValueError(
                    f"HeadPrediction: {name} must be [B, K] = {list(shape)}, got "
                    f"{tuple(tensor.shape)}"
                )
        if self.heatmaps is not None and tuple(self.heatmaps.shape[:2]) != (batch, joints):
            raise ValueError(
                f"HeadPrediction: heatmaps must be [B, K, H, W] with B, K = {batch}, {joints}, "
                f"got {tuple(self.heatmaps.shape)}"
            )

    @property
    def num_joints(self) -> int:
        return self.keypoints.shape[1]


class PoseHead(Protocol):
    """What the estimator, the trainer and inference need of a head (see the module
    docstring); ``vidpose.models.heads`` holds the implementations."""

    codec: HeatmapCodec | None
    loss_names: tuple[str, ...]
    input_size: tuple[int, int]

    def forward(
        self,
        features: Sequence[torch.Tensor],
        targets: Targets | None = None,
        sample_seeds: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]: ...

    def loss_terms(
        self, outputs: Mapping[str, torch.Tensor], targets: Targets
    ) -> dict[str, torch.Tensor]: ...

    def predict(self, features: Sequence[torch.Tensor], **options: Any) -> HeadPrediction: ...

    def merge_flipped(
        self,
        prediction: HeadPrediction,
        mirrored: HeadPrediction,
        flip_permutation: npt.ArrayLike,
    ) -> HeadPrediction: ...


# --------------------------------------------------------------------------- flip test


def _permutation(
    flip_permutation: npt.ArrayLike, joints: int, device: torch.device
) -> torch.Tensor:
    permutation = torch.as_tensor(np.asarray(flip_permutation), dtype=torch.long)
    if permutation.shape != (joints,) or not torch.equal(
        permutation[permutation], torch.arange(joints)
    ):
        raise ValueError(
            f"flip test: flip_permutation must be a self-inverse permutation of the {joints} "
            f"joints, got {permutation.tolist()}"
        )
    return permutation.to(device)


def unflip_keypoints(
    keypoints: torch.Tensor, flip_permutation: npt.ArrayLike, input_width: int
) -> torch.Tensor:
    """Keypoints predicted on a horizontally mirrored crop, brought back to the crop.

    Mirroring the crop maps input pixel x to W_in - 1 - x (pixel centres at integers,
    ``vidpose.codecs.geometry``), and a left joint becomes a right one: joint i of the
    result is joint ``flip_permutation[i]`` of the mirrored prediction, with x mirrored.

    Args:
        keypoints: [..., K, 2] x, y in input-crop pixels of the mirrored crop.
        flip_permutation: [K] self-inverse (``Skeleton.flip_permutation``).
        input_width: W_in.
    """
    permutation = _permutation(flip_permutation, keypoints.shape[-2], keypoints.device)
    swapped = keypoints.index_select(-2, permutation)
    return torch.stack([(input_width - 1) - swapped[..., 0], swapped[..., 1]], dim=-1)


def unflip_joint_values(values: torch.Tensor, flip_permutation: npt.ArrayLike) -> torch.Tensor:
    """Per-joint values [..., K] of a mirrored crop in the crop's joint order."""
    permutation = _permutation(flip_permutation, values.shape[-1], values.device)
    return values.index_select(-1, permutation)


def _root_mean_square(
    first: torch.Tensor | None, second: torch.Tensor | None
) -> torch.Tensor | None:
    if first is None or second is None:
        return None
    return torch.sqrt(0.5 * (first.float() ** 2 + second.float() ** 2))


def merge_flipped_coordinates(
    prediction: HeadPrediction,
    mirrored: HeadPrediction,
    flip_permutation: npt.ArrayLike,
    *,
    input_width: int,
) -> HeadPrediction:
    """The flip test of a coordinate head: average the keypoints (and scores) of the
    crop and of its mirror image brought back (:func:`unflip_keypoints`).

    The uncertainty is the root mean square of the two passes' (None if either lacks
    one); heatmaps, trajectory and extras are those of the unmirrored pass.
    """
    keypoints = 0.5 * (
        prediction.keypoints.float()
        + unflip_keypoints(mirrored.keypoints.float(), flip_permutation, input_width)
    )
    scores = 0.5 * (
        prediction.scores.float() + unflip_joint_values(mirrored.scores.float(), flip_permutation)
    )
    uncertainty = None
    if mirrored.uncertainty is not None:
        uncertainty = _root_mean_square(
            prediction.uncertainty, unflip_joint_values(mirrored.uncertainty, flip_permutation)
        )
    return replace(prediction, keypoints=keypoints, scores=scores, uncertainty=uncertainty)


def merge_flipped_heatmaps(
    prediction: HeadPrediction,
    mirrored: HeadPrediction,
    flip_permutation: npt.ArrayLike,
    *,
    codec: HeatmapCodec,
) -> HeadPrediction:
    """The flip test of a heatmap head (SimpleBaseline / HRNet): the mirrored pass's
    heatmaps are mirrored back with the codec's sub-pixel shift and their left/right
    channels swapped (``HeatmapCodec.flip_heatmaps``), averaged with the unmirrored
    pass's, and decoded again.

    The uncertainty is the root mean square of the two passes'; the trajectory and
    extras are those of the unmirrored pass.
    """
    if prediction.heatmaps is None or mirrored.heatmaps is None:
        raise ValueError("merge_flipped_heatmaps: both predictions need heatmaps")
    heatmaps = 0.5 * (
        prediction.heatmaps + codec.flip_heatmaps(mirrored.heatmaps, flip_permutation)
    )
    keypoints, scores = codec.decode(heatmaps.float())
    uncertainty = None
    if mirrored.uncertainty is not None:
        uncertainty = _root_mean_square(
            prediction.uncertainty, unflip_joint_values(mirrored.uncertainty, flip_permutation)
        )
    return replace(
        prediction, keypoints=keypoints, scores=scores, heatmaps=heatmaps, uncertainty=uncertainty
    )


def hypothesis_spread(keypoints: torch.Tensor) -> torch.Tensor | None:
    """[B, K] RMS distance of G hypotheses' keypoints [B, G, K, 2] to their mean (the
    diffusion head's per-joint uncertainty); None with one hypothesis (no spread to
    measure)."""
    if keypoints.shape[1] < 2:
        return None
    points = keypoints.float()
    centre = points.mean(dim=1, keepdim=True)
    return ((points - centre) ** 2).sum(-1).mean(dim=1).sqrt()


def heatmap_hypotheses_prediction(
    codec: HeatmapCodec,
    hypotheses: torch.Tensor,
    *,
    coarse: torch.Tensor | None = None,
    trajectory: list[dict[str, Any]] | None = None,
) -> HeadPrediction:
    """The answer of a head that samples G heatmap hypotheses [B, G, K, H, W] (values
    in [0, 1]): keypoints and scores decoded from their mean, the uncertainty from each
    decoded on its own (:func:`hypothesis_spread`), the hypotheses (and a coarse
    branch's heatmaps, when given) in ``extras``."""
    batch, count, joints = hypotheses.shape[:3]
    heatmaps = hypotheses.mean(dim=1)
    keypoints, scores = codec.decode(heatmaps)
    uncertainty = None
    if count > 1:
        # each hypothesis decoded on its own: how far the G answers lie apart
        own, _ = codec.decode(hypotheses.flatten(0, 1))  # [B*G, K, 2]
        uncertainty = hypothesis_spread(own.view(batch, count, joints, 2))
    extras: dict[str, Any] = {"hypothesis_heatmaps": hypotheses}
    if coarse is not None:
        extras["coarse_heatmaps"] = coarse
    return HeadPrediction(
        keypoints=keypoints,
        scores=scores,
        heatmaps=heatmaps,
        uncertainty=uncertainty,
        trajectory=trajectory,
        extras=extras,
    )
