"""The criterion: visibility weighting and the weighted sum."""

from __future__ import annotations

import pytest
import torch

from vidpose.losses import Criterion, weighted_heatmap_mse


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


def test_criterion_weighted_sum_and_skipped_outputs(generator):
    target = torch.rand(2, 3, 4, 4, generator=generator)
    weights = torch.ones(2, 3)
    outputs = {
        "heatmaps": torch.rand(2, 3, 4, 4, generator=generator),
        "coarse_heatmaps": torch.rand(2, 3, 4, 4, generator=generator),
        "t": torch.tensor([1, 2]),
    }
    criterion = Criterion(weights={"heatmap": 2.0, "coarse": 0.5})
    losses = criterion(outputs, target, weights)
    assert set(losses) == {"heatmap", "coarse", "loss"}
    expected = 2.0 * losses["heatmap"] + 0.5 * losses["coarse"]
    assert losses["loss"].item() == pytest.approx(expected.item())
    # the baseline head has no coarse branch: that loss is skipped
    baseline = criterion({"heatmaps": outputs["heatmaps"]}, target, weights)
    assert set(baseline) == {"heatmap", "loss"}
    assert baseline["loss"].item() == pytest.approx(2.0 * losses["heatmap"].item())


def test_zero_weight_keeps_the_term_in_the_graph(generator):
    coarse = torch.rand(1, 2, 4, 4, generator=generator, requires_grad=True)
    outputs = {"heatmaps": torch.rand(1, 2, 4, 4, generator=generator), "coarse_heatmaps": coarse}
    losses = Criterion(weights={"heatmap": 1.0, "coarse": 0.0})(
        outputs, torch.zeros(1, 2, 4, 4), torch.ones(1, 2)
    )
    losses["loss"].backward()
    assert coarse.grad is not None and torch.all(coarse.grad == 0)


def test_criterion_errors():
    with pytest.raises(ValueError, match="unknown losses"):
        Criterion(weights={"offset": 1.0})
    with pytest.raises(ValueError, match="none of"):
        Criterion(weights={"heatmap": 1.0})({"t": torch.zeros(1)}, torch.zeros(1), torch.zeros(1))
