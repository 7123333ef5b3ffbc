"""Heads turn the feature pyramid into predictions, under one contract
(``vidpose.models.heads.contract``): ``forward(features, targets, sample_seeds) -> dict``
for training, ``loss_terms(outputs, targets)`` for the criterion, ``predict(features,
...) -> HeadPrediction`` (keypoints [B, K, 2] in input-crop pixels, scores [B, K], and
what the head has of heatmaps, uncertainty and trajectory) and ``merge_flipped`` for
the flip test. Each head owns its codec (``codec``, None for keypoint-only training).
"""

from vidpose.models.heads.cal import CalHead, OffsetConv
from vidpose.models.heads.contract import HeadPrediction, PoseHead
from vidpose.models.heads.diffusion import DiffusionHead
from vidpose.models.heads.diffusionpose import DiffusionPoseHead
from vidpose.models.heads.heatmap import HeatmapConv, HeatmapHead
from vidpose.models.heads.pct import PCTHead, TokenClassifier
from vidpose.models.heads.pct_tokenizer import PoseTokenizer, PoseTokenizerModel
from vidpose.models.heads.tfpose import TFPoseHead

__all__ = [
    "CalHead",
    "DiffusionHead",
    "DiffusionPoseHead",
    "HeadPrediction",
    "HeatmapConv",
    "HeatmapHead",
    "OffsetConv",
    "PCTHead",
    "PoseHead",
    "PoseTokenizer",
    "PoseTokenizerModel",
    "TFPoseHead",
    "TokenClassifier",
]
