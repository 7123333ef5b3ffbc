"""Heads turn the feature pyramid into predictions.

Every head has ``forward(features, target_heatmaps=None, sample_seeds=None) -> dict``
(the training/validation pass, the same keys in train and eval mode) and
``predict(features, *, steps, hypotheses, eta, init, generator, sample_seeds,
return_trajectory, decode) -> dict`` (inference, with "heatmaps" [B, K, H, W]).
"""

from vidpose.models.heads.diffusion import DiffusionHead
from vidpose.models.heads.heatmap import HeatmapConv, HeatmapHead

__all__ = ["DiffusionHead", "HeatmapConv", "HeatmapHead"]
