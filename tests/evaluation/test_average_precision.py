"""PoseTrack mAP under both protocols: hand-worked cases and properties.

Head size is 30 in every test file (conftest), so a joint matches within 15 px.
Slots: 0 nose, 1 head_bottom, 2 head_top, 9 left_wrist, 10 right_wrist.
"""

import math

import numpy as np
import pytest

from vidpose.evaluation import voc_average_precision
from vidpose.evaluation.protocols import points_inside_polygons

PROTOCOLS = ["posetrack18", "posetrack21"]
NOSE, HEAD_BOTTOM, HEAD_TOP, LEFT_WRIST = 0, 1, 2, 9


def single_frame(pt, gt_persons, pred_persons, **options):
    """Ground truth and predictions of a one-frame video."""
    gt = pt.video_document("000001_mpii_test", [gt_persons], **options)
    return {"000001_mpii_test": gt}, {
        "000001_mpii_test": pt.predictions_document(gt, [pred_persons])
    }


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_greedy_assignment_prefers_best_pckh_over_score(pt, tmp_path, protocol):
    gt, pred = single_frame(
        pt,
        [
            pt.gt_person(0, {NOSE: (100, 100), HEAD_BOTTOM: (100, 130)}),
            pt.gt_person(1, {NOSE: (300, 100), HEAD_BOTTOM: (300, 130)}),
        ],
        [
            # p0: nose 5 px from g0, head_bottom 70 px off -> PCKh(p0, g0) = 1/2.
            pt.pred_person(5, {NOSE: (105, 100), HEAD_BOTTOM: (100, 200)}, {0: 0.9, 1: 0.3}),
            # p1: exact on g0 -> PCKh(p1, g0) = 2/2, so g0 keeps p1 and p0 is unassigned.
            pt.pred_person(6, {NOSE: (100, 100), HEAD_BOTTOM: (100, 130)}, 0.8),
            # p2: g1's joints, 0 and 5 px away -> assigned to g1.
            pt.pred_person(7, {NOSE: (300, 100), HEAD_BOTTOM: (300, 135)}, {0: 0.7, 1: 0.6}),
        ],
    )
    report = pt.evaluate_documents(tmp_path, gt, pred, protocol=protocol)
    # nose ranked: 0.9 (p0, unassigned: FP), 0.8 (TP), 0.7 (TP); 2 positives.
    # precision 0, 1/2, 2/3; recall 0, 1/2, 1; monotone precision 2/3 everywhere ->
    # AP = (1/2 - 0) * 2/3 + (1 - 1/2) * 2/3 = 2/3.
    assert report.ap.per_joint["nose"] == pytest.approx(100 * 2 / 3)
    # head_bottom ranked: 0.8 TP, 0.6 TP, 0.3 FP -> precision 1 up to recall 1 -> AP 1.
    assert report.ap.per_joint["head_bottom"] == pytest.approx(100.0)


# PCKh@0.5 at its edge. Head box (0, 0, 30, 40): diagonal 50, head size 0.6 x 50 = 30.0
# exactly, so half a head size is 15 px. Each offset (dx, dy) from the ground truth:
PCKH_EDGE = {
    NOSE: ((14.9, 0.0), True),  # 0.4967 head sizes: a match
    HEAD_BOTTOM: ((0.0, 15.1), False),  # 0.5033: no match
    HEAD_TOP: ((9.0, 12.0), True),  # sqrt(81 + 144) = 15: exactly 0.5, a match (d <= 0.5)
    5: ((8.94, 11.92), True),  # left shoulder, 14.9 px along the diagonal: a match
    6: ((9.06, 12.08), False),  # right shoulder, 15.1 px: no match
}


def pckh_edge_case(pt):
    """One person, and one prediction with the PCKH_EDGE offsets; returns (gt, pred)."""
    truth = {slot: (100.0 + 50 * k, 200.0) for k, slot in enumerate(PCKH_EDGE)}
    moved = {
        slot: (x + PCKH_EDGE[slot][0][0], y + PCKH_EDGE[slot][0][1])
        for slot, (x, y) in truth.items()
    }
    return single_frame(pt, [pt.gt_person(0, truth)], [pt.pred_person(0, moved, 0.9)])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_pckh_threshold_is_half_a_head_size(pt, tmp_path, protocol):
    gt, pred = pckh_edge_case(pt)
    report = pt.evaluate_documents(tmp_path, gt, pred, protocol=protocol)
    # Both tools: match = dist <= 0.5 with dist = ||pred - gt|| / headsize (poseval
    # assignGTmulti, the kit's _calculate_pckh). The prediction matches 3 of 5 joints, so
    # it is assigned to the person; each joint has one positive and one prediction: AP
    # 100 where it matches, 0 where it does not (a false positive, recall 0). A threshold
    # of 0.6 would match the 15.1 px joints, 0.49 miss the 14.9 px ones, "< 0.5" miss the
    # joint at exactly 15 px.
    ap = list(report.ap.per_joint.values())
    for slot, (_, matches) in PCKH_EDGE.items():
        assert ap[pt.SCORED.index(slot)] == (100.0 if matches else 0.0), slot


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_equal_pckh_goes_to_the_lowest_index(pt, tmp_path, protocol):
    gt, pred = single_frame(
        pt,
        [pt.gt_person(0, {NOSE: (100, 100)})],
        [
            pt.pred_person(0, {NOSE: (110, 100)}, 0.5),  # 10 px: PCKh 1
            pt.pred_person(1, {NOSE: (100, 100)}, 0.9),  # 0 px: PCKh 1 too, but index 1
        ],
    )
    report = pt.evaluate_documents(tmp_path, gt, pred, protocol=protocol)
    # g0 keeps p0 (lowest index among equal PCKh). Ranked: 0.9 p1 FP, 0.5 p0 TP ->
    # precision 0, 1/2; recall 0, 1 -> AP = (1 - 0) * 1/2 = 0.5.
    assert report.ap.per_joint["nose"] == pytest.approx(50.0)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_prediction_equally_close_to_two_ground_truths_keeps_the_first(pt, tmp_path, protocol):
    gt, pred = single_frame(
        pt,
        [pt.gt_person(0, {NOSE: (100, 100)}), pt.gt_person(1, {NOSE: (110, 100)})],
        [
            pt.pred_person(0, {NOSE: (105, 100)}, 0.6),  # PCKh 1 with g0 and g1: keeps g0
            pt.pred_person(1, {NOSE: (123, 100)}, 0.9),  # 23 px from g0, 13 px from g1
        ],
    )
    report = pt.evaluate_documents(tmp_path, gt, pred, protocol=protocol)
    # p0 -> g0 and p1 -> g1: both TP -> AP 100. Had the tie gone to g1, g1 would keep p0
    # (lower index), p1 would be a FP ranked first: AP = 1/2 x 1/2 = 25.
    assert report.ap.per_joint["nose"] == pytest.approx(100.0)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_ignore_regions_remove_points_strictly_inside(pt, tmp_path, protocol):
    square = [(200, 0), (400, 0), (400, 200), (200, 200)]
    g0 = {NOSE: (250, 100), HEAD_BOTTOM: (150, 100)}  # nose inside, head_bottom outside
    g1 = {NOSE: (300, 100), HEAD_BOTTOM: (300, 130)}  # entirely inside: removed
    gt, pred = single_frame(
        pt,
        [pt.gt_person(0, g0), pt.gt_person(1, g1)],
        [
            pt.pred_person(0, g0, 1.0),
            pt.pred_person(1, g1, 2.0),  # inside: removed, else 2 extra nose/head_bottom
            pt.pred_person(2, {HEAD_BOTTOM: (200, 100)}, 1.5),  # on the edge: kept, a FP
        ],
        ignore={0: [square]},
    )
    report = pt.evaluate_documents(tmp_path, gt, pred, protocol=protocol)
    # nose: every ground-truth and predicted nose is inside -> no predictions -> AP 0.
    assert report.ap.per_joint["nose"] == 0.0
    # head_bottom: 1 positive; ranked 1.5 (edge point, FP), 1.0 (p0, TP) ->
    # precision 0, 1/2; recall 0, 1 -> AP = 1 x 1/2 = 0.5.
    assert report.ap.per_joint["head_bottom"] == pytest.approx(50.0)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_equal_scores_rank_in_reverse_file_order_like_the_official_tools(pt, tmp_path, protocol):
    gt, pred = single_frame(
        pt,
        [pt.gt_person(0, {NOSE: (100, 100)})],
        [
            pt.pred_person(0, {NOSE: (100, 100)}, 0.5),  # TP
            pt.pred_person(1, {NOSE: (400, 100)}, 0.5),  # FP, same score
        ],
    )
    report = pt.evaluate_documents(tmp_path, gt, pred, protocol=protocol)
    # np.argsort(scores)[::-1] (poseval computeRPC, PoseTrack21 compute_rpc) puts the
    # later equal score first: FP then TP -> precision 0, 1/2 -> AP 0.5 (a stable
    # descending sort would give TP first and AP 1).
    assert report.ap.per_joint["nose"] == pytest.approx(50.0)


def test_joint_without_ground_truth_is_nan_in_posetrack18_and_zero_in_posetrack21(pt, tmp_path):
    gt, pred = single_frame(
        pt,
        [pt.gt_person(0, {NOSE: (100, 100)})],
        [pt.pred_person(0, {NOSE: (100, 100), LEFT_WRIST: (150, 300)}, 1.0)],
    )
    old = pt.evaluate_documents(tmp_path, gt, pred, protocol="posetrack18")
    new = pt.evaluate_documents(tmp_path, gt, pred, protocol="posetrack21")
    # left_wrist: a prediction but no positive. poseval: recall = 0 / 0 -> NaN; the kit
    # divides by max(0, 1) -> recall 0 -> AP 0.
    assert math.isnan(old.ap.per_joint["left_wrist"])
    assert new.ap.per_joint["left_wrist"] == 0.0
    # right_wrist: no prediction at all -> 0 under both (the tools' initial value).
    assert old.ap.per_joint["right_wrist"] == new.ap.per_joint["right_wrist"] == 0.0
    # Groups are plain means (NaN propagates); Total leaves NaN joints out:
    # posetrack18 Total = 100 / 14 joints; posetrack21 Total = 100 / 15 joints.
    assert math.isnan(old.ap.groups["Wri"])
    assert new.ap.groups["Wri"] == 0.0
    assert old.ap.total == pytest.approx(100 / 14)
    assert new.ap.total == pytest.approx(100 / 15)


def test_integer_only_keypoints_truncate_scores_in_posetrack21(pt, tmp_path):
    gt = pt.video_document("000001_mpii_test", [[pt.gt_person(0, {NOSE: (100, 100)})]])
    keypoints_tp = [0] * 51
    keypoints_tp[0:3] = [100, 100, 1]
    keypoints_fp = [0] * 51
    keypoints_fp[0:3] = [400, 100, 1]
    persons = [
        {"track_id": 0, "keypoints": keypoints_tp, "scores": [0.9] + [0.0] * 16},
        {"track_id": 1, "keypoints": keypoints_fp, "scores": [0.4] + [0.0] * 16},
    ]
    pred = pt.predictions_document(gt, [persons])
    old = pt.evaluate_documents(
        tmp_path, {"000001_mpii_test": gt}, {"000001_mpii_test": pred}, protocol="posetrack18"
    )
    new = pt.evaluate_documents(
        tmp_path, {"000001_mpii_test": gt}, {"000001_mpii_test": pred}, protocol="posetrack21"
    )
    # poseval: 0.9 TP before 0.4 FP -> AP 100. The kit stores the scores in an int array
    # (all keypoint numbers are JSON integers): 0.9 -> 0 and 0.4 -> 0, a tie ranked in
    # reverse order: FP, TP -> AP 50.
    assert old.ap.per_joint["nose"] == pytest.approx(100.0)
    assert new.ap.per_joint["nose"] == pytest.approx(50.0)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_ground_truth_as_predictions_scores_100_in_every_group(pt, tmp_path, protocol):
    gt = pt.random_ground_truth(np.random.default_rng(0))
    pred = {name: pt.gt_as_predictions(document) for name, document in gt.items()}
    report = pt.evaluate_documents(tmp_path, gt, pred, protocol=protocol)
    assert report.ap.groups == pytest.approx(dict.fromkeys(report.ap.groups, 100.0))


def test_protocols_agree_without_nonpositive_ground_truth_joints(pt, tmp_path):
    rng = np.random.default_rng(1)
    gt = pt.random_ground_truth(rng, num_videos=2, num_frames=5)
    # Put some head tops above the image (y < 0) and a few joints at x = 0.
    for document in gt.values():
        for annotation in document["annotations"][::2]:
            annotation["keypoints"][3 * HEAD_TOP : 3 * HEAD_TOP + 3] = [120.0, -4.0, 1.0]
        document["annotations"][1]["keypoints"][3 * LEFT_WRIST] = 0.0

    def predict(keypoints):
        moved = keypoints.copy()
        moved[:, :2] = np.maximum(moved[:, :2] + rng.normal(0, 6, (17, 2)), 1.0)
        return np.where(keypoints[:, 2:] > 0, moved, 0.0)

    pred = {name: pt.gt_as_predictions(document, predict) for name, document in gt.items()}
    for document in pred.values():
        for annotation in document["annotations"]:
            annotation["scores"] = rng.uniform(0.1, 1.0, 17).tolist()

    def ap(ground_truth, protocol):
        report = pt.evaluate_documents(tmp_path, ground_truth, pred, protocol=protocol)
        return np.array(list(report.ap.per_joint.values()))

    # With joints at x <= 0 or y <= 0: poseval counts them, the kit does not.
    assert not np.allclose(ap(gt, "posetrack18"), ap(gt, "posetrack21"))
    for document in gt.values():
        for annotation in document["annotations"]:
            keypoints = np.asarray(annotation["keypoints"]).reshape(17, 3)
            keypoints[(keypoints[:, 0] <= 0) | (keypoints[:, 1] <= 0)] = 0.0
            annotation["keypoints"] = keypoints.reshape(-1).tolist()
    assert ap(gt, "posetrack18") == pytest.approx(ap(gt, "posetrack21"), abs=1e-12)


def largest_move(gt_document, pred_document):
    """Largest distance between a ground-truth joint and its copy in the predictions."""
    gt = np.array([a["keypoints"] for a in gt_document["annotations"]]).reshape(-1, 17, 3)
    pred = np.array([a["keypoints"] for a in pred_document["annotations"]]).reshape(-1, 17, 3)
    return np.linalg.norm(gt[..., :2] - pred[..., :2], axis=-1).max()


def test_perturbing_predictions_never_raises_the_score(pt, tmp_path):
    for seed in range(8):
        rng = np.random.default_rng(seed)
        gt = pt.random_ground_truth(rng, num_videos=2, num_frames=4)
        scale = rng.uniform(1, 30)

        def perturb(keypoints, scale=scale, rng=rng):
            moved = keypoints.copy()
            moved[:, :2] += rng.normal(0, scale, (17, 2)) * (rng.random((17, 1)) < 0.5)
            return np.where(keypoints[:, 2:] > 0, moved, 0.0)

        pred = {name: pt.gt_as_predictions(document, perturb) for name, document in gt.items()}
        moved_too_far = max(largest_move(gt[name], pred[name]) for name in gt) > 15
        for protocol in PROTOCOLS:
            report = pt.evaluate_documents(tmp_path, gt, pred, protocol=protocol, tracking=True)
            # The unperturbed predictions score exactly 100 (previous test).
            for metric in ("AP", "MOTA", "HOTA"):
                assert report.metrics[metric].total <= 100.0 + 1e-9
            if moved_too_far:
                assert report.ap.total < 100.0


def test_voc_average_precision_by_hand():
    scores = np.array([0.7, 0.9, 0.8])
    labels = np.array([True, False, True])
    # Ranked 0.9 F, 0.8 T, 0.7 T: precision 0, 1/2, 2/3 -> monotone 2/3 -> AP 2/3.
    ap, precision, recall = voc_average_precision(scores, labels, 2, nan_without_positives=True)
    assert ap == pytest.approx(100 * 2 / 3)
    assert precision == pytest.approx(100 * 2 / 3) and recall == pytest.approx(100.0)
    # 4 positives: recall steps 1/4, 2/4 at precision 2/3 -> AP = 1/2 x 2/3 = 1/3.
    assert voc_average_precision(scores, labels, 4, nan_without_positives=True)[0] == (
        pytest.approx(100 / 3)
    )
    no_positives = np.array([False, False])
    assert math.isnan(
        voc_average_precision(np.ones(2), no_positives, 0, nan_without_positives=True)[0]
    )
    assert voc_average_precision(np.ones(2), no_positives, 0, nan_without_positives=False)[0] == 0
    assert voc_average_precision(np.zeros(0), np.zeros(0, bool), 3, nan_without_positives=True) == (
        0.0,
        0.0,
        0.0,
    )


def test_points_inside_polygons_is_strict_and_even_odd():
    square = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], dtype=float)
    bow_tie = np.array([[0, 0], [10, 10], [10, 0], [0, 10]], dtype=float)
    points = np.array([[5, 5], [0, 5], [10, 10], [11, 5], [5, 0], [2, 5], [5, 2]], dtype=float)
    inside_square = points_inside_polygons(points, [square])
    # centre in; left edge, corner, outside, bottom edge not; (2, 5) and (5, 2) in.
    assert inside_square.tolist() == [True, False, False, False, False, True, True]
    # Bow tie (crossing at the centre): (2, 5) is in the left lobe, (5, 2) in the bottom
    # gap between the lobes -> out; the crossing point itself is on the boundary.
    assert points_inside_polygons(points, [bow_tie]).tolist() == [
        False, False, False, False, False, True, False,
    ]  # fmt: skip
    assert not points_inside_polygons(points, [square[:2]]).any()  # degenerate: nothing
