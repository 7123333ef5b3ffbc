"""Named losses with a weight dict; no knowledge of the model.

Each head offers its loss terms by name (``head.loss_names``, computed by
``head.loss_terms(outputs, targets)``, see ``vidpose.models.heads.contract``); the
:class:`Criterion` is their weighted sum, with the weights from the ``loss`` section
of the config. The loss functions the heads share live here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from vidpose.config import Config

LossTerms = Callable[
    [Mapping[str, torch.Tensor], Mapping[str, torch.Tensor]], dict[str, torch.Tensor]
]


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


def weighted_l1(
    predicted: torch.Tensor, target: torch.Tensor, target_weights: torch.Tensor
) -> torch.Tensor:
    """Visibility-weighted mean absolute error of coordinates.

    As :func:`weighted_heatmap_mse`, the mean is over every number (B * K * 2), so the
    mean of per-process losses equals the global loss.

    Args:
        predicted: [B, K, 2].
        target: [B, K, 2].
        target_weights: [B, K] in [0, 1].

    Returns:
        scalar float32.
    """
    weights = target_weights.reshape(*target_weights.shape[:2], 1).float()
    return ((predicted.float() - target.float()).abs() * weights).mean()


class Criterion(nn.Module):
    """Weighted sum of a head's named loss terms.

    Args:
        loss_terms: (outputs, targets) -> {name: unweighted scalar} (``head.loss_terms``).
        weights: name -> weight for every name the head offers. A zero weight still
            computes the term (so every parameter stays in the graph, which
            DistributedDataParallel needs).
        available: the names the head offers (``head.loss_names``); weights must name
            exactly these.
    """

    def __init__(
        self,
        *,
        loss_terms: LossTerms,
        weights: Mapping[str, float],
        available: tuple[str, ...],
    ) -> None:
        super().__init__()
        if set(weights) != set(available):
            raise ValueError(
                f"Criterion: weights for {sorted(weights)}, but the head offers the losses "
                f"{list(available)}"
            )
        self.loss_terms = loss_terms
        self.weights = dict(weights)

    def forward(
        self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Compute the losses.

        Args:
            outputs: the model's forward dict.
            targets: the training targets ("keypoints", "target_weight", and the codec's
                targets for heads with a codec; ``vidpose.models.heads.contract``).

        Returns:
            one scalar per term, unweighted, and "loss", the weighted sum to
            back-propagate.
        """
        losses = self.loss_terms(outputs, targets)
        missing = set(self.weights) - set(losses)
        if missing:
            raise ValueError(f"Criterion: the head computed no {sorted(missing)}")
        total = sum(losses[name] * weight for name, weight in self.weights.items())
        return {**losses, "loss": total}


def build_criterion(cfg: Config, head: nn.Module) -> Criterion:
    """The criterion of ``head`` with the weights of ``cfg.loss`` for the terms it offers."""
    names = tuple(head.loss_names)
    unknown = [name for name in names if not hasattr(cfg.loss, name)]
    if unknown:
        raise ValueError(f"build_criterion: the config's loss section has no weight {unknown}")
    return Criterion(
        loss_terms=head.loss_terms,
        weights={name: float(getattr(cfg.loss, name)) for name in names},
        available=names,
    )
