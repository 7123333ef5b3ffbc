"""Pose drawing reads limbs and colours from the skeleton."""

from __future__ import annotations

import numpy as np
import pytest

from vidpose.data.draw import draw_person, draw_pose, track_colour
from vidpose.data.records import PersonAnnotation
from vidpose.data.skeleton import COCO, POSETRACK


def square_pose() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.uniform(20, 180, (17, 2))


def test_draws_confident_joints_in_their_colours():
    image = np.zeros((200, 200, 3), dtype=np.uint8)
    keypoints = square_pose()
    scores = np.full(17, 0.9)
    scores[9] = 0.1  # below the threshold and not present: not drawn
    out = draw_pose(image, keypoints, scores, POSETRACK, radius=4, line_width=2)
    assert out is not image and image.max() == 0  # the input is untouched
    x, y = np.round(keypoints[0]).astype(int)
    assert tuple(out[y, x]) == POSETRACK.joint_colors[0]
    x, y = np.round(keypoints[9]).astype(int)
    assert out[y - 1 : y + 2, x - 1 : x + 2].max() == 0 or any(
        9 in limb for limb in POSETRACK.limbs
    )  # nothing drawn for the joint itself (a limb of another joint may pass by)


def test_present_unconfident_joints_are_rings():
    image = np.zeros((100, 100, 3), dtype=np.uint8)
    keypoints = np.full((17, 2), 50.0)
    scores = np.zeros(17)
    present = np.zeros(17, dtype=bool)
    present[5] = True
    out = draw_pose(image, keypoints, scores, POSETRACK, present=present, radius=6, line_width=2)
    assert out[50, 50].max() == 0  # a ring: the centre stays empty
    assert (
        tuple(out[50, 44]) == POSETRACK.joint_colors[5]
        or tuple(out[44, 50]) == (POSETRACK.joint_colors[5])
    )


def test_track_label_and_box():
    image = np.zeros((120, 160, 3), dtype=np.uint8)
    out = draw_pose(
        image, square_pose() / 2 + 30, np.ones(17), COCO, track_id=7, box=[20, 40, 80, 60]
    )
    assert tuple(out[70, 20]) == track_colour(7)  # the box's left edge
    assert track_colour(7) != track_colour(8)


def test_shape_mismatch():
    with pytest.raises(ValueError, match=r"expected keypoints \[17, 2\] and scores \[17\]"):
        draw_pose(np.zeros((10, 10, 3), np.uint8), np.zeros((15, 2)), np.zeros(15), POSETRACK)


def test_draw_person_uses_annotation_flags():
    keypoints = np.zeros((17, 3))
    keypoints[0] = (40, 30, 1)
    keypoints[1] = (40, 60, 0)  # annotated, occluded
    person = PersonAnnotation(track_id=-1, bbox=np.array([10, 10, 60, 70.0]), keypoints=keypoints)
    out = draw_person(np.zeros((100, 100, 3), np.uint8), person, POSETRACK, radius=5, line_width=2)
    assert tuple(out[30, 40]) == POSETRACK.joint_colors[0]
    # a ring around the occluded joint: empty inside (off the thin limb through its centre)
    assert out[61, 42].max() == 0 and max(out[60, 35].max(), out[60, 45].max()) > 0
    assert tuple(out[40, 10]) == (255, 255, 255)  # box without a track colour
