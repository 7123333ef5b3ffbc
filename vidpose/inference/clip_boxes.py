"""Which box each frame of an extraction clip is cropped around.

A model trained with ``data.neighbour_boxes: key`` crops every frame of a clip with the
key frame's box: only the key frame's boxes are needed, asked of the box source when
the frame becomes the key frame, as before.

A model trained with ``own`` crops each frame around the person's own box in it. The
extraction knows a frame's people only as boxes (track ids come after the poses are
estimated, ``vidpose.inference.tracker``), so a key-frame person's box in a neighbour
frame is the neighbour frame's box matched to it by IoU (one-to-one, Hungarian,
``vidpose.data.neighbours.boxes_by_overlap``); where nothing overlaps its key box by at
least ``min_iou``, the neighbour is cropped with the key box (DiffPose's crop). Because
the matched box is the neighbour frame's own box, the crop is the same as the one made
when that frame is the key frame, and the token cache encodes it once.

The neighbour frames' boxes must be known when the key frame is processed:

- past frames (negative offsets): their boxes were asked when they were key frames and
  are kept (``max(offsets) - min(offsets) + 1`` frames at most);
- future frames (positive offsets): asked of the box source ahead of time, as soon as
  the frame is read, when the source's boxes do not depend on the poses estimated
  before them (:func:`boxes_known_ahead`: a detections file, a detector run on every
  frame). Sources that place a frame's boxes from the previous frame's poses (the
  single-person source, a detector run every N frames) cannot be asked ahead: future
  neighbours then use the key box, and only the past neighbours' crops are shared.

Every frame's boxes are still asked once, in frame order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from vidpose.data.neighbours import MIN_IOU, boxes_by_overlap
from vidpose.inference.person_boxes import DetectionTable, DetectorBoxes, PersonBoxSource


class _Frames(Protocol):
    """What is read of the frame ring: ``ring[index].array`` [H, W, 3] uint8."""

    def __getitem__(self, index: int) -> Any: ...


def boxes_known_ahead(source: PersonBoxSource) -> bool:
    """Whether ``source`` may be asked for a frame's boxes before the poses of the
    frames before it are observed: its own ``boxes_known_ahead`` attribute when it has
    one (a custom source can declare it), True for a detections file and for a detector
    run on every frame, False otherwise (their boxes follow the previous poses)."""
    declared = getattr(source, "boxes_known_ahead", None)
    if declared is not None:
        return bool(declared)
    if isinstance(source, DetectionTable):
        return True
    if isinstance(source, DetectorBoxes):
        return source.every == 1
    return False


class ClipBoxes:
    """The boxes of a video's frames, kept for the clips that crop them (module docstring).

    Args:
        source: the video's box source.
        offsets: the model's frame offsets.
        own: own-box crops (``data.neighbour_boxes: own``); False: key boxes only.
        min_iou: least IoU between a key box and the neighbour box matched to it.

    Attributes:
        ahead: future frames' boxes are asked ahead of time.
        high_water: the most frames whose boxes were held at once.
    """

    def __init__(
        self,
        source: PersonBoxSource,
        offsets: Sequence[int],
        *,
        own: bool,
        min_iou: float = MIN_IOU,
    ) -> None:
        self.source = source
        self.offsets = tuple(int(offset) for offset in offsets)
        self.own = own
        self.min_iou = min_iou
        self.ahead = own and boxes_known_ahead(source)
        self._frames: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._asked = -1  # the last frame whose boxes were asked
        self.high_water = 0

    def key_boxes(self, key: int, last: int, ring: _Frames) -> tuple[np.ndarray, np.ndarray]:
        """Boxes [P, 4] and scores [P] of key frame ``key`` (``last``: the last frame read).

        Asks the source, in frame order, for every frame not asked yet up to the key
        frame, or up to the clip's last frame when it may be asked ahead; forgets the
        frames no later clip reaches.
        """
        newest = min(key + max(self.offsets), last) if self.ahead else key
        for index in range(self._asked + 1, newest + 1):
            boxes, scores = self.source.boxes(index, ring[index].array)
            self._frames[index] = (
                np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
                np.asarray(scores, dtype=np.float64).reshape(-1),
            )
            self._asked = index
        oldest = key + min(self.offsets) if self.own else key
        for index in [index for index in self._frames if index < oldest]:
            del self._frames[index]
        self.high_water = max(self.high_water, len(self._frames))
        return self._frames[key]

    def clip_boxes(self, frame_indices: Sequence[int], boxes: np.ndarray) -> np.ndarray | None:
        """[P, T, 4] the box each frame of the key frame's clips is cropped around, or
        None for key-box crops.

        Args:
            frame_indices: the clip's frames (``clip_frame_indices``), key frame included.
            boxes: [P, 4] the key frame's boxes (``key_boxes``).
        """
        if not self.own:
            return None
        candidates = [
            self._frames[index][0] if index in self._frames else None for index in frame_indices
        ]
        found, _ = boxes_by_overlap(
            boxes,
            candidates,
            key_position=self.offsets.index(0),
            min_iou=self.min_iou,
        )
        return found
