"""Linear temporal fusion and the feature pyramid."""

from __future__ import annotations

import pytest
import torch
from einops import rearrange

from vidpose.models.pyramid import FeaturePyramid
from vidpose.models.temporal import LinearTemporalFusion


def test_fusion_shapes_and_initial_weights(generator):
    fusion = LinearTemporalFusion(num_frames=3, key_frame_index=1, grid_size=(4, 3))
    torch.testing.assert_close(fusion.frame_weights, torch.tensor([0.25, 0.5, 0.25]))
    tokens = torch.randn(2, 3, 12, 8, generator=generator)  # [B, T, N, C]
    fused = fusion(tokens)
    assert fused.shape == (2, 8, 4, 3)
    expected = 0.25 * tokens[:, 0] + 0.5 * tokens[:, 1] + 0.25 * tokens[:, 2]
    torch.testing.assert_close(fused, rearrange(expected, "b (h w) c -> b c h w", h=4, w=3))


def test_fusion_key_frame_position_and_weight_follow_the_arguments():
    fusion = LinearTemporalFusion(
        num_frames=5, key_frame_index=4, grid_size=(2, 2), key_frame_weight=0.6
    )
    weights = fusion.frame_weights
    assert weights.argmax().item() == 4
    assert weights.sum().item() == pytest.approx(1.0)
    torch.testing.assert_close(weights[:4], torch.full((4,), 0.1))


def test_single_frame_is_the_identity_without_parameters(generator):
    fusion = LinearTemporalFusion(num_frames=1, key_frame_index=0, grid_size=(4, 3))
    assert list(fusion.parameters()) == []
    tokens = torch.randn(2, 1, 12, 8, generator=generator)
    fused = fusion(tokens)
    assert torch.equal(fused, rearrange(tokens[:, 0], "b (h w) c -> b c h w", h=4, w=3))
    torch.testing.assert_close(fusion.frame_weights, torch.ones(1))


def test_fusion_rejects_wrong_frame_counts():
    fusion = LinearTemporalFusion(num_frames=3, key_frame_index=1, grid_size=(4, 3))
    with pytest.raises(ValueError, match="3 frames"):
        fusion(torch.zeros(1, 2, 12, 8))
    with pytest.raises(ValueError):
        LinearTemporalFusion(num_frames=3, key_frame_index=3, grid_size=(4, 3))


def test_frame_weights_are_a_detached_copy():
    fusion = LinearTemporalFusion(num_frames=3, key_frame_index=1, grid_size=(1, 1))
    weights = fusion.frame_weights
    weights.zero_()
    assert fusion.frame_weights.sum().item() == pytest.approx(1.0)
    assert not fusion.frame_weights.requires_grad


def test_pyramid_scales(generator):
    pyramid = FeaturePyramid(in_channels=48, channels=16)
    levels = pyramid(torch.randn(2, 48, 16, 12, generator=generator))
    assert [tuple(level.shape) for level in levels] == [
        (2, 16, 16, 12),
        (2, 16, 32, 24),
        (2, 16, 64, 48),
    ]
