"""Ground-truth x prediction pairs within each frame, and their PCKh distances.

Every metric starts from the same quantity (poseval assignGTmulti, PoseTrack21
_calculate_pckh): for a ground-truth person g, a predicted person p and a joint j,

    d(p, g, j) = ||pred_j - gt_j|| / headsize(g),   headsize = 0.6 x head-box diagonal

and a joint matches when d <= 0.5 (PCKh@0.5). The distance is +inf when either side
lacks the joint or the ground truth has no usable head size (such a person cannot be
matched). Pairs of all frames of a video are computed in one vectorised pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vidpose.evaluation.protocols import PreparedPersons, PreparedVideo

PCKH_THRESHOLD = 0.5


@dataclass
class FramePairs:
    """All (ground truth, prediction) pairs sharing a frame, for E frames and Q pairs.

    Pairs are ordered by frame, then ground-truth row, then prediction row, so frame
    e's pairs form the block ``frame_start[e]:frame_start[e + 1]`` that reshapes to
    [n_e, m_e] (n_e ground truths x m_e predictions).

    Attributes:
        gt_index: [Q] row in the ground-truth persons.
        pred_index: [Q] row in the predicted persons.
        distances: [Q, J] head-normalised distance, +inf where not comparable.
        frame_start: [E + 1] pair offsets per frame.
        gt_start: [E + 1] ground-truth row offsets per frame.
        pred_start: [E + 1] prediction row offsets per frame.
    """

    gt_index: np.ndarray
    pred_index: np.ndarray
    distances: np.ndarray
    frame_start: np.ndarray
    gt_start: np.ndarray
    pred_start: np.ndarray

    def frame_block(self, frame: int, values: np.ndarray | None = None) -> np.ndarray:
        """[n, m, J] block of frame ``frame`` (ground truth x prediction x joint).

        Args:
            values: [Q, J] per-pair values to slice (default: the distances).
        """
        n = self.gt_start[frame + 1] - self.gt_start[frame]
        m = self.pred_start[frame + 1] - self.pred_start[frame]
        values = self.distances if values is None else values
        return values[self.frame_start[frame] : self.frame_start[frame + 1]].reshape(n, m, -1)


def frame_pairs(video: PreparedVideo) -> FramePairs:
    """Pair every ground-truth person with every prediction of the same frame."""
    gt_start = video.gt.frame_starts(video.num_frames)
    pred_start = video.pred.frame_starts(video.num_frames)
    n_per_frame = np.diff(gt_start)
    m_per_frame = np.diff(pred_start)
    q_per_frame = n_per_frame * m_per_frame
    frame_start = np.concatenate([[0], np.cumsum(q_per_frame)])
    pair_frame = np.repeat(np.arange(video.num_frames), q_per_frame)
    local = np.arange(frame_start[-1]) - frame_start[pair_frame]
    m = m_per_frame[pair_frame]
    gt_index = gt_start[pair_frame] + local // np.maximum(m, 1)
    pred_index = pred_start[pair_frame] + local % np.maximum(m, 1)
    return FramePairs(
        gt_index=gt_index,
        pred_index=pred_index,
        distances=pckh_distances(video.gt, video.pred, gt_index, pred_index),
        frame_start=frame_start,
        gt_start=gt_start,
        pred_start=pred_start,
    )


def pckh_distances(
    gt: PreparedPersons, pred: PreparedPersons, gt_index: np.ndarray, pred_index: np.ndarray
) -> np.ndarray:
    """[Q, J] ||pred - gt|| / headsize for the given person pairs, +inf if not comparable."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        delta = gt.xy[gt_index] - pred.xy[pred_index]  # [Q, J, 2]
        # sqrt(dx^2 + dy^2): the arithmetic of np.linalg.norm on a 2-vector, as both tools use.
        length = np.sqrt(delta[..., 0] * delta[..., 0] + delta[..., 1] * delta[..., 1])
        distances = length / gt.head_sizes[gt_index, None]
    comparable = gt.exists[gt_index] & pred.exists[pred_index]
    # NaN comes from a missing or zero head box, or from a NaN keypoint (poseval keeps
    # those); inf from an infinite one. Neither can match, as in both tools, where
    # NaN <= 0.5 and inf <= 0.5 are False.
    return np.where(comparable & ~np.isnan(distances), distances, np.inf)
