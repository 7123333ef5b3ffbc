"""Which box each frame of an extraction clip is cropped around (``ClipBoxes``), and
the predictor's own-box crops: each frame around the person's own box in it, found by
overlap, else the key box (DiffPose's crop, the fallback)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from vidpose.inference.clip_boxes import ClipBoxes, boxes_known_ahead
from vidpose.inference.person_boxes import DetectionTable

from .conftest import crop_intensities

WIDTH, HEIGHT = 160, 96


def box(frame: int) -> np.ndarray:
    """The walker's box in ``frame``: 6 px to the right per frame."""
    return np.array([10.0 + 6 * frame, 16.0, 24.0, 64.0])


class Ring:
    """Frames 0..9, black (``ClipBoxes`` hands them to the box source only)."""

    def __getitem__(self, index: int):
        return SimpleNamespace(array=np.zeros((HEIGHT, WIDTH, 3), np.uint8))


class AskedSource:
    """A box source that records the frames it is asked, in order."""

    def __init__(self, table: DetectionTable, ahead: bool) -> None:
        self.table = table
        self.boxes_known_ahead = ahead
        self.asked: list[int] = []

    def boxes(self, frame_index: int, frame: np.ndarray):
        self.asked.append(frame_index)
        return self.table.boxes(frame_index, frame)

    def observe(self, frame_index, keypoints, scores) -> None:
        pass


def table(frames: int = 10, missing: int | None = None) -> DetectionTable:
    """The walker in every frame (but ``missing``, where a far box stands instead)."""
    entries = {}
    for frame in range(frames):
        boxes = [box(frame), np.array([130.0, 10.0, 20.0, 40.0])]  # and a bystander
        if frame == missing:
            boxes = boxes[1:]
        entries[frame] = (np.array(boxes), np.ones(len(boxes)))
    return DetectionTable(entries)


def test_neighbours_take_their_own_boxes_else_the_key_box() -> None:
    clip_boxes = ClipBoxes(table(missing=5), (-1, 0, 1), own=True)
    assert clip_boxes.ahead
    key_boxes, _ = clip_boxes.key_boxes(3, last=9, ring=Ring())
    boxes = clip_boxes.clip_boxes([2, 3, 4], key_boxes)
    np.testing.assert_array_equal(boxes[0], [box(2), box(3), box(4)])
    np.testing.assert_array_equal(boxes[1], [[130.0, 10.0, 20.0, 40.0]] * 3)
    # frame 5 lost the walker: the neighbour is cropped with the key box
    key_boxes, _ = clip_boxes.key_boxes(4, last=9, ring=Ring())
    boxes = clip_boxes.clip_boxes([3, 4, 5], key_boxes)
    np.testing.assert_array_equal(boxes[0], [box(3), box(4), box(4)])


def test_boxes_are_asked_once_in_order_and_only_the_clip_span_is_kept() -> None:
    source = AskedSource(table(), ahead=True)
    clip_boxes = ClipBoxes(source, (-1, 0, 1), own=True)
    for key in range(10):
        clip_boxes.key_boxes(key, last=9, ring=Ring())
    assert source.asked == list(range(10))
    assert clip_boxes.high_water == 3  # t - 1, t, t + 1


def test_a_source_that_needs_the_previous_poses_is_not_asked_ahead() -> None:
    """Its future neighbours are cropped with the key box; the past ones keep theirs."""
    source = AskedSource(table(), ahead=False)
    assert not boxes_known_ahead(source)
    clip_boxes = ClipBoxes(source, (-1, 0, 1), own=True)
    clip_boxes.key_boxes(2, last=9, ring=Ring())
    key_boxes, _ = clip_boxes.key_boxes(3, last=9, ring=Ring())
    assert source.asked == [0, 1, 2, 3]
    boxes = clip_boxes.clip_boxes([2, 3, 4], key_boxes)
    np.testing.assert_array_equal(boxes[0], [box(2), box(3), box(3)])


def test_key_box_models_ask_each_frame_when_it_is_the_key_frame() -> None:
    source = AskedSource(table(), ahead=True)
    clip_boxes = ClipBoxes(source, (-1, 0, 1), own=False)
    key_boxes, _ = clip_boxes.key_boxes(0, last=9, ring=Ring())
    assert source.asked == [0]
    assert clip_boxes.clip_boxes([0, 0, 1], key_boxes) is None


@pytest.mark.parametrize("own", [True, False])
def test_the_predictor_crops_each_frame_around_the_box_it_is_given(make_predictor, own) -> None:
    """A bright square at the centre of the walker's box: own-box crops see it at the
    crop centre in every frame, key-box crops only in the key frame."""
    predictor = make_predictor(neighbour_boxes="own")
    frames = []
    for frame in (2, 3, 4):
        image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        x, y, w, h = box(frame)
        cx, cy = int(x + w / 2), int(y + h / 2)
        image[cy - 2 : cy + 3, cx - 2 : cx + 3] = 255
        frames.append(image)
    key_boxes = box(3)[None]
    clip_boxes = np.stack([box(2), box(3), box(4)])[None] if own else None
    clips = predictor.crop_clips(frames, key_boxes, clip_boxes)
    bright = crop_intensities(clips)[0].numpy() > 200
    assert bright.tolist() == ([True, True, True] if own else [False, True, False])
