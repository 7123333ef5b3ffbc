"""Strict reader of PoseTrack18/21 JSON for evaluation (ground truth and predictions).

The official evaluators (poseval for PoseTrack17/18, the PoseTrack21 kit) read the
per-video format: ``images`` (every frame, in order), ``annotations`` (one per person
and frame) and ``categories`` (one "person" category naming the 17 keypoints). This
module reads exactly that, checks it, and returns each video as flat numpy arrays so
the metrics never touch JSON again. It is deliberately independent of the training
readers in ``vidpose.data``: the evaluator must accept what the official tools accept
and refuse, with a message naming the file, what they would crash on.

Oddities of real files that are accepted: keypoints at negative coordinates, persons
with zero annotated joints, visibility 0 on annotated points, frames with many ignore
polygons. A ground-truth person without ``bbox_head`` has no head size; it still counts
as ground truth (its joints are positives) but no prediction can match it (both
official tools would crash on such a file instead).

What only one of the two tools accepts is read here and judged by the evaluation, which
knows the protocol (``posetrack_eval``): a file without ``categories`` (the PoseTrack21
kit never reads it, poseval needs it), NaN or infinite keypoints and scores (both tools
give numbers, by different rules), and track ids that are not integers >= 0 or are
>= 10000 (poseval takes any number below 10000, the kit only integers).
"""

from __future__ import annotations

import json
import math
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from vidpose.data.skeleton import POSETRACK, Skeleton
from vidpose.runtime import InputError

Role = Literal["ground truth", "predictions"]

# Both official tools substitute this score when a prediction file has no `scores`
# (poseval eval_helpers.MIN_SCORE; PoseTrack21 datasets/posetrack.py `-9999`).
MISSING_SCORE = -9999.0

# 0.6 x the head-box diagonal: the PCKh reference length (Andriluka et al., CVPR 2014;
# poseval getHeadSize, PoseTrack21 _get_head_size).
HEAD_SIZE_FACTOR = 0.6

# poseval refuses every file with a track id at or above this (eval_helpers.MAX_TRACK_ID:
# load_data_dir asserts track_id < MAX_TRACK_ID for ground truth and predictions, then adds
# video_index x MAX_TRACK_ID to make ids unique over videos).
POSEVAL_MAX_TRACK_ID = 10000


class EvaluationInputError(InputError):
    """A ground-truth or prediction file that cannot be evaluated; the message names it."""


@dataclass
class VideoAnnotations:
    """One video of a PoseTrack-format file as flat arrays (F frames, N persons, K joints).

    Attributes:
        name: video name used for pairing: the file stem for a per-video file inside a
            folder, the image folder ("012834_mpii_test") for a video of a merged file.
        source: the file it was read from.
        image_ids: [F] int64 image ids, in file order.
        file_names: F image paths as written.
        is_labeled: [F] bool, or None when the file does not say (prediction files).
        ignore_regions: F lists of polygons, each [P, 2] float64 (x, y) in pixels.
        person_frame: [N] int64 frame position (0..F-1) of each person; persons are
            ordered by frame and, within a frame, in file order (the official tools
            iterate them in that order, which decides their tie rules).
        track_ids: [N] int64 track id of each person: the written id when it is a whole
            number >= 0 (3.0 reads as 3); any other written value (negative, fractional)
            gets its own id above the largest, the same for equal values, so ids compare
            exactly as the written ones do.
        written_track_ids: [N] float64 the track ids as written (for the tools' limits).
        float_track_ids: [N] bool, the track id is a JSON float (3.0), which the
            PoseTrack21 kit cannot use as an array index.
        keypoints: [N, K, 3] float64 x, y, v exactly as written (pixels of the frame),
            NaN and infinite values included.
        scores: [N, K] float64 per-joint scores (MISSING_SCORE when the file has none;
            zeros for ground truth), NaN and infinite values included.
        head_sizes: [N] float64 0.6 x head-box diagonal, NaN without ``bbox_head``.
        integer_keypoint_frames: [F] bool, True where every keypoint number of every
            person of the frame is a JSON integer. The PoseTrack21 kit then builds an
            integer array and the per-joint scores it writes into it are truncated.
        boxes: what a vidpose prediction file says about the person boxes used, or None.
        has_categories: the file has a ``categories`` entry (poseval needs it; the
            PoseTrack21 kit never reads it).
    """

    name: str
    source: Path
    image_ids: np.ndarray
    file_names: list[str]
    is_labeled: np.ndarray | None
    ignore_regions: list[list[np.ndarray]]
    person_frame: np.ndarray
    track_ids: np.ndarray
    written_track_ids: np.ndarray
    float_track_ids: np.ndarray
    keypoints: np.ndarray
    scores: np.ndarray
    head_sizes: np.ndarray
    integer_keypoint_frames: np.ndarray
    boxes: str | None = None
    has_categories: bool = True

    @property
    def num_frames(self) -> int:
        return len(self.image_ids)

    @property
    def num_persons(self) -> int:
        return len(self.track_ids)


# ----------------------------------------------------------------------------- loading


def load_posetrack_videos(
    path: str | Path, *, role: Role, skeleton: Skeleton = POSETRACK
) -> dict[str, VideoAnnotations]:
    """Read a folder of per-video JSON files, or one merged JSON file.

    Args:
        path: a folder (every ``*.json`` in it is one video, named by its file stem,
            as poseval and the PoseTrack21 kit pair files by basename) or one file
            (its videos are split by image folder and named after it).
        role: "ground truth" (requires ``is_labeled``; reads ``bbox_head``) or
            "predictions" (reads ``scores``).
        skeleton: the joint layout the files must declare in ``categories``.

    Returns:
        video name -> VideoAnnotations, sorted by name.

    Raises:
        EvaluationInputError: naming the file and the problem.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if not files:
            raise EvaluationInputError(f"{path}: no *.json files in this {role} folder")
        videos = {}
        for file in files:
            found = read_evaluation_file(file, role=role, skeleton=skeleton, split_videos=False)
            videos[file.stem] = found[0]
        return videos
    if not path.is_file():
        raise EvaluationInputError(f"{path}: {role} path does not exist")
    found = read_evaluation_file(path, role=role, skeleton=skeleton, split_videos=True)
    return {video.name: video for video in sorted(found, key=lambda video: video.name)}


def read_evaluation_file(
    path: str | Path, *, role: Role, skeleton: Skeleton = POSETRACK, split_videos: bool
) -> list[VideoAnnotations]:
    """Read one JSON file. See ``parse_posetrack_json``."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as error:
        raise EvaluationInputError(f"{path}: not valid JSON ({error})") from None
    except OSError as error:
        raise EvaluationInputError(f"{path}: cannot be read ({error})") from None
    return parse_posetrack_json(
        data, source=path, role=role, skeleton=skeleton, split_videos=split_videos
    )


def parse_posetrack_json(
    data: Any,
    *,
    source: Path,
    role: Role,
    skeleton: Skeleton = POSETRACK,
    split_videos: bool,
) -> list[VideoAnnotations]:
    """Check and convert a decoded PoseTrack JSON document.

    Args:
        data: the decoded JSON.
        source: the file it came from (used in messages and as the video name).
        role: "ground truth" or "predictions".
        skeleton: joint layout expected in ``categories[0].keypoints``.
        split_videos: False for a per-video file (one video, named by the file stem;
            several image folders is an error); True for a merged file (one video per
            image folder, named after the folder).

    Returns:
        The videos of the document, in order of first appearance.
    """
    where = str(source)
    if not isinstance(data, Mapping):
        raise EvaluationInputError(f"{where}: expected a JSON object at the top level")
    if "annolist" in data:
        raise EvaluationInputError(
            f"{where}: PoseTrack17 'annolist' format; convert it to the PoseTrack18 layout "
            "(images / annotations / categories) first"
        )
    for key in ("images", "annotations"):
        if key not in data:
            raise EvaluationInputError(f"{where}: missing {key!r}")
        if not isinstance(data[key], list):
            raise EvaluationInputError(f"{where}: {key!r} must be a list")
    has_categories = data.get("categories") is not None
    if has_categories:
        _check_categories(data["categories"], where, skeleton)

    images = data["images"]
    if not images:
        raise EvaluationInputError(f"{where}: 'images' is empty")
    k = skeleton.num_joints

    image_ids = np.empty(len(images), dtype=np.int64)
    file_names: list[str] = []
    is_labeled = np.zeros(len(images), dtype=bool)
    ignore_regions: list[list[np.ndarray]] = []
    position_of_id: dict[int, int] = {}
    for position, image in enumerate(images):
        label = f"{where}: images[{position}]"
        if not isinstance(image, Mapping):
            raise EvaluationInputError(f"{label} must be an object")
        image_id = _require_int(image, "id", label)
        if image_id in position_of_id:
            raise EvaluationInputError(
                f"{label}: image id {image_id} repeats images[{position_of_id[image_id]}]"
            )
        position_of_id[image_id] = position
        image_ids[position] = image_id
        file_name = image.get("file_name")
        if not isinstance(file_name, str) or not file_name:
            raise EvaluationInputError(f"{label}: 'file_name' must be a non-empty string")
        file_names.append(file_name)
        if role == "ground truth":
            if "is_labeled" not in image:
                raise EvaluationInputError(
                    f"{label}: ground truth needs 'is_labeled' (protocol posetrack21 "
                    "evaluates exactly the labeled frames)"
                )
            is_labeled[position] = bool(image["is_labeled"])
        ignore_regions.append(_read_ignore_regions(image, label))

    annotations = data["annotations"]
    n = len(annotations)
    person_frame = np.empty(n, dtype=np.int64)
    written_track_ids: list[int | float] = []
    raw_keypoints, raw_scores, raw_head_boxes = [], [], []
    scored_rows, head_box_rows = [], []
    integer_frames = np.ones(len(images), dtype=bool)
    for index, annotation in enumerate(annotations):
        label = f"{where}: annotations[{index}]"
        if not isinstance(annotation, Mapping):
            raise EvaluationInputError(f"{label} must be an object")
        image_id = _require_int(annotation, "image_id", label)
        if image_id not in position_of_id:
            raise EvaluationInputError(f"{label}: image_id {image_id} is not in 'images'")
        person_frame[index] = position_of_id[image_id]
        written_track_ids.append(_require_number(annotation, "track_id", label))
        raw_keypoints.append(_list_of(annotation.get("keypoints"), 3 * k, "keypoints", label))
        if role == "predictions":
            # The kit's int-array quirk (see integer_keypoint_frames): any float clears it.
            if any(type(value) is float for value in raw_keypoints[-1]):
                integer_frames[person_frame[index]] = False
            if annotation.get("scores") is not None:
                raw_scores.append(_list_of(annotation["scores"], k, "scores", label))
                scored_rows.append(index)
        elif annotation.get("bbox_head") is not None:
            raw_head_boxes.append(_list_of(annotation["bbox_head"], 4, "bbox_head", label))
            head_box_rows.append(index)
    where_row = f"{where}: annotations"
    # NaN and infinite keypoints and scores are kept: both tools give numbers for them
    # (each by its own rule, see protocols.py); the evaluation counts them in a warning.
    keypoints = _number_rows(raw_keypoints, range(n), 3 * k, "keypoints", where_row, finite=False)
    keypoints = keypoints.reshape(n, k, 3)
    scores = np.full((n, k), MISSING_SCORE if role == "predictions" else 0.0)
    scores[scored_rows] = _number_rows(
        raw_scores, scored_rows, k, "scores", where_row, finite=False
    )
    head_boxes = np.full((n, 4), np.nan)
    head_boxes[head_box_rows] = _number_rows(
        raw_head_boxes, head_box_rows, 4, "bbox_head", where_row
    )
    track_ids = _comparable_track_ids(written_track_ids)
    float_track_ids = np.array([type(value) is float for value in written_track_ids], bool)
    written = np.array([_as_float(value) for value in written_track_ids], np.float64).reshape(n)

    # Persons sorted by frame, file order kept within a frame (stable sort).
    order = np.argsort(person_frame, kind="stable")
    person_frame, track_ids = person_frame[order], track_ids[order]
    written, float_track_ids = written[order], float_track_ids[order]
    keypoints, scores, head_boxes = keypoints[order], scores[order], head_boxes[order]
    _check_unique_track_ids(person_frame, track_ids, written, file_names, where)

    # Same arithmetic as both tools: x2 = x1 + w, then the diagonal of (x1,y1)-(x2,y2).
    width = (head_boxes[:, 0] + head_boxes[:, 2]) - head_boxes[:, 0]
    height = (head_boxes[:, 1] + head_boxes[:, 3]) - head_boxes[:, 1]
    head_sizes = HEAD_SIZE_FACTOR * np.sqrt(width * width + height * height)

    video = VideoAnnotations(
        name=source.stem,
        source=source,
        image_ids=image_ids,
        file_names=file_names,
        is_labeled=is_labeled if role == "ground truth" else None,
        ignore_regions=ignore_regions,
        person_frame=person_frame,
        track_ids=track_ids,
        written_track_ids=written,
        float_track_ids=float_track_ids,
        keypoints=keypoints,
        scores=scores,
        head_sizes=head_sizes,
        integer_keypoint_frames=integer_frames,
        boxes=_boxes_note(data),
        has_categories=has_categories,
    )
    folders = [
        posixpath.basename(posixpath.dirname(name.replace("\\", "/"))) for name in file_names
    ]
    unique_folders = list(dict.fromkeys(folders))
    if not split_videos:
        if len(unique_folders) > 1:
            raise EvaluationInputError(
                f"{where}: a per-video file must hold one video, found images of "
                f"{len(unique_folders)} ({', '.join(unique_folders[:5])}...); pass a merged "
                "file on its own instead of inside a folder"
            )
        return [video]
    return [
        _select_frames(video, np.flatnonzero(np.asarray(folders) == folder), folder)
        for folder in unique_folders
    ]


def _select_frames(video: VideoAnnotations, positions: np.ndarray, name: str) -> VideoAnnotations:
    """The sub-video made of frames ``positions`` (increasing) of ``video``."""
    new_position = np.full(video.num_frames, -1, dtype=np.int64)
    new_position[positions] = np.arange(len(positions))
    keep = new_position[video.person_frame] >= 0
    return VideoAnnotations(
        name=name,
        source=video.source,
        image_ids=video.image_ids[positions],
        file_names=[video.file_names[p] for p in positions],
        is_labeled=None if video.is_labeled is None else video.is_labeled[positions],
        ignore_regions=[video.ignore_regions[p] for p in positions],
        person_frame=new_position[video.person_frame[keep]],
        track_ids=video.track_ids[keep],
        written_track_ids=video.written_track_ids[keep],
        float_track_ids=video.float_track_ids[keep],
        keypoints=video.keypoints[keep],
        scores=video.scores[keep],
        head_sizes=video.head_sizes[keep],
        integer_keypoint_frames=video.integer_keypoint_frames[positions],
        boxes=video.boxes,
        has_categories=video.has_categories,
    )


# ----------------------------------------------------------------------------- pairing


@dataclass
class VideoPairing:
    """Ground-truth videos matched with prediction videos by name.

    Attributes:
        pairs: (ground truth, predictions) per video, sorted by name.
        unmatched_predictions: prediction videos with no ground truth (ignored, as the
            official tools ignore extra files).
    """

    pairs: list[tuple[VideoAnnotations, VideoAnnotations]]
    unmatched_predictions: list[str]


def pair_videos(
    ground_truth: Mapping[str, VideoAnnotations], predictions: Mapping[str, VideoAnnotations]
) -> VideoPairing:
    """Pair videos by name (frames are checked by ``evaluate_posetrack_videos``).

    Raises:
        EvaluationInputError: when ground-truth videos have no prediction (all missing
            names are listed).
    """
    missing = sorted(set(ground_truth) - set(predictions))
    if missing:
        shown = ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else "")
        raise EvaluationInputError(
            f"{len(missing)} of {len(ground_truth)} ground-truth videos have no prediction "
            f"file with the same basename: {shown}"
        )
    pairs = [(ground_truth[name], predictions[name]) for name in sorted(ground_truth)]
    return VideoPairing(pairs, sorted(set(predictions) - set(ground_truth)))


def check_same_frames(ground_truth: VideoAnnotations, predictions: VideoAnnotations) -> None:
    """Frames are paired by position, so both files must list the same images in order."""
    if predictions.num_frames != ground_truth.num_frames:
        raise EvaluationInputError(
            f"{predictions.source}: video {predictions.name!r} has {predictions.num_frames} "
            f"images, the ground truth {ground_truth.source} has {ground_truth.num_frames} "
            "(frames are paired by position: list every ground-truth image, in order)"
        )
    differ = np.flatnonzero(predictions.image_ids != ground_truth.image_ids)
    if differ.size:
        first = int(differ[0])
        raise EvaluationInputError(
            f"{predictions.source}: video {predictions.name!r}: image ids differ from the "
            f"ground truth at {differ.size} positions; first at images[{first}]: "
            f"{predictions.image_ids[first]} instead of {ground_truth.image_ids[first]}"
        )


# ----------------------------------------------------------------------------- checks


def _check_categories(categories: Any, where: str, skeleton: Skeleton) -> None:
    """A ``categories`` entry, when there is one, must declare the skeleton's joints.

    A missing entry is judged by the evaluation (poseval needs it, the kit does not). One
    that names other joints, or the same in another order, is refused under both
    protocols: poseval would map the joints by those names, the kit would ignore them and
    read the slots, so the file means different things to the two tools.
    """
    expected = list(skeleton.joint_names)
    if not isinstance(categories, list) or not categories:
        raise EvaluationInputError(f"{where}: 'categories' must be a non-empty list")
    category = categories[0]
    if not isinstance(category, Mapping):
        raise EvaluationInputError(f"{where}: categories[0] must be an object")
    if category.get("name", "person") != "person":
        raise EvaluationInputError(
            f"{where}: categories[0] is {category.get('name')!r}, expected 'person'"
        )
    names = category.get("keypoints")
    if names != expected:
        raise EvaluationInputError(
            f"{where}: categories[0].keypoints must be the {skeleton.name} joints in slot "
            f"order {expected}, got {names!r}"
        )


def _check_unique_track_ids(
    person_frame: np.ndarray,
    track_ids: np.ndarray,
    written_track_ids: np.ndarray,
    file_names: Sequence[str],
    where: str,
) -> None:
    """Both tools refuse a repeated id in a frame (poseval: predictions, any frame; the
    kit: _check_unique_ids); 3 and 3.0 are the same id to both (np.unique)."""
    if len(track_ids) < 2:
        return
    order = np.lexsort((track_ids, person_frame))
    same = (np.diff(person_frame[order]) == 0) & (np.diff(track_ids[order]) == 0)
    if same.any():
        first = order[int(np.flatnonzero(same)[0])]
        raise EvaluationInputError(
            f"{where}: track id {format_track_id(written_track_ids[first])} appears more than "
            f"once in frame "
            f"{file_names[person_frame[first]]} (track ids must be unique within a frame)"
        )


def format_track_id(value: float, written_as_float: bool = False) -> str:
    """A written track id for messages: 3, 3.0 (a JSON float), -1, 2.5."""
    if value.is_integer() and not written_as_float:
        return str(int(value))
    return repr(float(value))


def _comparable_track_ids(written: Sequence[int | float]) -> np.ndarray:
    """[N] int64 ids that compare exactly as the written ones (see VideoAnnotations)."""
    limit = 2**62

    def whole(value: int | float) -> bool:
        return (isinstance(value, int) or value.is_integer()) and 0 <= value < limit

    ids = np.array([int(value) if whole(value) else -1 for value in written], dtype=np.int64)
    others = sorted({_as_float(value) for value in written if not whole(value)})
    if others:
        first_free = int(ids.max()) + 1 if (ids >= 0).any() else 0
        new_id = {value: first_free + rank for rank, value in enumerate(others)}
        for index, value in enumerate(written):
            if ids[index] < 0:
                ids[index] = new_id[_as_float(value)]
    return ids.reshape(len(written))


def _as_float(value: int | float) -> float:
    """float(value), with integers beyond the float range as +-inf."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _require_number(mapping: Mapping, key: str, label: str) -> int | float:
    value = mapping.get(key)
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or (isinstance(value, float) and not math.isfinite(value)):
        raise EvaluationInputError(f"{label}: {key!r} must be a finite number, got {value!r}")
    return value


def _require_int(mapping: Mapping, key: str, label: str) -> int:
    value = mapping.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise EvaluationInputError(f"{label}: {key!r} must be an integer, got {value!r}")
    return value


def _list_of(values: Any, length: int, key: str, label: str) -> list:
    if not isinstance(values, list):
        raise EvaluationInputError(f"{label}: {key!r} must be a list of {length} numbers")
    if len(values) != length:
        raise EvaluationInputError(f"{label}: {key!r} has {len(values)} numbers, expected {length}")
    return values


def _number_rows(
    rows: list[list], indices: Sequence[int], length: int, key: str, where: str, *, finite=True
) -> np.ndarray:
    """[len(rows), length] float64 from lists already checked for length.

    Args:
        finite: refuse NaN and infinite values (else they are kept as read).
    """
    try:
        array = np.array(rows, dtype=np.float64).reshape(len(rows), length)
    except (TypeError, ValueError):
        for row, index in zip(rows, indices, strict=True):
            try:
                np.array(row, dtype=np.float64)
            except (TypeError, ValueError):
                raise EvaluationInputError(
                    f"{where}[{index}]: {key!r} must contain only numbers"
                ) from None
        raise
    if finite:
        finite_rows = np.isfinite(array).all(axis=1)
        if not finite_rows.all():
            index = list(indices)[int(np.flatnonzero(~finite_rows)[0])]
            raise EvaluationInputError(f"{where}[{index}]: {key!r} contains NaN or infinite values")
    return array


def _read_ignore_regions(image: Mapping, label: str) -> list[np.ndarray]:
    xs, ys = image.get("ignore_regions_x"), image.get("ignore_regions_y")
    if xs is None and ys is None:
        return []
    if not isinstance(xs, list) or not isinstance(ys, list) or len(xs) != len(ys):
        raise EvaluationInputError(
            f"{label}: 'ignore_regions_x' and 'ignore_regions_y' must be lists of the same "
            "number of polygons"
        )
    polygons = []
    for index, (x, y) in enumerate(zip(xs, ys, strict=True)):
        if not isinstance(x, list) or not isinstance(y, list) or len(x) != len(y):
            raise EvaluationInputError(
                f"{label}: ignore polygon {index} has x and y lists of different lengths"
            )
        try:
            polygon = np.column_stack([np.asarray(x, float), np.asarray(y, float)])
        except (TypeError, ValueError):
            raise EvaluationInputError(
                f"{label}: ignore polygon {index} must contain only numbers"
            ) from None
        if polygon.size and not np.isfinite(polygon).all():
            raise EvaluationInputError(f"{label}: ignore polygon {index} has non-finite values")
        polygons.append(polygon.reshape(-1, 2))
    return polygons


def _boxes_note(data: Mapping) -> str | None:
    meta = data.get("vidpose")
    if isinstance(meta, Mapping) and isinstance(meta.get("boxes"), str):
        return meta["boxes"]
    return None
