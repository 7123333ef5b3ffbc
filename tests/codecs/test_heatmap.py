"""Heatmap codec: encode/decode round trip, weights, batching, flip helper."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidpose.codecs.heatmap import HeatmapCodec, build_codec, flip_heatmaps
from vidpose.config import DataConfig
from vidpose.data.skeleton import POSETRACK

INPUT = (256, 192)
MAP = (64, 48)


def make_codec(encoding: str, **kwargs: float) -> HeatmapCodec:
    return HeatmapCodec(input_size=INPUT, heatmap_size=MAP, sigma=2.0, encoding=encoding, **kwargs)


@pytest.mark.parametrize("encoding", ["gaussian", "udp"])
def test_encode_decode_round_trip_is_sub_pixel(encoding: str) -> None:
    codec = make_codec(encoding)
    rng = np.random.default_rng(0)
    # Anywhere inside the crop, borders included, at random sub-pixel positions.
    keypoints = rng.uniform([-0.5, -0.5], [191.4, 255.4], size=(60, 17, 2))
    heatmaps = np.stack([codec.encode(k, np.ones(17, bool))[0] for k in keypoints])
    decoded, scores = codec.decode(torch.from_numpy(heatmaps))
    assert decoded.shape == (60, 17, 2) and scores.shape == (60, 17)
    error = np.abs(codec.input_to_heatmap(decoded.numpy()) - codec.input_to_heatmap(keypoints))
    assert error.max() < 0.1  # heatmap pixels
    assert (scores.numpy() > 0.75).all()  # a sub-pixel Gaussian peaks at >= exp(-1/(4 sigma^2))


def test_argmax_alone_is_not_sub_pixel() -> None:
    """Guards the test above: the refinement is what makes the error small."""
    codec = make_codec("gaussian")
    keypoints = np.array([[41.5, 77.7]])  # heatmap (10.375, 19.425)
    heatmaps, _ = codec.encode(keypoints, [True])
    integer = torch.tensor(heatmaps).flatten().argmax().item()
    argmax_position = np.array([integer % MAP[1], integer // MAP[1]])
    assert np.abs(argmax_position - codec.input_to_heatmap(keypoints)[0]).max() > 0.3
    decoded, _ = codec.decode(torch.from_numpy(heatmaps)[None])
    np.testing.assert_allclose(decoded[0].numpy(), keypoints, atol=0.1)


def test_encodings_differ_by_their_scale_factor() -> None:
    point = np.array([191.0, 255.0])
    np.testing.assert_allclose(make_codec("udp").input_to_heatmap(point), [47, 63])
    np.testing.assert_allclose(make_codec("gaussian").input_to_heatmap(point), [47.75, 63.75])
    assert make_codec("udp").flip_shift == 0.0
    assert make_codec("gaussian").flip_shift == pytest.approx(0.75)


def test_joints_outside_or_unannotated_get_zero_weight_and_map() -> None:
    codec = make_codec("gaussian")
    keypoints = np.array([[-3.0, 10], [50, 300], [192.0, 5], [np.nan, 3], [20, 30], [20, 30]])
    visible = np.array([True, True, True, True, False, True])
    heatmaps, weights = codec.encode(keypoints, visible)
    assert heatmaps.shape == (6, *MAP) and heatmaps.dtype == np.float32
    np.testing.assert_array_equal(weights, [0, 0, 0, 0, 0, 1])
    assert not heatmaps[:5].any()
    assert 0.9 < heatmaps[5].max() <= 1.0 and heatmaps[5].min() >= 0.0


def test_decode_batched_equals_one_by_one() -> None:
    codec = make_codec("udp")
    rng = np.random.default_rng(3)
    heatmaps = np.stack(
        [codec.encode(rng.uniform(0, 190, (17, 2)), rng.random(17) > 0.2)[0] for _ in range(5)]
    )
    heatmaps += 0.05 * rng.random(heatmaps.shape).astype(np.float32)  # noisy, network-like
    batch = torch.from_numpy(heatmaps)
    keypoints, scores = codec.decode(batch)
    for index in range(5):
        single_keypoints, single_scores = codec.decode(batch[index : index + 1])
        torch.testing.assert_close(single_keypoints[0], keypoints[index], atol=1e-5, rtol=0)
        torch.testing.assert_close(single_scores[0], scores[index])


def test_all_zero_heatmap_decodes_without_nan() -> None:
    keypoints, scores = make_codec("gaussian").decode(torch.zeros(2, 3, *MAP))
    assert torch.isfinite(keypoints).all() and (scores == 0).all()


@pytest.mark.parametrize("encoding", ["gaussian", "udp"])
def test_flipped_prediction_lines_up_with_the_original(encoding: str) -> None:
    """Encode a mirrored person, flip its heatmaps back: it decodes to the original."""
    codec = make_codec(encoding)
    permutation = POSETRACK.flip_permutation
    keypoints = np.random.default_rng(4).uniform([20, 20], [170, 235], size=(17, 2))
    mirrored = keypoints.copy()
    mirrored[:, 0] = INPUT[1] - 1 - mirrored[:, 0]
    mirrored = mirrored[permutation]
    heatmaps, _ = codec.encode(mirrored, np.ones(17, bool))
    restored = codec.flip_heatmaps(torch.from_numpy(heatmaps)[None], permutation)
    decoded, _ = codec.decode(restored)
    np.testing.assert_allclose(decoded[0].numpy(), keypoints, atol=0.1)  # input pixels


def test_flip_twice() -> None:
    permutation = POSETRACK.flip_permutation
    codec = make_codec("gaussian")
    keypoints = np.random.default_rng(5).uniform(10, 180, size=(17, 2))
    heatmaps = torch.from_numpy(codec.encode(keypoints, np.ones(17, bool))[0])[None]
    # Whole-pixel flips (udp) are an exact involution.
    torch.testing.assert_close(
        flip_heatmaps(flip_heatmaps(heatmaps, permutation), permutation), heatmaps, rtol=0, atol=0
    )
    once = flip_heatmaps(heatmaps, permutation)
    assert not torch.equal(once, heatmaps)
    assert torch.equal(once[0, 5], heatmaps[0, 6].flip(-1))  # left/right channels swapped
    # The fractional shift of "gaussian" twice is a symmetric blur: peaks stay put
    # (within 0.1 input pixel = 0.025 heatmap pixel).
    twice = codec.flip_heatmaps(codec.flip_heatmaps(heatmaps, permutation), permutation)
    torch.testing.assert_close(codec.decode(twice)[0], codec.decode(heatmaps)[0], atol=0.1, rtol=0)


def test_flip_rejects_a_bad_permutation() -> None:
    with pytest.raises(ValueError, match="self-inverse permutation"):
        flip_heatmaps(torch.zeros(1, 3, 4, 4), [1, 2, 0])


def test_build_codec_from_config() -> None:
    codec = build_codec(DataConfig(input_size=(128, 96), heatmap_stride=4, encoding="udp"))
    assert codec.heatmap_size == (32, 24) and codec.encoding == "udp"


def test_refine_none_decodes_the_integer_argmax() -> None:
    """The plain baseline of a decoder comparison: the same codec without DARK."""
    keypoints = np.array([[41.5, 77.7]])  # heatmap (10.375, 19.425) with "gaussian"
    heatmaps = torch.from_numpy(make_codec("gaussian").encode(keypoints, [True])[0])[None]
    plain, scores = make_codec("gaussian", refine="none").decode(heatmaps)
    np.testing.assert_allclose(plain[0].numpy(), [[10 * 4, 19 * 4]])  # the argmax pixel
    refined, refined_scores = make_codec("gaussian").decode(heatmaps)
    np.testing.assert_allclose(refined[0].numpy(), keypoints, atol=0.1)
    torch.testing.assert_close(scores, refined_scores)
    config = DataConfig(input_size=(128, 96), refine="none")
    assert build_codec(config).refine == "none" and build_codec(DataConfig()).refine == "dark"
    with pytest.raises(ValueError, match="refine"):
        make_codec("gaussian", refine="taylor")
