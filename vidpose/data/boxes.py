"""Person boxes for top-down evaluation, and their enlargement to the model's crop.

Boxes come from the ground truth (``data.val_boxes: gt``) or from a detections file in
the COCO results format (``data.val_boxes: path/to/detections.json``), a list of::

    {"image_id": 10128340000, "category_id": 1, "bbox": [x, y, w, h], "score": 0.98}

which is how the PoseWarper/DCPose precomputed PoseTrack boxes are distributed. All
boxes are x, y, w, h in pixels of the original image.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidpose.data.json_fields import AnnotationError, FieldReader, describe, load_json
from vidpose.data.records import VideoRecord

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class PersonBox:
    """One person box in one image.

    Attributes:
        bbox: [4] x, y, w, h in pixels of the original image.
        score: detection score (1 for ground truth).
        track_id: the ground-truth track id, None for detections.
    """

    bbox: np.ndarray
    score: float = 1.0
    track_id: int | None = None


def ground_truth_boxes(videos: Iterable[VideoRecord]) -> dict[int, list[PersonBox]]:
    """Ground-truth person boxes of every frame, keyed by image id.

    Every frame gets an entry (an empty list when it has no person). Persons whose box
    has no area (a file without ``bbox`` and a person without joints or head box) are
    left out: no crop can be made from them.
    """
    boxes: dict[int, list[PersonBox]] = {}
    for video in videos:
        for frame in video.frames:
            boxes[frame.image_id] = [
                PersonBox(bbox=np.asarray(person.bbox, dtype=np.float64), track_id=person.track_id)
                for person in frame.persons
                if person.bbox[2] > 0 and person.bbox[3] > 0
            ]
    return boxes


def read_detections(
    path: str | os.PathLike, *, score_threshold: float = 0.0, category_id: int | None = 1
) -> dict[int, list[PersonBox]]:
    """Detections in the COCO results format, keyed by image id, best score first.

    Args:
        path: JSON file holding a list of ``{image_id, bbox [x,y,w,h], score,
            category_id}``.
        score_threshold: detections with ``score < score_threshold`` are dropped.
        category_id: keep only this category (1 = person in COCO and PoseTrack); None
            keeps all. A detection without ``category_id`` is taken as a person.

    Detections of zero width or height are left out (no crop can be made from them),
    with a warning that counts them.

    Raises:
        FileNotFoundError, AnnotationError: the file is missing or malformed; the
            message names the detection (position and image id) and the field.
    """
    path = Path(path)
    shown = str(path)
    data = load_json(path, shown)
    if not isinstance(data, list):
        raise AnnotationError(
            f"{shown}: the top level is {describe(data)}, expected a list of detections "
            "(COCO results format: [{image_id, category_id, bbox, score}, ...])"
        )
    boxes: dict[int, list[PersonBox]] = {}
    zero_size = 0
    for position, detection in enumerate(data):
        what = f"detection #{position}"
        if isinstance(detection, dict) and isinstance(detection.get("image_id"), int):
            what += f" (image {detection['image_id']})"
        reader = FieldReader(detection, file=shown, what=what)
        image_id = reader.integer("image_id")
        bbox = reader.numbers("bbox", 4)
        if bbox[2] < 0 or bbox[3] < 0:
            raise reader.error(
                "bbox", f"is {bbox.tolist()} with a negative size", "[x, y, w, h] with w, h >= 0"
            )
        score = reader.number("score")
        category = reader.integer("category_id", default=category_id)
        if category_id is not None and category != category_id:
            continue
        if score < score_threshold:
            continue
        if bbox[2] == 0 or bbox[3] == 0:
            zero_size += 1
            continue
        boxes.setdefault(image_id, []).append(PersonBox(bbox=bbox, score=score))
    if zero_size:
        LOGGER.warning(
            f"{shown}: {zero_size} of {len(data)} detections have zero width or height and "
            "are left out (expected [x, y, w, h] with w, h > 0)"
        )
    for image_boxes in boxes.values():
        image_boxes.sort(key=lambda box: -box.score)
    return boxes


def load_boxes(
    source: str, videos: list[VideoRecord], *, score_threshold: float = 0.0
) -> dict[int, list[PersonBox]]:
    """Boxes for evaluating ``videos``: ``"gt"`` or a detections file (``data.val_boxes``).

    Every image id of ``videos`` gets an entry (possibly empty). A warning counts the
    detections of image ids that are no frame of ``videos`` and those that lie wholly
    outside their image (where the image size is known): boxes that can find no one.

    Raises:
        AnnotationError: a detections file none of whose image ids belongs to ``videos``
            (detections of another split or another id scheme).
    """
    if source == "gt":
        return ground_truth_boxes(videos)
    detections = read_detections(source, score_threshold=score_threshold)
    image_ids = {frame.image_id for video in videos for frame in video.frames}
    if detections and not image_ids & detections.keys():
        example = next(iter(detections))
        raise AnnotationError(
            f"{source}: none of the {len(detections)} image ids with detections (e.g. {example}) "
            f"belongs to the {len(image_ids)} frames being evaluated, expected detections of "
            "the same split with the same image ids"
        )
    _warn_about_unusable(source, detections, videos)
    return {image_id: detections.get(image_id, []) for image_id in image_ids}


def _warn_about_unusable(
    source: str, detections: dict[int, list[PersonBox]], videos: list[VideoRecord]
) -> None:
    """Warn, with counts, about detections that cannot find anyone: on image ids that are
    no frame of ``videos``, or wholly outside their image."""
    frames = {frame.image_id: frame for video in videos for frame in video.frames}
    sizes = {video.name: _image_size(video) for video in videos}
    total = sum(len(boxes) for boxes in detections.values())
    elsewhere = sum(len(boxes) for image_id, boxes in detections.items() if image_id not in frames)
    outside = 0
    for image_id, boxes in detections.items():
        frame = frames.get(image_id)
        if frame is None:
            continue
        if frame.width is not None and frame.height is not None:
            width, height = frame.width, frame.height
        elif sizes[frame.video] is not None:
            width, height = sizes[frame.video]
        else:
            continue
        for box in boxes:
            x, y, w, h = box.bbox
            if x >= width or y >= height or x + w <= 0 or y + h <= 0:
                outside += 1
    if elsewhere:
        LOGGER.warning(
            f"{source}: {elsewhere} of {total} detections are on image ids that are no frame "
            f"of the {len(videos)} videos evaluated; they are not used"
        )
    if outside:
        usable = total - elsewhere - outside
        LOGGER.warning(
            f"{source}: {outside} of {total} detections lie wholly outside their image "
            f"({usable} usable boxes left); expected x, y, w, h in pixels of the image"
        )


def _image_size(video: VideoRecord) -> tuple[int, int] | None:
    """(width, height) of the video's first frame, read from the image file's header (the
    dataset root is the folder above the annotation file that holds the image); None
    when the image is not found."""
    if video.source is None or not video.frames:
        return None
    from PIL import Image

    image_path = video.frames[0].image_path
    for folder in Path(video.source).parents:
        candidate = folder / image_path
        if candidate.is_file():
            try:
                with Image.open(candidate) as image:
                    return image.size
            except OSError:
                return None
    return None


def enlarge_box(box: np.ndarray, padding: float = 1.25, aspect: float = 192 / 256) -> np.ndarray:
    """Bring boxes to the model's aspect ratio, then enlarge them, about their centres.

    The short side grows until ``w / h == aspect`` (the person is never cropped), then
    both sides are multiplied by ``padding`` (1.25: the usual 25% context margin of
    top-down pose estimators).

    Args:
        box: [..., 4] x, y, w, h in pixels.
        padding: enlargement factor (> 0).
        aspect: model input width / height (192 / 256 for a 256 x 192 input).

    Returns:
        [..., 4] x, y, w, h with w / h == aspect (boxes of zero size stay zero).
    """
    if padding <= 0 or aspect <= 0:
        raise ValueError(
            f"enlarge_box: padding and aspect must be positive, got {padding}, {aspect}"
        )
    box = np.asarray(box, dtype=np.float64)
    if box.shape[-1] != 4:
        raise ValueError(
            f"enlarge_box: expected boxes [..., 4] (x, y, w, h), got shape {box.shape}"
        )
    x, y, w, h = np.moveaxis(box, -1, 0)
    centre_x, centre_y = x + w / 2, y + h / 2
    width = np.maximum(w, h * aspect) * padding
    height = np.maximum(h, w / aspect) * padding
    return np.stack([centre_x - width / 2, centre_y - height / 2, width, height], axis=-1)
