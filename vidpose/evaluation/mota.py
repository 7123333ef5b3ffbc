"""Per-joint CLEAR-MOT tracking metrics (MOTA, MOTP, precision, recall) as poseval computes them.

poseval (evaluateTracking.py) runs one py-motmetrics accumulator per video and joint.
Per frame, the objects are the ground-truth track ids having the joint, the
hypotheses the predicted track ids having it, and the distance is the head-normalised
distance when <= 0.5, else "cannot match". motmetrics' ``MOTAccumulator.update``:

1. keeps each object's previous hypothesis when it is present with a finite distance
   (objects in order; a hypothesis taken by an earlier object is not available),
2. assigns the rest by minimum total distance (Hungarian; forbidden pairs become an
   edge so expensive that the matching first maximises the number of pairs),
3. counts a switch when an object's new hypothesis differs from its last one,
4. counts the unmatched objects as misses and the unmatched hypotheses as false positives.

MOTA_j = 1 - (misses + switches + false positives) / objects, precision = matches /
(matches + false positives), recall = matches / objects, summed over all videos; Total
= mean over joints with a defined value. Every predicted joint with a track id counts,
whatever its score.

``mode="official"`` reproduces three quirks of poseval; ``mode="corrected"`` fixes them:

- it skips the last evaluated frame of every video (``imgidxs[:-1]``);
- a frame without predictions (or without ground truth, after ignore regions) counts
  exactly one object, one miss and one false positive per joint, whatever the number of
  people (assignGTmulti's placeholder ids ``[0]`` with a NaN distance);
- MOTP = 1 - (sum of the column D of *every* event the accumulator records) / matches
  (evaluateTracking.computeMetrics: ``accAll[i].events['D'].sum()``). py-motmetrics >= 1.2
  (poseval requires it) records, besides one MATCH or SWITCH event per match, a RAW event
  with the distance of every pair it was given a finite distance for -- every pair within
  half a head size, matched or not -- and repeats a match's distance in an ASCEND event
  (a switch to a hypothesis never matched before), a TRANSFER event (a hypothesis last
  matched, by the assignment step, to another object) and a MIGRATE event (a transfer to
  an object never matched before). Corrected mode's MOTP = 1 - mean distance of the
  matches, the CLEAR-MOT definition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np
from scipy.optimize import linear_sum_assignment

from vidpose.evaluation.pairs import PCKH_THRESHOLD, frame_pairs
from vidpose.evaluation.protocols import PreparedVideo

TrackingMode = Literal["official", "corrected"]
TRACKING_MODES: tuple[str, ...] = get_args(TrackingMode)


def check_tracking_mode(mode: str) -> TrackingMode:
    if mode not in TRACKING_MODES:
        raise ValueError(f"unknown tracking mode {mode!r}; expected one of {TRACKING_MODES}")
    return mode  # type: ignore[return-value]


@dataclass
class MotCounts:
    """CLEAR-MOT event counts per joint, [J] each, summed over frames and videos."""

    objects: np.ndarray
    misses: np.ndarray
    false_positives: np.ndarray
    switches: np.ndarray
    matches: np.ndarray  # matched pairs, switches included (motmetrics' num_detections)
    distance_sum: np.ndarray  # sum of head-normalised distances of the matched pairs
    event_distance_sum: np.ndarray  # sum of D over all motmetrics events (poseval's MOTP)

    @classmethod
    def zeros(cls, num_joints: int) -> MotCounts:
        return cls(*(np.zeros(num_joints, dtype=np.float64) for _ in range(7)))

    def __iadd__(self, other: MotCounts) -> MotCounts:
        for name in (
            "objects",
            "misses",
            "false_positives",
            "switches",
            "matches",
            "distance_sum",
            "event_distance_sum",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self


@dataclass
class MotMetrics:
    """Per-joint tracking metrics in percent, [J] each (NaN where undefined).

    Attributes:
        mota: 100 (1 - (misses + switches + false positives) / objects), NaN without objects.
        motp: 100 (1 - distance sum / matches), 0 without matches (poseval's convention);
            the distance sum is poseval's (all events) in official mode, the matches' in
            corrected mode.
        precision: 100 matches / (matches + false positives).
        recall: 100 matches / objects.
        counts: the raw event counts.
    """

    mota: np.ndarray
    motp: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    counts: MotCounts = field(repr=False)


def posetrack_mota(videos: Sequence[PreparedVideo], mode: TrackingMode = "official") -> MotMetrics:
    """MOTA, MOTP, precision and recall per joint over ``videos`` (prepared with posetrack18)."""
    check_tracking_mode(mode)
    num_joints = videos[0].gt.exists.shape[1] if videos else 0
    counts = MotCounts.zeros(num_joints)
    for video in videos:
        counts += accumulate_video(video, mode)
    return mot_metrics(counts, motp_of_all_events=mode == "official")


def mot_metrics(counts: MotCounts, *, motp_of_all_events: bool = False) -> MotMetrics:
    """Final metrics from event counts (poseval computeMetrics).

    Args:
        motp_of_all_events: MOTP from the distances of every motmetrics event, as poseval
            prints it (official mode), instead of the matches' distances only.
    """
    distances = counts.event_distance_sum if motp_of_all_events else counts.distance_sum
    with np.errstate(divide="ignore", invalid="ignore"):
        objects = np.where(counts.objects > 0, counts.objects, np.nan)
        mota = 100 * (1 - (counts.misses + counts.switches + counts.false_positives) / objects)
        motp = np.where(counts.matches > 0, 100 * (1 - distances / counts.matches), 0.0)
        detections = counts.matches + counts.false_positives
        precision = 100 * counts.matches / np.where(detections > 0, detections, np.nan)
        recall = 100 * counts.matches / objects
    return MotMetrics(mota=mota, motp=motp, precision=precision, recall=recall, counts=counts)


def accumulate_video(video: PreparedVideo, mode: TrackingMode) -> MotCounts:
    """Event counts of one video, all joints at once, frame by frame."""
    gt, pred = video.gt, video.pred
    num_joints = gt.exists.shape[1]
    counts = MotCounts.zeros(num_joints)
    pairs = frame_pairs(video)
    # Hypothesis last matched to each (joint, ground-truth track); -1: never matched
    # (motmetrics' MOTAccumulator.m; "o not in last_match" is the same as "o not in m").
    gt_tracks, gt_track_index = np.unique(gt.track_ids, return_inverse=True)
    last_hypothesis = np.full((num_joints, len(gt_tracks)), -1, dtype=np.int64)
    # Per (joint, predicted track): ever matched (hypHistory), and the ground-truth track
    # the assignment step last matched it to, -1: none (res_m). Only for poseval's MOTP.
    pred_tracks, pred_track_index = np.unique(pred.track_ids, return_inverse=True)
    hypothesis_seen = np.zeros((num_joints, len(pred_tracks)), dtype=bool)
    assigned_object = np.full((num_joints, len(pred_tracks)), -1, dtype=np.int64)

    num_frames = video.num_frames - 1 if mode == "official" else video.num_frames
    for frame in range(max(num_frames, 0)):
        gt_rows = slice(pairs.gt_start[frame], pairs.gt_start[frame + 1])
        pred_rows = slice(pairs.pred_start[frame], pairs.pred_start[frame + 1])
        gt_exists, pred_exists = gt.exists[gt_rows], pred.exists[pred_rows]  # [n, J], [m, J]
        if len(gt_exists) == 0 or len(pred_exists) == 0:
            if mode == "official":
                # assignGTmulti's placeholder: objects [0], hypotheses [0], distance NaN.
                counts.objects += 1
                counts.misses += 1
                counts.false_positives += 1
            else:
                counts.objects += gt_exists.sum(axis=0)
                counts.misses += gt_exists.sum(axis=0)
                counts.false_positives += pred_exists.sum(axis=0)
            continue
        distances = pairs.frame_block(frame)  # [n, m, J]
        valid = distances <= PCKH_THRESHOLD
        matched_gt, matched_pred, matched_joint, continued = _update_frame(
            valid,
            distances,
            gt_exists,
            pred_exists,
            gt_track_index[gt_rows],
            pred.track_ids[pred_rows],
            last_hypothesis,
        )
        hypotheses = pred.track_ids[pred_rows][matched_pred]
        hypothesis = pred_track_index[pred_rows][matched_pred]
        track = gt_track_index[gt_rows][matched_gt]
        previous = last_hypothesis[matched_joint, track]
        switched = (previous >= 0) & (previous != hypotheses)
        matched_distance = distances[matched_gt, matched_pred, matched_joint]

        # poseval's MOTP sums D over all events of this update: the RAW event of every
        # pair with a finite distance (poseval passes NaN beyond half a head size), then
        # per match its MATCH/SWITCH event, plus, for the assignment step's matches only
        # (not the continued ones), ASCEND (a switch to a hypothesis never matched),
        # TRANSFER (the hypothesis was last assigned to another object) and MIGRATE (a
        # transfer to an object never matched). Within one update these tests read the
        # state before it: the matches of a frame have distinct objects and hypotheses.
        owner = assigned_object[matched_joint, hypothesis]
        assigned = ~continued
        ascend = assigned & switched & ~hypothesis_seen[matched_joint, hypothesis]
        transfer = assigned & (owner >= 0) & (owner != track)
        migrate = transfer & (previous < 0)
        repeats = 1 + ascend.astype(np.int64) + transfer + migrate
        counts.event_distance_sum += np.where(valid, distances, 0.0).sum(axis=(0, 1))
        counts.event_distance_sum += np.bincount(
            matched_joint, weights=repeats * matched_distance, minlength=num_joints
        )
        last_hypothesis[matched_joint, track] = hypotheses
        hypothesis_seen[matched_joint, hypothesis] = True
        assigned_object[matched_joint[assigned], hypothesis[assigned]] = track[assigned]

        num_matches = np.bincount(matched_joint, minlength=num_joints)
        counts.objects += gt_exists.sum(axis=0)
        counts.misses += gt_exists.sum(axis=0) - num_matches
        counts.false_positives += pred_exists.sum(axis=0) - num_matches
        counts.matches += num_matches
        counts.switches += np.bincount(matched_joint[switched], minlength=num_joints)
        counts.distance_sum += np.bincount(
            matched_joint, weights=matched_distance, minlength=num_joints
        )
    return counts


def _update_frame(
    valid: np.ndarray,
    distances: np.ndarray,
    gt_exists: np.ndarray,
    pred_exists: np.ndarray,
    gt_tracks: np.ndarray,
    pred_tracks: np.ndarray,
    last_hypothesis: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The matches of motmetrics' update for one frame, every joint at once.

    Args:
        valid: [n, m, J] the pair may match (distance <= 0.5).
        distances: [n, m, J] head-normalised distances.
        gt_exists, pred_exists: [n, J], [m, J] which persons take part per joint.
        gt_tracks: [n] ground-truth track index (column of ``last_hypothesis``).
        pred_tracks: [m] predicted track ids.
        last_hypothesis: [J, tracks] previous hypothesis id per joint and track.

    Returns:
        (ground-truth rows, prediction rows, joints) of the matched pairs, and whether
        each continues its object's previous match (step 1) rather than coming from the
        assignment (step 2).
    """
    # Step 1: continue previous matches. keep[i, k, j]: object i's last hypothesis is k.
    previous = last_hypothesis[:, gt_tracks].T  # [n, J]
    keep = (pred_tracks[None, :, None] == previous[:, None, :]) & valid
    # An object takes its hypothesis only if no earlier object (lower row) already did.
    keep &= np.cumsum(keep, axis=0) == 1
    gt_taken = keep.any(axis=1)  # [n, J]
    pred_taken = keep.any(axis=0)  # [m, J]

    # Step 2: Hungarian on what is left. Without competition (no row or column with two
    # candidates) every candidate pair is matched; otherwise solve those joints exactly.
    free = valid & ~gt_taken[:, None, :] & ~pred_taken[None, :, :]
    contested = (free.sum(axis=1) > 1).any(axis=0) | (free.sum(axis=0) > 1).any(axis=0)
    matched = keep | (free & ~contested[None, None, :])
    for joint in np.flatnonzero(contested):
        rows = np.flatnonzero(gt_exists[:, joint])
        columns = np.flatnonzero(pred_exists[:, joint])
        costs = np.where(free[np.ix_(rows, columns, [joint])][..., 0], 0.0, np.nan)
        costs += distances[np.ix_(rows, columns, [joint])][..., 0]
        for row, column in zip(*_min_cost_matching(costs), strict=True):
            matched[rows[row], columns[column], joint] = True
    matched_gt, matched_pred, matched_joint = np.nonzero(matched)
    return matched_gt, matched_pred, matched_joint, keep[matched_gt, matched_pred, matched_joint]


def _min_cost_matching(costs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost matching with NaN = forbidden, as motmetrics' ``linear_sum_assignment``.

    Forbidden pairs get the cost 2 r c + 1 (r = min(shape), c = max |cost| + 1), which
    makes any solution using one worse than every solution with more allowed pairs
    (motmetrics lap.add_expensive_edges); they are then dropped.
    """
    allowed = np.isfinite(costs)
    if not allowed.any():
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    expensive = 2 * min(costs.shape) * (np.abs(costs[allowed]).max() + 1) + 1
    rows, columns = linear_sum_assignment(np.where(allowed, costs, expensive))
    keep = allowed[rows, columns]
    return rows[keep], columns[keep]
