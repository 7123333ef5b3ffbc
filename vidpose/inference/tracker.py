"""Pose tracking: stable track ids from per-frame boxes and keypoints.

Each new frame's people are matched to the live tracks by the Hungarian algorithm
on a similarity that mixes box IoU and pose OKS. A track's box is predicted
forward with its recent velocity, so people who cross keep their ids as long as
their motion is smooth. A track survives ``patience`` frames without a match
(occlusion, a missed detection) before it ends; ids are never reused.

Usable on its own: feed ``update()`` one frame at a time, in order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment


@dataclass
class Track:
    """A live track.

    Attributes:
        track_id: the id given to every detection matched to this track.
        box: [4] x, y, w, h at the last match, image pixels.
        keypoints: [K, 2] at the last match, or None when tracking boxes only.
        keypoint_scores: [K] at the last match, or None.
        velocity: [2] smoothed box-centre motion per frame, pixels.
        last_frame: frame index of the last match.
        hits: number of matched frames.
    """

    track_id: int
    box: np.ndarray
    keypoints: np.ndarray | None
    keypoint_scores: np.ndarray | None
    velocity: np.ndarray
    last_frame: int
    hits: int = 1

    def predicted_box(self, frame_index: int) -> np.ndarray:
        shift = self.velocity * (frame_index - self.last_frame)
        return self.box + np.array([shift[0], shift[1], 0.0, 0.0])

    def predicted_keypoints(self, frame_index: int) -> np.ndarray | None:
        if self.keypoints is None:
            return None
        return self.keypoints + self.velocity * (frame_index - self.last_frame)


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU matrix [A, B] of boxes given as x, y, w, h."""
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    a_min, a_max = a[:, None, :2], a[:, None, :2] + a[:, None, 2:]
    b_min, b_max = b[None, :, :2], b[None, :, :2] + b[None, :, 2:]
    overlap = np.clip(np.minimum(a_max, b_max) - np.maximum(a_min, b_min), 0, None).prod(-1)
    union = a[:, None, 2:].prod(-1) + b[None, :, 2:].prod(-1) - overlap
    return np.where(union > 0, overlap / np.maximum(union, 1e-12), 0.0)


def pose_oks(
    keypoints_a: np.ndarray,
    keypoints_b: np.ndarray,
    valid_a: np.ndarray,
    valid_b: np.ndarray,
    areas_b: np.ndarray,
    sigmas: np.ndarray,
) -> np.ndarray:
    """Object keypoint similarity matrix [A, B] between two sets of poses.

    OKS = mean over joints valid in both of exp(-d^2 / (2 s^2 k^2)) with
    s^2 = area and k = 2 sigma (COCO keypoint evaluation). The area is taken from
    side B (the reference poses). Pairs without a common valid joint get 0.

    Args:
        keypoints_a: [A, K, 2]; keypoints_b: [B, K, 2] (pixels).
        valid_a: [A, K] bool; valid_b: [B, K] bool.
        areas_b: [B] box areas of side B, pixels^2.
        sigmas: [K] per-joint OKS sigmas.
    """
    difference = keypoints_a[:, None] - keypoints_b[None]  # [A, B, K, 2]
    squared = (difference**2).sum(-1)
    variance = (2 * np.asarray(sigmas)) ** 2 * np.maximum(areas_b, 1.0)[None, :, None] * 2
    similarity = np.exp(-squared / variance)
    both = valid_a[:, None] & valid_b[None]
    count = both.sum(-1)
    return np.where(count > 0, (similarity * both).sum(-1) / np.maximum(count, 1), 0.0)


class PoseTracker:
    """Online tracker: call ``update`` once per frame, in frame order.

    Args:
        sigmas: [K] OKS sigmas (``Skeleton.sigmas``).
        oks_weight: weight of pose OKS in the similarity; the rest is box IoU. When a
            frame has no keypoints, IoU alone is used.
        min_similarity: pairs less similar than this are never matched.
        patience: frames a track may go unmatched before it ends.
        keypoint_threshold: joints scoring below this are left out of OKS.
        velocity_smoothing: weight of the newest motion in the velocity estimate.
    """

    def __init__(
        self,
        *,
        sigmas: np.ndarray,
        oks_weight: float = 0.5,
        min_similarity: float = 0.2,
        patience: int = 10,
        keypoint_threshold: float = 0.3,
        velocity_smoothing: float = 0.5,
    ) -> None:
        if not 0.0 <= oks_weight <= 1.0:
            raise ValueError(f"oks_weight must be in [0, 1], got {oks_weight}")
        if patience < 0:
            raise ValueError(f"patience must be >= 0, got {patience}")
        self.sigmas = np.asarray(sigmas, dtype=np.float64)
        self.oks_weight = oks_weight
        self.min_similarity = min_similarity
        self.patience = patience
        self.keypoint_threshold = keypoint_threshold
        self.velocity_smoothing = velocity_smoothing
        self.tracks: list[Track] = []
        self.next_id = 0
        self._last_frame: int | None = None

    def update(
        self,
        frame_index: int,
        boxes: np.ndarray,
        keypoints: np.ndarray | None = None,
        keypoint_scores: np.ndarray | None = None,
    ) -> np.ndarray:
        """Assign track ids to the people of one frame.

        Args:
            frame_index: increasing frame number (gaps allowed).
            boxes: [P, 4] x, y, w, h, image pixels.
            keypoints: [P, K, 2] image pixels, or None.
            keypoint_scores: [P, K] confidences, or None (all joints used).

        Returns:
            [P] int64 track ids, unique within the frame.
        """
        if self._last_frame is not None and frame_index <= self._last_frame:
            raise ValueError(
                f"frames must arrive in increasing order: got {frame_index} after "
                f"{self._last_frame}"
            )
        self._last_frame = frame_index
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        count = len(boxes)
        if keypoints is not None:
            keypoints = np.asarray(keypoints, dtype=np.float64)
            if keypoints.shape[:2] != (count, len(self.sigmas)):
                raise ValueError(
                    f"keypoints: expected shape [{count}, {len(self.sigmas)}, 2], "
                    f"got {list(keypoints.shape)}"
                )
            if keypoint_scores is None:
                keypoint_scores = np.ones(keypoints.shape[:2])
            keypoint_scores = np.asarray(keypoint_scores, dtype=np.float64)

        self.tracks = [t for t in self.tracks if frame_index - t.last_frame <= self.patience + 1]
        similarity = self._similarity(frame_index, boxes, keypoints, keypoint_scores)
        ids = np.full(count, -1, dtype=np.int64)
        if similarity.size:
            rows, cols = linear_sum_assignment(-similarity)
            for track_index, person in zip(rows, cols, strict=True):
                if similarity[track_index, person] < self.min_similarity:
                    continue
                track = self.tracks[track_index]
                self._refresh(track, frame_index, person, boxes, keypoints, keypoint_scores)
                ids[person] = track.track_id
        for person in np.flatnonzero(ids < 0):
            track = Track(
                track_id=self.next_id,
                box=boxes[person].copy(),
                keypoints=None if keypoints is None else keypoints[person].copy(),
                keypoint_scores=None if keypoint_scores is None else keypoint_scores[person].copy(),
                velocity=np.zeros(2),
                last_frame=frame_index,
            )
            self.next_id += 1
            self.tracks.append(track)
            ids[person] = track.track_id
        return ids

    def _similarity(
        self,
        frame_index: int,
        boxes: np.ndarray,
        keypoints: np.ndarray | None,
        keypoint_scores: np.ndarray | None,
    ) -> np.ndarray:
        """[tracks, people] similarity in [0, 1]."""
        if not self.tracks or not len(boxes):
            return np.zeros((len(self.tracks), len(boxes)))
        predicted = np.stack([t.predicted_box(frame_index) for t in self.tracks])
        iou = box_iou(predicted, boxes)
        with_pose = keypoints is not None and all(t.keypoints is not None for t in self.tracks)
        if not with_pose or self.oks_weight == 0:
            return iou
        track_points = np.stack([t.predicted_keypoints(frame_index) for t in self.tracks])
        track_valid = np.stack([t.keypoint_scores for t in self.tracks]) >= self.keypoint_threshold
        valid = keypoint_scores >= self.keypoint_threshold
        oks = pose_oks(
            track_points, keypoints, track_valid, valid, boxes[:, 2:].prod(-1), self.sigmas
        )
        return self.oks_weight * oks + (1 - self.oks_weight) * iou

    def _refresh(
        self,
        track: Track,
        frame_index: int,
        person: int,
        boxes: np.ndarray,
        keypoints: np.ndarray | None,
        keypoint_scores: np.ndarray | None,
    ) -> None:
        gap = frame_index - track.last_frame
        old_centre = track.box[:2] + track.box[2:] / 2
        new_centre = boxes[person, :2] + boxes[person, 2:] / 2
        motion = (new_centre - old_centre) / gap
        track.velocity = (
            self.velocity_smoothing * motion + (1 - self.velocity_smoothing) * track.velocity
        )
        track.box = boxes[person].copy()
        if keypoints is not None:
            track.keypoints = keypoints[person].copy()
            track.keypoint_scores = keypoint_scores[person].copy()
        track.last_frame = frame_index
        track.hits += 1
