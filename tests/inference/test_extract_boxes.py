import json

import numpy as np
import pytest

from vidpose.data.json_fields import AnnotationError
from vidpose.inference.person_boxes import (
    DetectorBoxes,
    SinglePersonBoxes,
    detection_file_for,
    posetrack_video_key,
    read_detections,
)

FRAME = np.zeros((100, 200, 3), np.uint8)


def boxes_of(table, frame_index):
    boxes, scores = table.boxes(frame_index, FRAME)
    return boxes.tolist(), scores.tolist()


def test_coco_results_keyed_by_frame_index(tmp_path):
    path = tmp_path / "dets.json"
    detections = [
        {"image_id": 2, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.9},
        {"image_id": 0, "category_id": 1, "bbox": [5, 6, 7, 8], "score": 0.8},
        {"image_id": 0, "category_id": 3, "bbox": [9, 9, 9, 9], "score": 0.99},  # a car
        {"image_id": 2, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.1},
    ]
    path.write_text(json.dumps(detections))
    table = read_detections(path, score_threshold=0.5)
    assert boxes_of(table, 0) == ([[5, 6, 7, 8]], [0.8])
    assert boxes_of(table, 1) == ([], [])
    assert boxes_of(table, 2) == ([[1, 2, 3, 4]], [0.9])


def test_coco_results_with_posetrack_ids_are_filtered_to_the_video(tmp_path):
    # PoseWarper-style file: the boxes of several PoseTrack videos in one list.
    first = 10000 * posetrack_video_key("012834_mpii_test")
    other = 10000 * posetrack_video_key("000001_bonn_train")
    assert first == 10128340000 and other == 20000010000
    path = tmp_path / "dets.json"
    path.write_text(
        json.dumps(
            [
                {"image_id": first + 3, "category_id": 1, "bbox": [1, 1, 10, 20], "score": 1.0},
                {"image_id": other + 3, "category_id": 1, "bbox": [2, 2, 10, 20], "score": 1.0},
            ]
        )
    )
    table = read_detections(path, video="012834_mpii_test")
    assert boxes_of(table, 3) == ([[1, 1, 10, 20]], [1.0])
    with pytest.raises(AnnotationError, match="2 PoseTrack videos.*'my_clip'"):
        read_detections(path, video="my_clip")
    with pytest.raises(AnnotationError, match="no detections for video '000002_mpii_test'"):
        read_detections(path, video="000002_mpii_test")


def test_mot_text_frames_are_one_based(tmp_path):
    path = tmp_path / "video.txt"
    path.write_text("1,7,10,20,30,40,0.9,-1,-1,-1\n3,8,1,2,3,4,-1\n\n")
    table = read_detections(path)
    assert boxes_of(table, 0) == ([[10, 20, 30, 40]], [0.9])
    assert boxes_of(table, 2) == ([[1, 2, 3, 4]], [1.0])  # -1 = no confidence given


def test_mot_errors_name_the_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("1,1,10,20,30,40,0.9\n0,1,1,2,3,4,1\n")
    with pytest.raises(AnnotationError, match=r"bad.txt: line 2: frame '0', expected an integer"):
        read_detections(path)
    path.write_text("1,1,10,20\n")
    with pytest.raises(AnnotationError, match="line 1: 4 fields, expected at least 6"):
        read_detections(path)


def test_posetrack_annotation_file_gives_ground_truth_boxes(tmp_path):
    path = tmp_path / "gt.json"
    images = [{"id": 10128340000 + i, "file_name": f"v/{i:06d}.jpg"} for i in range(3)]
    annotations = [
        {"image_id": 10128340001, "bbox": [1, 2, 3, 4], "track_id": 0},
        {"image_id": 10128340001, "track_id": 1},  # no box: nothing to crop
    ]
    path.write_text(json.dumps({"images": images, "annotations": annotations}))
    table = read_detections(path)
    assert boxes_of(table, 1) == ([[1, 2, 3, 4]], [1.0])
    annotations.append({"image_id": 5, "bbox": [0, 0, 1, 1]})
    path.write_text(json.dumps({"images": images, "annotations": annotations}))
    with pytest.raises(AnnotationError, match=r"annotations\[2\]: 'image_id' is 5"):
        read_detections(path)


def test_detections_folder_has_one_file_per_video(tmp_path):
    (tmp_path / "walk.txt").write_text("1,1,0,0,5,5,1\n")
    assert detection_file_for(tmp_path, "walk") == tmp_path / "walk.txt"
    with pytest.raises(FileNotFoundError, match="no detections file for video 'run'"):
        detection_file_for(tmp_path, "run")


def test_detector_hook_filters_and_sorts():
    def detector(frame):
        assert frame.shape == (100, 200, 3)
        return [[0, 0, 10, 10], [5, 5, 20, 20], [1, 1, 0, 5]], [0.6, 0.9, 0.99]

    source = DetectorBoxes(detector, score_threshold=0.5)
    boxes, scores = source.boxes(0, FRAME)
    assert boxes.tolist() == [[5, 5, 20, 20], [0, 0, 10, 10]]  # best first, empty box dropped
    assert scores.tolist() == [0.9, 0.6]
    with pytest.raises(ValueError, match="frame 4: returned 1 boxes and 2 scores"):
        DetectorBoxes(lambda frame: ([[0, 0, 1, 1]], [1, 1])).boxes(4, FRAME)


def test_single_person_starts_with_the_frame_then_follows_the_keypoints():
    source = SinglePersonBoxes(keypoint_threshold=0.5, min_keypoints=4, enlarge=1.5, reset_after=2)
    boxes, _ = source.boxes(0, FRAME)
    np.testing.assert_allclose(boxes, [[-0.5, -0.5, 200, 100]])
    points = np.array([[40.0, 20.0], [60.0, 20.0], [40.0, 60.0], [60.0, 60.0]] * 4 + [[0, 0]])
    scores = np.full(17, 0.9)
    scores[16] = 0.2  # an unconfident joint far away does not move the box
    source.observe(0, points[None], scores[None])
    boxes, _ = source.boxes(1, FRAME)
    np.testing.assert_allclose(boxes, [[35, 10, 30, 60]])  # 20 x 40 grown by 1.5
    # Low confidence: the box stays where it was, then resets to the whole frame.
    source.observe(1, points[None] + 50, np.full((1, 17), 0.1))
    np.testing.assert_allclose(source.boxes(2, FRAME)[0], [[35, 10, 30, 60]])
    source.observe(2, points[None] + 50, np.full((1, 17), 0.1))
    np.testing.assert_allclose(source.boxes(3, FRAME)[0], [[-0.5, -0.5, 200, 100]])


def test_single_person_box_is_clipped_to_the_frame():
    source = SinglePersonBoxes(keypoint_threshold=0.5, min_keypoints=2, enlarge=1.0)
    source.boxes(0, FRAME)
    points = np.tile([[150.0, 50.0], [260.0, 90.0]], (9, 1))[:17]
    source.observe(0, points[None], np.ones((1, 17)))
    box = source.boxes(1, FRAME)[0][0]
    np.testing.assert_allclose(box, [150, 50, 49.5, 40])
