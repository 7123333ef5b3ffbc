"""What each official tool evaluates: frames, joints that exist, ignore regions.

poseval (PoseTrack17/18) and the PoseTrack21 kit agree on the metrics but not on
their inputs. ``prepare_video`` applies one tool's rules to a (ground truth,
predictions) pair and returns the persons of the evaluated frames as arrays over
the J scored joints (15 for PoseTrack; the ear slots are never annotated):

============================  =================================  ==============================
rule                          posetrack18 (poseval)              posetrack21 (PoseTrack21 kit)
============================  =================================  ==============================
frames evaluated              ground-truth frames with at least  frames with ``is_labeled``
                              one annotation (cleanupData)       (remove_empty_frames)
a joint exists                unless it is exactly (0, 0, 0)     iff x > 0 and y > 0
                              (convert.py ``to_old`` skips it)
points in an ignore polygon   removed                            set to (0, 0, 0), score 0
person removed (frames with   no point left                      every joint has x <= 0 and
ignore polygons only)                                            y <= 0
scores                        ``scores`` list                    ``scores`` list, truncated to
                                                                 integers in frames whose
                                                                 keypoints are all JSON integers
NaN / infinite coordinates    the joint exists (it is not        exists iff x > 0 and y > 0:
                              (0, 0, 0)) and never matches       NaN and -inf never, +inf yes
                                                                 (then it never matches)
============================  =================================  ==============================

Predictions on frames that are not evaluated are dropped (they are not false positives).
NaN and infinite values need no code of their own: the comparisons above, the distances
(NaN or inf: no match, see pairs.py) and the ignore-region test (a NaN point is inside no
polygon, as for shapely) treat them as the tools do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from vidpose.data.skeleton import POSETRACK, Skeleton
from vidpose.evaluation.posetrack_json import EvaluationInputError, VideoAnnotations

Protocol = Literal["posetrack18", "posetrack21"]
PROTOCOLS: tuple[str, ...] = get_args(Protocol)


@dataclass
class PreparedPersons:
    """Persons of the evaluated frames of one side (N persons, J scored joints).

    Attributes:
        frame: [N] int64 index among the evaluated frames (0..E-1), non-decreasing;
            file order is kept within a frame.
        track_ids: [N] int64.
        xy: [N, J, 2] float64 pixel coordinates.
        exists: [N, J] bool, the protocol's "this joint is there" after ignore regions.
        scores: [N, J] float64 per-joint scores as the protocol reads them.
        head_sizes: [N] float64 PCKh reference length (ground truth; NaN if unknown).
        rows: [N] int64 row of each person in its ``VideoAnnotations``.
    """

    frame: np.ndarray
    track_ids: np.ndarray
    xy: np.ndarray
    exists: np.ndarray
    scores: np.ndarray
    head_sizes: np.ndarray
    rows: np.ndarray

    def __len__(self) -> int:
        return len(self.frame)

    def frame_starts(self, num_frames: int) -> np.ndarray:
        """[E + 1] offsets: the persons of frame e are rows ``starts[e]:starts[e + 1]``."""
        return np.searchsorted(self.frame, np.arange(num_frames + 1))


@dataclass
class PreparedVideo:
    """One video as one protocol evaluates it.

    Attributes:
        name: the video name.
        frame_positions: [E] positions (in the file's ``images``) of the evaluated frames.
        gt: ground-truth persons of those frames.
        pred: predicted persons of those frames.
        has_ignore_regions: [E] bool, the ground truth gives the frame ignore polygons.
    """

    name: str
    frame_positions: np.ndarray
    gt: PreparedPersons
    pred: PreparedPersons
    has_ignore_regions: np.ndarray

    @property
    def num_frames(self) -> int:
        return len(self.frame_positions)

    def persons_per_frame(self) -> tuple[np.ndarray, np.ndarray]:
        """([E], [E]) ground-truth and predicted persons in each evaluated frame."""
        return (
            np.bincount(self.gt.frame, minlength=self.num_frames),
            np.bincount(self.pred.frame, minlength=self.num_frames),
        )

    def frames_left_without_ground_truth(self) -> np.ndarray:
        """[E] bool: frames with ignore polygons and no ground-truth person after them.

        The PoseTrack21 kit cannot evaluate such a labeled frame: rebuilding the frame's
        ground truth after the ignore regions (get_raw_seq_data step 2.3) turns an empty
        person list into a 1-d array, and _calculate_pckh then fails on
        ``gt_dets_t[:, :, 0]`` (IndexError) -- for mAP and HOTA alike.
        """
        return self.has_ignore_regions & (self.persons_per_frame()[0] == 0)


def check_protocol(protocol: str) -> Protocol:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    return protocol  # type: ignore[return-value]


def prepare_video(
    ground_truth: VideoAnnotations,
    predictions: VideoAnnotations,
    protocol: Protocol,
    skeleton: Skeleton = POSETRACK,
) -> PreparedVideo:
    """Apply ``protocol``'s frame selection, joint existence and ignore regions.

    Both videos must list the same frames (see ``posetrack_json.check_same_frames``).
    Ignore regions are always the ground truth's.
    """
    check_protocol(protocol)
    if protocol == "posetrack18":
        frames = np.unique(ground_truth.person_frame)
    else:
        if ground_truth.is_labeled is None:
            raise EvaluationInputError(
                f"{ground_truth.source}: protocol posetrack21 needs 'is_labeled' on every image"
            )
        frames = np.flatnonzero(ground_truth.is_labeled)
    joints = skeleton.scored_indices
    regions = [ground_truth.ignore_regions[position] for position in frames]
    return PreparedVideo(
        name=ground_truth.name,
        frame_positions=frames,
        gt=_prepare_persons(ground_truth, frames, joints, regions, protocol, is_prediction=False),
        pred=_prepare_persons(predictions, frames, joints, regions, protocol, is_prediction=True),
        has_ignore_regions=np.array([len(polygons) > 0 for polygons in regions], dtype=bool),
    )


def _prepare_persons(
    video: VideoAnnotations,
    frames: np.ndarray,
    joints: np.ndarray,
    regions: list[list[np.ndarray]],
    protocol: Protocol,
    *,
    is_prediction: bool,
) -> PreparedPersons:
    evaluated = np.full(video.num_frames, -1, dtype=np.int64)
    evaluated[frames] = np.arange(len(frames))
    keep = evaluated[video.person_frame] >= 0
    source_rows = np.flatnonzero(keep)
    frame = evaluated[video.person_frame[keep]]
    keypoints = video.keypoints[keep][:, joints]
    xy = keypoints[..., :2].copy()
    scores = video.scores[keep][:, joints].copy()
    if protocol == "posetrack18":
        exists = np.any(keypoints != 0, axis=-1)
    else:
        exists = (xy[..., 0] > 0) & (xy[..., 1] > 0)
        if is_prediction:
            # The kit writes the scores into the keypoint array's third column; when
            # every number of the frame is a JSON integer that array is int64, so the
            # scores are truncated toward zero (datasets/posetrack.py _load_raw_file).
            integer = video.integer_keypoint_frames[video.person_frame[keep]]
            scores[integer] = np.trunc(scores[integer])

    keep_person = np.ones(len(frame), dtype=bool)
    starts = np.searchsorted(frame, np.arange(len(frames) + 1))
    for index, polygons in enumerate(regions):
        rows = slice(starts[index], starts[index + 1])
        if not polygons or starts[index] == starts[index + 1]:
            continue
        inside = points_inside_polygons(xy[rows].reshape(-1, 2), polygons).reshape(-1, len(joints))
        if protocol == "posetrack18":
            # removeIgnoredPointsRects: drop points strictly inside, then persons with none left.
            exists[rows] &= ~inside
            keep_person[rows] = exists[rows].any(axis=1)
        else:
            # get_raw_seq_data step 2: zero the points inside (all of them, present or
            # not), then drop persons whose every joint has x <= 0 and y <= 0. Written as
            # the kit writes it: a NaN joint is not "<= 0", so it keeps its person.
            xy[rows][inside] = 0.0
            scores[rows][inside] = 0.0
            exists[rows] &= ~inside
            invalid = (xy[rows, :, 0] <= 0) & (xy[rows, :, 1] <= 0)
            keep_person[rows] = ~invalid.all(axis=1)

    return PreparedPersons(
        frame=frame[keep_person],
        track_ids=video.track_ids[keep][keep_person],
        xy=xy[keep_person],
        exists=exists[keep_person],
        scores=scores[keep_person],
        head_sizes=video.head_sizes[keep][keep_person],
        rows=source_rows[keep_person],
    )


def points_inside_polygons(points: np.ndarray, polygons: list[np.ndarray]) -> np.ndarray:
    """Which points lie strictly inside at least one polygon.

    Matches shapely's ``Polygon.contains(Point)`` used by both tools: points on an edge
    or vertex are not inside; self-intersecting polygons follow the even-odd rule (GEOS
    counts ray crossings). A polygon with fewer than 3 vertices contains nothing (shapely
    refuses to build one, so the official tools would crash).

    Args:
        points: [M, 2] x, y.
        polygons: each [P, 2] x, y vertices (closing vertex optional).

    Returns:
        [M] bool.
    """
    inside_any = np.zeros(len(points), dtype=bool)
    px, py = points[:, 0:1], points[:, 1:2]  # [M, 1]
    for polygon in polygons:
        if len(polygon) < 3:
            continue
        x1, y1 = polygon[:, 0], polygon[:, 1]  # [P]
        x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
        # NaN or infinite points (accepted in predictions) make NaN products here; every
        # comparison with NaN is False, so such a point is on no edge and crosses nothing
        # (+-inf: an even number of crossings), i.e. inside no polygon, as for shapely.
        with np.errstate(divide="ignore", invalid="ignore"):
            cross = (x2 - x1) * (py - y1) - (y2 - y1) * (px - x1)  # [M, P]
            on_edge = (
                (cross == 0)
                & (px >= np.minimum(x1, x2))
                & (px <= np.maximum(x1, x2))
                & (py >= np.minimum(y1, y2))
                & (py <= np.maximum(y1, y2))
            )
            # Half-open rule: an edge counts when it straddles the horizontal line through
            # the point, and the crossing is to the right of the point.
            straddles = (y1 > py) != (y2 > py)
            crossing_x = x1 + (py - y1) * (x2 - x1) / (y2 - y1)
        crossings = np.count_nonzero(straddles & (px < crossing_x), axis=1)
        inside_any |= (crossings % 2 == 1) & ~on_edge.any(axis=1)
    return inside_any
