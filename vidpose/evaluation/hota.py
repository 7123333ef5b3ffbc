"""Keypoint HOTA (DetA, AssA, HOTA, LocA) as the PoseTrack21 kit computes it.

The kit (posetrack21/trackeval/metrics/hota_pose.py, on PoseTrack21-prepared frames:
``is_labeled`` frames, joints with x > 0 and y > 0) treats every joint as its own
detection class:

- similarity of a ground-truth and a predicted joint: max(0, 1 - d / 0.5001), d the
  head-normalised distance (the kit's ``distance2sim``; 0.5001 rather than 0.5 so that
  d = 0.5 keeps a tiny positive similarity, below every threshold anyway);
- per frame and joint, one Hungarian matching maximising the total similarity
  (``linear_sum_assignment(-similarity)``, all persons of the frame);
- for each alpha in 0.05, 0.10, ..., 0.95: a matched pair with similarity >= alpha is a
  true positive; FN / FP are the ground-truth / predicted joints not matched; LocA sums
  the similarities of true positives;
- association as in TrackEval: for each (ground-truth id, predicted id), A = matches /
  (gt id joints + predicted id joints - matches); AssA = sum over true positives of A /
  TP; DetA = TP / (TP + FN + FP); HOTA = sqrt(DetA x AssA).

Sequences are combined like the kit: TP/FN/FP summed, AssA (and AssRe, AssPr, LocA)
averaged with TP weights. The Total column pools TP/FN/FP over joints (pooled DetA)
and averages each sequence's AssA over joints before the TP-weighted combination; HOTA
is recomputed per alpha from those. Reported numbers are 100 x the mean over alpha.
Scores are not used.

``mode="official"`` keeps a quirk of the kit: in a frame without predictions it adds the
whole sequence's ground-truth joint count to FN (and the sequence's predicted joints to
FP in a frame without ground truth), instead of the frame's. ``"corrected"`` adds the
frame's. A sequence without any prediction (or ground truth) is handled as the kit's
early return: all its joints are FN (FP), LocA 1; the kit then fails to combine it with
the others (array shapes differ), vidpose combines it.

A labeled frame that has ignore polygons and keeps no ground-truth person after them
stops the kit (``PreparedVideo.frames_left_without_ground_truth``), so no official run
gives a number there; official mode then adds that frame's own predicted joints to FP
(the corrected count) rather than a whole-sequence penalty no official run reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from vidpose.evaluation.mota import TrackingMode, check_tracking_mode
from vidpose.evaluation.pairs import frame_pairs
from vidpose.evaluation.protocols import PreparedVideo

# The kit's thresholds: np.arange(0.05, 0.99, 0.05), the same 19 floating values.
ALPHAS = np.arange(0.05, 0.99, 0.05)
SIMILARITY_SCALE = 0.5001
_EPS = np.finfo(float).eps


@dataclass
class HotaTable:
    """Per-alpha HOTA quantities, [A, J + 1]: J joints then the Total column.

    Attributes:
        tp, fn, fp: detection counts.
        ass_a, ass_re, ass_pr: association accuracy, recall and precision.
        loc_a: localisation accuracy.
    """

    tp: np.ndarray
    fn: np.ndarray
    fp: np.ndarray
    ass_a: np.ndarray
    ass_re: np.ndarray
    ass_pr: np.ndarray
    loc_a: np.ndarray

    @property
    def det_a(self) -> np.ndarray:
        return self.tp / np.maximum(1, self.tp + self.fn + self.fp)

    @property
    def det_re(self) -> np.ndarray:
        return self.tp / np.maximum(1, self.tp + self.fn)

    @property
    def det_pr(self) -> np.ndarray:
        return self.tp / np.maximum(1, self.tp + self.fp)

    @property
    def hota(self) -> np.ndarray:
        return np.sqrt(self.det_a * self.ass_a)


@dataclass
class HotaMetrics:
    """Reported keypoint HOTA numbers in percent, [J + 1] each (joints, then Total).

    Each is 100 x the mean over the 19 alphas of the combined table's column.
    """

    hota: np.ndarray
    det_a: np.ndarray
    ass_a: np.ndarray
    loc_a: np.ndarray
    det_re: np.ndarray
    det_pr: np.ndarray
    ass_re: np.ndarray
    ass_pr: np.ndarray
    table: HotaTable


def posetrack_hota(videos: Sequence[PreparedVideo], mode: TrackingMode = "official") -> HotaMetrics:
    """Keypoint HOTA over ``videos`` (prepared with posetrack21)."""
    check_tracking_mode(mode)
    num_joints = videos[0].gt.exists.shape[1] if videos else 0
    combined = combine_sequences([sequence_table(video, mode) for video in videos], num_joints)

    def mean_percent(values: np.ndarray) -> np.ndarray:
        return 100 * values.mean(axis=0)

    return HotaMetrics(
        hota=mean_percent(combined.hota),
        det_a=mean_percent(combined.det_a),
        ass_a=mean_percent(combined.ass_a),
        loc_a=mean_percent(combined.loc_a),
        det_re=mean_percent(combined.det_re),
        det_pr=mean_percent(combined.det_pr),
        ass_re=mean_percent(combined.ass_re),
        ass_pr=mean_percent(combined.ass_pr),
        table=combined,
    )


def sequence_table(video: PreparedVideo, mode: TrackingMode) -> HotaTable:
    """One sequence's table, with the Total column the kit appends (``compute_avg``)."""
    gt, pred = video.gt, video.pred
    num_alphas, num_joints = len(ALPHAS), gt.exists.shape[1]
    gt_joints = gt.exists.sum(axis=0)  # [J] the sequence's valid ground-truth joints
    pred_joints = pred.exists.sum(axis=0)
    zeros = np.zeros((num_alphas, num_joints))
    if len(pred) == 0 or len(gt) == 0:
        # eval_sequence's early returns: everything is FN (or FP), LocA = 1.
        fn = zeros + (gt_joints if len(pred) == 0 else 0)
        fp = zeros + (pred_joints if len(pred) and not len(gt) else 0)
        return _with_total(zeros, fn, fp, zeros, zeros, zeros, zeros + 1.0)

    pairs = frame_pairs(video)
    # distance2sim, with the kit's exact arithmetic (slope first) for bitwise-equal sims.
    similarity = np.maximum((-1 / SIMILARITY_SCALE) * pairs.distances + 1, 0)  # [Q, J]
    gt_tracks, gt_track = np.unique(gt.track_ids, return_inverse=True)
    pred_tracks, pred_track = np.unique(pred.track_ids, return_inverse=True)
    extra_fn = np.zeros(num_joints)
    extra_fp = np.zeros(num_joints)
    matched_gt, matched_pred, matched_joint, matched_similarity = [], [], [], []
    kit_stops = video.frames_left_without_ground_truth()
    for frame in range(video.num_frames):
        gt_rows = slice(pairs.gt_start[frame], pairs.gt_start[frame + 1])
        pred_rows = slice(pairs.pred_start[frame], pairs.pred_start[frame + 1])
        n, m = gt_rows.stop - gt_rows.start, pred_rows.stop - pred_rows.start
        if n == 0:
            whole_sequence = mode == "official" and not kit_stops[frame]
            extra_fp += pred_joints if whole_sequence else pred.exists[pred_rows].sum(0)
            continue
        if m == 0:
            extra_fn += gt_joints if mode == "official" else gt.exists[gt_rows].sum(0)
            continue
        block = pairs.frame_block(frame, similarity)  # [n, m, J]
        rows, columns, joints = _maximum_similarity_matching(block)
        matched_gt.append(gt_track[gt_rows][rows])
        matched_pred.append(pred_track[pred_rows][columns])
        matched_joint.append(joints)
        matched_similarity.append(block[rows, columns, joints])
    matched_g = np.concatenate(matched_gt) if matched_gt else np.zeros(0, np.int64)
    matched_p = np.concatenate(matched_pred) if matched_pred else np.zeros(0, np.int64)
    matched_j = np.concatenate(matched_joint) if matched_joint else np.zeros(0, np.int64)
    matched_s = np.concatenate(matched_similarity) if matched_similarity else np.zeros(0)

    # Joints in frames that had both sides (FN/FP are these minus the matches).
    both_sides = _frames_with_both(video)
    gt_in_matched_frames = gt.exists[both_sides[gt.frame]].sum(axis=0)
    pred_in_matched_frames = pred.exists[both_sides[pred.frame]].sum(axis=0)

    # Per-track joint counts over the whole sequence (gt_id_count, tracker_id_count).
    gt_id_count = _count_by(gt_track, gt.exists, len(gt_tracks))  # [G, J]
    pred_id_count = _count_by(pred_track, pred.exists, len(pred_tracks))  # [T, J]
    pair_key = (matched_g * len(pred_tracks) + matched_p) * num_joints + matched_j

    tp, loc_sum = zeros.copy(), zeros.copy()
    ass_a, ass_re, ass_pr = zeros.copy(), zeros.copy(), zeros.copy()
    shape = (len(gt_tracks), len(pred_tracks), num_joints)
    for a, alpha in enumerate(ALPHAS):
        true = matched_s >= alpha - _EPS
        tp[a] = np.bincount(matched_j[true], minlength=num_joints)
        loc_sum[a] = np.bincount(matched_j[true], weights=matched_s[true], minlength=num_joints)
        matches = np.bincount(pair_key[true], minlength=int(np.prod(shape))).reshape(shape)
        union = np.maximum(1, gt_id_count[:, None] + pred_id_count[None] - matches)
        # Each true positive weighs its pair's association score: sum of matches x score.
        ass_a[a] = _sum_pairs(matches * (matches / union)) / np.maximum(1, tp[a])
        ass_re[a] = _sum_pairs(matches * (matches / np.maximum(1, gt_id_count[:, None])))
        ass_re[a] /= np.maximum(1, tp[a])
        ass_pr[a] = _sum_pairs(matches * (matches / np.maximum(1, pred_id_count[None])))
        ass_pr[a] /= np.maximum(1, tp[a])
    fn = gt_in_matched_frames - tp + extra_fn
    fp = pred_in_matched_frames - tp + extra_fp
    loc_a = np.maximum(1e-10, loc_sum) / np.maximum(1e-10, tp)
    return _with_total(tp, fn, fp, ass_a, ass_re, ass_pr, loc_a)


def combine_sequences(tables: Sequence[HotaTable], num_joints: int) -> HotaTable:
    """The kit's ``combine_sequences``: sums and TP-weighted averages over sequences."""
    if not tables:
        empty = np.zeros((len(ALPHAS), num_joints + 1))
        return HotaTable(empty, empty, empty, empty, empty, empty, empty + 1.0)
    tp = sum(table.tp for table in tables)

    def weighted(field: str) -> np.ndarray:
        return sum(getattr(table, field) * table.tp for table in tables) / np.maximum(1.0, tp)

    loc_weighted = sum(table.loc_a * table.tp for table in tables)
    return HotaTable(
        tp=tp,
        fn=sum(table.fn for table in tables),
        fp=sum(table.fp for table in tables),
        ass_a=weighted("ass_a"),
        ass_re=weighted("ass_re"),
        ass_pr=weighted("ass_pr"),
        loc_a=np.maximum(1e-10, loc_weighted) / np.maximum(1e-10, tp),
    )


def _maximum_similarity_matching(block: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per joint, the matching maximising total similarity (the kit's Hungarian).

    Args:
        block: [n, m, J] similarities of one frame.

    Returns:
        (rows, columns, joints) of the pairs with positive similarity in the matching.
        When no row or column of a joint has two positive entries, the optimum is
        exactly the set of positive entries, so the solver runs only on contested joints.
    """
    positive = block > 0
    contested = (positive.sum(axis=1) > 1).any(axis=0) | (positive.sum(axis=0) > 1).any(axis=0)
    matched = positive & ~contested[None, None, :]
    for joint in np.flatnonzero(contested):
        rows, columns = linear_sum_assignment(-block[:, :, joint])
        keep = positive[rows, columns, joint]
        matched[rows[keep], columns[keep], joint] = True
    return np.nonzero(matched)


def _sum_pairs(values: np.ndarray) -> np.ndarray:
    """[G, T, J] -> [J], summing ground-truth ids then predicted ids like the kit."""
    return np.sum(np.sum(values, 0), 0)


def _frames_with_both(video: PreparedVideo) -> np.ndarray:
    """[E] bool: frames with at least one ground-truth and one predicted person."""
    gt_persons, pred_persons = video.persons_per_frame()
    return (gt_persons > 0) & (pred_persons > 0)


def _count_by(groups: np.ndarray, exists: np.ndarray, num_groups: int) -> np.ndarray:
    """[num_groups, J] number of existing joints per group."""
    counts = np.zeros((num_groups, exists.shape[1]))
    np.add.at(counts, groups, exists)
    return counts


def _with_total(
    tp: np.ndarray,
    fn: np.ndarray,
    fp: np.ndarray,
    ass_a: np.ndarray,
    ass_re: np.ndarray,
    ass_pr: np.ndarray,
    loc_a: np.ndarray,
) -> HotaTable:
    """Append the Total column: sums for counts, means over joints for the rest."""

    def summed(values: np.ndarray) -> np.ndarray:
        return np.concatenate([values, values.sum(axis=1, keepdims=True)], axis=1)

    def averaged(values: np.ndarray) -> np.ndarray:
        return np.concatenate([values, values.mean(axis=1, keepdims=True)], axis=1)

    return HotaTable(
        tp=summed(tp),
        fn=summed(fn),
        fp=summed(fp),
        ass_a=averaged(ass_a),
        ass_re=averaged(ass_re),
        ass_pr=averaged(ass_pr),
        loc_a=averaged(loc_a),
    )
