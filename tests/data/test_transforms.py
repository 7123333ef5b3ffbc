"""Clip transforms: flips, identical warps for all frames, keypoints follow the pixels."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vidpose.codecs.geometry import apply_affine, invert_affine
from vidpose.data.skeleton import POSETRACK
from vidpose.data.transforms import (
    Augmentation,
    ClipTransform,
    ColorJitter,
    flip_clip,
    half_body_box,
    jitter_colors,
    normalize_frames,
    prepare_frames,
    sample_clip_transform,
    transform_clip,
    upper_body_joints,
)

OUTPUT = (48, 64)  # (W, H) of the crops in these tests


def dot_image(center: tuple[float, float], size: tuple[int, int] = (160, 120)) -> np.ndarray:
    """An RGB uint8 image, black but for a bright disc of radius 2.5 at ``center``."""
    width, height = size
    rows, cols = np.mgrid[0:height, 0:width]
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[(cols - center[0]) ** 2 + (rows - center[1]) ** 2 <= 2.5**2] = 255
    return image


def centroid(image: np.ndarray) -> np.ndarray:
    mass = image[..., 0].astype(np.float64)
    rows, cols = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    return np.array([(mass * cols).sum(), (mass * rows).sum()]) / mass.sum()


def test_flip_clip_twice_is_identity() -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, size=(3, 10, 14, 3), dtype=np.uint8)
    keypoints = rng.uniform(0, 13, size=(17, 2))
    visible = rng.random(17) > 0.3
    permutation = POSETRACK.flip_permutation
    once = flip_clip(frames, keypoints, visible, permutation)
    assert not np.array_equal(once[0], frames)
    np.testing.assert_allclose(once[1][6, 0], 13 - keypoints[5, 0])  # left <-> right
    twice = flip_clip(*once, permutation)
    np.testing.assert_array_equal(twice[0], frames)
    np.testing.assert_allclose(twice[1], keypoints)
    np.testing.assert_array_equal(twice[2], visible)


@pytest.mark.parametrize(
    ("rotation", "flip", "zoom"),
    [(0.0, False, 1.0), (30.0, False, 0.6), (-50.0, True, 1.7), (10.0, False, 0.3)],
)
def test_dot_lands_where_the_warped_keypoint_says(rotation: float, flip: bool, zoom: float) -> None:
    dot = (70.3, 52.6)
    image = dot_image(dot)
    crop = ClipTransform(
        center=np.array([75.0, 60.0]),
        scale=np.array([60.0, 80.0]) * zoom,
        rotation=rotation,
        flip=flip,
    )
    # The dot is the only joint; a one-joint "skeleton" flips onto itself.
    crops, keypoints, visible, affine = transform_clip(
        [image, Image.fromarray(image)],
        np.array([dot]),
        np.array([True]),
        crop,
        output_size=OUTPUT,
        flip_permutation=[0],
    )
    assert crops.shape == (2, OUTPUT[1], OUTPUT[0], 3) and crops.dtype == np.uint8
    assert visible.tolist() == [True]
    # The rendered disc is symmetric, its centroid is the dot up to pixel sampling; a
    # half-pixel slip in the warp's pixel convention moves it by 0.15 to 1 crop pixel.
    expected = apply_affine(centroid(image)[None], affine)[0]
    for frame in crops:
        np.testing.assert_allclose(centroid(frame), expected, atol=0.25)
    np.testing.assert_allclose(keypoints[0], apply_affine(np.array([dot]), affine)[0])
    np.testing.assert_allclose(centroid(crops[0]), keypoints[0], atol=1.0)
    # Warping back with the inverse affine gives image coordinates again.
    back = apply_affine(keypoints, invert_affine(affine))
    np.testing.assert_allclose(back[0], dot, atol=1e-9)


def test_every_frame_gets_the_same_warp() -> None:
    rng = np.random.default_rng(1)
    dot = (90.0, 40.0)
    frames = [dot_image(dot) for _ in range(3)]
    frames[0][30:50, 60:80, 1] = 200  # the frames differ (green only); the red dot is static
    frames[2][0:20, 0:30, 2] = 100
    keypoints = rng.uniform(30, 100, size=(17, 2))
    keypoints[0] = dot
    crop, _ = sample_clip_transform(
        rng,
        box=[60, 20, 50, 70],
        keypoints=keypoints,
        visible=np.ones(17, bool),
        augmentation=Augmentation(rotation_prob=1.0, flip_prob=0.0),
        upper_body=upper_body_joints(POSETRACK),
        aspect_ratio=0.75,
    )
    assert crop.rotation != 0.0
    crops, warped, _, _ = transform_clip(
        frames,
        keypoints,
        np.ones(17, bool),
        crop,
        output_size=OUTPUT,
        flip_permutation=POSETRACK.flip_permutation,
    )
    assert crops[:, :, :, 0].any(axis=(1, 2)).all()  # the dot is inside every crop
    assert not np.array_equal(crops[0], crops[1])
    for frame in crops:
        np.testing.assert_array_equal(frame[..., 0], crops[1][..., 0])
        np.testing.assert_allclose(centroid(frame), warped[0], atol=1.0)


def test_flip_swaps_left_and_right_joints() -> None:
    keypoints = np.zeros((17, 2))
    keypoints[5] = (30, 40)  # left shoulder, on the image's left
    keypoints[6] = (70, 40)  # right shoulder
    visible = np.zeros(17, bool)
    visible[[5, 6]] = True
    visible[9] = True  # left wrist only: its visibility moves to slot 10
    crop = ClipTransform(center=np.array([50.0, 40.0]), scale=np.array([60.0, 80.0]), flip=True)
    _, warped, flipped_visible, _ = transform_clip(
        [np.zeros((80, 100, 3), np.uint8)],
        keypoints,
        visible,
        crop,
        output_size=OUTPUT,
        flip_permutation=POSETRACK.flip_permutation,
    )
    assert warped[5, 0] < warped[6, 0]  # the new left shoulder is again on the left
    assert flipped_visible[10] and not flipped_visible[9]


def test_half_body_box_covers_the_chosen_half() -> None:
    upper = upper_body_joints(POSETRACK)
    assert 0 in upper and 5 in upper and 11 not in upper and 16 not in upper
    keypoints = np.array([[50.0, 10 + 10 * j] for j in range(17)])
    keypoints[:, 0] += np.arange(17)  # not all on one vertical line
    visible = np.ones(17, bool)
    box = half_body_box(keypoints, visible, upper_body=upper, prefer_upper=False, enlarge=1.0)
    lower = keypoints[11:]
    np.testing.assert_allclose(box[:2], lower.min(0))
    np.testing.assert_allclose(box[:2] + box[2:], lower.max(0))
    # Too few joints: no half-body crop.
    assert (
        half_body_box(keypoints, visible & (np.arange(17) < 5), upper_body=upper, prefer_upper=True)
        is None
    )


def test_sampling_is_a_function_of_the_generator() -> None:
    kwargs = dict(
        box=[10, 10, 40, 90],
        keypoints=np.random.default_rng(2).uniform(10, 90, (17, 2)),
        visible=np.ones(17, bool),
        augmentation=Augmentation(),
        upper_body=upper_body_joints(POSETRACK),
        aspect_ratio=0.75,
    )
    first = sample_clip_transform(np.random.default_rng(7), **kwargs)
    second = sample_clip_transform(np.random.default_rng(7), **kwargs)
    assert repr(first) == repr(second)
    draws = [sample_clip_transform(np.random.default_rng(seed), **kwargs)[0] for seed in range(200)]
    assert 60 < sum(crop.flip for crop in draws) < 140
    rotations = np.array([crop.rotation for crop in draws])
    assert np.abs(rotations).max() <= 80 and (rotations == 0).mean() > 0.25


def reference_jitter(clip: np.ndarray, jitter: ColorJitter) -> np.ndarray:
    """Brightness, contrast (towards the clip's mean grey), saturation, step by step."""
    luma = np.array([0.299, 0.587, 0.114])
    out = clip.astype(np.float64) * jitter.brightness
    mean_grey = (out @ luma).mean()
    out = (out - mean_grey) * jitter.contrast + mean_grey
    grey = (out @ luma)[..., None]
    return np.clip((out - grey) * jitter.saturation + grey, 0, 255)


def test_color_jitter_is_identical_for_every_frame() -> None:
    frame = np.random.default_rng(3).integers(0, 255, (6, 5, 3), dtype=np.uint8)
    clip = np.stack([frame, frame])
    jitter = ColorJitter(brightness=1.2, contrast=0.8, saturation=1.3)
    out = jitter_colors(clip, jitter)
    assert out.dtype == np.float32 and out.shape == clip.shape
    np.testing.assert_array_equal(out[0], out[1])
    np.testing.assert_allclose(out, reference_jitter(clip, jitter), atol=1e-3)
    assert not np.allclose(out[0], frame)
    np.testing.assert_allclose(jitter_colors(clip, ColorJitter()), clip, atol=1e-4)
    # The fused model-input path gives the same numbers as the two steps.
    np.testing.assert_allclose(
        prepare_frames(clip, jitter), normalize_frames(jitter_colors(clip, jitter)), atol=1e-5
    )
    np.testing.assert_allclose(prepare_frames(clip), normalize_frames(clip), atol=1e-6)


def test_normalize_frames_layout() -> None:
    frames = np.full((2, 4, 3, 3), 255, dtype=np.uint8)
    out = normalize_frames(frames)
    assert out.shape == (2, 3, 4, 3) and out.dtype == np.float32
    np.testing.assert_allclose(
        out[0, :, 0, 0],
        (1 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225]),
        rtol=1e-6,
    )
