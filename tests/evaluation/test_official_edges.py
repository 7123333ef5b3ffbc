"""Where the official tools disagree, refuse, or leave a number undefined (issue #22).

Each case is hand-made; its comment derives what poseval (protocol posetrack18, and
MOTA always) and the PoseTrack21 kit (protocol posetrack21, and HOTA always) do with it
from their code. Head size is 30 in every test file (conftest): a joint matches within
15 px. Slot 0 is the nose.
"""

import json
import math

import numpy as np
import pytest

from vidpose.cli import main
from vidpose.evaluation import EvaluationInputError

NAME = "000001_mpii_test"
NOSE = 0
NAN, INF = float("nan"), float("inf")


def documents(pt, gt_frames, pred_frames, **options):
    """({name: ground truth}, {name: predictions}) of one video."""
    gt = pt.video_document(NAME, gt_frames, **options)
    return {NAME: gt}, {NAME: pt.predictions_document(gt, pred_frames)}


def points(base_x: float, frame: int, scored: list[int], shift: float = 0.0) -> dict:
    """15 joints spread around (base_x, 100), drifting 3 px per frame (as test_tracking)."""
    return {
        slot: (base_x + 10.0 * k + shift, 100.0 + 5.0 * k + 3.0 * frame)
        for k, slot in enumerate(scored)
    }


def values(report, metric):
    return np.array(list(report.metrics[metric].per_joint.values()))


def warnings_about(report, text):
    return [warning for warning in report.warnings if text in warning]


# ----------------------------------------------------------------------------- 1. categories


def test_prediction_files_without_categories_follow_the_protocol(pt, tmp_path):
    gt = pt.random_ground_truth(np.random.default_rng(7), num_videos=2, num_frames=3)
    pred = {name: pt.gt_as_predictions(document) for name, document in gt.items()}
    for document in pred.values():
        del document["categories"]  # the PoseTrack21 submission format has none
    # The kit never reads 'categories' (datasets/posetrack.py reads images, annotations):
    # the file is evaluated, ground truth as predictions scores 100, nothing to warn.
    report = pt.evaluate_documents(tmp_path, gt, pred, protocol="posetrack21")
    assert report.ap.total == pytest.approx(100.0)
    assert report.warnings == []
    # poseval maps joints by categories[0].keypoints (convert.py Video.from_new) and
    # fails without it: refused, naming the file.
    with pytest.raises(EvaluationInputError, match="'categories' is missing") as caught:
        pt.evaluate_documents(tmp_path, gt, pred, protocol="posetrack18")
    assert f"{sorted(gt)[0]}.json" in str(caught.value)
    # With tracking, MOTA is poseval's: computed anyway (joints by slot), with a warning.
    tracked = pt.evaluate_documents(tmp_path, gt, pred, protocol="posetrack21", tracking=True)
    assert tracked.metrics["MOTA"].total == pytest.approx(100.0)
    (warning,) = warnings_about(tracked, "'categories'")
    assert warning.startswith("Prediction files without 'categories': 2 (")
    assert "poseval rejects them" in warning
    assert f"{sorted(gt)[1]}.json: 1" in warning


def test_ground_truth_without_categories_is_read_under_posetrack21(pt, tmp_path):
    gt = pt.random_ground_truth(np.random.default_rng(8), num_videos=1, num_frames=2)
    pred = {name: pt.gt_as_predictions(document) for name, document in gt.items()}
    for document in gt.values():
        del document["categories"]
    report = pt.evaluate_documents(tmp_path, gt, pred, protocol="posetrack21")
    assert report.ap.total == pytest.approx(100.0)


@pytest.mark.parametrize("protocol", ["posetrack18", "posetrack21"])
def test_categories_naming_other_joints_are_refused_by_both_protocols(pt, tmp_path, protocol):
    gt = pt.random_ground_truth(np.random.default_rng(12), num_videos=1, num_frames=2)
    pred = {name: pt.gt_as_predictions(document) for name, document in gt.items()}
    names = pred[NAME]["categories"][0]["keypoints"]
    names[5], names[6] = names[6], names[5]  # shoulders swapped
    # poseval would map the joints by these names (left and right shoulder swapped), the
    # kit would read the slots: the file means two different things, so vidpose refuses
    # it under both protocols (a decision, docs/evaluation.md).
    with pytest.raises(EvaluationInputError, match="categories\\[0\\].keypoints must be"):
        pt.evaluate_documents(tmp_path, gt, pred, protocol=protocol)


# ----------------------------------------------------------------------------- 2. NaN, inf


def test_nan_and_infinite_keypoints_follow_each_tool(pt, tmp_path):
    gt, pred = documents(
        pt,
        [[pt.gt_person(0, {NOSE: (100, 100)})]],
        [
            [
                pt.pred_person(0, {NOSE: (100, 100)}, 0.4),  # exact: the true positive
                pt.pred_person(1, {NOSE: (NAN, NAN)}, 0.9),
                pt.pred_person(2, {NOSE: (INF, 100)}, 0.8),
                pt.pred_person(3, {NOSE: (-INF, 100)}, 0.7),
            ]
        ],
    )
    old = pt.evaluate_documents(tmp_path, gt, pred, protocol="posetrack18")
    new = pt.evaluate_documents(tmp_path, gt, pred, protocol="posetrack21")
    # poseval: convert.py to_old drops a point only when x == 0, y == 0 and v == 0, so
    # all three are joints; their distances (NaN, inf, inf) are not <= 0.5: PCKh 0, the
    # persons stay unassigned, three false positives. Ranked 0.9 F, 0.8 F, 0.7 F, 0.4 T:
    # precision at the true positive 1/4 -> AP 25.
    assert old.ap.per_joint["nose"] == pytest.approx(25.0)
    # The kit: a joint exists iff x > 0 and y > 0. NaN > 0 and -inf > 0 are False: absent.
    # (inf, 100) exists, lies infinitely far: a false positive. Ranked 0.8 F, 0.4 T -> 50.
    assert new.ap.per_joint["nose"] == pytest.approx(50.0)
    for report, tool in ((old, "poseval keeps such a joint"), (new, "x > 0 and y > 0")):
        (warning,) = warnings_about(report, "NaN or infinite")
        assert warning.startswith("Prediction joints with NaN or infinite keypoint values")
        assert ": 3 (" in warning and f"{NAME}.json: 3)" in warning
        assert tool in warning


@pytest.mark.parametrize("protocol", ["posetrack18", "posetrack21"])
def test_nan_score_ranks_first_in_both_tools(pt, tmp_path, protocol):
    gt, pred = documents(
        pt,
        [[pt.gt_person(0, {NOSE: (100, 100)})]],
        [[pt.pred_person(0, {NOSE: (100, 100)}, 0.5), pt.pred_person(1, {NOSE: (400, 100)}, NAN)]],
    )
    report = pt.evaluate_documents(tmp_path, gt, pred, protocol=protocol)
    # np.argsort sorts NaN last, so argsort()[::-1] (computeRPC, compute_rpc) ranks the
    # NaN-scored false positive first: F, T -> precision 1/2 at the only recall step -> 50.
    assert report.ap.per_joint["nose"] == pytest.approx(50.0)
    assert warnings_about(report, "NaN or infinite keypoint values or scores: 1 (")


def test_person_with_only_nan_joints_is_kept_by_the_kit_ignore_step(pt, tmp_path):
    scored = pt.SCORED
    far_away = [(2000, 2000), (2100, 2000), (2100, 2100), (2000, 2100)]
    gt, pred = documents(
        pt,
        [[pt.gt_person(0, points(100, 0, scored))], [pt.gt_person(0, points(100, 1, scored))]],
        [
            [pt.pred_person(10, points(100, 0, scored))],
            [pt.pred_person(10, dict.fromkeys(scored, (NAN, NAN)))],
        ],
        ignore={1: [far_away]},
    )
    report = pt.evaluate_documents(tmp_path, gt, pred, tracking=True, tracking_mode="official")
    # The kit, frame 1 (it has an ignore polygon): no point is inside; a person is dropped
    # when every joint has x <= 0 and y <= 0 -- NaN <= 0 is False, so the prediction
    # stays. The frame then has a prediction: the per-joint Hungarian runs, matches
    # nothing (similarity 0), FN += the frame's 1 joint. Per joint TP 1, FN 1, FP 0 ->
    # DetA 1/2 at every alpha. (Dropping the person would leave a frame without
    # predictions, where official mode adds the whole sequence's 2 joints: DetA 1/3.)
    assert values(report, "DetA") == pytest.approx(50.0)


# ----------------------------------------------------------------------------- 3. track ids


def test_track_ids_from_10000_poseval_refuses(pt, tmp_path):
    gt = pt.random_ground_truth(np.random.default_rng(9), num_videos=1, num_frames=3)
    pred = {name: pt.gt_as_predictions(document) for name, document in gt.items()}
    for document in pred.values():
        for annotation in document["annotations"]:
            annotation["track_id"] += 10000
    # poseval load_data_dir: assert(track_id < MAX_TRACK_ID) with MAX_TRACK_ID = 10000,
    # for every predicted person of every frame.
    with pytest.raises(EvaluationInputError, match=">= 10000") as caught:
        pt.evaluate_documents(tmp_path, gt, pred, protocol="posetrack18")
    assert f"{NAME}.json: 9 annotations" in str(caught.value)
    # The kit relabels ids through an array of max id + 1 entries: 10002 is fine.
    new = pt.evaluate_documents(tmp_path, gt, pred, protocol="posetrack21")
    assert new.ap.total == pytest.approx(100.0) and new.warnings == []
    # MOTA follows poseval, which would refuse: computed anyway, with a warning.
    tracked = pt.evaluate_documents(tmp_path, gt, pred, protocol="posetrack21", tracking=True)
    assert tracked.metrics["MOTA"].total == pytest.approx(100.0)
    (warning,) = warnings_about(tracked, ">= 10000")
    assert warning.startswith("Prediction track ids >= 10000: 9 (")
    assert "poseval refuses" in warning


def float_track_ids(document, frames=None):
    """Write the track ids of the given frames (default all) as JSON floats: 3 -> 3.0."""
    image_ids = [image["id"] for image in document["images"]]
    chosen = set(image_ids if frames is None else [image_ids[f] for f in frames])
    for annotation in document["annotations"]:
        if annotation["image_id"] in chosen:
            annotation["track_id"] = float(annotation["track_id"])


def test_float_track_ids_the_kit_refuses(pt, tmp_path):
    gt = pt.random_ground_truth(np.random.default_rng(10), num_videos=1, num_frames=3)
    pred = {name: pt.gt_as_predictions(document) for name, document in gt.items()}
    float_track_ids(pred[NAME])
    # poseval: 3.0 < 10000 passes its assertion, and motmetrics compares ids by value
    # (3.0 == 3): accepted, ground truth as predictions scores 100.
    old = pt.evaluate_documents(tmp_path, gt, pred, protocol="posetrack18")
    assert old.ap.total == pytest.approx(100.0) and old.warnings == []
    # The kit: get_preprocessed_seq_data builds np.ones(np.max(ids) + 1) -> a float size
    # raises TypeError. Refused, naming the file and the count.
    with pytest.raises(EvaluationInputError, match="not integers >= 0") as caught:
        pt.evaluate_documents(tmp_path, gt, pred, protocol="posetrack21")
    assert f"{NAME}.json: 9 track ids" in str(caught.value) and "e.g. 0.0" in str(caught.value)
    # HOTA is the kit's: under posetrack18 it is computed anyway (ids compare by value),
    # with a warning.
    tracked = pt.evaluate_documents(tmp_path, gt, pred, protocol="posetrack18", tracking=True)
    assert tracked.metrics["HOTA"].total == pytest.approx(100.0)
    (warning,) = warnings_about(tracked, "track ids")
    assert "written as floats (3.0) or negative: 9 (" in warning
    assert "PoseTrack21 kit refuses" in warning


def test_float_track_ids_outside_labeled_frames_do_not_matter_to_the_kit(pt, tmp_path):
    gt = pt.random_ground_truth(np.random.default_rng(11), num_videos=1, num_frames=3)
    for image in gt[NAME]["images"][2:]:
        image["is_labeled"] = False  # the kit evaluates frames 0 and 1 only
    pred = {name: pt.gt_as_predictions(document) for name, document in gt.items()}
    float_track_ids(pred[NAME], frames=[2])
    # remove_empty_frames drops frame 2 before the ids are relabelled: no TypeError.
    report = pt.evaluate_documents(tmp_path, gt, pred, protocol="posetrack21")
    assert report.ap.total == pytest.approx(100.0)


def test_an_id_written_as_3_and_3_0_in_one_frame_repeats(pt, tmp_path):
    gt, pred = documents(
        pt,
        [[pt.gt_person(0, {NOSE: (100, 100)})]],
        [[pt.pred_person(3, {NOSE: (100, 100)}), pt.pred_person(3, {NOSE: (300, 100)})]],
    )
    pred[NAME]["annotations"][1]["track_id"] = 3.0
    # poseval: np.unique([3, 3.0]) has one element -> "Non-unique tracklet IDs".
    with pytest.raises(EvaluationInputError, match="track id 3 appears more than once"):
        pt.evaluate_documents(tmp_path, gt, pred, protocol="posetrack18")


# ----------------------------------------------------------------------------- 4. MOTP


def test_official_motp_counts_every_pair_within_half_a_head_size(pt, tmp_path):
    scored = pt.SCORED
    # A at x = 100, B at x = 111; each predicted 3 px to the right (d = 0.1).
    gt_frames = [
        [pt.gt_person(0, points(100, f, scored)), pt.gt_person(1, points(111, f, scored))]
        for f in range(3)
    ]
    pred_frames = [
        [pt.pred_person(10, points(100, f, scored, 3.0)),
         pt.pred_person(11, points(111, f, scored, 3.0))]
        for f in range(3)
    ]  # fmt: skip
    gt, pred = documents(pt, gt_frames, pred_frames)
    official = pt.evaluate_documents(tmp_path, gt, pred, tracking=True, tracking_mode="official")
    corrected = pt.evaluate_documents(tmp_path, gt, pred, tracking=True, tracking_mode="corrected")
    # Per joint and frame, distances: A-10 3 px, B-11 3 px, B-10 8 px, A-11 14 px, all
    # <= 15 px, so poseval hands motmetrics all four (NaN only beyond 0.5). The matching
    # is A-10, B-11. motmetrics >= 1.2 records a RAW event per finite pair (28/30 in
    # all) and a MATCH per match (6/30); poseval sums events['D']: 34/30 per frame, over
    # frames 0 and 1 (the last is skipped) 68/30, for 4 matches:
    # MOTP = 1 - (68/30) / 4 = 13/30.
    assert values(official, "MOTP") == pytest.approx(100 * 13 / 30)
    # Matches only: 1 - 0.1.
    assert values(corrected, "MOTP") == pytest.approx(90.0)
    assert values(official, "MOTA") == pytest.approx(100.0)
    assert "MOTP as poseval prints it" in official.format_tables()
    assert "MOTP of the matches only" in corrected.format_tables()
    assert corrected.to_dict()["motp_definition"] == corrected.motp_definition


def test_official_motp_repeats_distances_of_switch_events(pt, tmp_path):
    scored = pt.SCORED

    def person(track, base_x, frame, shift=0.0):
        maker = pt.pred_person if track >= 10 else pt.gt_person
        return maker(track, points(base_x, frame, scored, shift))

    # Persons 400 px apart (no pair across persons within 15 px); predictions 3 px off.
    A, B, C = 100, 500, 900
    gt_frames = [
        [person(0, A, 0), person(1, B, 0)],
        [person(0, A, 1), person(1, B, 1)],
        [person(0, A, 2), person(1, B, 2), person(2, C, 2)],
        [person(0, A, 3), person(1, B, 3), person(2, C, 3)],
    ]
    pred_frames = [
        [person(10, A, 0, 3), person(11, B, 0, 3)],
        [person(11, A, 1, 3), person(12, B, 1, 3)],
        [person(11, A, 2, 3), person(12, B, 2, 3), person(10, C, 2, 3)],
        [person(11, A, 3, 3), person(12, B, 3, 3), person(10, C, 3, 3)],
    ]
    gt, pred = documents(pt, gt_frames, pred_frames)
    official = pt.evaluate_documents(tmp_path, gt, pred, tracking=True, tracking_mode="official")
    corrected = pt.evaluate_documents(tmp_path, gt, pred, tracking=True, tracking_mode="corrected")
    # motmetrics' update (d = 0.1 for every match, frame 3 skipped by poseval):
    # frame 0: A-10, B-11 assigned. RAW 0.2 + MATCH 0.2.
    # frame 1: 10 is gone, 11 sits on A: A-11 is a SWITCH; 11 was last assigned to B
    #   (res_m) -> TRANSFER. B-12 is a SWITCH to a hypothesis never seen -> ASCEND.
    #   RAW 0.2 + SWITCH 0.2 + TRANSFER 0.1 + ASCEND 0.1.
    # frame 2: A-11, B-12 continue (MATCH, no further event); C-10 is assigned, 10 was
    #   last assigned to A -> TRANSFER, and C was never matched -> MIGRATE.
    #   RAW 0.3 + MATCH 0.3 + TRANSFER 0.1 + MIGRATE 0.1.
    # Sum 1.8 over 7 matches (MATCH + SWITCH): MOTP = 1 - 1.8 / 7.
    assert values(official, "MOTP") == pytest.approx(100 * (1 - 1.8 / 7))
    # MOTA: 7 objects, 2 switches, no miss or false positive.
    assert values(official, "MOTA") == pytest.approx(100 * (1 - 2 / 7))
    # Corrected: every match 0.1 away; frame 3 counts: 10 objects, 2 switches.
    assert values(corrected, "MOTP") == pytest.approx(90.0)
    assert values(corrected, "MOTA") == pytest.approx(80.0)


# ----------------------------------------------------------------------------- 5. ties


def test_ties_between_true_and_false_positives_are_counted_and_bounded(pt, tmp_path):
    gt, pred = documents(
        pt,
        [[pt.gt_person(0, {NOSE: (100, 100)}), pt.gt_person(1, {NOSE: (300, 100)})]],
        [
            [
                pt.pred_person(0, {NOSE: (100, 100)}, 0.5),  # true positive (g0)
                pt.pred_person(1, {NOSE: (700, 100)}, 0.5),  # false positive
                pt.pred_person(2, {NOSE: (300, 100)}, 0.5),  # true positive (g1)
            ]
        ],
    )
    report = pt.evaluate_documents(tmp_path, gt, pred)
    # vidpose ranks equal scores in reverse pooling order: T (p2), F, T (p0) ->
    # precision 1, 1/2, 2/3 -> monotone 1, 2/3, 2/3 -> AP = 1/2 x 1 + 1/2 x 2/3 = 5/6.
    assert report.ap.per_joint["nose"] == pytest.approx(100 * 5 / 6)
    # np.argsort may give any order of the three: T, T, F -> AP 1; F, T, T -> 2/3.
    (warning,) = warnings_about(report, "tied in score")
    assert "of the same joint: 3 (" in warning and f"{NAME}.json: 3)" in warning
    assert "for 1 of 15 joints: up to 33.3 AP apart (nose)" in warning
    # Total = mean of 15 joints, the 14 others 0 (no prediction): 2/3/15 .. 1/15.
    assert f"Total between {100 * 2 / 3 / 15:.2f} and {100 / 15:.2f}" in warning


def test_ties_of_one_outcome_do_not_warn(pt, tmp_path):
    gt, pred = documents(
        pt,
        [[pt.gt_person(0, {NOSE: (100, 100)}), pt.gt_person(1, {NOSE: (300, 100)})]],
        [[pt.pred_person(0, {NOSE: (100, 100)}, 0.5), pt.pred_person(1, {NOSE: (300, 100)}, 0.5),
          pt.pred_person(2, {NOSE: (700, 100)}, 0.2)]],
    )  # fmt: skip
    report = pt.evaluate_documents(tmp_path, gt, pred)
    # The tie holds two true positives: any order gives T, T, F -> AP 100.
    assert report.ap.per_joint["nose"] == pytest.approx(100.0)
    assert report.warnings == []


def test_a_long_tie_ranks_in_reverse_pooling_order(pt, tmp_path):
    # 20 predictions of one score: np.argsort's order of them is not defined for an
    # array this long (on numpy's SIMD sorts it is not the input order); vidpose's is.
    persons = [pt.pred_person(0, {NOSE: (100, 100)}, 0.5)]  # the true positive, first
    persons += [pt.pred_person(k, {NOSE: (400 + 40 * k, 100)}, 0.5) for k in range(1, 20)]
    gt, pred = documents(pt, [[pt.gt_person(0, {NOSE: (100, 100)})]], [persons])
    report = pt.evaluate_documents(tmp_path, gt, pred)
    # Reverse pooling order: 19 false positives, then the true positive -> AP 1/20.
    assert report.ap.per_joint["nose"] == pytest.approx(5.0)
    (warning,) = warnings_about(report, "tied in score")
    assert "of the same joint: 20 (" in warning and "up to 95.0 AP apart" in warning


def test_no_scores_tie_every_prediction(pt, tmp_path):
    gt, pred = documents(
        pt,
        [[pt.gt_person(0, {NOSE: (100, 100)})]],
        [[pt.pred_person(0, {NOSE: (100, 100)}), pt.pred_person(1, {NOSE: (400, 100)})]],
    )
    for annotation in pred[NAME]["annotations"]:
        del annotation["scores"]  # both tools then score every joint -9999
    report = pt.evaluate_documents(tmp_path, gt, pred)
    assert warnings_about(report, "of the same joint: 2 (")
    assert any("without 'scores'" in note for note in report.notes)


# ----------------------------------------------------------------------------- 6. kit stops


def test_labeled_frame_emptied_by_ignore_regions_has_no_official_hota_penalty(pt, tmp_path):
    scored = pt.SCORED
    gt_frames = [
        [pt.gt_person(0, points(100, f, scored)), pt.gt_person(1, points(500, f, scored))]
        for f in range(3)
    ]
    everything = [(0, 0), (2000, 0), (2000, 2000), (0, 2000)]
    gt = {NAME: pt.video_document(NAME, gt_frames, ignore={1: [everything]})}
    pred = {NAME: pt.gt_as_predictions(gt[NAME])}
    official = pt.evaluate_documents(tmp_path, gt, pred, tracking=True, tracking_mode="official")
    # The kit, frame 1: every ground-truth point is inside the polygon, the frame's
    # ground truth becomes np.array([]) (1-d) and _calculate_pckh fails on
    # gt_dets_t[:, :, 0] (IndexError): no official HOTA for this file. The kit's rule for
    # a frame without ground truth (FP += the sequence's predicted joints, here 4 per
    # joint) would give DetA 4 / (4 + 4) and HOTA sqrt(1/2) = 70.7, a number no official
    # run reports. vidpose counts the frame's own predictions (none are left): 100.
    assert official.metrics["HOTA"].total == pytest.approx(100.0)
    (warning,) = warnings_about(official, "no ground-truth person left")
    assert "ignore regions: 1 (" in warning and f"{NAME}.json: 1)" in warning
    assert "IndexError" in warning and "no HOTA" in warning
    # Under protocol posetrack21 the kit's mAP stops there too.
    mean_ap = pt.evaluate_documents(tmp_path, gt, pred, protocol="posetrack21")
    assert "no mAP" in warnings_about(mean_ap, "no ground-truth person left")[0]
    # poseval evaluates the frame (placeholder, test_tracking): no warning when neither
    # the kit's mAP nor an official HOTA is asked for.
    corrected = pt.evaluate_documents(tmp_path, gt, pred, tracking=True, tracking_mode="corrected")
    assert corrected.warnings == []


def test_labeled_frame_with_predictions_only_stops_the_kits_map(pt, tmp_path):
    gt, pred = documents(
        pt,
        [[pt.gt_person(0, {NOSE: (100, 100)})], []],
        [[pt.pred_person(0, {NOSE: (100, 100)})], [pt.pred_person(0, {NOSE: (100, 100)})]],
        labeled=[True, True],
    )
    # PosemAP.eval_sequence, frame 1 (no ground truth, one prediction) reads pred_scores
    # [pre_idx, :] -- an undefined name: NameError. vidpose counts a false positive:
    # ranked 1.0, 1.0 (tie, reverse order): F, T -> AP 50.
    new = pt.evaluate_documents(tmp_path, gt, pred, protocol="posetrack21")
    assert new.ap.per_joint["nose"] == pytest.approx(50.0)
    (warning,) = warnings_about(new, "predictions but no ground-truth person")
    assert f"{NAME}.json: 1)" in warning and "NameError" in warning
    # poseval evaluates frames with ground-truth persons only: frame 1 is not evaluated.
    old = pt.evaluate_documents(tmp_path, gt, pred, protocol="posetrack18")
    assert old.ap.per_joint["nose"] == pytest.approx(100.0) and old.warnings == []


# ----------------------------------------------------------------------------- the CLI


def test_cli_prints_one_line_per_warning(pt, tmp_path, capsys):
    gt, pred = documents(
        pt,
        [[pt.gt_person(0, {NOSE: (100, 100)})]],
        [[pt.pred_person(0, {NOSE: (100, 100)}, 0.5), pt.pred_person(1, {NOSE: (NAN, NAN)}, 0.5)]],
    )
    pt.save_all(tmp_path / "gt", gt)
    pt.save_all(tmp_path / "pred", pred)
    out = tmp_path / "eval.json"
    status = main(["eval", str(tmp_path / "gt"), str(tmp_path / "pred"), "--json", str(out)])
    printed = capsys.readouterr().out.splitlines()
    assert status == 0
    warnings = [line for line in printed if line.startswith("Warning: ")]
    # The NaN joint, and the tie at 0.5 between the true positive and the NaN joint
    # (poseval keeps it, a false positive).
    assert len(warnings) == 2
    assert all(str(tmp_path / "pred" / f"{NAME}.json") in line for line in warnings)
    written = json.loads(out.read_text())
    assert [f"Warning: {w}" for w in written["warnings"]] == warnings
    assert math.isclose(written["metrics"]["AP"]["per_joint"]["nose"], 50.0)
