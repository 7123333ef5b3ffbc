import numpy as np
import pytest

from vidpose.data.skeleton import POSETRACK
from vidpose.inference.tracker import PoseTracker, box_iou, pose_oks

SIGMAS = np.asarray(POSETRACK.sigmas)


def person(centre_x: float, centre_y: float = 100.0, height: float = 80.0):
    """A box and a simple pose (joints spread over the box) centred at the point."""
    width = height / 2
    box = np.array([centre_x - width / 2, centre_y - height / 2, width, height])
    rows = np.linspace(-0.45, 0.45, 17) * height
    cols = np.where(np.arange(17) % 2 == 0, -0.2, 0.2) * width
    return box, np.stack([centre_x + cols, centre_y + rows], axis=1)


def test_box_iou_known_values():
    boxes = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [20, 20, 5, 5]], dtype=float)
    iou = box_iou(boxes, boxes)
    np.testing.assert_allclose(np.diag(iou), 1.0)
    assert iou[0, 1] == pytest.approx(50 / 150)
    assert iou[0, 2] == 0.0


def test_oks_is_one_for_identical_poses_and_falls_with_distance():
    _, points = person(100)
    valid = np.ones((1, 17), bool)
    same = pose_oks(points[None], points[None], valid, valid, np.array([3200.0]), SIGMAS)
    shifted = pose_oks(points[None] + 5, points[None], valid, valid, np.array([3200.0]), SIGMAS)
    far = pose_oks(points[None] + 50, points[None], valid, valid, np.array([3200.0]), SIGMAS)
    assert same[0, 0] == pytest.approx(1.0)
    assert 1.0 > shifted[0, 0] > far[0, 0] >= 0.0
    none_valid = pose_oks(points[None], points[None], ~valid, valid, np.array([3200.0]), SIGMAS)
    assert none_valid[0, 0] == 0.0


@pytest.mark.parametrize("with_pose", [True, False], ids=["iou+oks", "iou-only"])
def test_ids_stay_stable_when_two_people_cross(with_pose):
    # A walks right, B walks left on the same line, 6 px a frame; between frames 20
    # and 21 they pass through each other. Matching each track to the nearest last
    # position would swap them there; the velocity prediction must not.
    # Detections come in a random order each frame, as from a detector.
    rng = np.random.default_rng(0)
    tracker = PoseTracker(sigmas=SIGMAS)
    identity_of = {}
    for frame in range(41):
        people = [person(40 + 6 * frame), person(283 - 6 * frame)]
        order = rng.permutation(2)
        boxes = np.stack([people[i][0] for i in order])
        poses = np.stack([people[i][1] for i in order]) if with_pose else None
        ids = tracker.update(frame, boxes, poses)
        for slot, walker in enumerate(order):
            identity_of.setdefault(walker, ids[slot])
            assert ids[slot] == identity_of[walker], f"identity switch at frame {frame}"
    assert sorted(identity_of.values()) == [0, 1]


def test_track_survives_a_gap_within_patience_and_ends_after_it():
    tracker = PoseTracker(sigmas=SIGMAS, patience=3)
    box, pose = person(100)
    assert tracker.update(0, box[None], pose[None]).tolist() == [0]
    # occluded for 3 frames (1, 2, 3): still the same person at frame 4
    for frame in (1, 2, 3):
        assert tracker.update(frame, np.zeros((0, 4))).tolist() == []
    assert tracker.update(4, box[None], pose[None]).tolist() == [0]
    # now gone for 4 frames (5..8): a new id at frame 9, never a reused one
    for frame in (5, 6, 7, 8):
        tracker.update(frame, np.zeros((0, 4)))
    assert tracker.update(9, box[None], pose[None]).tolist() == [1]


def test_new_people_get_new_ids_and_ids_are_unique_per_frame():
    tracker = PoseTracker(sigmas=SIGMAS)
    box_a, _ = person(50)
    box_b, _ = person(200)
    box_c, _ = person(350)
    assert tracker.update(0, np.stack([box_a, box_b])).tolist() == [0, 1]
    ids = tracker.update(1, np.stack([box_c, box_b, box_a]))
    assert ids.tolist() == [2, 1, 0]


def test_bad_input_is_rejected_with_a_clear_message():
    tracker = PoseTracker(sigmas=SIGMAS)
    box, pose = person(50)
    tracker.update(5, box[None])
    with pytest.raises(ValueError, match="increasing order: got 5 after 5"):
        tracker.update(5, box[None])
    with pytest.raises(
        ValueError, match=r"keypoints: expected shape \[1, 17, 2\], got \[1, 5, 2\]"
    ):
        tracker.update(6, box[None], pose[None, :5])
