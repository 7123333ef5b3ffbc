"""MOTA (poseval) and keypoint HOTA (PoseTrack21 kit): hand-worked cases.

Persons A and B carry all 15 scored joints; head size 30 (conftest).
"""

import math

import numpy as np
import pytest

NAME = "000001_mpii_test"


def points(base_x: float, frame: int, scored: list[int], shift: float = 0.0) -> dict:
    """15 joints spread around (base_x, 100), drifting 3 px per frame."""
    return {
        slot: (base_x + 10.0 * k + shift, 100.0 + 5.0 * k + 3.0 * frame)
        for k, slot in enumerate(scored)
    }


def two_people(pt, num_frames: int) -> dict:
    frames = [
        [pt.gt_person(0, points(100, f, pt.SCORED)), pt.gt_person(1, points(500, f, pt.SCORED))]
        for f in range(num_frames)
    ]
    return pt.video_document(NAME, frames)


def evaluate(pt, tmp_path, gt, frames, mode="official", **options):
    pred = pt.predictions_document(gt, frames)
    return pt.evaluate_documents(
        tmp_path, {NAME: gt}, {NAME: pred}, tracking=True, tracking_mode=mode, **options
    )


def values(report, metric):
    return np.array(list(report.metrics[metric].per_joint.values()))


@pytest.mark.parametrize("mode", ["official", "corrected"])
def test_ground_truth_as_predictions_tracks_perfectly(pt, tmp_path, mode):
    gt = pt.random_ground_truth(np.random.default_rng(3))
    pred = {name: pt.gt_as_predictions(document) for name, document in gt.items()}
    report = pt.evaluate_documents(tmp_path, gt, pred, tracking=True, tracking_mode=mode)
    for metric in ("MOTA", "MOTP", "Prec", "Rec", "HOTA", "DetA", "AssA", "LocA"):
        assert report.metrics[metric].groups == pytest.approx(
            dict.fromkeys(report.metrics[metric].groups, 100.0)
        ), metric


def test_identity_switch_lowers_mota_and_assa(pt, tmp_path):
    gt = two_people(pt, 4)
    frames = [
        [
            pt.pred_person(10 if f < 2 else 11, points(100, f, pt.SCORED)),
            pt.pred_person(11 if f < 2 else 10, points(500, f, pt.SCORED)),
        ]
        for f in range(4)
    ]
    corrected = evaluate(pt, tmp_path, gt, frames, mode="corrected")
    official = evaluate(pt, tmp_path, gt, frames, mode="official")
    # Frame 2: A's last hypothesis 10 now sits on B (too far): A -> 11, B -> 10, two
    # switches per joint; frame 3 continues. Corrected: 8 objects -> MOTA = 1 - 2/8.
    assert values(corrected, "MOTA") == pytest.approx(75.0)
    # Official skips the last frame: 6 objects, 2 switches -> MOTA = 1 - 2/6.
    assert values(official, "MOTA") == pytest.approx(100 * (1 - 2 / 6))
    # HOTA: every joint detected exactly (DetA 1). Each (gt, pred) id pair matched 2 of
    # 4 frames: A = 2 / (4 + 4 - 2) = 1/3 for all 8 true positives -> AssA 1/3,
    # HOTA = sqrt(1 x 1/3).
    assert values(corrected, "DetA") == pytest.approx(100.0)
    assert values(corrected, "AssA") == pytest.approx(100 / 3)
    assert corrected.metrics["HOTA"].total == pytest.approx(100 * math.sqrt(1 / 3))

    no_switch = [[pt.pred_person(10, points(100, f, pt.SCORED)),
                  pt.pred_person(11, points(500, f, pt.SCORED))] for f in range(4)]  # fmt: skip
    clean = evaluate(pt, tmp_path, gt, no_switch, mode="corrected")
    assert clean.metrics["MOTA"].total == pytest.approx(100.0)
    assert clean.metrics["AssA"].total == pytest.approx(100.0)


def test_official_quirks_frame_without_predictions_and_skipped_last_frame(pt, tmp_path):
    gt = two_people(pt, 3)
    tracked = [pt.pred_person(10, points(100, 0, pt.SCORED)),
               pt.pred_person(11, points(500, 0, pt.SCORED))]  # fmt: skip
    frames = [
        tracked,
        [],  # no predictions in frame 1
        [pt.pred_person(10, points(100, 2, pt.SCORED)),
         pt.pred_person(11, points(500, 2, pt.SCORED))],
    ]  # fmt: skip
    official = evaluate(pt, tmp_path, gt, frames, mode="official")
    corrected = evaluate(pt, tmp_path, gt, frames, mode="corrected")
    # Official, per joint: frame 2 skipped; frame 0: 2 objects, 2 matches; frame 1: one
    # placeholder object, 1 miss, 1 false positive. MOTA = 1 - (1 + 1) / 3,
    # precision = 2 / (2 + 1), recall = 2 / 3.
    assert values(official, "MOTA") == pytest.approx(100 / 3)
    assert values(official, "Prec") == pytest.approx(200 / 3)
    assert values(official, "Rec") == pytest.approx(200 / 3)
    # Corrected: 6 objects, 2 misses (frame 1), no false positive, no switch (frame 2
    # continues frame 0's matches). MOTA = 1 - 2/6, precision 1, recall 4/6.
    assert values(corrected, "MOTA") == pytest.approx(200 / 3)
    assert values(corrected, "Prec") == pytest.approx(100.0)
    assert values(corrected, "Rec") == pytest.approx(200 / 3)
    # HOTA: 4 true positives per joint. A's id pair matched 2 of 3 frames, the predicted
    # id seen twice: A = 2 / (3 + 2 - 2) -> AssA 2/3 in both modes. FN: the kit adds the
    # whole sequence's ground-truth joints (6) for the empty frame, corrected adds the
    # frame's (2): DetA = 4 / (4 + 6) vs 4 / (4 + 2).
    assert values(official, "AssA") == pytest.approx(200 / 3)
    assert values(official, "DetA") == pytest.approx(40.0)
    assert values(corrected, "DetA") == pytest.approx(200 / 3)
    assert official.metrics["HOTA"].total == pytest.approx(100 * math.sqrt(0.4 * 2 / 3))
    assert corrected.metrics["HOTA"].total == pytest.approx(200 / 3)


def test_official_mode_ignores_the_last_frame(pt, tmp_path):
    gt = two_people(pt, 3)
    frames = [
        [pt.pred_person(10, points(100, f, pt.SCORED)),
         pt.pred_person(11, points(500, f, pt.SCORED))]
        for f in range(3)
    ]  # fmt: skip
    frames[2].append(pt.pred_person(12, points(900, 2, pt.SCORED)))  # a false positive
    official = evaluate(pt, tmp_path, gt, frames, mode="official")
    corrected = evaluate(pt, tmp_path, gt, frames, mode="corrected")
    assert values(official, "MOTA") == pytest.approx(100.0)
    # 6 objects, 1 false positive per joint -> MOTA = 1 - 1/6.
    assert values(corrected, "MOTA") == pytest.approx(100 * (1 - 1 / 6))


def test_frame_emptied_by_ignore_regions_counts_a_placeholder_in_official_mode(pt, tmp_path):
    gt_frames = [
        [pt.gt_person(0, points(100, f, pt.SCORED)), pt.gt_person(1, points(500, f, pt.SCORED))]
        for f in range(3)
    ]
    everything = [(0, 0), (2000, 0), (2000, 2000), (0, 2000)]
    gt = pt.video_document(NAME, gt_frames, ignore={1: [everything]})
    frames = [
        [pt.pred_person(10, points(100, f, pt.SCORED)),
         pt.pred_person(11, points(500, f, pt.SCORED))]
        for f in range(3)
    ]  # fmt: skip
    official = evaluate(pt, tmp_path, gt, frames, mode="official")
    corrected = evaluate(pt, tmp_path, gt, frames, mode="corrected")
    # Frame 1 keeps no ground truth (and no prediction). Official: frames 0 and 1, frame
    # 1 a placeholder miss + false positive -> MOTA = 1 - 2 / (2 + 1). Corrected: frame
    # 1 contributes nothing, frames 0 and 2 are perfect.
    assert values(official, "MOTA") == pytest.approx(100 / 3)
    assert values(corrected, "MOTA") == pytest.approx(100.0)


def test_mota_matches_within_half_a_head_size(pt, tmp_path):
    # Head size 30 (conftest): half a head size is 15 px. Offsets from the ground truth:
    # 14.9 px, 15.1 px, 15 px exactly (9-12-15 triangle), 15.1 px along a diagonal.
    offsets = {0: (14.9, 0.0), 1: (0.0, 15.1), 2: (9.0, 12.0), 5: (9.06, 12.08)}
    truth = {slot: (100.0 + 50 * k, 200.0) for k, slot in enumerate(offsets)}
    moved = {slot: (x + offsets[slot][0], y + offsets[slot][1]) for slot, (x, y) in truth.items()}
    gt = pt.video_document(NAME, [[pt.gt_person(0, truth)]])
    report = evaluate(pt, tmp_path, gt, [[pt.pred_person(7, moved)]], mode="corrected")
    mota = dict(zip(pt.SCORED, values(report, "MOTA"), strict=True))
    # poseval hands motmetrics the distance only where match = dist <= 0.5, NaN elsewhere.
    # A match: 1 object, 1 match -> MOTA 100. No match: 1 miss + 1 false positive for 1
    # object -> MOTA 1 - 2 = -100.
    assert [mota[slot] for slot in offsets] == pytest.approx([100.0, -100.0, 100.0, -100.0])
    motp = dict(zip(pt.SCORED, values(report, "MOTP"), strict=True))
    assert motp[0] == pytest.approx(100 * (1 - 14.9 / 30)) and motp[2] == pytest.approx(50.0)


def test_motp_and_hota_of_a_constant_offset(pt, tmp_path):
    gt = two_people(pt, 3)
    frames = [
        [pt.pred_person(10, points(100, f, pt.SCORED, shift=3.0)),
         pt.pred_person(11, points(500, f, pt.SCORED, shift=3.0))]
        for f in range(3)
    ]  # fmt: skip
    report = evaluate(pt, tmp_path, gt, frames, mode="corrected")
    # Every joint 3 px off: d = 3 / 30 = 0.1 -> MOTP = 100 (1 - 0.1).
    assert values(report, "MOTP") == pytest.approx(90.0)
    # Similarity 1 - 0.1 / 0.5001 = 0.80004: a true positive for the 16 alphas up to
    # 0.80, nothing above. DetA = AssA = HOTA = 1 for 16 alphas, 0 for 3 -> 16/19.
    # LocA is 0.80004 where there are true positives and 1 (the kit's 1e-10 / 1e-10)
    # where there are none -> (16 x 0.80004 + 3) / 19.
    similarity = 1 - 0.1 / 0.5001
    assert values(report, "HOTA") == pytest.approx(100 * 16 / 19)
    assert values(report, "DetA") == pytest.approx(100 * 16 / 19)
    assert values(report, "LocA") == pytest.approx(100 * (16 * similarity + 3) / 19)
