"""PoseTrack17/18/21 ground truth -> :class:`VideoRecord` lists, and back.

Layouts read here (see docs/data.md):

* PoseTrack18 / PoseTrack21: one JSON file per video (``annotations/<split>/`` for 18,
  ``posetrack_data/<split>/`` for 21) with ``images``, ``annotations`` and
  ``categories``; or one merged file holding several videos, whose frames are grouped
  by the folder of ``file_name`` (``vid_id`` when the name has no folder).
* PoseTrack17: the Matlab-derived ``annolist`` layout, every scalar wrapped in a
  one-element list, joints as ``{id, x, y, is_visible}`` with PoseTrack17 joint ids and
  the head box as x1, y1, x2, y2. :func:`convert_posetrack17` writes it in the
  PoseTrack18 layout.

What the readers decide (all documented defaults, nothing dropped):

* Keypoints land in the 17 PoseTrack slots (``vidpose.data.skeleton.POSETRACK``); a
  PoseTrack18/21 file's columns are matched **by name** through
  ``categories[0].keypoints`` when the file has them, as poseval does.
* A missing ``track_id`` becomes -1 ("no identity in the file"); a missing
  ``bbox_head`` None; a missing ``person_id`` None; missing ignore regions [].
* A missing ``bbox`` (always the case in PoseTrack17) is the box of the annotated
  joints enlarged 1.3x about its centre (poseval's PoseTrack17 -> 18 convention), or the
  head box, or zeros for a person with no joint and no head box.
* A missing ``is_labeled`` means "labeled when the frame has persons".
* A missing ``annotations`` list (test-split files) means no persons.
* Frames are ordered by the number in their file name (``000042.jpg``) when every
  name has one, else kept in file order. PoseTrack files list every frame of a video;
  when numbers are skipped, the missing frames are added as unlabeled frames (image
  path and id continue the numbering) and a warning is logged, so that clip
  neighbours stay true neighbours.

Over 600 lines on purpose: the PoseTrack17 and PoseTrack18/21 readers share how a
file's frames are listed and assembled into videos (``_ListedFrame``,
``_assemble_video``, at the end), and :func:`read_dataset` dispatches to both, so the
PoseTrack17 reader could only leave together with a third module for what they share.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from vidpose.data.coco import read_coco
from vidpose.data.json_fields import (
    AnnotationError,
    FieldReader,
    annotation_reader,
    describe,
    load_json,
    shown_path,
    write_json_atomic,
)
from vidpose.data.records import FrameRecord, PersonAnnotation, VideoRecord
from vidpose.data.skeleton import POSETRACK

LOGGER = logging.getLogger(__name__)

FORMATS = ("posetrack17", "posetrack18", "posetrack21", "coco")

# PoseTrack17 joint ids (shared spec, section 2), id -> name.
POSETRACK17_JOINT_NAMES = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
    "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow",
    "left_wrist", "head_bottom", "nose", "head_top",
)  # fmt: skip

# Source code K of the image id scheme: image_id = K*10^10 + video_number*10^4 + frame.
DATASET_CODES = {"mpii": 1, "bonn": 2, "mpiinew": 3}

# poseval's PoseTrack17 converter derives person boxes as the joint extent enlarged by
# 0.65 on each side of the centre, i.e. 1.3x; we use the same factor wherever a file
# gives no person box so that converted and directly read files agree.
KEYPOINT_BOX_ENLARGEMENT = 1.3

_NUM_SLOTS = POSETRACK.num_joints
_VIDEO_NAME = re.compile(r"^(\d+)_(mpiinew|mpii|bonn)(?:_|$)")
_LEADING_NUMBER = re.compile(r"^(\d+)")


# --------------------------------------------------------------------------- entry point


def read_dataset(
    format: str, root: str | os.PathLike, annotations: str | os.PathLike
) -> list[VideoRecord]:
    """Read a dataset's annotations into video records.

    Args:
        format: "posetrack17", "posetrack18", "posetrack21" or "coco" (``data.format``).
        root: dataset root (``data.root``); image paths in the records are relative to it.
        annotations: a folder of per-video JSON files or one JSON file, relative to
            ``root`` (``data.train_annotations`` / ``data.val_annotations``).

    Returns:
        One VideoRecord per video (COCO: per image), sorted by file then file order.

    Raises:
        ValueError: unknown format.
        FileNotFoundError: the annotations path does not exist.
        AnnotationError: a file is malformed (the message names file, record and field).
    """
    if format in ("posetrack18", "posetrack21"):
        return read_posetrack(root, annotations)
    if format == "posetrack17":
        return read_posetrack17(root, annotations)
    if format == "coco":
        return read_coco(root, annotations)
    raise ValueError(f"unknown dataset format {format!r}; expected one of: {', '.join(FORMATS)}")


def read_dataset_files(
    format: str, root: str | os.PathLike, annotations: str | os.PathLike
) -> tuple[list[VideoRecord], list[str]]:
    """:func:`read_dataset`, reading on past a malformed file: the videos of the files
    that read, and one problem (``FILE: record: field ..., expected ...``) per file that
    did not, so that a check before training reports every bad file at once.

    Raises:
        ValueError: unknown format.
        FileNotFoundError: the annotations path does not exist or has no JSON file.
    """
    if format == "coco":
        try:
            return read_coco(root, annotations), []
        except AnnotationError as error:
            return [], [str(error)]
    if format not in FORMATS:
        raise ValueError(
            f"unknown dataset format {format!r}; expected one of: {', '.join(FORMATS)}"
        )
    reader = read_posetrack17_file if format == "posetrack17" else read_posetrack_file
    root = Path(root)
    videos: list[VideoRecord] = []
    problems: list[str] = []
    for path in annotation_files(root, annotations):
        try:
            videos.extend(reader(path, root=root))
        except AnnotationError as error:
            problems.append(str(error))
    return videos, problems


def repeated_track_ids(videos: list[VideoRecord]) -> list[str]:
    """One problem per frame in which two persons share a track id (>= 0): ground truth
    that both official tools refuse, and whose own ids a prediction file cannot repeat.

    Training does not read track ids and accepts such files; evaluation checks them
    when it reads the ground truth (``vidpose.engine.evaluate``), before predicting.
    """
    problems = []
    for video in videos:
        for frame in video.frames:
            ids = [person.track_id for person in frame.persons if person.track_id >= 0]
            repeated = sorted({track for track in ids if ids.count(track) > 1})
            if repeated:
                problems.append(
                    f"{video.source or video.name}: image {frame.image_id} "
                    f"({frame.image_path}): track_id {repeated[0]} is given to "
                    f"{ids.count(repeated[0])} persons, expected track ids unique within a frame"
                )
    return problems


def posetrack_image_id(video_name: str, frame_index: int) -> int | None:
    """The PoseTrack image id of a frame: K*10^10 + video_number*10^4 + frame_index.

    ``video_name`` like "012834_mpii_test" (K = 1 mpii, 2 bonn, 3 mpiinew). Returns None
    when the name does not follow the PoseTrack pattern.
    """
    match = _VIDEO_NAME.match(video_name)
    if match is None:
        return None
    return DATASET_CODES[match.group(2)] * 10**10 + int(match.group(1)) * 10**4 + frame_index


# --------------------------------------------------------------------------- PoseTrack18/21


def read_posetrack(root: str | os.PathLike, annotations: str | os.PathLike) -> list[VideoRecord]:
    """PoseTrack18/21 ground truth: a folder of per-video JSON files or one (merged) file.

    Args:
        root: dataset root; ``annotations`` and the images' ``file_name`` are relative to it.
        annotations: folder (every ``*.json`` in it, sorted by name) or file.
    """
    root = Path(root)
    return [
        video
        for path in _annotation_files(root, annotations)
        for video in read_posetrack_file(path, root=root)
    ]


def read_posetrack_file(
    path: str | os.PathLike, *, root: str | os.PathLike | None = None
) -> list[VideoRecord]:
    """One PoseTrack18/21 JSON file -> its videos (one for a per-video file).

    A file with one video names it after the file's stem; a merged file names each
    video after the folder of its images.

    Args:
        path: the JSON file.
        root: only used to name the file relative to the dataset root in errors.
    """
    path = Path(path)
    shown = shown_path(path, Path(root) if root is not None else None)
    data = load_json(path, shown)
    top = FieldReader(data, file=shown, what="top level")
    if "annolist" in data:
        raise AnnotationError(
            f"{shown}: this is a PoseTrack17 file (it has 'annolist'); read it with format "
            "'posetrack17' or convert it with vidpose.data.posetrack.convert_posetrack17"
        )
    images = top.objects("images")
    annotations = top.objects("annotations", default=[])
    slot_of_column = _columns_to_slots(top, shown)

    listed: dict[str, list[_ListedFrame]] = {}
    by_id: dict[int, _ListedFrame] = {}
    for position, image in enumerate(images):
        item = _read_image(image, position, shown)
        if item.record.image_id in by_id:
            raise AnnotationError(
                f"{shown}: image {item.record.image_id}: 'id' is listed twice "
                f"(images #{by_id[item.record.image_id].position} and #{position}), expected "
                "unique image ids"
            )
        by_id[item.record.image_id] = item
        listed.setdefault(item.video_key, []).append(item)

    for position, annotation in enumerate(annotations):
        reader, image_id = annotation_reader(annotation, position, shown, by_id)
        by_id[image_id].record.persons.append(_read_person(reader, slot_of_column))

    for items in listed.values():
        for item in items:
            if item.labeled is None:
                item.record.is_labeled = bool(item.record.persons)

    single = len(listed) == 1
    return [
        _assemble_video(path.stem if single else key, items, path, shown)
        for key, items in listed.items()
    ]


@dataclass
class _ListedFrame:
    """A frame as listed in a file, before its video is assembled."""

    record: FrameRecord
    video_key: str  # the grouping key: image folder name, or vid_id
    number: int | None  # the number in the image file name, if any
    position: int  # position in the file's image list
    labeled: bool | None  # is_labeled as stored (None: absent)


def _read_image(image: Any, position: int, shown: str) -> _ListedFrame:
    what = f"image #{position}"
    if isinstance(image, dict) and isinstance(image.get("id"), int):
        what = f"image {image['id']}"
    reader = FieldReader(image, file=shown, what=what)
    image_id = reader.integer("id")
    file_name = reader.text("file_name").replace("\\", "/")
    folder = PurePosixPath(file_name).parent.name
    if folder:
        key = folder
    elif reader.has("vid_id"):
        key = str(reader.raw("vid_id", "text"))
    else:
        raise reader.error(
            "file_name",
            f"is {file_name!r} with no video folder and the image has no 'vid_id'",
            "'<folder>/<video>/<frame>.jpg' or a 'vid_id' to group frames into videos",
        )
    labeled = reader.boolean("is_labeled", default=None)
    regions = _ignore_regions_18(reader)
    record = FrameRecord(
        video=key,
        frame_index=-1,  # set when the video is assembled
        image_id=image_id,
        image_path=file_name,
        is_labeled=bool(labeled),
        num_frames=-1,
        ignore_regions=regions,
        width=reader.integer("width", default=None),
        height=reader.integer("height", default=None),
    )
    return _ListedFrame(record, key, _frame_number(file_name), position, labeled)


def _ignore_regions_18(reader: FieldReader) -> list[np.ndarray]:
    """``ignore_regions_x`` / ``_y``: two lists of polygons -> [P, 2] arrays."""
    xs = reader.objects("ignore_regions_x", default=[])
    ys = reader.objects("ignore_regions_y", default=[])
    # Some exports store a single polygon as a flat list of numbers.
    if xs and all(isinstance(value, (int, float)) for value in xs):
        xs = [xs]
    if ys and all(isinstance(value, (int, float)) for value in ys):
        ys = [ys]
    if len(xs) != len(ys):
        raise reader.error(
            "ignore_regions_y",
            f"has {len(ys)} polygons but 'ignore_regions_x' has {len(xs)}",
            "one y list per x list",
        )
    regions = []
    for index, (x, y) in enumerate(zip(xs, ys, strict=True)):
        x = reader.as_numbers(f"ignore_regions_x[{index}]", x, None)
        y = reader.as_numbers(f"ignore_regions_y[{index}]", y, len(x))
        regions.append(np.stack([x, y], axis=1))
    return regions


def _columns_to_slots(top: FieldReader, shown: str) -> np.ndarray:
    """Slot (0..16) of each keypoint column of the file, from ``categories[0].keypoints``.

    Files without categories are taken to use the PoseTrack slot order.
    """
    categories = top.objects("categories", default=[])
    if not categories:
        return np.arange(_NUM_SLOTS)
    category = FieldReader(categories[0], file=shown, what="categories[0]")
    names = category.objects("keypoints", default=None)
    if names is None:
        return np.arange(_NUM_SLOTS)
    slots = []
    for index, name in enumerate(names):
        if name not in POSETRACK.joint_names:
            raise category.error(
                "keypoints",
                f"item {index} is {describe(name)}",
                f"PoseTrack joint names ({', '.join(POSETRACK.joint_names)})",
            )
        if POSETRACK.index(name) in slots:
            raise category.error("keypoints", f"names {name!r} twice", "each joint once")
        slots.append(POSETRACK.index(name))
    return np.asarray(slots, dtype=np.int64)


def _read_person(reader: FieldReader, slot_of_column: np.ndarray) -> PersonAnnotation:
    columns = len(slot_of_column)
    values = reader.numbers("keypoints", 3 * columns).reshape(columns, 3)
    keypoints = np.zeros((_NUM_SLOTS, 3))
    keypoints[slot_of_column] = values
    head_box = reader.numbers("bbox_head", 4, default=None)
    bbox = reader.numbers("bbox", 4, default=None)
    if bbox is None:
        bbox = _box_from_keypoints(keypoints, head_box)
    return PersonAnnotation(
        track_id=reader.integer("track_id", default=-1),
        bbox=bbox,
        keypoints=keypoints,
        head_box=head_box,
        annotation_id=reader.integer("id", default=None),
        person_id=reader.integer("person_id", default=None),
        score=reader.number("score", default=1.0),
    )


def _box_from_keypoints(keypoints: np.ndarray, head_box: np.ndarray | None) -> np.ndarray:
    """[4] x, y, w, h: annotated joints' extent x1.3 about its centre; else the head box;
    else zeros."""
    annotated = np.any(keypoints != 0, axis=1)
    if not annotated.any():
        return head_box.copy() if head_box is not None else np.zeros(4)
    points = keypoints[annotated, :2]
    low, high = points.min(axis=0), points.max(axis=0)
    centre, size = (low + high) / 2, (high - low) * KEYPOINT_BOX_ENLARGEMENT
    return np.concatenate([centre - size / 2, size])


# --------------------------------------------------------------------------- PoseTrack17


def read_posetrack17(root: str | os.PathLike, annotations: str | os.PathLike) -> list[VideoRecord]:
    """PoseTrack17 ground truth (``annolist`` layout): a folder of JSON files or one file.

    Joint ids are remapped to the 17 PoseTrack slots (the ear slots stay 0, 0, 0), the
    head box x1, y1, x2, y2 becomes x, y, w, h, and image ids follow the PoseTrack18
    scheme (derived from the image folder name, e.g. ``000342_mpii``).
    """
    root = Path(root)
    return [
        video
        for path in _annotation_files(root, annotations)
        for video in read_posetrack17_file(path, root=root)
    ]


def read_posetrack17_file(
    path: str | os.PathLike, *, root: str | os.PathLike | None = None
) -> list[VideoRecord]:
    """One PoseTrack17 JSON file -> its videos (frames grouped by image folder)."""
    path = Path(path)
    shown = shown_path(path, Path(root) if root is not None else None)
    data = load_json(path, shown)
    top = FieldReader(data, file=shown, what="top level")
    if "images" in data and "annolist" not in data:
        raise AnnotationError(
            f"{shown}: this is a PoseTrack18/21 file (it has 'images'); read it with format "
            "'posetrack18' or 'posetrack21'"
        )
    frames = top.objects("annolist")
    listed: dict[str, list[_ListedFrame]] = {}
    for position, entry in enumerate(frames):
        item = _read_frame17(entry, position, shown)
        listed.setdefault(item.video_key, []).append(item)

    videos = []
    single = len(listed) == 1
    for key, items in listed.items():
        name = path.stem if single else key
        for item in items:
            item.record.image_id = -1  # assigned below, once frame indices are known
        video = _assemble_video(name, items, path, shown)
        for frame in video.frames:
            image_id = posetrack_image_id(key, frame.frame_index)
            if image_id is None:
                raise AnnotationError(
                    f"{shown}: frame {frame.image_path}: the image folder {key!r} does not "
                    "follow the PoseTrack pattern, expected '<digits>_<mpii|bonn|mpiinew>' "
                    "(the image id is derived from it)"
                )
            frame.image_id = image_id
        videos.append(video)
    return videos


def _read_frame17(entry: Any, position: int, shown: str) -> _ListedFrame:
    what = f"annolist[{position}]"
    reader = FieldReader(entry, file=shown, what=what)
    images = reader.objects("image")
    if len(images) != 1:
        raise reader.error("image", f"has {len(images)} entries", "one {'name': ...} entry")
    name = _unwrap(FieldReader(images[0], file=shown, what=f"{what} image"), "name", "text")
    name = name.replace("\\/", "/").replace("\\", "/")
    what = f"{what} ({name})"
    reader = FieldReader(entry, file=shown, what=what)
    folder = PurePosixPath(name).parent.name
    if not folder:
        raise reader.error("image", f"name is {name!r}", "'<folder>/<video>/<frame>.jpg'")

    labeled = None
    if reader.has("is_labeled"):
        labeled = bool(_unwrap(reader, "is_labeled", "flag"))
    persons = [
        _read_person17(rect, f"{what} annorect[{index}]", shown)
        for index, rect in enumerate(reader.objects("annorect", default=[]))
    ]
    regions = []
    for index, region in enumerate(reader.objects("ignore_regions", default=[])):
        region_reader = FieldReader(region, file=shown, what=f"{what} ignore_regions[{index}]")
        xy = []
        for i, point in enumerate(region_reader.objects("point", default=[])):
            point_reader = FieldReader(point, file=shown, what=f"{region_reader.what} point[{i}]")
            xy.append((_unwrap(point_reader, "x", "number"), _unwrap(point_reader, "y", "number")))
        regions.append(np.asarray(xy, dtype=np.float64).reshape(-1, 2))
    record = FrameRecord(
        video=folder,
        frame_index=-1,
        image_id=-1,
        image_path=name,
        is_labeled=bool(persons) if labeled is None else labeled,
        num_frames=-1,
        ignore_regions=regions,
        persons=persons,
    )
    return _ListedFrame(record, folder, _frame_number(name), position, labeled)


def _read_person17(rect: Any, what: str, shown: str) -> PersonAnnotation:
    reader = FieldReader(rect, file=shown, what=what)
    corners = [key for key in ("x1", "y1", "x2", "y2") if reader.has(key)]
    head_box = None
    if corners:
        if len(corners) != 4:
            missing = sorted({"x1", "y1", "x2", "y2"} - set(corners))
            raise reader.error(missing[0], "is missing", "all of x1, y1, x2, y2 for the head box")
        x1, y1, x2, y2 = (_unwrap(reader, key, "number") for key in ("x1", "y1", "x2", "y2"))
        head_box = np.array([x1, y1, x2 - x1, y2 - y1])

    keypoints = np.zeros((_NUM_SLOTS, 3))
    seen: set[int] = set()
    for index, point in enumerate(_points17(reader)):
        point_reader = FieldReader(point, file=shown, what=f"{what} point[{index}]")
        joint = _unwrap(point_reader, "id", "integer")
        if not 0 <= joint < len(POSETRACK17_JOINT_NAMES):
            raise point_reader.error("id", f"is {joint}", "a PoseTrack17 joint id 0..14")
        if joint in seen:
            raise point_reader.error(
                "id", f"is {joint}, already given for this person", "each joint once"
            )
        seen.add(joint)
        visible = 1
        if point_reader.has("is_visible"):
            visible = int(_unwrap(point_reader, "is_visible", "flag"))
        slot = POSETRACK.index(POSETRACK17_JOINT_NAMES[joint])
        keypoints[slot] = (
            _unwrap(point_reader, "x", "number"),
            _unwrap(point_reader, "y", "number"),
            visible,
        )
    track_id = _unwrap(reader, "track_id", "integer") if reader.has("track_id") else -1
    score = _unwrap(reader, "score", "number") if reader.has("score") else 1.0
    return PersonAnnotation(
        track_id=track_id,
        bbox=_box_from_keypoints(keypoints, head_box),
        keypoints=keypoints,
        head_box=head_box,
        score=score,
    )


def _points17(reader: FieldReader) -> list[Any]:
    """The points of ``annopoints``: ``[{"point": [...]}]`` (Matlab export), a bare
    ``{"point": [...]}``, or empty/missing (a person without joints)."""
    annopoints = reader.record.get("annopoints")
    if annopoints in (None, [], {}):
        return []
    if isinstance(annopoints, list):
        if len(annopoints) != 1:
            raise reader.error(
                "annopoints", f"has {len(annopoints)} entries", "one {'point': [...]}"
            )
        annopoints = annopoints[0]
    inner = FieldReader(annopoints, file=reader.file, what=f"{reader.what} annopoints")
    return inner.objects("point", default=[])


def _unwrap(reader: FieldReader, key: str, kind: str) -> Any:
    """A PoseTrack17 scalar: ``[value]`` (or a bare value), checked to be of ``kind``
    ("integer", "number", "text", "flag")."""
    value = reader.raw(key, f"a one-element list holding {_KIND_NAMES[kind]}")
    if isinstance(value, list):
        if len(value) != 1:
            raise reader.error(
                key,
                f"has {len(value)} values",
                "one value (PoseTrack17 wraps each scalar in a one-element list)",
            )
        value = value[0]
    if kind == "integer":
        return reader.as_integer(key, value)
    if kind == "number":
        return reader.as_number(key, value)
    if kind == "text":
        if not isinstance(value, str):
            raise reader.error(key, f"is {describe(value)}", "text")
        return value
    # Flags appear as 0/1, true/false and, in some exports, "0"/"1".
    if isinstance(value, str) and value in ("0", "1"):
        return int(value)
    if isinstance(value, bool) or (isinstance(value, (int, float)) and value in (0, 1)):
        return int(value)
    raise reader.error(key, f"is {describe(value)}", "0 or 1")


_KIND_NAMES = {"integer": "an integer", "number": "a number", "text": "text", "flag": "0 or 1"}


# --------------------------------------------------------------------------- writing


def posetrack_json(video: VideoRecord, *, posetrack21: bool = False) -> dict[str, Any]:
    """A video in the PoseTrack18 (or, with ``posetrack21``, PoseTrack21) file layout.

    Coordinates are rounded to 1/100 pixel. Annotation ids are kept when the records
    have them, else image_id*100 + person index. PoseTrack21 adds
    ``has_labeled_person`` (the frame has persons) and ``person_id`` where known.
    """
    match = _LEADING_NUMBER.match(video.name)
    vid_id = match.group(1) if match else video.name
    images, annotations = [], []
    for frame in video.frames:
        image: dict[str, Any] = {
            "id": frame.image_id,
            "frame_id": frame.image_id,
            "vid_id": vid_id,
            "file_name": frame.image_path,
            "nframes": len(video.frames),
            "is_labeled": bool(frame.is_labeled),
        }
        if posetrack21:
            image["has_labeled_person"] = bool(frame.persons)
        image["ignore_regions_x"] = [_rounded(region[:, 0]) for region in frame.ignore_regions]
        image["ignore_regions_y"] = [_rounded(region[:, 1]) for region in frame.ignore_regions]
        if frame.width is not None and frame.height is not None:
            image["width"], image["height"] = frame.width, frame.height
        images.append(image)
        for index, person in enumerate(frame.persons):
            keypoints = []
            for x, y, visible in person.keypoints:
                keypoints += [round(float(x), 2), round(float(y), 2), int(visible)]
            annotation: dict[str, Any] = {
                "id": person.annotation_id
                if person.annotation_id is not None
                else frame.image_id * 100 + index,
                "image_id": frame.image_id,
                "track_id": person.track_id,
                "category_id": 1,
                "bbox": _rounded(person.bbox),
                "keypoints": keypoints,
            }
            if posetrack21 and person.person_id is not None:
                annotation["person_id"] = person.person_id
            if person.head_box is not None:
                annotation["bbox_head"] = _rounded(person.head_box)
            annotations.append(annotation)
    return {"images": images, "annotations": annotations, "categories": [posetrack_category()]}


def posetrack_category() -> dict[str, Any]:
    """The one ``person`` category: the 17 PoseTrack joint names and a 1-based skeleton."""
    return {
        "supercategory": "person",
        "id": 1,
        "name": "person",
        "keypoints": list(POSETRACK.joint_names),
        "skeleton": [[a + 1, b + 1] for a, b in POSETRACK.limbs],
    }


def write_posetrack_json(
    video: VideoRecord, path: str | os.PathLike, *, posetrack21: bool = False
) -> Path:
    """Write :func:`posetrack_json` of ``video`` to ``path`` atomically."""
    return write_json_atomic(Path(path), posetrack_json(video, posetrack21=posetrack21))


def convert_posetrack17(
    root: str | os.PathLike, annotations: str | os.PathLike, out_dir: str | os.PathLike
) -> list[Path]:
    """Convert PoseTrack17 annotations to the PoseTrack18 layout (one file per video).

    Args:
        root: dataset root.
        annotations: PoseTrack17 folder or file, relative to ``root``.
        out_dir: where ``<video>.json`` files are written (created if needed); image
            paths are kept as they are, so the converted files read with the same root.

    Returns:
        The written files, in video order.
    """
    out_dir = Path(out_dir)
    return [
        write_posetrack_json(video, out_dir / f"{video.name}.json")
        for video in read_posetrack17(root, annotations)
    ]


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(value), 2) for value in np.asarray(values).ravel()]


# --------------------------------------------------------------------------- shared


def annotation_files(root: str | os.PathLike, annotations: str | os.PathLike) -> list[Path]:
    """The JSON files of ``root/annotations``: the file itself, or a folder's ``*.json``.

    Raises:
        FileNotFoundError: neither exists, or the folder has no ``.json`` file.
    """
    return _annotation_files(Path(root), annotations)


def _annotation_files(root: Path, annotations: str | os.PathLike) -> list[Path]:
    """The JSON files of ``root/annotations``: the file itself, or a folder's ``*.json``."""
    path = root / annotations
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(
            child for child in path.iterdir() if child.suffix == ".json" and child.is_file()
        )
        if not files:
            raise FileNotFoundError(
                f"{shown_path(path, root)}: no .json files in this folder ({path})"
            )
        return files
    raise FileNotFoundError(
        f"annotations not found: {path} (data.root={str(root)!r}, annotations={str(annotations)!r})"
    )


def _frame_number(file_name: str) -> int | None:
    match = _LEADING_NUMBER.match(PurePosixPath(file_name).stem)
    return int(match.group(1)) if match else None


def _assemble_video(name: str, items: list[_ListedFrame], source: Path, shown: str) -> VideoRecord:
    """Order a video's frames, fill skipped frame numbers, set indices and counts."""
    if all(item.number is not None for item in items):
        items = sorted(items, key=lambda item: item.number)
        for before, after in pairwise(items):
            if before.number == after.number:
                raise AnnotationError(
                    f"{shown}: images {before.record.image_path!r} and {after.record.image_path!r} "
                    f"both have frame number {after.number}, expected one image per frame"
                )
        frames = _fill_skipped_frames(name, items, shown)
    else:
        frames = [item.record for item in items]
    for index, frame in enumerate(frames):
        frame.video = name
        frame.frame_index = index
        frame.num_frames = len(frames)
    return VideoRecord(name=name, frames=frames, source=source)


def _fill_skipped_frames(name: str, items: list[_ListedFrame], shown: str) -> list[FrameRecord]:
    frames = [items[0].record]
    added = 0
    for before, after in pairwise(items):
        for number in range(before.number + 1, after.number):
            frames.append(_continued_frame(before, number))
            added += 1
        frames.append(after.record)
    if added:
        LOGGER.warning(
            "%s: video %s lists %d frames but skips %d frame numbers between them; the "
            "skipped frames were added as unlabeled frames",
            shown,
            name,
            len(items),
            added,
        )
    return frames


def _continued_frame(listed: _ListedFrame, number: int) -> FrameRecord:
    """The unlabeled frame ``number`` continuing the numbering of ``listed``."""
    path = PurePosixPath(listed.record.image_path)
    digits = _LEADING_NUMBER.match(path.stem).group(1)
    stem = f"{number:0{len(digits)}d}{path.stem[len(digits) :]}"
    offset = number - listed.number
    return FrameRecord(
        video=listed.record.video,
        frame_index=-1,
        # PoseTrack ids grow by one per frame within a video (the frame index is the
        # last digits of the id); PoseTrack17 ids are re-derived later anyway.
        image_id=listed.record.image_id + offset if listed.record.image_id >= 0 else -1,
        image_path=str(path.with_name(stem + path.suffix)),
        is_labeled=False,
        num_frames=-1,
        width=listed.record.width,
        height=listed.record.height,
    )
