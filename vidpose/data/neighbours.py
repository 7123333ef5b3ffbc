"""The person's own box in each frame of a clip (``data.neighbour_boxes: own``).

DiffPose crops every frame of a clip with the key frame's box (``key``, the default):
the crop of frame t then depends on which clip it is in, so the backbone encodes
frame t anew in each of the T clips that contain it. With ``own`` each frame is cropped
around the person's own box in that frame, so a person-frame has one crop whatever the
clip, and extraction encodes it once (``vidpose.inference.token_cache``).

Two ways to find a person's box in a neighbour frame:

- **by identity** (:class:`TrackBoxes`; training, and evaluation on ground-truth
  persons): the annotated box of the same track in that frame. Where the track is not
  annotated in it (PoseTrack labels every 4th frame outside the central 30 of a
  validation video), the box is interpolated linearly (corner and size) between the
  track's nearest annotated frames before and after it; past the track's first or last
  annotated frame, the nearest annotated box is held. The key frame is always
  annotated for its person, so some box is always found.
- **by overlap** (:func:`boxes_by_overlap`; boxes without identities: evaluation on a
  detections file, extraction): the neighbour frame's boxes are assigned one-to-one to
  the key frame's people by IoU (Hungarian); a person left without a box overlapping
  its key box by at least ``min_iou`` (nobody there, a missed detection, a frame whose
  boxes are not known yet) is cropped with its key box: DiffPose's crop, the fallback.

Boxes are x, y, w, h in image pixels (``vidpose.codecs.geometry``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

from vidpose.data.records import PersonAnnotation, VideoRecord

# Boxes of one person in adjacent frames overlap far more than this (at 25 frames/s a
# walking person moves a few percent of the box per frame); two people side by side
# overlap less. The Hungarian assignment keeps two people from taking one box.
MIN_IOU = 0.3


def box_iou(boxes_a: npt.ArrayLike, boxes_b: npt.ArrayLike) -> np.ndarray:
    """IoU matrix [A, B] of boxes [A, 4] and [B, 4] given as x, y, w, h."""
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    low = np.maximum(a[:, None, :2], b[None, :, :2])
    high = np.minimum(a[:, None, :2] + a[:, None, 2:], b[None, :, :2] + b[None, :, 2:])
    overlap = np.clip(high - low, 0, None).prod(-1)
    union = a[:, None, 2:].prod(-1) + b[None, :, 2:].prod(-1) - overlap
    return np.where(union > 0, overlap / np.maximum(union, 1e-12), 0.0)


def match_boxes(
    key_boxes: npt.ArrayLike, boxes: npt.ArrayLike, *, min_iou: float = MIN_IOU
) -> np.ndarray:
    """[P] the box of ``boxes`` [Q, 4] assigned to each key box [P, 4] (-1: none).

    One-to-one, maximising the summed IoU (Hungarian); pairs below ``min_iou`` are
    not assigned.
    """
    iou = box_iou(key_boxes, boxes)
    matched = np.full(iou.shape[0], -1, dtype=np.int64)
    if iou.size:
        rows, cols = linear_sum_assignment(-iou)
        keep = iou[rows, cols] >= min_iou
        matched[rows[keep]] = cols[keep]
    return matched


def boxes_by_overlap(
    key_boxes: npt.ArrayLike,
    frame_boxes: Sequence[npt.ArrayLike | None],
    *,
    key_position: int,
    min_iou: float = MIN_IOU,
) -> tuple[np.ndarray, np.ndarray]:
    """Each key-frame person's box in every frame of its clip, found by overlap.

    Args:
        key_boxes: [P, 4] the people of the key frame.
        frame_boxes: T entries in clip order: the boxes [Q_i, 4] of that frame, or None
            where they are not known (extraction: a future frame whose boxes depend on
            the poses estimated before it). The key position's entry is not read.
        key_position: the key frame's position in the clip.
        min_iou: the least overlap with the key box for a neighbour box to be taken.

    Returns:
        boxes [P, T, 4] (a copy of the key box where nothing matched) and found
        [P, T] bool (True where the frame's own box was found; the key position True).
    """
    key_boxes = np.asarray(key_boxes, dtype=np.float64).reshape(-1, 4)
    count, length = len(key_boxes), len(frame_boxes)
    boxes = np.repeat(key_boxes[:, None], length, axis=1)
    found = np.zeros((count, length), dtype=bool)
    found[:, key_position] = True
    for position, candidates in enumerate(frame_boxes):
        if position == key_position or candidates is None or not count:
            continue
        candidates = np.asarray(candidates, dtype=np.float64).reshape(-1, 4)
        matched = match_boxes(key_boxes, candidates, min_iou=min_iou)
        hit = matched >= 0
        boxes[hit, position] = candidates[matched[hit]]
        found[hit, position] = True
    return boxes, found


class TrackBoxes:
    """Every annotated box of every track of one video, for look-ups by identity.

    Args:
        video: the video's records.
        person_box: a person's box [4] or None (e.g. the clip dataset's: its box, else
            the extent of its annotated joints).
        frames: only these frames' annotations (None: every frame).
    """

    def __init__(
        self,
        video: VideoRecord,
        person_box: Callable[[PersonAnnotation], np.ndarray | None],
        frames: Iterable[int] | None = None,
    ) -> None:
        by_track: dict[int, list[tuple[int, np.ndarray]]] = {}
        chosen = range(len(video.frames)) if frames is None else frames
        for frame_index in chosen:
            for person in video.frames[frame_index].persons:
                box = person_box(person)
                if box is not None and int(person.track_id) >= 0:
                    by_track.setdefault(int(person.track_id), []).append((frame_index, box))
        self._tracks: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for track, entries in by_track.items():
            entries.sort(key=lambda entry: entry[0])
            self._tracks[track] = (
                np.array([frame for frame, _ in entries], dtype=np.int64),
                np.stack([np.asarray(box, dtype=np.float64) for _, box in entries]),
            )

    def box(self, track_id: int, frame_index: int) -> tuple[np.ndarray, str] | None:
        """The track's box [4] in ``frame_index`` and how it was found: "annotated",
        "interpolated" (between the nearest annotated frames on either side) or "held"
        (the nearest annotated box, past the track's ends); None for an unknown track."""
        entry = self._tracks.get(int(track_id))
        if entry is None:
            return None
        frames, boxes = entry
        after = int(np.searchsorted(frames, frame_index, side="left"))
        if after < len(frames) and frames[after] == frame_index:
            return boxes[after].copy(), "annotated"
        if after == 0:
            return boxes[0].copy(), "held"
        if after == len(frames):
            return boxes[-1].copy(), "held"
        before = after - 1
        weight = (frame_index - frames[before]) / (frames[after] - frames[before])
        return (1 - weight) * boxes[before] + weight * boxes[after], "interpolated"
