"""COCO person keypoints -> :class:`VideoRecord` list (each image a one-frame video).

Decisions (see docs/data.md):

* Every image becomes a video named after the image file stem (``000000391895``) with
  one frame: ``num_frames`` 1, ``is_labeled`` True, persons possibly empty. A
  ``file_name`` with folders (the synthetic COCO files) gives the path without
  extension, "/" replaced by "_", so that names stay unique and usable as file names.
* Crowd annotations (``iscrowd`` 1) are not persons. Their **box** becomes an ignore
  region (a 4-point polygon): exact for the PoseTrack-style "points inside are not
  evaluated" rule would need the RLE mask, and the box covers it. COCO OKS evaluation
  reads crowds from the original file through pycocotools, so nothing is lost there.
* Persons get track ids 0, 1, ... in file order within their image (COCO has no
  tracks), no head box, and keep ``num_keypoints``-0 annotations (zero joints).
* Images are found under ``root/<image_dir>/<file_name>``; ``image_dir`` defaults to
  the split in the official file name (``person_keypoints_val2017.json`` -> ``val2017``)
  and to nothing for other names (``file_name`` already relative to the root).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from vidpose.data.json_fields import (
    AnnotationError,
    FieldReader,
    annotation_reader,
    load_json,
    shown_path,
)
from vidpose.data.records import FrameRecord, PersonAnnotation, VideoRecord

_NUM_SLOTS = 17
_OFFICIAL_PREFIX = "person_keypoints_"


def read_coco(
    root: str | os.PathLike, annotations: str | os.PathLike, *, image_dir: str | None = None
) -> list[VideoRecord]:
    """Read a COCO keypoints file into one-frame video records.

    Args:
        root: dataset root; image paths in the records are relative to it.
        annotations: the JSON file, relative to ``root``
            (e.g. ``annotations/person_keypoints_val2017.json``).
        image_dir: folder of the images relative to ``root``; None derives it from the
            file name as described in the module docstring.

    Returns:
        One VideoRecord per image, in the file's image order.
    """
    root = Path(root)
    path = root / annotations
    shown = shown_path(path, root)
    if path.is_dir():
        raise AnnotationError(
            f"{shown}: is a folder, expected one COCO keypoints JSON file "
            "(e.g. annotations/person_keypoints_val2017.json)"
        )
    data = load_json(path, shown)
    top = FieldReader(data, file=shown, what="top level")
    if image_dir is None:
        image_dir = (
            path.stem[len(_OFFICIAL_PREFIX) :] if path.stem.startswith(_OFFICIAL_PREFIX) else ""
        )
    keypoint_categories = _keypoint_categories(top, shown)

    frames: dict[int, FrameRecord] = {}
    names: dict[str, int] = {}
    for position, image in enumerate(top.objects("images")):
        frame = _read_image(image, position, shown, image_dir)
        if frame.image_id in frames:
            raise AnnotationError(
                f"{shown}: image {frame.image_id}: 'id' is listed twice, expected unique image ids"
            )
        if frame.video in names:
            raise AnnotationError(
                f"{shown}: image {frame.image_id}: 'file_name' gives the video name "
                f"{frame.video!r} that image {names[frame.video]} already has, expected "
                "unique file names"
            )
        frames[frame.image_id] = frame
        names[frame.video] = frame.image_id

    for position, annotation in enumerate(top.objects("annotations")):
        reader, image_id = annotation_reader(annotation, position, shown, frames)
        category = reader.integer("category_id", default=None)
        if keypoint_categories and category is not None and category not in keypoint_categories:
            raise reader.error(
                "category_id",
                f"is {category}, not a category with keypoints",
                f"one of {sorted(keypoint_categories)} (a COCO person keypoints file)",
            )
        frame = frames[image_id]
        bbox = reader.numbers("bbox", 4)
        if reader.boolean("iscrowd", default=False):
            x, y, w, h = bbox
            frame.ignore_regions.append(np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]]))
            continue
        keypoints = reader.numbers("keypoints", 3 * _NUM_SLOTS).reshape(_NUM_SLOTS, 3)
        frame.persons.append(
            PersonAnnotation(
                track_id=len(frame.persons),
                bbox=bbox,
                keypoints=keypoints,
                annotation_id=reader.integer("id", default=None),
                score=reader.number("score", default=1.0),
            )
        )

    return [VideoRecord(name=frame.video, frames=[frame], source=path) for frame in frames.values()]


def _keypoint_categories(top: FieldReader, shown: str) -> set[int]:
    """Ids of the categories that have keypoints; checks they have 17 names."""
    ids = set()
    for index, category in enumerate(top.objects("categories", default=[])):
        reader = FieldReader(category, file=shown, what=f"categories[{index}]")
        names = reader.objects("keypoints", default=None)
        if names is None:
            continue
        if len(names) != _NUM_SLOTS:
            raise reader.error(
                "keypoints", f"has {len(names)} names", f"{_NUM_SLOTS} (COCO or PoseTrack joints)"
            )
        ids.add(reader.integer("id"))
    return ids


def _read_image(image: Any, position: int, shown: str, image_dir: str) -> FrameRecord:
    what = f"image #{position}"
    if isinstance(image, dict) and isinstance(image.get("id"), int):
        what = f"image {image['id']}"
    reader = FieldReader(image, file=shown, what=what)
    image_id = reader.integer("id")
    file_name = PurePosixPath(reader.text("file_name").replace("\\", "/"))
    video = file_name.with_suffix("").as_posix().replace("/", "_")
    image_path = (
        (PurePosixPath(image_dir) / file_name).as_posix() if image_dir else file_name.as_posix()
    )
    return FrameRecord(
        video=video,
        frame_index=0,
        image_id=image_id,
        image_path=image_path,
        is_labeled=True,
        num_frames=1,
        width=reader.integer("width", default=None),
        height=reader.integer("height", default=None),
    )
