"""PoseTrack per-joint average precision (the "mAP" of PoseTrack tables).

Follows poseval (evaluateAP.py, eval_helpers.assignGTmulti / computeRPC / VOCap) and
the PoseTrack21 kit (metrics/map.py), which implement the same procedure:

1. Per frame, score(p, g) = joints of p within PCKh@0.5 of g / annotated joints of g.
   Each prediction keeps only its best ground truth (np.argmax: ties go to the lowest
   index); then each ground truth keeps the best of the predictions that kept it (again
   the lowest index on ties); a ground truth whose best value is 0 stays unassigned.
2. Every existing predicted joint gives one (score, label) pair: label = it matches its
   assigned ground truth's joint, 0 when the prediction is unassigned. Only per-joint
   scores are used. Positives = existing ground-truth joints.
3. Pairs are pooled per joint over all frames of all videos (videos sorted by name,
   frames in order, persons in file order) and ranked by score, highest first. Both
   tools rank with ``np.argsort(scores)[::-1]``; numpy's default sort is not stable, so
   the order of equal scores -- and with it the AP, when a true and a false positive
   tie -- depends on the numpy version and the CPU (numpy's SIMD sorts). vidpose ranks
   equal scores in reverse pooling order, ``np.argsort(scores, kind="stable")[::-1]``:
   the same on every machine, and what ``np.argsort`` gives for short arrays. NaN
   scores rank first, as in both tools (argsort puts NaN last). ``tie_spread`` measures
   how far the official AP can move with the order of ties.
4. VOC all-point AP x 100. A joint without predictions scores 0. A joint without ground
   truth but with predictions scores NaN in posetrack18 (recall divides by zero) and 0 in
   posetrack21 (recall divides by max(positives, 1)).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vidpose.evaluation.pairs import PCKH_THRESHOLD, FramePairs, frame_pairs
from vidpose.evaluation.protocols import PreparedVideo, Protocol, check_protocol

# AP differences below this (in AP points) are rounding, not an effect of tie order.
SPREAD_TOLERANCE = 1e-9


@dataclass
class JointAveragePrecision:
    """Per-joint results over the J scored joints (values in percent).

    Attributes:
        ap: [J] average precision (NaN: no ground truth, posetrack18).
        precision: [J] precision at the last rank (all predictions), as the tools report.
        recall: [J] recall at the last rank.
        positives: [J] ground-truth joints evaluated.
        predictions: [J] predicted joints evaluated.
        ties: the equal scores whose order changes the AP (see ``tie_spread``).
    """

    ap: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    positives: np.ndarray
    predictions: np.ndarray
    ties: TieSpread


@dataclass
class TieSpread:
    """How much the AP of each joint depends on the order of equal scores.

    Attributes:
        lowest_ap: [J] AP with false positives first among equal scores.
        highest_ap: [J] AP with true positives first among equal scores.
        tied_predictions: [J] predicted joints in a group of equal scores holding true
            and false positives, counted for the joints whose AP the order changes (0
            for the others).
        tied_by_video: video name -> those predicted joints in that video.
    """

    lowest_ap: np.ndarray
    highest_ap: np.ndarray
    tied_predictions: np.ndarray
    tied_by_video: dict[str, int]

    @property
    def spread(self) -> np.ndarray:
        """[J] highest - lowest AP (0 where NaN)."""
        return np.nan_to_num(self.highest_ap - self.lowest_ap)

    @property
    def undefined_joints(self) -> np.ndarray:
        """[J] bool: the official AP of the joint depends on the order of ties."""
        return self.tied_predictions > 0


def posetrack_average_precision(
    videos: Sequence[PreparedVideo], protocol: Protocol
) -> JointAveragePrecision:
    """Pooled per-joint AP of prepared videos (prepared with the same ``protocol``).

    Args:
        videos: videos in pooling order (sort them by name to match the official tools).
        protocol: decides how a joint without ground truth scores.
    """
    check_protocol(protocol)
    scores, exists, labels, video_index, positives = [], [], [], [], 0
    for index, video in enumerate(videos):
        pairs = frame_pairs(video)
        labels.append(prediction_labels(pairs, video))
        scores.append(video.pred.scores)
        exists.append(video.pred.exists)
        video_index.append(np.full(len(video.pred), index))
        positives = positives + video.gt.exists.sum(axis=0)
    num_joints = videos[0].gt.exists.shape[1] if videos else 0
    all_scores = np.concatenate(scores) if scores else np.zeros((0, num_joints))
    all_exists = np.concatenate(exists) if exists else np.zeros((0, num_joints), bool)
    all_labels = np.concatenate(labels) if labels else np.zeros((0, num_joints), bool)
    all_videos = np.concatenate(video_index) if video_index else np.zeros(0, np.int64)
    positives = np.broadcast_to(np.asarray(positives), (num_joints,))
    nan_without_positives = protocol == "posetrack18"

    results = np.zeros((5, num_joints))
    tied_predictions = np.zeros(num_joints, dtype=np.int64)
    tied_per_video = np.zeros(len(videos), dtype=np.int64)
    for joint in range(num_joints):
        present = all_exists[:, joint]
        joint_scores, joint_labels = all_scores[present, joint], all_labels[present, joint]
        results[:3, joint] = voc_average_precision(
            joint_scores,
            joint_labels,
            int(positives[joint]),
            nan_without_positives=nan_without_positives,
        )
        lowest, highest, tied = tie_spread(
            joint_scores,
            joint_labels,
            int(positives[joint]),
            nan_without_positives=nan_without_positives,
        )
        results[3:, joint] = lowest, highest
        if np.nan_to_num(highest - lowest) > SPREAD_TOLERANCE:
            tied_predictions[joint] = tied.sum()
            tied_per_video += np.bincount(all_videos[present][tied], minlength=len(videos))
    return JointAveragePrecision(
        ap=results[0],
        precision=results[1],
        recall=results[2],
        positives=positives.astype(np.int64),
        predictions=all_exists.sum(axis=0),
        ties=TieSpread(
            lowest_ap=results[3],
            highest_ap=results[4],
            tied_predictions=tied_predictions,
            tied_by_video={
                video.name: int(count)
                for video, count in zip(videos, tied_per_video, strict=True)
                if count
            },
        ),
    )


def prediction_labels(pairs: FramePairs, video: PreparedVideo) -> np.ndarray:
    """[P, J] bool: predicted joint matches the joint of the ground truth assigned to it."""
    labels = np.zeros(video.pred.exists.shape, dtype=bool)
    if len(pairs.gt_index) == 0:
        return labels
    match = pairs.distances <= PCKH_THRESHOLD  # [Q, J]
    annotated = video.gt.exists.sum(axis=1)[pairs.gt_index]  # [Q]
    pck = match.sum(axis=1).astype(np.float64)
    pck = np.divide(pck, annotated, out=pck, where=annotated > 0)

    # Step 1: each prediction keeps its best ground truth, lowest index on ties.
    by_prediction = np.lexsort((pairs.gt_index, pairs.pred_index))
    best = by_prediction[_first_maximum(pck[by_prediction], pairs.pred_index[by_prediction])]
    kept = np.zeros_like(pck)
    kept[best] = pck[best]
    # Step 2: each ground truth keeps its best remaining prediction, lowest index on ties.
    # Pairs are already grouped by ground truth, predictions ascending within a group.
    winners = _first_maximum(kept, pairs.gt_index)
    winners = winners[kept[winners] > 0]
    labels[pairs.pred_index[winners]] = match[winners]
    return labels


def _first_maximum(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Index of the first maximum of ``values`` within each run of equal ``groups``."""
    starts = np.flatnonzero(np.concatenate([[True], groups[1:] != groups[:-1]]))
    maxima = np.maximum.reduceat(values, starts)
    lengths = np.diff(np.append(starts, len(values)))
    candidates = np.where(values == np.repeat(maxima, lengths), np.arange(len(values)), len(values))
    return np.minimum.reduceat(candidates, starts)


def voc_average_precision(
    scores: np.ndarray, labels: np.ndarray, positives: int, *, nan_without_positives: bool
) -> tuple[float, float, float]:
    """VOC all-point AP of ranked detections, x 100.

    Args:
        scores: [S] float64 detection scores, pooled in the tools' order.
        labels: [S] bool true positives.
        positives: number of ground-truth instances.
        nan_without_positives: posetrack18 (poseval divides recall by 0 -> NaN);
            posetrack21 divides by max(positives, 1).

    Returns:
        (AP, precision at the last rank, recall at the last rank), each x 100; all 0
        without detections (both tools leave their zero-initialised entry).
    """
    if len(scores) == 0:
        return 0.0, 0.0, 0.0
    return _ranked_average_precision(
        labels[ranking_order(scores)], positives, nan_without_positives=nan_without_positives
    )


def ranking_order(scores: np.ndarray) -> np.ndarray:
    """Indices of ``scores`` from the highest to the lowest, equal scores latest first.

    computeRPC / compute_rpc call ``np.argsort(scores)[::-1]``, whose order of equal
    scores is numpy's quicksort's: reverse input order for short arrays, undefined (and
    different between numpy versions and CPUs) for longer ones. The stable sort fixes it
    to reverse input order everywhere. NaN sorts last, so it ranks first, as in the tools.
    """
    return np.argsort(scores, kind="stable")[::-1]


def tie_spread(
    scores: np.ndarray, labels: np.ndarray, positives: int, *, nan_without_positives: bool
) -> tuple[float, float, np.ndarray]:
    """The AP range over every order of equal scores, and which detections decide it.

    Only groups of equal scores holding both a true and a false positive can change the
    AP; true positives first gives the highest AP, false positives first the lowest
    (moving a true positive ahead of a false one never lowers a precision).

    Returns:
        (lowest AP, highest AP, [S] bool: the detection is in such a mixed group). NaN
        scores count as equal to each other.
    """
    if len(scores) == 0:
        return 0.0, 0.0, np.zeros(0, dtype=bool)
    labels = labels.astype(bool)
    ascending = np.argsort(scores, kind="stable")
    ordered = scores[ascending]
    same = (ordered[1:] == ordered[:-1]) | (np.isnan(ordered[1:]) & np.isnan(ordered[:-1]))
    group = np.concatenate([[0], np.cumsum(~same)])  # group number in ascending order
    true_in_group = np.bincount(group, weights=labels[ascending])
    size_of_group = np.bincount(group)
    mixed_group = (true_in_group > 0) & (true_in_group < size_of_group)
    tied = np.zeros(len(scores), dtype=bool)
    tied[ascending] = mixed_group[group]
    if not tied.any():
        ap = voc_average_precision(
            scores, labels, positives, nan_without_positives=nan_without_positives
        )[0]
        return ap, ap, tied
    # np.lexsort sorts by its last key first (scores; NaN last, as argsort), then by the
    # label: reversed, true positives come first among equal scores, or false ones.
    true_positives_first = np.lexsort((labels, scores))[::-1]
    false_positives_first = np.lexsort((~labels, scores))[::-1]
    highest = _ranked_average_precision(
        labels[true_positives_first], positives, nan_without_positives
    )
    lowest = _ranked_average_precision(
        labels[false_positives_first], positives, nan_without_positives
    )
    return lowest[0], highest[0], tied


def _ranked_average_precision(
    ranked_labels: np.ndarray, positives: int, nan_without_positives: bool
) -> tuple[float, float, float]:
    """VOC AP, last precision and last recall (x 100) of labels in ranking order."""
    true_positives = np.cumsum(ranked_labels == 1)
    precision = true_positives / np.arange(1, len(ranked_labels) + 1)
    denominator = float(positives) if nan_without_positives else float(max(positives, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = true_positives / np.float64(denominator)
    # VOCap: pad, make precision monotone from the right, sum recall steps x precision.
    padded_precision = np.concatenate([[0.0], precision, [0.0]])
    padded_recall = np.concatenate([[0.0], recall, [1.0]])
    padded_precision = np.maximum.accumulate(padded_precision[::-1])[::-1]
    steps = np.flatnonzero(padded_recall[1:] != padded_recall[:-1]) + 1
    ap = np.sum((padded_recall[steps] - padded_recall[steps - 1]) * padded_precision[steps])
    return float(ap) * 100, float(precision[-1]) * 100, float(recall[-1]) * 100
