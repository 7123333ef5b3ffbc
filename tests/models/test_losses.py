"""The criterion: visibility weighting and the weighted sum."""

from __future__ import annotations

import pytest
import torch

from vidpose.losses import Criterion, weighted_heatmap_mse, weighted_l1


def test_weighted_mse_ignores_zero_weight_joints(generator):
    target = torch.rand(2, 4, 8, 6, generator=generator)
    predicted = torch.rand(2, 4, 8, 6, generator=generator)
    weights = torch.tensor([[1.0, 0.0, 1.0, 1.0], [1.0, 1.0, 0.0, 1.0]])
    loss = weighted_heatmap_mse(predicted, target, weights)
    changed = predicted.clone()
    changed[0, 1] += 5.0
    changed[1, 2] -= 3.0
    assert weighted_heatmap_mse(changed, target, weights).item() == pytest.approx(loss.item())
    manual = ((predicted - target) ** 2 * weights[:, :, None, None]).mean()
    assert loss.item() == pytest.approx(manual.item())
    column = weighted_heatmap_mse(predicted, target, weights[..., None])  # [B, K, 1]
    assert column.item() == pytest.approx(loss.item())


def _heatmap_terms(outputs, targets):
    """The loss terms of a head with a coarse branch (as DiffusionHead.loss_terms)."""
    heatmaps, weights = targets["heatmaps"], targets["target_weight"]
    return {
        "heatmap": weighted_heatmap_mse(outputs["heatmaps"], heatmaps, weights),
        "coarse": weighted_heatmap_mse(outputs["coarse_heatmaps"], heatmaps, weights),
    }


def test_criterion_weighted_sum(generator):
    targets = {
        "heatmaps": torch.rand(2, 3, 4, 4, generator=generator),
        "target_weight": torch.ones(2, 3),
    }
    outputs = {
        "heatmaps": torch.rand(2, 3, 4, 4, generator=generator),
        "coarse_heatmaps": torch.rand(2, 3, 4, 4, generator=generator),
        "t": torch.tensor([1, 2]),
    }
    criterion = Criterion(
        loss_terms=_heatmap_terms,
        weights={"heatmap": 2.0, "coarse": 0.5},
        available=("heatmap", "coarse"),
    )
    losses = criterion(outputs, targets)
    assert set(losses) == {"heatmap", "coarse", "loss"}
    expected = 2.0 * losses["heatmap"] + 0.5 * losses["coarse"]
    assert losses["loss"].item() == pytest.approx(expected.item())
    assert losses["heatmap"].item() == pytest.approx(
        weighted_heatmap_mse(outputs["heatmaps"], targets["heatmaps"], torch.ones(2, 3)).item()
    )


def test_zero_weight_keeps_the_term_in_the_graph(generator):
    coarse = torch.rand(1, 2, 4, 4, generator=generator, requires_grad=True)
    outputs = {"heatmaps": torch.rand(1, 2, 4, 4, generator=generator), "coarse_heatmaps": coarse}
    criterion = Criterion(
        loss_terms=_heatmap_terms,
        weights={"heatmap": 1.0, "coarse": 0.0},
        available=("heatmap", "coarse"),
    )
    losses = criterion(
        outputs, {"heatmaps": torch.zeros(1, 2, 4, 4), "target_weight": torch.ones(1, 2)}
    )
    losses["loss"].backward()
    assert coarse.grad is not None and torch.all(coarse.grad == 0)


def test_weighted_l1_ignores_zero_weight_joints(generator):
    target = torch.rand(2, 4, 2, generator=generator)
    predicted = torch.rand(2, 4, 2, generator=generator)
    weights = torch.tensor([[1.0, 0.0, 1.0, 1.0], [1.0, 1.0, 0.0, 1.0]])
    loss = weighted_l1(predicted, target, weights)
    changed = predicted.clone()
    changed[0, 1] += 5.0
    assert weighted_l1(changed, target, weights).item() == pytest.approx(loss.item())
    manual = ((predicted - target).abs() * weights[..., None]).sum() / (2 * 4 * 2)
    assert loss.item() == pytest.approx(manual.item())


def test_criterion_errors():
    with pytest.raises(ValueError, match="offers the losses"):
        Criterion(loss_terms=_heatmap_terms, weights={"offset": 1.0}, available=("heatmap",))
    criterion = Criterion(
        loss_terms=lambda outputs, targets: {}, weights={"heatmap": 1.0}, available=("heatmap",)
    )
    with pytest.raises(ValueError, match="computed no"):
        criterion({}, {})
