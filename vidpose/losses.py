"""Named losses with a weight dict; no knowledge of the model.

The criterion reads the model's output dictionary by key: each loss applies to one
output if the model produced it ("heatmaps" for every head, "coarse_heatmaps" for
the diffusion head's coarse branch).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from vidpose.config import Config

# loss name (as in LossConfig and the returned dict) -> the output it is computed on
LOSS_OUTPUTS: dict[str, str] = {"heatmap": "heatmaps", "coarse": "coarse_heatmaps"}


def weighted_heatmap_mse(
    predicted: torch.Tensor, target: torch.Tensor, target_weights: torch.Tensor
) -> torch.Tensor:
    """Visibility-weighted mean squared error of heatmaps.

    The usual heatmap loss (Tompson et al., NeurIPS 2014; SimpleBaseline's
    JointsMSELoss): joints that are not annotated or fall outside the crop have
    weight 0 and contribute nothing. The mean is over B * K * H * W (not over the
    weighted joints), so the per-sample contribution does not depend on the other
    samples of the batch: the mean of per-process losses equals the global loss.

    Args:
        predicted: [B, K, H, W].
        target: [B, K, H, W] in [0, 1].
        target_weights: [B, K] (or [B, K, 1]) in [0, 1].

    Returns:
        scalar float32.
    """
    weights = target_weights.reshape(*target_weights.shape[:2], 1, 1).float()
    squared = (predicted.float() - target.float()) ** 2
    return (squared * weights).mean()


class Criterion(nn.Module):
    """Weighted sum of named heatmap losses.

    Args:
        weights: loss name -> weight; names from ``LOSS_OUTPUTS`` ("heatmap",
            "coarse"). A loss whose output the model did not produce is skipped; a
            zero weight still computes the term (so every parameter stays in the
            graph, which DistributedDataParallel needs).
    """

    def __init__(self, *, weights: Mapping[str, float]) -> None:
        super().__init__()
        unknown = set(weights) - set(LOSS_OUTPUTS)
        if unknown:
            raise ValueError(
                f"Criterion: unknown losses {sorted(unknown)}; known: {', '.join(LOSS_OUTPUTS)}"
            )
        self.weights = dict(weights)

    def forward(
        self,
        outputs: Mapping[str, torch.Tensor],
        target_heatmaps: torch.Tensor,
        target_weights: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Compute the losses.

        Args:
            outputs: the model's forward dict ("heatmaps" [B, K, H, W], optionally
                "coarse_heatmaps" [B, K, H, W]).
            target_heatmaps: [B, K, H, W] in [0, 1].
            target_weights: [B, K] joint weights (0 for unannotated / outside).

        Returns:
            one scalar per computed loss ("heatmap", "coarse"), unweighted, and
            "loss", the weighted sum to back-propagate.
        """
        losses: dict[str, torch.Tensor] = {}
        total = None
        for name, weight in self.weights.items():
            key = LOSS_OUTPUTS[name]
            if key not in outputs:
                continue
            value = weighted_heatmap_mse(outputs[key], target_heatmaps, target_weights)
            losses[name] = value
            total = value * weight if total is None else total + value * weight
        if total is None:
            raise ValueError(
                f"Criterion: the outputs {sorted(outputs)} contain none of "
                f"{sorted(LOSS_OUTPUTS.values())}"
            )
        losses["loss"] = total
        return losses


def build_criterion(cfg: Config) -> Criterion:
    """The criterion of an experiment config (reads ``cfg.loss`` only)."""
    return Criterion(weights={"heatmap": cfg.loss.heatmap, "coarse": cfg.loss.coarse})
