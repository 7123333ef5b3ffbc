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
   frames in order, persons in file order) and ranked with ``np.argsort(scores)[::-1]``,
   the exact call of both tools, so equal scores come out in the same order as theirs
   on the same numpy: reversed input order for small arrays, whatever numpy's
   (non-stable) quicksort gives for large ones.
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


@dataclass
class JointAveragePrecision:
    """Per-joint results over the J scored joints (values in percent).

    Attributes:
        ap: [J] average precision (NaN: no ground truth, posetrack18).
        precision: [J] precision at the last rank (all predictions), as the tools report.
        recall: [J] recall at the last rank.
        positives: [J] ground-truth joints evaluated.
        predictions: [J] predicted joints evaluated.
    """

    ap: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    positives: np.ndarray
    predictions: np.ndarray


def posetrack_average_precision(
    videos: Sequence[PreparedVideo], protocol: Protocol
) -> JointAveragePrecision:
    """Pooled per-joint AP of prepared videos (prepared with the same ``protocol``).

    Args:
        videos: videos in pooling order (sort them by name to match the official tools).
        protocol: decides how a joint without ground truth scores.
    """
    check_protocol(protocol)
    scores, exists, labels, positives = [], [], [], 0
    for video in videos:
        pairs = frame_pairs(video)
        labels.append(prediction_labels(pairs, video))
        scores.append(video.pred.scores)
        exists.append(video.pred.exists)
        positives = positives + video.gt.exists.sum(axis=0)
    num_joints = videos[0].gt.exists.shape[1] if videos else 0
    all_scores = np.concatenate(scores) if scores else np.zeros((0, num_joints))
    all_exists = np.concatenate(exists) if exists else np.zeros((0, num_joints), bool)
    all_labels = np.concatenate(labels) if labels else np.zeros((0, num_joints), bool)
    positives = np.broadcast_to(np.asarray(positives), (num_joints,))

    results = np.zeros((3, num_joints))
    for joint in range(num_joints):
        present = all_exists[:, joint]
        results[:, joint] = voc_average_precision(
            all_scores[present, joint],
            all_labels[present, joint],
            int(positives[joint]),
            nan_without_positives=protocol == "posetrack18",
        )
    return JointAveragePrecision(
        ap=results[0],
        precision=results[1],
        recall=results[2],
        positives=positives.astype(np.int64),
        predictions=all_exists.sum(axis=0),
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
    order = np.argsort(scores)[::-1]  # computeRPC / compute_rpc: same call, same tie order
    true_positives = np.cumsum(labels[order] == 1)
    precision = true_positives / np.arange(1, len(scores) + 1)
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
