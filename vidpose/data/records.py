"""Plain records every dataset reader returns and every consumer reads.

Readers (PoseTrack17/18/21, COCO, synthetic) turn files into these; the clip
dataset, the evaluators and the writers never look at raw JSON again. All
coordinates are pixels of the original image, x to the right, y down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class PersonAnnotation:
    """One person in one frame.

    Attributes:
        track_id: identity within the video (0-based in PoseTrack ground truth).
        bbox: [4] x, y, w, h.
        keypoints: [K, 3] x, y, v; an unannotated joint is (0, 0, 0). v is the
            visibility flag as stored in the file (PoseTrack often writes 0 on
            annotated points; a joint is annotated when x, y or v is nonzero).
        head_box: [4] x, y, w, h of the head, or None (COCO has none).
        annotation_id: the file's annotation id, or None.
        person_id: PoseTrack21's identity across videos, or None.
        score: detection or prediction score (1 for ground truth).
    """

    track_id: int
    bbox: np.ndarray
    keypoints: np.ndarray
    head_box: np.ndarray | None = None
    annotation_id: int | None = None
    person_id: int | None = None
    score: float = 1.0

    @property
    def annotated(self) -> np.ndarray:
        """[K] bool: joints with an annotation (not the all-zero placeholder)."""
        return np.any(self.keypoints != 0, axis=1)


@dataclass
class FrameRecord:
    """One frame of a video (or one COCO image, as a one-frame video).

    Attributes:
        video: video name, e.g. "012834_mpii_test" (COCO: the image file stem).
        frame_index: 0-based position of the frame in its video.
        image_id: the file's image id (PoseTrack id scheme for PoseTrack).
        image_path: image file relative to the dataset root ("images/val/.../000000.jpg").
        is_labeled: whether the frame carries pose annotations.
        num_frames: frames in the whole video.
        ignore_regions: polygons, each [P, 2] x, y; points inside are not evaluated.
        persons: annotated people (empty for unlabeled frames).
        width, height: image size when the file says it, else None.
    """

    video: str
    frame_index: int
    image_id: int
    image_path: str
    is_labeled: bool
    num_frames: int
    ignore_regions: list[np.ndarray] = field(default_factory=list)
    persons: list[PersonAnnotation] = field(default_factory=list)
    width: int | None = None
    height: int | None = None


@dataclass
class VideoRecord:
    """Every frame of one video, in order (labeled or not).

    Attributes:
        name: the video name (the annotation file's stem for per-video JSON).
        frames: FrameRecord per frame, ``frames[i].frame_index == i``.
        source: the annotation file it was read from.
    """

    name: str
    frames: list[FrameRecord]
    source: Path | None = None

    @property
    def labeled_frames(self) -> list[FrameRecord]:
        return [frame for frame in self.frames if frame.is_labeled]
