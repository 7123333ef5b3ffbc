"""Person boxes for video extraction: from a detections file, a detector, or one person.

Every source answers one question per frame, in frame order: which people are in
this frame? ``boxes(frame_index, frame)`` returns ``(boxes [P, 4], scores [P])``,
boxes as x, y, w, h in pixels of the full video frame (x, y = top-left corner,
the pixel convention of ``vidpose.codecs.geometry``). After the frame's poses are
estimated, the extraction driver calls ``observe(frame_index, keypoints, scores)``;
only the single-person source uses it, to place the next frame's box.

Sources:

- :class:`DetectionTable`: boxes read once from a file by :func:`read_detections`:
  COCO results JSON (a list of ``{"image_id", "bbox", "score"}``), a PoseTrack-style
  annotation file (``images`` + ``annotations``, e.g. ground truth), or MOT text
  (``frame,id,x,y,w,h,score,...`` with 1-based frames).
- :class:`DetectorBoxes`: any callable ``frame [H, W, 3] uint8 RGB -> (boxes [P, 4]
  xywh, scores [P])``, e.g. an ONNX model of ``vidpose.inference.detectors`` or a
  torchvision detector wrapped by the user (docs/extraction.md has an example), run
  every frame or every N frames with boxes carried from the poses in between.
- :class:`SinglePersonBoxes`: one person, found by a detector when given one, else the
  whole frame at the start, then the box around the previous frame's confident
  keypoints, enlarged; the previous box when too few keypoints are confident.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from vidpose.data.boxes import read_detections as read_coco_detections
from vidpose.data.json_fields import AnnotationError, FieldReader, describe, load_json
from vidpose.data.posetrack import posetrack_image_id
from vidpose.inference.tracker import box_iou

LOGGER = logging.getLogger(__name__)

# A detector callable: frame [H, W, 3] uint8 RGB -> (boxes [P, 4] x, y, w, h, scores [P]).
Detector = Callable[[np.ndarray], tuple[npt.ArrayLike, npt.ArrayLike]]

# PoseTrack image ids: K * 10^10 + video_number * 10^4 + frame_index (K = 1 mpii,
# 2 bonn, 3 mpiinew). Ids at or above 10^10 are read in that scheme; smaller ids are
# frame indices.
POSETRACK_ID_BASE = 10**10


def empty_boxes() -> tuple[np.ndarray, np.ndarray]:
    """No people: boxes [0, 4] and scores [0], float64."""
    return np.zeros((0, 4)), np.zeros(0)


class PersonBoxSource(Protocol):
    """What the extraction driver asks of a box source (see the module docstring)."""

    def boxes(self, frame_index: int, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Boxes [P, 4] x, y, w, h (frame pixels) and scores [P] of one frame.

        Args:
            frame_index: 0-based, increasing from call to call.
            frame: [H, W, 3] uint8 RGB, the frame itself.
        """
        ...

    def observe(self, frame_index: int, keypoints: np.ndarray, scores: np.ndarray) -> None:
        """The poses estimated in the boxes just returned: keypoints [P, K, 2] in frame
        pixels and scores [P, K]."""
        ...


# --------------------------------------------------------------------------- file source


@dataclass
class DetectionTable:
    """Boxes per frame, read from a file.

    Attributes:
        frames: frame index (0-based) -> (boxes [P, 4] x, y, w, h frame pixels, scores [P]).
        source: the file the boxes came from (for messages).
        score_threshold: boxes scoring below this are dropped when asked for.
    """

    frames: dict[int, tuple[np.ndarray, np.ndarray]]
    source: str = "<memory>"
    score_threshold: float = 0.0
    _checked: bool = field(default=False, repr=False, compare=False)

    def boxes(self, frame_index: int, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self._checked:  # the first frame gives the video's frame size
            self._checked = True
            self.warn_outside(frame.shape[1], frame.shape[0])
        boxes, scores = self.frames.get(frame_index, empty_boxes())
        keep = (scores >= self.score_threshold) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
        return boxes[keep], scores[keep]

    def observe(self, frame_index: int, keypoints: np.ndarray, scores: np.ndarray) -> None:
        pass

    @property
    def last_frame(self) -> int:
        """The largest frame index with an entry (-1 when the table is empty)."""
        return max(self.frames, default=-1)

    def warn_outside(self, width: int, height: int) -> int:
        """Warn when boxes of the table lie wholly outside a ``width`` x ``height`` frame
        (boxes of another video, or not in pixels): they can find no one. Returns how
        many do."""
        total = sum(len(boxes) for boxes, _ in self.frames.values())
        outside = 0
        for boxes, _ in self.frames.values():
            x, y, w, h = boxes.T
            outside += int(np.sum((x >= width) | (y >= height) | (x + w <= 0) | (y + h <= 0)))
        if outside:
            what = "none of them can" if outside == total else "they can find no one"
            LOGGER.warning(
                f"{self.source}: {outside} of {total} boxes lie wholly outside the "
                f"{width} x {height} frames of the video ({what}); expected x, y, w, h in "
                "pixels of this video's frames"
            )
        return outside


def posetrack_video_key(video_name: str) -> int | None:
    """``K * 10^6 + video_number`` of a PoseTrack video name, or None for other names.

    This is ``image_id // 10^4`` of the video's frames: ``012834_mpii_test`` -> 1012834.
    """
    first_image = posetrack_image_id(video_name, 0)
    return None if first_image is None else first_image // 10**4


def read_detections(
    path: str | Path, *, video: str | None = None, score_threshold: float = 0.0
) -> DetectionTable:
    """Read the person boxes of one video from a detections file.

    Formats, chosen by content:

    - COCO results JSON: a list of ``{"image_id", "bbox": [x, y, w, h], "score"}``
      (``category_id``, when present, must be 1, person; other categories are skipped).
      ``image_id`` is a frame index (0-based) when below 10^10, else a PoseTrack image
      id (``K*10^10 + video_number*10^4 + frame``). A file holding several PoseTrack
      videos (e.g. the PoseWarper detections) is filtered to ``video``, whose name must
      then follow the PoseTrack pattern (``012834_mpii_test``).
    - A PoseTrack annotation file (an object with ``images`` and ``annotations``):
      frames are the positions in ``images``; ``score`` defaults to 1.
    - MOT text (``.txt``/``.csv``): one box per line, ``frame,id,x,y,w,h[,score,...]``,
      frames 1-based; a missing score counts as 1.

    Args:
        path: the file.
        video: the video's name (file stem), used to pick its boxes from multi-video files.
        score_threshold: boxes scoring below this are dropped.

    Returns:
        The boxes per 0-based frame index, in the frame's pixels.

    Raises:
        FileNotFoundError: no such file.
        AnnotationError: the file is malformed (the message names the file, the record
            or line, and what was expected).
    """
    path = Path(path)
    shown = str(path)
    if not path.is_file():
        raise FileNotFoundError(f"{shown}: detections file not found")
    if path.suffix.lower() in (".txt", ".csv"):
        rows = _read_mot(path, shown)
    else:
        content = load_json(path, shown)
        if isinstance(content, dict) and "annotations" in content:
            rows = _read_annotation_file(content, shown)
        elif isinstance(content, list):
            rows = _read_coco_results(path, shown, video)
        else:
            raise AnnotationError(
                f"{shown}: expected a COCO results list or an object with 'images' and "
                f"'annotations', got {describe(content)}"
            )
    zero_size = sum(1 for _, box, _ in rows if box[2] == 0 or box[3] == 0)
    if zero_size:
        LOGGER.warning(
            f"{shown}: {zero_size} of {len(rows)} boxes have zero width or height and are "
            "left out (expected x, y, w, h with w, h > 0)"
        )
    if not rows:
        LOGGER.warning(f"{shown}: holds no person box; every frame will have no one in it")
    return DetectionTable(frames=_group(rows), source=shown, score_threshold=score_threshold)


_Row = tuple[int, np.ndarray, float]  # frame index, box [4], score


def _group(rows: list[_Row]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    grouped: dict[int, tuple[list[np.ndarray], list[float]]] = {}
    for frame, box, score in rows:
        boxes, scores = grouped.setdefault(frame, ([], []))
        boxes.append(box)
        scores.append(score)
    return {
        frame: (np.stack(boxes).astype(np.float64), np.asarray(scores, dtype=np.float64))
        for frame, (boxes, scores) in sorted(grouped.items())
    }


def _read_box(reader: FieldReader) -> np.ndarray:
    box = reader.numbers("bbox", 4)
    if box[2] < 0 or box[3] < 0:
        raise reader.error("bbox", f"has a negative size {box.tolist()}", "x, y, w >= 0, h >= 0")
    return box


def _read_coco_results(path: Path, shown: str, video: str | None) -> list[_Row]:
    by_image = read_coco_detections(path)
    if not by_image or min(by_image) < POSETRACK_ID_BASE:
        # Frame-index keys; a file mixing the two schemes is an error.
        mixed = [image_id for image_id in by_image if image_id >= POSETRACK_ID_BASE]
        if mixed:
            raise AnnotationError(
                f"{shown}: image_id {mixed[0]} is a PoseTrack image id but image_id "
                f"{min(by_image)} is a frame index; expected one scheme for all detections"
            )
        if min(by_image, default=0) < 0:
            raise AnnotationError(
                f"{shown}: image_id {min(by_image)} is negative, expected frame indices >= 0 "
                f"or PoseTrack image ids"
            )
        return [
            (image_id, box.bbox, box.score) for image_id, boxes in by_image.items() for box in boxes
        ]
    keys = sorted({image_id // 10**4 for image_id in by_image})
    wanted = posetrack_video_key(video) if video is not None else None
    if wanted is None:
        if len(keys) > 1:
            raise AnnotationError(
                f"{shown}: holds the boxes of {len(keys)} PoseTrack videos (image ids "
                f"{keys[0]}xxxx, {keys[1]}xxxx, ...) and the video name {video!r} does not "
                f"say which one (expected a name like 012834_mpii_test)"
            )
        wanted = keys[0]
    if wanted not in keys:
        # Most likely the detections of another split or dataset: say so rather than
        # extracting a video with nobody in it.
        raise AnnotationError(
            f"{shown}: no detections for video {video!r} (image ids {wanted}xxxx); the file "
            f"holds {len(keys)} other PoseTrack videos, e.g. image ids {keys[0]}xxxx"
        )
    return [
        (image_id % 10**4, box.bbox, box.score)
        for image_id, boxes in by_image.items()
        if image_id // 10**4 == wanted
        for box in boxes
    ]


def _read_annotation_file(content: dict[str, Any], shown: str) -> list[_Row]:
    top = FieldReader(content, file=shown, what="top level")
    frame_of: dict[int, int] = {}
    for position, image in enumerate(top.objects("images", [])):
        reader = FieldReader(image, file=shown, what=f"images[{position}]")
        frame_of[reader.integer("id")] = position
    rows = []
    records = top.objects("annotations")
    without_box = 0
    for position, record in enumerate(records):
        reader = FieldReader(record, file=shown, what=f"annotations[{position}]")
        image_id = reader.integer("image_id")
        if image_id not in frame_of:
            if frame_of:
                raise reader.error("image_id", f"is {image_id}", "the id of an entry of 'images'")
            frame_of[image_id] = image_id  # no 'images' list: ids are frame indices
        if not reader.has("bbox"):
            without_box += 1  # a person without a box (PoseTrack lists some): nothing to crop
            continue
        rows.append((frame_of[image_id], _read_box(reader), reader.number("score", 1.0)))
    if without_box:
        LOGGER.warning(
            f"{shown}: {without_box} of {len(records)} annotations have no 'bbox' and are "
            "left out (expected a person box [x, y, w, h] on each annotation; a PoseTrack "
            "file without boxes cannot give the people)"
        )
    return rows


def _read_mot(path: Path, shown: str) -> list[_Row]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            fields = [field.strip() for field in re.split(r"[,\s]+", text)]
            where = f"{shown}: line {line_number}"
            if len(fields) < 6:
                raise AnnotationError(
                    f"{where}: {len(fields)} fields, expected at least 6 "
                    f"(frame,id,x,y,w,h[,score,...])"
                )
            try:
                values = [float(field) for field in fields[:7]]
            except ValueError:
                raise AnnotationError(
                    f"{where}: {text!r} is not numbers, expected frame,id,x,y,w,h[,score,...]"
                ) from None
            if not all(math.isfinite(value) for value in values):
                raise AnnotationError(f"{where}: {text!r} has a non-finite number")
            frame = values[0]
            if not frame.is_integer() or frame < 1:
                raise AnnotationError(f"{where}: frame {fields[0]!r}, expected an integer >= 1")
            box = np.asarray(values[2:6])
            if box[2] < 0 or box[3] < 0:
                raise AnnotationError(f"{where}: negative box size {box[2:].tolist()}")
            # MOT ground truth stores -1 or a 0/1 flag in the score column of
            # detections without one; only a real confidence is kept.
            score = values[6] if len(values) > 6 and values[6] >= 0 else 1.0
            rows.append((int(frame) - 1, box, score))
    return rows


def detection_file_for(boxes: str | Path, video: str) -> Path:
    """The detections file of ``video`` when ``boxes`` is a folder of per-video files
    (``<video>.json``, ``<video>.txt`` or ``<video>.csv``); ``boxes`` itself otherwise.

    Raises:
        FileNotFoundError: the folder has no file for this video.
    """
    boxes = Path(boxes)
    if not boxes.is_dir():
        return boxes
    for suffix in (".json", ".txt", ".csv"):
        candidate = boxes / f"{video}{suffix}"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{boxes}: no detections file for video {video!r} (expected {video}.json, "
        f"{video}.txt or {video}.csv)"
    )


# --------------------------------------------------------------------------- detector


class DetectorBoxes:
    """Boxes from a detector, run every ``every`` frames.

    On the frames in between, each person of the previous frame is followed by the box
    around its confident keypoints (:func:`keypoint_box`: enlarged, clipped to the
    frame), keeping its detection score; a person with fewer than ``min_keypoints``
    confident keypoints is dropped until the next detection. The tracker then keeps
    the ids, since the carried boxes overlap the tracks they came from. People who
    enter the frame are found at the next detection.

    Args:
        detector: ``frame [H, W, 3] uint8 RGB -> (boxes [P, 4] x, y, w, h frame pixels,
            scores [P])``; numpy arrays or anything ``np.asarray`` accepts (a CPU tensor).
        score_threshold: boxes scoring below this are dropped.
        max_people: keep at most this many boxes per frame, best first (None: all).
        every: run the detector on frames 0, every, 2 every, ... (1: every frame).
        keypoint_threshold, min_keypoints, enlarge: how poses become boxes in between
            (as :class:`SinglePersonBoxes`).
    """

    def __init__(
        self,
        detector: Detector,
        *,
        score_threshold: float = 0.5,
        max_people: int | None = None,
        every: int = 1,
        keypoint_threshold: float = 0.3,
        min_keypoints: int = 4,
        enlarge: float = 1.3,
    ) -> None:
        if not callable(detector):
            raise TypeError(f"DetectorBoxes: detector must be callable, got {type(detector)}")
        if every < 1:
            raise ValueError(f"DetectorBoxes: every must be >= 1, got {every}")
        self.detector = detector
        self.score_threshold = score_threshold
        self.max_people = max_people
        self.every = every
        self.keypoint_threshold = keypoint_threshold
        self.min_keypoints = min_keypoints
        self.enlarge = enlarge
        self.detections = 0  # frames the detector ran on
        self._carried: tuple[np.ndarray, np.ndarray] | None = None
        self._last_scores = np.zeros(0)
        self._frame_size: tuple[int, int] | None = None

    def detect(self, frame_index: int, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The detector's boxes of one frame, thresholded, best first."""
        raw_boxes, raw_scores = self.detector(frame)
        self.detections += 1
        boxes = np.asarray(raw_boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(raw_scores, dtype=np.float64).reshape(-1)
        if len(scores) != len(boxes):
            raise ValueError(
                f"detector at frame {frame_index}: returned {len(boxes)} boxes and "
                f"{len(scores)} scores, expected one score per box"
            )
        keep = (scores >= self.score_threshold) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
        boxes, scores = boxes[keep], scores[keep]
        order = np.argsort(-scores, kind="stable")[: self.max_people]
        return boxes[order], scores[order]

    def boxes(self, frame_index: int, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        height, width = frame.shape[:2]
        self._frame_size = (width, height)
        if frame_index % self.every == 0 or self._carried is None:
            found = self.detect(frame_index, frame)
        else:
            found = self._carried
        self._last_scores = found[1]
        return found

    def observe(self, frame_index: int, keypoints: np.ndarray, scores: np.ndarray) -> None:
        if self.every == 1:
            return
        boxes, box_scores = [], []
        for person in range(len(keypoints)):
            box = keypoint_box(
                keypoints[person],
                scores[person],
                threshold=self.keypoint_threshold,
                min_keypoints=self.min_keypoints,
                enlarge=self.enlarge,
                frame_size=self._frame_size,
            )
            if box is not None:
                boxes.append(box)
                box_scores.append(self._last_scores[person])
        self._carried = (np.reshape(boxes, (-1, 4)), np.asarray(box_scores, dtype=np.float64))


def keypoint_box(
    keypoints: np.ndarray,
    scores: np.ndarray,
    *,
    threshold: float,
    min_keypoints: int,
    enlarge: float,
    frame_size: tuple[int, int] | None,
) -> np.ndarray | None:
    """[4] x, y, w, h around one pose's confident keypoints, grown by ``enlarge`` about
    its centre and clipped to the frame; None with fewer than ``min_keypoints``
    confident (score >= ``threshold``, finite) keypoints or a degenerate box.

    Args:
        keypoints: [K, 2] frame pixels; scores: [K]; frame_size: (W, H) or None.
    """
    points, point_scores = np.asarray(keypoints), np.asarray(scores)
    confident = (point_scores >= threshold) & np.isfinite(points).all(axis=1)
    if confident.sum() < min_keypoints:
        return None
    low, high = points[confident].min(axis=0), points[confident].max(axis=0)
    centre, size = (low + high) / 2, (high - low) * enlarge
    # A minimum size keeps a collapsed set of points (e.g. only the head) usable.
    size = np.maximum(size, 0.1 * max(size.max(), 1.0))
    box = np.concatenate([centre - size / 2, size])
    if frame_size is not None:
        box = clip_box(box, frame_size)
    return box if box[2] > 1 and box[3] > 1 else None


# --------------------------------------------------------------------------- one person


class SinglePersonBoxes:
    """One person per frame, followed from the previous frame's keypoints.

    Without a detector, frame 0 (and any frame after ``reset_after`` low-confidence
    frames in a row) gets the whole frame. After each frame, the box becomes the
    bounding box of the keypoints scoring at least ``keypoint_threshold``, grown by
    ``enlarge`` around its centre (a keypoint box is tighter than a person box: the
    head top and the hands are points, the body's width is not) and clipped to the
    frame (:func:`keypoint_box`). With fewer than ``min_keypoints`` confident keypoints
    the previous box is kept. Whether a person is there at all is then the pose's
    score's to say: the extraction drops a pose scoring below its ``min_pose_score``
    (``ExtractOptions``), and this source marks its boxes' scores as taken from the
    pose (``box_scores_from_pose``), since a box over the whole frame is no detection.

    With a ``detector`` (any ``Detector`` callable, e.g. an ONNX model of
    ``vidpose.inference.detectors``), the detector decides: on every ``every``-th frame
    the person is the detection overlapping the followed box most (IoU >= 0.1), else
    the best-scoring one; a frame without a detection above ``score_threshold`` has no
    person. In between, the box follows the keypoints as above.

    Args:
        keypoint_threshold: score a keypoint needs to place the box.
        min_keypoints: confident keypoints needed to move the box.
        enlarge: growth factor of the keypoint box (both sides).
        reset_after: low-confidence frames in a row after which the box is the whole
            frame again (the person may have left and come back elsewhere).
        detector: decides where (and whether) the person is; None: see above.
        score_threshold: the detector's boxes scoring below this are ignored.
        every: run the detector on every ``every``-th frame.
    """

    def __init__(
        self,
        *,
        keypoint_threshold: float = 0.3,
        min_keypoints: int = 4,
        enlarge: float = 1.3,
        reset_after: int = 15,
        detector: Detector | None = None,
        score_threshold: float = 0.5,
        every: int = 1,
    ) -> None:
        if enlarge <= 0:
            raise ValueError(f"SinglePersonBoxes: enlarge must be positive, got {enlarge}")
        self.keypoint_threshold = keypoint_threshold
        self.min_keypoints = min_keypoints
        self.enlarge = enlarge
        self.reset_after = reset_after
        self.detector = (
            None if detector is None else DetectorBoxes(detector, score_threshold=score_threshold)
        )
        self.every = every
        self.box: np.ndarray | None = None  # [4] for the next frame, None = whole frame
        self.score = 1.0
        self.misses = 0
        self._frame_size: tuple[int, int] | None = None  # (W, H)

    @property
    def box_scores_from_pose(self) -> bool:
        """True without a detector: the box score written is the pose's own score."""
        return self.detector is None

    def boxes(self, frame_index: int, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        height, width = frame.shape[:2]
        self._frame_size = (width, height)
        if self.detector is not None:
            if frame_index % self.every == 0 or self.box is None:
                return self._detect(frame_index, frame)
            return self.box[None].copy(), np.array([self.score])
        if self.box is None:
            # The frame's pixel extent: pixel centres are at integers (geometry module).
            return np.array([[-0.5, -0.5, width, height]]), np.ones(1)
        return self.box[None].copy(), np.array([self.score])

    def _detect(self, frame_index: int, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        boxes, scores = self.detector.detect(frame_index, frame)
        if not len(boxes):
            self.box = None
            return empty_boxes()
        pick = 0  # the best-scoring detection ...
        if self.box is not None:
            overlaps = box_iou(self.box[None], boxes)[0]
            if overlaps.max() >= 0.1:
                pick = int(overlaps.argmax())  # ... unless one continues the person
        self.box, self.score = boxes[pick].copy(), float(scores[pick])
        return boxes[pick : pick + 1], scores[pick : pick + 1]

    def observe(self, frame_index: int, keypoints: np.ndarray, scores: np.ndarray) -> None:
        if len(keypoints) == 0:
            return
        box = keypoint_box(
            keypoints[0],
            scores[0],
            threshold=self.keypoint_threshold,
            min_keypoints=self.min_keypoints,
            enlarge=self.enlarge,
            frame_size=self._frame_size,
        )
        if box is None:
            self.misses += 1
            if self.misses >= self.reset_after:
                self.box, self.misses = None, 0
            return
        self.misses = 0
        self.box = box
        if self.detector is None:
            point_scores = np.asarray(scores[0])
            self.score = float(point_scores[point_scores >= self.keypoint_threshold].mean())


def clip_box(box: npt.ArrayLike, frame_size: tuple[int, int]) -> np.ndarray:
    """[4] x, y, w, h clipped to the frame's pixel extent [-0.5, W - 0.5] x [-0.5, H - 0.5].

    Args:
        box: [4] x, y, w, h.
        frame_size: (W, H) of the frame.
    """
    x, y, w, h = np.asarray(box, dtype=np.float64)
    width, height = frame_size
    left, top = max(x, -0.5), max(y, -0.5)
    right, bottom = min(x + w, width - 0.5), min(y + h, height - 0.5)
    return np.array([left, top, max(right - left, 0.0), max(bottom - top, 0.0)])


def boxes_from_mapping(
    frames: Mapping[int, tuple[npt.ArrayLike, npt.ArrayLike]], *, score_threshold: float = 0.0
) -> DetectionTable:
    """A :class:`DetectionTable` from ``{frame_index: (boxes [P, 4] xywh, scores [P])}``."""
    table = {
        int(frame): (
            np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
            np.asarray(scores, dtype=np.float64).reshape(-1),
        )
        for frame, (boxes, scores) in frames.items()
    }
    return DetectionTable(frames=table, score_threshold=score_threshold)
