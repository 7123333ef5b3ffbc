"""Reduced JPEG decoding (``data.decode_reduced``): a crop that takes at most one pixel
in 2, 4 or 8 of its frame is cut from the frame decoded at that scale, and matches the
crop from the full decoding within interpolation error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vidpose.codecs.geometry import box_to_center_scale
from vidpose.data.clips import ClipDataset
from vidpose.data.records import FrameRecord, PersonAnnotation, VideoRecord
from vidpose.data.skeleton import POSETRACK
from vidpose.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Augmentation,
    ClipTransform,
    decode_reduction,
    draft_reduced,
    reduced_affine,
    warp_frames,
)

WIDTH, HEIGHT = 640, 360
INPUT = (64, 48)


def textured(seed: int) -> np.ndarray:
    """A photo-like frame: smooth colour fields at 3 scales, detail down to ~6 pixels."""
    rng = np.random.default_rng(seed)
    image = np.zeros((HEIGHT, WIDTH, 3), np.float32)
    for cell in (6, 24, 96):
        small = rng.uniform(0, 255, (HEIGHT // cell + 1, WIDTH // cell + 1, 3)).astype(np.uint8)
        image += np.asarray(
            Image.fromarray(small).resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC), np.float32
        )
    return np.clip(image / 3, 0, 255).astype(np.uint8)


def person(box: list[float], track: int) -> PersonAnnotation:
    points = np.zeros((17, 3))
    points[:, :2] = np.array(box[:2]) + np.linspace(0.1, 0.9, 17)[:, None] * box[2:]
    points[:, 2] = 1
    return PersonAnnotation(track_id=track, bbox=np.array(box), keypoints=points)


# crop heights of 1.25 x 300 = 375 (5.9 pixels per crop pixel: 1/4), 1.25 x 110 = 138
# (2.1: 1/2) and 1.25 x 40 (0.8: full size) frame pixels for a 64-pixel-high input
BOXES = [[100.0, 20.0, 150.0, 300.0], [400.0, 200.0, 50.0, 110.0], [560.0, 40.0, 20.0, 40.0]]


@pytest.fixture(scope="module")
def jpeg_video(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[VideoRecord]]:
    root = tmp_path_factory.mktemp("jpeg")
    folder = root / "images" / "000003_mpii_test"
    folder.mkdir(parents=True)
    frames = []
    for index in range(3):
        Image.fromarray(textured(index)).save(folder / f"{index:06d}.jpg", quality=95)
        frames.append(
            FrameRecord(
                video="000003_mpii_test",
                frame_index=index,
                image_id=10000030000 + index,
                image_path=f"images/000003_mpii_test/{index:06d}.jpg",
                is_labeled=True,
                num_frames=3,
                persons=[person(box, track) for track, box in enumerate(BOXES)],
            )
        )
    return root, [VideoRecord(name="000003_mpii_test", frames=frames)]


def dataset(jpeg_video, **kwargs) -> ClipDataset:
    root, records = jpeg_video
    return ClipDataset(records, root, input_size=INPUT, codec=None, skeleton=POSETRACK, **kwargs)


def pixels(frames: torch.Tensor) -> np.ndarray:
    """[T, 3, H, W] normalised -> [T, H, W, 3] 0..255."""
    return (frames.numpy().transpose(0, 2, 3, 1) * IMAGENET_STD + IMAGENET_MEAN) * 255


def test_the_reduction_is_the_largest_that_keeps_a_pixel_per_crop_pixel() -> None:
    for height, expected in ((375.0, 4), (138.0, 2), (128.0, 2), (127.0, 1), (1100.0, 8)):
        crop = ClipTransform(center=np.array([300.0, 180.0]), scale=np.array([0.75, 1]) * height)
        assert decode_reduction(crop.affine((48, 64))) == expected, height
        rotated = ClipTransform(crop.center, crop.scale, rotation=35.0, flip=True)
        assert decode_reduction(rotated.affine((48, 64))) == expected  # rotation: same density
    # several crops of one frame: the densest decides
    crops = [ClipTransform(np.array([300.0, 180.0]), np.array([0.75, 1]) * h) for h in (375, 138)]
    assert decode_reduction(np.stack([crop.affine((48, 64)) for crop in crops])) == 2


def test_reduced_affine_maps_the_same_point_to_the_same_crop_pixel() -> None:
    affine = ClipTransform(np.array([300.0, 180.0]), np.array([300.0, 400.0]), rotation=20).affine(
        (48, 64)
    )
    full = np.array([[123.0, 77.0], [0.0, 0.0]])
    for s in (2, 4, 8):
        # full pixel p is reduced pixel (p - (s - 1) / 2) / s
        reduced = (full - (s - 1) / 2) / s
        expected = full @ affine[:, :2].T + affine[:, 2]
        np.testing.assert_allclose(reduced @ reduced_affine(affine, s)[:, :2].T
                                   + reduced_affine(affine, s)[:, 2], expected)  # fmt: skip


def test_reduced_crops_match_full_decoding_within_interpolation_error(jpeg_video) -> None:
    root, records = jpeg_video
    path = root / records[0].frames[1].image_path
    full = Image.open(path)
    full.load()
    for box, expected in zip(BOXES, (4, 2, 1), strict=True):
        center, scale = box_to_center_scale(np.array(box), aspect_ratio=0.75)
        affine = ClipTransform(center, scale, rotation=15.0).affine((48, 64))
        reduction = decode_reduction(affine)
        assert reduction == expected
        image = Image.open(path)
        assert draft_reduced(image, reduction) == reduction
        image.load()
        assert image.size == (-(-WIDTH // reduction), -(-HEIGHT // reduction))
        reference = warp_frames([full], affine, (48, 64)).astype(float)
        crop = warp_frames([image], reduced_affine(affine, reduction), (48, 64)).astype(float)
        # half a pixel off would cost far more on this texture than the block averaging
        shifted = affine + np.array([[0.0, 0.0, 0.5], [0.0, 0.0, 0.0]])
        misplaced = warp_frames([full], shifted, (48, 64)).astype(float)
        error, interpolation = np.abs(crop - reference).mean(), np.abs(misplaced - reference).mean()
        assert error < 0.5 * interpolation, (reduction, error, interpolation)


def test_the_dataset_decodes_reduced_where_the_crop_allows(jpeg_video, monkeypatch) -> None:
    import vidpose.data.clips as clips

    applied: list[int] = []
    real = clips.draft_reduced

    def spy(image, reduction):
        applied.append(real(image, reduction))
        return applied[-1]

    monkeypatch.setattr(clips, "draft_reduced", spy)
    reduced = dataset(jpeg_video, train=False)
    exact = dataset(jpeg_video, train=False, decode_reduced=False)
    assert len(reduced) == 9
    for index in range(len(reduced)):
        applied.clear()
        sample = reduced[index]
        expected = (4, 2, 1)[index % 3]
        assert applied == [expected] * len(set(sample["frame_indices"].tolist()))
        reference = exact[index]
        crops, exact_crops = pixels(sample["frames"]), pixels(reference["frames"])
        difference = np.abs(crops - exact_crops).mean()
        # a crop one pixel off is what a geometry error would cost; block averaging
        # (the reduced decoding's anti-aliasing) must cost well under that
        misplaced = np.abs(np.roll(exact_crops, 1, axis=2) - exact_crops)[:, :, 1:].mean()
        assert difference < 0.5 * misplaced, (index, difference, misplaced)
        for key in ("keypoints", "affine", "target_weight", "frame_boxes"):
            assert torch.equal(sample[key], reference[key])


def test_augmented_samples_stay_a_function_of_seed_epoch_and_index(jpeg_video) -> None:
    strong = Augmentation(rotation_prob=1.0, scale_factor=0.3)
    first = dataset(jpeg_video, train=True, augmentation=strong, seed=2)
    second = dataset(jpeg_video, train=True, augmentation=strong, seed=2)
    for index in (0, 4, 8):
        assert torch.equal(first[index]["frames"], second[index]["frames"])
