"""Evaluation boxes: ground truth, detection files, enlargement."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vidpose.data.boxes import enlarge_box, ground_truth_boxes, load_boxes, read_detections
from vidpose.data.json_fields import AnnotationError
from vidpose.data.records import FrameRecord, PersonAnnotation, VideoRecord


def test_enlarge_box_reaches_the_aspect_about_the_centre():
    tall = np.array([10.0, 20.0, 30.0, 120.0])
    out = enlarge_box(tall, padding=1.25, aspect=0.75)
    np.testing.assert_allclose(out[2] / out[3], 0.75)
    np.testing.assert_allclose(out[3], 120 * 1.25)  # the long side only gets the padding
    np.testing.assert_allclose(out[:2] + out[2:] / 2, [25.0, 80.0])  # same centre

    wide = np.array([0.0, 0.0, 200.0, 50.0])
    out = enlarge_box(wide, padding=1.0, aspect=0.75)
    np.testing.assert_allclose(out, [0.0, 25 - 200 / 0.75 / 2, 200.0, 200 / 0.75])

    batch = np.stack([tall, wide])[None]  # [1, 2, 4]
    out = enlarge_box(batch)
    assert out.shape == (1, 2, 4)
    np.testing.assert_allclose(out[0, 0], enlarge_box(tall))
    assert np.all(out[..., 2] >= batch[..., 2] * 1.25 - 1e-9)  # never crops the person
    assert np.all(out[..., 3] >= batch[..., 3] * 1.25 - 1e-9)


def test_enlarge_box_rejects_bad_arguments():
    with pytest.raises(ValueError, match="must be positive"):
        enlarge_box(np.zeros(4), padding=0)
    with pytest.raises(ValueError, match=r"expected boxes \[..., 4\]"):
        enlarge_box(np.zeros(3))


def write_detections(tmp_path, detections) -> str:
    path = tmp_path / "detections.json"
    path.write_text(json.dumps(detections))
    return str(path)


def test_read_detections_threshold_category_and_order(tmp_path):
    path = write_detections(
        tmp_path,
        [
            {"image_id": 7, "category_id": 1, "bbox": [0, 0, 10, 20], "score": 0.4},
            {"image_id": 7, "category_id": 1, "bbox": [5, 5, 10, 20], "score": 0.9},
            {"image_id": 7, "category_id": 2, "bbox": [5, 5, 10, 20], "score": 0.99},
            {"image_id": 8, "bbox": [1, 1, 2, 2], "score": 0.2},
        ],
    )
    boxes = read_detections(path, score_threshold=0.3)
    assert sorted(boxes) == [7]
    assert [box.score for box in boxes[7]] == [0.9, 0.4]
    np.testing.assert_array_equal(boxes[7][0].bbox, [5, 5, 10, 20])
    assert boxes[7][0].track_id is None
    everything = read_detections(path, category_id=None)
    assert len(everything[7]) == 3 and len(everything[8]) == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            {"annotations": []},
            "the top level is an object {'annotations': []}, expected a list of detections",
        ),
        (
            [{"image_id": 3, "score": 0.5}],
            "detection #0 (image 3): 'bbox' is missing, expected a list of 4 numbers",
        ),
        (
            [{"image_id": 3, "bbox": [0, 0, -1, 4], "score": 0.5}],
            "detection #0 (image 3): 'bbox' is [0.0, 0.0, -1.0, 4.0] with a negative size",
        ),
        (
            [{"image_id": 3, "bbox": [0, 0, 1, 4], "score": "high"}],
            "'score' is text 'high', expected a number",
        ),
        (
            [{"bbox": [0, 0, 1, 4], "score": 1}],
            "detection #0: 'image_id' is missing, expected an integer",
        ),
    ],
)
def test_malformed_detections(tmp_path, content, message):
    path = write_detections(tmp_path, content)
    with pytest.raises(AnnotationError) as error:
        read_detections(path)
    assert str(error.value).startswith(path + ": ")
    assert message in str(error.value)


def video_with_people() -> VideoRecord:
    def person(track: int, bbox) -> PersonAnnotation:
        return PersonAnnotation(
            track_id=track, bbox=np.array(bbox, float), keypoints=np.zeros((17, 3))
        )

    frames = [
        FrameRecord(
            "v",
            0,
            100,
            "a.jpg",
            True,
            2,
            persons=[person(0, [1, 2, 3, 4]), person(1, [0, 0, 0, 0])],
        ),
        FrameRecord("v", 1, 101, "b.jpg", False, 2),
    ]
    return VideoRecord("v", frames)


def test_ground_truth_boxes():
    boxes = ground_truth_boxes([video_with_people()])
    assert sorted(boxes) == [100, 101]
    assert boxes[101] == []
    (box,) = boxes[100]  # the zero-size box cannot be cropped and is left out
    assert box.track_id == 0 and box.score == 1.0
    np.testing.assert_array_equal(box.bbox, [1, 2, 3, 4])


def test_load_boxes(tmp_path):
    video = video_with_people()
    assert len(load_boxes("gt", [video])[100]) == 1
    path = write_detections(tmp_path, [{"image_id": 101, "bbox": [0, 0, 5, 5], "score": 0.5}])
    boxes = load_boxes(path, [video])
    assert boxes[100] == [] and len(boxes[101]) == 1
    other = write_detections(tmp_path, [{"image_id": 5, "bbox": [0, 0, 5, 5], "score": 0.5}])
    with pytest.raises(AnnotationError, match="none of the 1 image ids with detections"):
        load_boxes(other, [video])
