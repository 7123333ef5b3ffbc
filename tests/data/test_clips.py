"""Clip dataset: shapes, clamping, one warp per clip, targets that decode back, flips,
determinism per (seed, epoch, index)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vidpose.codecs.geometry import apply_affine, crop_to_image
from vidpose.codecs.heatmap import HeatmapCodec, build_codec
from vidpose.config import Config, DataConfig
from vidpose.data.clips import ClipDataset, build_dataset
from vidpose.data.frames import FrameReadError
from vidpose.data.records import FrameRecord, PersonAnnotation, VideoRecord
from vidpose.data.skeleton import POSETRACK
from vidpose.data.transforms import IMAGENET_MEAN, IMAGENET_STD, Augmentation

WIDTH, HEIGHT = 120, 90
INPUT = (64, 48)  # (H, W) of the crops: small, fast tests
STATIC_DOT = (40.0, 30.0)  # a red dot at the same place in every frame
NUM_FRAMES = 5
NO_AUGMENTATION = Augmentation(
    scale_factor=0.0, rotation_factor=0.0, flip_prob=0.0, half_body_prob=0.0, color_jitter=0.0
)


def person_keypoints() -> np.ndarray:
    """[17, 3] joints in a 40 x 60 box at (40, 15); slots 3, 4 (ears) unannotated."""
    keypoints = np.zeros((17, 3))
    rng = np.random.default_rng(0)
    keypoints[:, 0] = rng.uniform(45, 75, 17)
    keypoints[:, 1] = rng.uniform(20, 70, 17)
    keypoints[:, 2] = 1
    keypoints[0, :2] = STATIC_DOT  # the nose sits on the static dot
    keypoints[5, :2] = (50.0, 35.0)  # left shoulder: image left (the person faces away)
    keypoints[6, :2] = (70.0, 35.0)  # right shoulder
    keypoints[[3, 4]] = 0
    return keypoints


def frame_blue(index: int) -> int:
    return 30 + 40 * index


def write_frame(path: Path, index: int) -> None:
    """Background blue level encodes the frame index; red dot at STATIC_DOT (radius 2.5);
    a green dot on the right shoulder (slot 6)."""
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    image = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    image[..., 2] = frame_blue(index)
    image[(cols - STATIC_DOT[0]) ** 2 + (rows - STATIC_DOT[1]) ** 2 <= 2.5**2, 0] = 255
    image[(cols - 70.0) ** 2 + (rows - 35.0) ** 2 <= 2.5**2, 1] = 255
    Image.fromarray(image).save(path)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[VideoRecord]]:
    root = tmp_path_factory.mktemp("clips")
    folder = root / "images" / "val" / "000001_mpii_test"
    folder.mkdir(parents=True)
    frames = []
    for index in range(NUM_FRAMES):
        write_frame(folder / f"{index:06d}.png", index)
        labeled = index in (0, 2, 4)  # neighbours of frame 2 are unlabeled, as in PoseTrack
        persons = []
        if labeled:
            persons = [
                PersonAnnotation(
                    track_id=0,
                    bbox=np.array([40.0, 15.0, 40.0, 60.0]),
                    keypoints=person_keypoints(),
                ),
                # a labeled person without annotated joints: evaluation only
                PersonAnnotation(
                    track_id=1, bbox=np.array([5.0, 5.0, 20.0, 30.0]), keypoints=np.zeros((17, 3))
                ),
            ]
        frames.append(
            FrameRecord(
                video="000001_mpii_test",
                frame_index=index,
                image_id=10000010000 + index,
                image_path=f"images/val/000001_mpii_test/{index:06d}.png",
                is_labeled=labeled,
                num_frames=NUM_FRAMES,
                persons=persons,
            )
        )
    return root, [VideoRecord(name="000001_mpii_test", frames=frames)]


def make_dataset(videos, *, train: bool, offsets=(-1, 0, 1), **kwargs) -> ClipDataset:
    root, records = videos
    codec = HeatmapCodec(input_size=INPUT, heatmap_size=(16, 12), sigma=1.0)
    return ClipDataset(
        records,
        root,
        frame_offsets=offsets,
        input_size=INPUT,
        codec=codec,
        skeleton=POSETRACK,
        train=train,
        **kwargs,
    )


def unnormalize(frames: torch.Tensor) -> np.ndarray:
    """[T, 3, H, W] normalised -> [T, H, W, 3] in 0..255."""
    pixels = frames.numpy().transpose(0, 2, 3, 1) * IMAGENET_STD + IMAGENET_MEAN
    return pixels * 255.0


def red_centroid(frame: np.ndarray) -> np.ndarray:
    mass = np.clip(frame[..., 0] - 20, 0, None)  # red, ignoring interpolation ringing
    rows, cols = np.mgrid[0 : frame.shape[0], 0 : frame.shape[1]]
    return np.array([(mass * cols).sum(), (mass * rows).sum()]) / mass.sum()


@pytest.mark.parametrize("offsets", [(0,), (-1, 0, 1), (-2, -1, 0, 1, 2)])
def test_sample_shapes(videos, offsets) -> None:
    dataset = make_dataset(videos, train=True, offsets=offsets)
    assert len(dataset) == 3  # the annotated person of the 3 labeled frames
    sample = dataset[1]
    t = len(offsets)
    assert sample["frames"].shape == (t, 3, *INPUT) and sample["frames"].dtype == torch.float32
    assert sample["heatmaps"].shape == (17, 16, 12)
    assert sample["target_weight"].shape == (17,) and sample["keypoints"].shape == (17, 2)
    assert sample["affine"].shape == (2, 3) and sample["inverse_affine"].shape == (2, 3)
    assert sample["center"].shape == (2,) and sample["scale"].shape == (2,)
    assert sample["box"].shape == (4,)
    assert (sample["image_id"], sample["video"], sample["frame_index"]) == (
        10000010002,
        "000001_mpii_test",
        2,
    )
    assert sample["index"] == 1 and sample["track_id"] == 0
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=2)))
    assert batch["frames"].shape == (2, t, 3, *INPUT) and batch["index"].tolist() == [0, 1]


def test_frames_are_clamped_at_the_ends_of_the_video(videos) -> None:
    dataset = make_dataset(videos, train=False, offsets=(-2, -1, 0, 1, 2))
    video = videos[1][0]
    assert dataset.frame_indices(video, 0) == [0, 0, 0, 1, 2]
    assert dataset.frame_indices(video, 4) == [2, 3, 4, 4, 4]
    first = dataset[0]  # key frame 0, the annotated person
    assert first["frame_index"] == 0
    # The blue background of each crop says which frame it was cut from.
    crops = unnormalize(first["frames"])
    blue = [int(round(np.median(crop[20:40, 15:35, 2]))) for crop in crops]
    assert blue == [frame_blue(i) for i in (0, 0, 0, 1, 2)]


def test_every_frame_of_a_clip_gets_the_same_warp(videos) -> None:
    # Colour jitter off: its saturation term mixes the (per-frame) blue into the red.
    augmentation = Augmentation(
        rotation_prob=1.0, flip_prob=0.0, half_body_prob=0.0, color_jitter=0
    )
    dataset = make_dataset(videos, train=True, augmentation=augmentation, seed=3)
    for index in range(len(dataset)):
        sample = dataset[index]
        assert sample["rotation"] != 0.0
        crops = unnormalize(sample["frames"])
        centroids = [red_centroid(crop) for crop in crops]
        for position in range(1, 3):
            np.testing.assert_allclose(centroids[position], centroids[0], atol=0.05)
        # ... where the key frame's warped nose (on the static dot) says.
        np.testing.assert_allclose(centroids[1], sample["keypoints"][0].numpy(), atol=1.0)


def test_target_peaks_decode_back_to_image_keypoints(videos) -> None:
    dataset = make_dataset(videos, train=False)
    sample = dataset[0]
    assert sample["rotation"] == 0.0 and not sample["flipped"]
    keypoints, _ = dataset.codec.decode(sample["heatmaps"][None])
    image_points = crop_to_image(keypoints[0].double(), sample["inverse_affine"].double())
    truth = person_keypoints()
    annotated = sample["target_weight"].numpy() > 0
    np.testing.assert_array_equal(annotated, truth[:, 2] > 0)
    np.testing.assert_allclose(image_points.numpy()[annotated], truth[annotated, :2], atol=1.0)
    # The box used is the key frame's box; the affine maps the box centre to the crop centre.
    np.testing.assert_allclose(sample["box"].numpy(), [40, 15, 40, 60])
    centre = apply_affine(np.array([[60.0, 45.0]]), sample["affine"].double().numpy())
    np.testing.assert_allclose(centre[0], [(INPUT[1] - 1) / 2, (INPUT[0] - 1) / 2], atol=1e-4)


def test_flipped_samples_swap_left_and_right(videos) -> None:
    augmentation = Augmentation(
        scale_factor=0.0, rotation_factor=0.0, flip_prob=1.0, half_body_prob=0.0, color_jitter=0.0
    )
    dataset = make_dataset(videos, train=True, augmentation=augmentation)
    sample = dataset[0]
    assert sample["flipped"]
    crop = unnormalize(sample["frames"])[1]
    green = np.clip(crop[..., 1] - 20, 0, None)
    rows, cols = np.mgrid[0 : crop.shape[0], 0 : crop.shape[1]]
    green_dot = np.array([(green * cols).sum(), (green * rows).sum()]) / green.sum()
    # The image's right shoulder (green) is the mirrored person's LEFT shoulder (slot 5).
    np.testing.assert_allclose(sample["keypoints"][5].numpy(), green_dot, atol=1.0)
    decoded, _ = dataset.codec.decode(sample["heatmaps"][None])
    np.testing.assert_allclose(decoded[0, 5].numpy(), green_dot, atol=1.0)
    # The unflipped dataset has it in slot 6.
    plain = make_dataset(videos, train=True, augmentation=NO_AUGMENTATION)[0]
    assert not plain["flipped"]
    np.testing.assert_allclose(
        plain["keypoints"][6].numpy(),
        sample["keypoints"][5].numpy() * [-1, 1] + [INPUT[1] - 1, 0],
        atol=1e-3,
    )


def test_augmentation_is_deterministic_per_seed_epoch_and_index(videos) -> None:
    first = make_dataset(videos, train=True, seed=7)
    second = make_dataset(videos, train=True, seed=7)
    order_a = {index: first[index] for index in (0, 1, 2)}
    order_b = {index: second[index] for index in (2, 0, 1)}  # other access order
    for index in range(3):
        for key in ("frames", "heatmaps", "affine"):
            assert torch.equal(order_a[index][key], order_b[index][key])

    def affines(dataset: ClipDataset) -> list[torch.Tensor]:
        return [dataset[index]["affine"] for index in range(3)]

    first.set_epoch(1)
    assert not all(map(torch.equal, affines(first), affines(second)))
    second.set_epoch(1)
    assert all(map(torch.equal, affines(first), affines(second)))
    other_seed = make_dataset(videos, train=True, seed=8)
    other_seed.set_epoch(1)
    assert not all(map(torch.equal, affines(first), affines(other_seed)))


def test_workers_see_the_epoch_and_give_the_same_samples(videos) -> None:
    dataset = make_dataset(videos, train=True, seed=1)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=3,
        num_workers=2,
        persistent_workers=True,
        multiprocessing_context="fork",
        timeout=120,
    )
    for epoch in (0, 2):
        dataset.set_epoch(epoch)
        (batch,) = list(loader)
        expected = torch.stack([dataset[index]["affine"] for index in range(3)])
        assert torch.equal(batch["affine"], expected)


def test_evaluation_uses_every_person_or_the_given_boxes(videos) -> None:
    evaluation = make_dataset(videos, train=False)
    assert len(evaluation) == 6  # both persons of the 3 labeled frames
    assert evaluation[1]["target_weight"].sum() == 0  # the person without joints

    class Box:
        def __init__(self, bbox, score):
            self.bbox, self.score, self.track_id = np.asarray(bbox, float), score, None

    boxes = {10000010000 + i: [Box([30, 10, 50, 70], 0.9)] for i in range(NUM_FRAMES)}
    boxes[10000010002].append(Box([0, 0, 30, 30], 0.4))
    detected = make_dataset(videos, train=False, boxes=boxes)
    assert len(detected) == 4  # labeled frames 0, 2 (two boxes), 4
    sample = detected[2]
    assert sample["box_score"] == pytest.approx(0.4) and sample["track_id"] == -1
    np.testing.assert_allclose(sample["box"].numpy(), [0, 0, 30, 30])
    assert sample["target_weight"].sum() == 0
    assert len(make_dataset(videos, train=False, boxes=boxes, labeled_only=False)) == 6


def test_missing_image_names_the_file(videos, tmp_path: Path) -> None:
    _, records = videos
    codec = HeatmapCodec(input_size=INPUT, heatmap_size=(16, 12), sigma=1.0)
    dataset = ClipDataset(
        records, tmp_path, input_size=INPUT, codec=codec, skeleton=POSETRACK, train=False
    )
    with pytest.raises(FrameReadError, match=r"000000\.png: cannot read frame 0 of video"):
        dataset[0]


def test_build_dataset_from_config(videos) -> None:
    root, records = videos
    cfg = Config(data=DataConfig(root=str(root), input_size=(64, 48), frame_offsets=(0,)))
    codec = build_codec(cfg.data)
    train = build_dataset(cfg, "train", records, codec=codec)
    assert train.train and len(train) == 3 and train.codec is codec
    assert train[0]["frames"].shape == (1, 3, 64, 48)
    assert train[0]["heatmaps"].shape == (17, 16, 12)
    assert not build_dataset(cfg, "val", records).train


def test_without_a_codec_samples_have_keypoints_and_weights_but_no_heatmaps(videos) -> None:
    """Coordinate heads and evaluation get keypoints and weights only; the weights are
    the codec's (annotated and inside the crop) whether or not heatmaps are made."""
    root, records = videos
    cfg = Config(data=DataConfig(root=str(root), input_size=(64, 48), frame_offsets=(0,)))
    plain = build_dataset(cfg, "val", records)
    coded = build_dataset(cfg, "val", records, codec=build_codec(cfg.data))
    assert plain.codec is None and len(plain) == len(coded) > 0
    for index in range(len(plain)):
        sample, reference = plain[index], coded[index]
        assert "heatmaps" not in sample and "heatmaps" in reference
        torch.testing.assert_close(sample["keypoints"], reference["keypoints"])
        torch.testing.assert_close(sample["target_weight"], reference["target_weight"])
        assert sample["target_weight"].dtype == torch.float32
    with pytest.raises(ValueError, match="split"):
        build_dataset(cfg, "test", records)
