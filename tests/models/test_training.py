"""A tiny diffusion model learns a fixed batch (the whole training path works)."""

from __future__ import annotations

import pytest
import torch

from vidpose.losses import build_criterion
from vidpose.models.build import build_model


@pytest.mark.slow
def test_tiny_model_fits_a_fixed_batch(micro_config, generator, gaussian_heatmaps):
    cfg = micro_config("model.backbone.depth=2", "model.decoder_dim=48")
    torch.manual_seed(0)
    model = build_model(cfg).train()
    criterion = build_criterion(cfg, model.head)
    batch, joints = 4, 17
    frames = torch.randn(batch, 3, 3, 64, 48, generator=generator)
    targets = gaussian_heatmaps(batch, joints, (16, 12), generator)
    weights = torch.ones(batch, joints)
    weights[0, 3:5] = 0.0  # unannotated joints, as PoseTrack's ears
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    history = []
    for step in range(30):
        # fresh t and noise every step (seeds vary), as in real training
        seeds = torch.arange(batch) + 100 * step
        batch_targets = {"heatmaps": targets, "target_weight": weights}
        outputs = model(frames, targets=batch_targets, sample_seeds=seeds)
        losses = criterion(outputs, batch_targets)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        history.append({name: value.item() for name, value in losses.items()})
    first = sum(h["loss"] for h in history[:5]) / 5
    last = sum(h["loss"] for h in history[-5:]) / 5
    assert last < 0.5 * first, history
    assert history[-1]["heatmap"] < history[0]["heatmap"]
    assert history[-1]["coarse"] < history[0]["coarse"]
