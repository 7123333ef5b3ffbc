"""Heatmap + offset codec (CAL): offset targets on hand-computed cases, the decode round
trip, the flip of offsets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidpose.codecs.heatmap import HeatmapCodec
from vidpose.codecs.offset import HeatmapOffsetCodec
from vidpose.data.skeleton import POSETRACK


def make_codec(
    encoding: str = "gaussian",
    *,
    input_size: tuple[int, int] = (64, 48),
    sigma: float = 1.0,
    radius: float = 4.0,
    scale: float = 1.5,
) -> HeatmapOffsetCodec:
    in_h, in_w = input_size
    heatmap = HeatmapCodec(
        input_size=input_size, heatmap_size=(in_h // 4, in_w // 4), sigma=sigma, encoding=encoding
    )
    return HeatmapOffsetCodec(heatmap=heatmap, radius=radius, scale=scale)


def test_offset_targets_within_the_radius_by_hand() -> None:
    codec = make_codec(input_size=(32, 32))  # 8 x 8 heatmaps, heatmap = input / 4
    heatmaps, offsets, mask, weights = codec.encode(np.array([[10.0, 14.0]]), [True])
    assert heatmaps.shape == (1, 8, 8) and offsets.shape == (2, 8, 8) and mask.shape == (1, 8, 8)
    np.testing.assert_array_equal(weights, [1.0])
    # the joint is at heatmap (2.5, 3.5); the target at pixel q is (t - q) / 1.5
    np.testing.assert_allclose(offsets[:, 3, 2], [0.5 / 1.5, 0.5 / 1.5], rtol=1e-6)
    np.testing.assert_allclose(offsets[:, 3, 6], [-3.5 / 1.5, 0.5 / 1.5], rtol=1e-6)  # 12.5 <= 16
    np.testing.assert_allclose(offsets[:, 7, 2], [0.5 / 1.5, -3.5 / 1.5], rtol=1e-6)
    np.testing.assert_allclose(offsets[:, 6, 5], [-2.5 / 1.5, -2.5 / 1.5], rtol=1e-6)
    # beyond 4 heatmap pixels: no target, no mask
    for row, column in ((3, 7), (6, 6), (0, 6)):  # squared distances 20.5, 18.5, 24.5
        assert mask[0, row, column] == 0 and not offsets[:, row, column].any()
    # |t - q| per axis takes the half-integers 0.5 .. 4.5 left of the joint, 0.5 .. 2.5
    # right of it, 0.5 .. 3.5 both ways vertically; inside the disc of radius 4:
    # right 8 + 8 + 6 (|dx| 0.5, 1.5, 2.5), left 8 + 8 + 6 + 4 (|dx| 0.5 .. 3.5)
    assert mask.sum() == 48
    assert not offsets[:, mask[0] == 0].any()


def test_radius_and_scale_are_options() -> None:
    codec = make_codec(input_size=(32, 32), radius=1.0, scale=0.5)
    _, offsets, mask, _ = codec.encode(np.array([[10.0, 14.0]]), [True])
    # radius 1 around (2.5, 3.5): the four pixels at (+-0.5, +-0.5)
    assert mask.sum() == 4
    assert set(zip(*np.nonzero(mask[0]), strict=True)) == {(3, 2), (3, 3), (4, 2), (4, 3)}
    np.testing.assert_allclose(offsets[:, 4, 3], [-0.5 / 0.5, -0.5 / 0.5])


def test_joints_outside_or_unannotated_get_no_offsets() -> None:
    codec = make_codec()
    keypoints = np.array([[-3.0, 10], [20, 30], [20, 30]])
    targets = codec.targets(keypoints, np.array([True, False, True]))
    assert set(targets) == {*codec.target_names, "target_weight"}
    np.testing.assert_array_equal(targets["target_weight"], [0, 0, 1])
    assert not targets["offsets"][:4].any() and not targets["offset_mask"][:2].any()
    assert targets["offset_mask"][2].any() and targets["offsets"][4:].any()
    assert all(value.dtype == np.float32 for value in targets.values())


@pytest.mark.parametrize("encoding", ["gaussian", "udp"])
def test_decode_recovers_sub_pixel_positions_exactly(encoding: str) -> None:
    """The argmax pixel lies within the radius, so argmax + 1.5 x offset is the joint."""
    codec = make_codec(encoding, sigma=0.3)  # CAL's small sigma at 64 x 48
    rng = np.random.default_rng(0)
    keypoints = rng.uniform([-0.5, -0.5], [47.4, 63.4], size=(30, 17, 2))
    encoded = [codec.targets(points, np.ones(17, bool)) for points in keypoints]
    heatmaps, offsets = (
        torch.from_numpy(np.stack([item[name] for item in encoded]))
        for name in ("heatmaps", "offsets")
    )
    decoded, scores = codec.decode(heatmaps, offsets)
    assert decoded.shape == (30, 17, 2) and decoded.dtype == torch.float32
    np.testing.assert_allclose(decoded.numpy(), keypoints, atol=1e-4)
    # the integer argmax alone is off by up to half a heatmap pixel (2 input pixels)
    plain, _ = codec.decode(heatmaps, torch.zeros_like(offsets))
    assert np.abs(plain.numpy() - keypoints).max() > 1.0
    torch.testing.assert_close(scores, heatmaps.flatten(2).amax(-1))


def test_decode_reads_the_offset_at_the_argmax() -> None:
    codec = make_codec("udp", input_size=(32, 32))  # heatmap = input * 7 / 31
    heatmaps = torch.zeros(1, 1, 8, 8)
    heatmaps[0, 0, 2, 5] = 0.9  # argmax at x = 5, y = 2
    offsets = torch.zeros(1, 2, 8, 8)
    offsets[0, :, 2, 5] = torch.tensor([0.2, -0.4])
    offsets[0, :, 2, 4] = 10.0  # elsewhere: not read
    keypoints, scores = codec.decode(heatmaps, offsets)
    expected = np.array([5 + 1.5 * 0.2, 2 - 1.5 * 0.4]) * 31 / 7
    np.testing.assert_allclose(keypoints[0, 0].numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(scores.numpy(), [[0.9]])
    with pytest.raises(ValueError, match="offsets"):
        codec.decode(heatmaps, offsets[:, :1])


def mirror(keypoints: np.ndarray, width: int) -> np.ndarray:
    """The person of a horizontally mirrored crop: x -> W - 1 - x, left and right swapped."""
    mirrored = keypoints[..., POSETRACK.flip_permutation, :].copy()
    mirrored[..., 0] = width - 1 - mirrored[..., 0]
    return mirrored


@pytest.mark.parametrize("encoding", ["gaussian", "udp"])
def test_the_mirrored_targets_brought_back_decode_to_the_person(encoding: str) -> None:
    """flip_offsets: the offsets of the mirrored crop (mirrored, joints swapped, x
    negated, shifted like the heatmaps) decode with the flipped heatmaps to the joints
    of the unmirrored crop; linear within the radius, the field survives the codec's
    sub-pixel shift exactly."""
    codec = make_codec(encoding)
    rng = np.random.default_rng(1)
    # two heatmap pixels from the left edge: the shifted flip repeats the border column
    # (HeatmapCodec.flip_heatmaps), which can move the argmax of a joint next to it
    keypoints = rng.uniform([8.0, 3.0], [44.0, 60.0], size=(8, 17, 2))
    encoded = [codec.targets(points, np.ones(17, bool)) for points in mirror(keypoints, 48)]
    heatmaps = torch.from_numpy(np.stack([item["heatmaps"] for item in encoded]))
    offsets = torch.from_numpy(np.stack([item["offsets"] for item in encoded]))
    back_heatmaps = codec.flip_heatmaps(heatmaps, POSETRACK.flip_permutation)
    back_offsets = codec.flip_offsets(offsets, POSETRACK.flip_permutation)
    decoded, _ = codec.decode(back_heatmaps, back_offsets)
    np.testing.assert_allclose(decoded.numpy(), keypoints, atol=1e-3)


def test_flip_offsets_twice_is_the_identity_with_udp() -> None:
    codec = make_codec("udp")
    offsets = torch.randn(2, 34, 16, 12, generator=torch.Generator().manual_seed(0))
    once = codec.flip_offsets(offsets, POSETRACK.flip_permutation)
    torch.testing.assert_close(codec.flip_offsets(once, POSETRACK.flip_permutation), offsets)
    # x components negated and mirrored, y components only mirrored; joints swapped
    left, right = POSETRACK.index("left_wrist"), POSETRACK.index("right_wrist")
    torch.testing.assert_close(once[:, 2 * left], -offsets[:, 2 * right].flip(-1))
    torch.testing.assert_close(once[:, 2 * left + 1], offsets[:, 2 * right + 1].flip(-1))


def test_the_heatmap_part_is_a_heatmap_codec() -> None:
    codec = make_codec("udp")
    assert codec.input_size == (64, 48) and codec.heatmap_size == (16, 12)
    keypoints = np.array([[12.3, 40.1], [30.0, 5.5]])
    heatmaps, _, _, weights = codec.encode(keypoints, [True, True])
    expected_heatmaps, expected_weights = codec.heatmap.encode(keypoints, [True, True])
    np.testing.assert_array_equal(heatmaps, expected_heatmaps)
    np.testing.assert_array_equal(weights, expected_weights)
    np.testing.assert_allclose(codec.input_to_heatmap(keypoints), keypoints * [11 / 47, 15 / 63])
    with pytest.raises(ValueError, match="positive"):
        HeatmapOffsetCodec(heatmap=codec.heatmap, radius=0.0)
