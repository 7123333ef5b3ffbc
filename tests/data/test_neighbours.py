"""Own-box crops (``data.neighbour_boxes: own``): each frame of a clip is cropped around
the person's own box in it (annotated, interpolated, held, or matched by IoU, else the
key box), with the clip's one random scale, rotation, flip and colour."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from vidpose.codecs.heatmap import HeatmapCodec
from vidpose.data.clips import ClipDataset
from vidpose.data.neighbours import TrackBoxes, boxes_by_overlap, match_boxes
from vidpose.data.records import FrameRecord, PersonAnnotation, VideoRecord
from vidpose.data.skeleton import POSETRACK
from vidpose.data.transforms import IMAGENET_MEAN, IMAGENET_STD, Augmentation

WIDTH, HEIGHT = 200, 100
INPUT = (64, 48)
FRAMES = 6
STEP = 12.0  # the person walks right this many pixels per frame
STILL = Augmentation(
    scale_factor=0.0, rotation_factor=0.0, flip_prob=0.0, half_body_prob=0.0, color_jitter=0.0
)


def person_box(index: int) -> np.ndarray:
    return np.array([20.0 + STEP * index, 20.0, 40.0, 60.0])


def nose(index: int) -> np.ndarray:
    """The red dot the person carries: a fixed point of its box."""
    x, y, w, h = person_box(index)
    return np.array([x + 0.6 * w, y + 0.25 * h])


def keypoints(index: int) -> np.ndarray:
    points = np.zeros((17, 3))
    rng = np.random.default_rng(0)
    points[:, :2] = person_box(index)[:2] + rng.uniform(0.1, 0.9, (17, 2)) * [40.0, 60.0]
    points[0, :2] = nose(index)
    points[:, 2] = 1
    return points


@pytest.fixture(scope="module")
def walking(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[VideoRecord]]:
    """Frames 0-5 of one person walking right; frame 2 is unlabeled (its box must be
    interpolated); a second person (track 1) is annotated in frame 1 only."""
    root = tmp_path_factory.mktemp("walking")
    folder = root / "images" / "000002_mpii_test"
    folder.mkdir(parents=True)
    frames = []
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    for index in range(FRAMES):
        image = np.full((HEIGHT, WIDTH, 3), 40, dtype=np.uint8)
        x, y = nose(index)
        image[(cols - x) ** 2 + (rows - y) ** 2 <= 3.0**2] = (255, 40, 40)
        Image.fromarray(image).save(folder / f"{index:06d}.png")
        labeled = index != 2
        persons = []
        if labeled:
            persons.append(
                PersonAnnotation(track_id=0, bbox=person_box(index), keypoints=keypoints(index))
            )
        if index == 1:
            persons.append(
                PersonAnnotation(
                    track_id=1, bbox=np.array([150.0, 10.0, 30.0, 50.0]), keypoints=keypoints(1)
                )
            )
        frames.append(
            FrameRecord(
                video="000002_mpii_test",
                frame_index=index,
                image_id=10000020000 + index,
                image_path=f"images/000002_mpii_test/{index:06d}.png",
                is_labeled=labeled,
                num_frames=FRAMES,
                persons=persons,
            )
        )
    return root, [VideoRecord(name="000002_mpii_test", frames=frames)]


def dataset(walking, **kwargs) -> ClipDataset:
    root, records = walking
    options = {"train": True, "augmentation": STILL, "neighbour_boxes": "own"} | kwargs
    return ClipDataset(
        records,
        root,
        frame_offsets=(-1, 0, 1),
        input_size=INPUT,
        codec=HeatmapCodec(input_size=INPUT, heatmap_size=(16, 12), sigma=1.0),
        skeleton=POSETRACK,
        **options,
    )


def red_centroids(frames: torch.Tensor) -> np.ndarray:
    """[T, 2] x, y of the red dot in each normalised crop [T, 3, H, W]."""
    pixels = (frames.numpy().transpose(0, 2, 3, 1) * IMAGENET_STD + IMAGENET_MEAN) * 255
    rows, cols = np.mgrid[0 : pixels.shape[1], 0 : pixels.shape[2]]
    centroids = []
    for crop in pixels:
        mass = np.clip(crop[..., 0] - crop[..., 1] - 60, 0, None)  # red over the grey
        centroids.append([(mass * cols).sum() / mass.sum(), (mass * rows).sum() / mass.sum()])
    return np.array(centroids)


def sample_of(data: ClipDataset, frame: int, track: int = 0) -> dict:
    for index in range(len(data)):
        video, key, item = (int(v) for v in data._samples[index])
        person = data.videos[video].frames[key].persons[item]
        if key == frame and person.track_id == track:
            return data[index]
    raise AssertionError(f"no sample for frame {frame}, track {track}")


def test_track_boxes_are_annotated_interpolated_or_held(walking) -> None:
    video = walking[1][0]
    tracks = TrackBoxes(video, lambda person: person.bbox)
    box, how = tracks.box(0, 3)
    assert how == "annotated" and np.array_equal(box, person_box(3))
    box, how = tracks.box(0, 2)  # unlabeled: half way between frames 1 and 3
    assert how == "interpolated"
    np.testing.assert_allclose(box, person_box(2))
    box, how = tracks.box(1, 4)  # track 1 exists in frame 1 only
    assert how == "held" and np.array_equal(box, [150.0, 10.0, 30.0, 50.0])
    assert tracks.box(7, 2) is None


def test_each_frame_is_cropped_around_its_own_box(walking) -> None:
    own = sample_of(dataset(walking), frame=3)  # neighbour 2 is unlabeled: interpolated
    key = sample_of(dataset(walking, neighbour_boxes="key"), frame=3)
    np.testing.assert_allclose(own["frame_boxes"].numpy(), [person_box(i) for i in (2, 3, 4)])
    assert own["frame_indices"].tolist() == [2, 3, 4]
    # the dot moves with the person: with own boxes it sits at the same crop pixel in
    # every frame, where the key frame's warped nose says; with the key box it moves
    centroids = red_centroids(own["frames"])
    np.testing.assert_allclose(centroids, np.repeat(centroids[1:2], 3, axis=0), atol=0.05)
    np.testing.assert_allclose(centroids[1], own["keypoints"][0].numpy(), atol=0.5)
    drift = red_centroids(key["frames"])[:, 0] - centroids[:, 0]
    pixels_per_step = STEP * INPUT[1] / float(key["scale"][0])
    np.testing.assert_allclose(drift, [-pixels_per_step, 0, pixels_per_step], atol=0.1)
    # the key frame's crop, target and geometry are the key-box sample's
    assert torch.equal(own["frames"][1], key["frames"][1])
    assert torch.equal(own["heatmaps"], key["heatmaps"])
    assert torch.equal(own["affine"], key["affine"])
    assert torch.equal(key["frame_boxes"], key["box"].repeat(3, 1))


def test_augmentation_is_the_same_for_every_frame_of_the_clip(walking) -> None:
    strong = Augmentation(
        scale_factor=0.25, rotation_factor=30, rotation_prob=1.0, flip_prob=0.5,
        half_body_prob=0.0, color_jitter=0.0,
    )  # fmt: skip
    data = dataset(walking, augmentation=strong, seed=5)
    flips = set()
    for index in range(len(data)):
        sample = data[index]
        if sample["frame_index"] in (0, FRAMES - 1) or sample["track_id"] != 0:
            continue  # clamped clips repeat the edge frame
        flips.add(sample["flipped"])
        assert sample["rotation"] != 0.0
        # the same scale, rotation and flip around each frame's own box: the dot, a
        # fixed point of the box, lands on the same crop pixel in all three frames
        centroids = red_centroids(sample["frames"])
        np.testing.assert_allclose(centroids, np.repeat(centroids[1:2], 3, axis=0), atol=0.1)
        np.testing.assert_allclose(centroids[1], sample["keypoints"][0].numpy(), atol=0.6)
    assert flips == {False, True}


def test_half_body_crops_follow_each_frames_own_box(walking) -> None:
    half = Augmentation(
        scale_factor=0.0, rotation_factor=0.0, flip_prob=0.0, half_body_prob=1.0, color_jitter=0.0
    )
    sample = sample_of(dataset(walking, augmentation=half), frame=3)
    assert not torch.equal(sample["box"], sample["frame_boxes"][1])  # the half-body box
    centroids = red_centroids(sample["frames"])
    np.testing.assert_allclose(centroids, np.repeat(centroids[1:2], 3, axis=0), atol=0.1)


def test_a_track_absent_around_the_key_frame_holds_its_box(walking) -> None:
    # track 1 exists in frame 1 only: its neighbours 0 and 2 hold the frame-1 box
    sample = sample_of(dataset(walking), frame=1, track=1)
    np.testing.assert_allclose(sample["frame_boxes"].numpy(), [[150.0, 10.0, 30.0, 50.0]] * 3)


def test_given_boxes_are_matched_by_overlap_else_the_key_box(walking) -> None:
    root, records = walking
    # detections without identities; frame 3 has no detection near the person, frame 1
    # has the person's box and a far one
    boxes = {
        10000020001: [person_box(1) + [1, 0, 0, 0], np.array([150.0, 10.0, 30.0, 50.0])],
        10000020002: [person_box(2)],
        10000020003: [np.array([150.0, 10.0, 30.0, 50.0])],
    }
    given = {
        image: [SimpleNamespace(bbox=box, score=0.9, track_id=None) for box in entries]
        for image, entries in boxes.items()
    }
    data = dataset(walking, train=False, boxes=given, labeled_only=False)
    sample = next(data[i] for i in range(len(data)) if data[i]["frame_index"] == 2)
    np.testing.assert_allclose(
        sample["frame_boxes"].numpy(), [person_box(1) + [1, 0, 0, 0], person_box(2), person_box(2)]
    )


def test_overlap_matching_is_one_to_one_with_a_floor() -> None:
    key = np.array([[0.0, 0, 10, 20], [8.0, 0, 10, 20]])
    candidates = np.array([[7.0, 0, 10, 20], [1.0, 0, 10, 20], [100.0, 0, 10, 20]])
    assert match_boxes(key, candidates).tolist() == [1, 0]
    assert match_boxes(key, candidates[2:]).tolist() == [-1, -1]
    boxes, found = boxes_by_overlap(key, [candidates[:1], None, candidates[2:]], key_position=1)
    # position 0: only one box, assigned to the person it overlaps more
    np.testing.assert_array_equal(boxes[:, 0], [key[0], candidates[0]])
    np.testing.assert_array_equal(found, [[False, True, False], [True, True, False]])
    np.testing.assert_array_equal(boxes[:, 2], key)  # nothing overlaps: the key boxes


def test_a_person_without_a_track_id_falls_back_to_the_key_box(walking) -> None:
    """No identity (track id -1, e.g. COCO-style ground truth): no neighbour box can be
    looked up, so every frame is cropped with the key box (DiffPose's crop)."""
    root, records = walking
    anonymous = [
        replace(
            video,
            frames=[
                replace(frame, persons=[replace(p, track_id=-1) for p in frame.persons])
                for frame in video.frames
            ],
        )
        for video in records
    ]
    data = dataset((root, anonymous))
    sample = next(data[i] for i in range(len(data)) if data[i]["frame_index"] == 3)
    np.testing.assert_allclose(sample["frame_boxes"].numpy(), [person_box(3)] * 3)


def test_evaluation_clips_use_own_boxes_and_clamp_at_the_ends(walking) -> None:
    """Ground-truth evaluation (no augmentation) crops by identity as training does; the
    first frame's clip repeats frame 0 with its own box."""
    data = dataset(walking, train=False)
    sample = sample_of(data, frame=3)
    np.testing.assert_allclose(sample["frame_boxes"].numpy(), [person_box(i) for i in (2, 3, 4)])
    first = sample_of(data, frame=0)
    assert first["frame_indices"].tolist() == [0, 0, 1]
    np.testing.assert_allclose(first["frame_boxes"].numpy(), [person_box(i) for i in (0, 0, 1)])
    # a person-frame has one crop in every clip that holds it (the token cache's
    # premise): frame 3 as key frame and as frame 4's neighbour, frame 4 the other way
    following = sample_of(data, frame=4)
    assert torch.equal(following["frames"][0], sample["frames"][1])
    assert torch.equal(following["frames"][1], sample["frames"][2])
