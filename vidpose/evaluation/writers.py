"""Prediction files in the official formats, written atomically.

``write_posetrack_predictions`` writes one PoseTrack18/21 per-video file that poseval
and the PoseTrack21 kit accept unchanged: ``images`` (count, order, ids and file names
of the ground truth, or made from scratch with ``posetrack_images`` when there is no
ground truth, e.g. extraction), ``annotations`` (image_id, track_id, 51 keypoint numbers,
17 scores) and ``categories`` (the joint names; poseval maps joints by name).
``write_coco_results`` writes a COCO keypoint results list for pycocotools.

Numbers are written as JSON floats: the PoseTrack21 kit truncates the scores of a
frame whose keypoint numbers are all JSON integers (see protocols.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vidpose.data.json_fields import write_json_atomic
from vidpose.data.posetrack import DATASET_CODES
from vidpose.data.records import FrameRecord
from vidpose.data.skeleton import POSETRACK, Skeleton
from vidpose.evaluation.posetrack_json import EvaluationInputError

_VIDEO_NAME = re.compile(r"^(\d{1,6})_(mpiinew|mpii|bonn)(?:_|$)")
DEFAULT_FILE_NAME_PATTERN = "images/{split}/{video}/{frame:06d}.jpg"

# Image fields carried over from the ground truth (the rest is annotation, not needed).
_IMAGE_KEYS = ("id", "file_name", "frame_id", "vid_id", "nframes", "is_labeled")


@dataclass
class PredictedPerson:
    """One predicted person in one frame; K joints in the skeleton's slot order.

    Attributes:
        keypoints: [K, 2] (or [K, 3], third column ignored) x, y in pixels of the
            original frame; a row of NaN means the joint is not predicted and is written
            as (0, 0, 0), which both tools read as absent.
        scores: [K] per-joint confidences. mAP ranks by them; tracking metrics count
            every written joint whatever its score, so drop low-confidence joints (NaN
            rows) before writing a file meant for MOTA/HOTA.
        track_id: identity within the video, an int >= 0, unique within a frame.
        bbox: [4] x, y, w, h of the person box, or None (then the predicted joints' extent).
        score: person confidence, or None (COCO results then use the mean joint score).
        uncertainty: [K] per-joint uncertainty in pixels of the original frame (the
            model's expected error, ``vidpose.models.heads.contract``), or None. Written
            as ``keypoint_uncertainty``, a field both official tools ignore (null for
            joints not predicted).
    """

    keypoints: np.ndarray
    scores: np.ndarray
    track_id: int
    bbox: np.ndarray | None = None
    score: float | None = None
    uncertainty: np.ndarray | None = None


def posetrack_image_id(source: str, video_number: int, frame_index: int) -> int:
    """PoseTrack image id, e.g. ("mpii", 12834, 0) -> 10128340000.

    K x 10^10 + video number x 10^4 + frame index, K by the video's source collection
    (poseval posetrack18_id2fname; ``vidpose.data.posetrack.DATASET_CODES``).
    """
    if source not in DATASET_CODES:
        raise ValueError(f"unknown PoseTrack source {source!r}; expected {list(DATASET_CODES)}")
    if not 0 <= video_number < 10**6 or not 0 <= frame_index < 10**4:
        raise ValueError(
            f"PoseTrack ids need 0 <= video number < 10^6 and 0 <= frame < 10^4, got "
            f"{video_number}, {frame_index}"
        )
    return DATASET_CODES[source] * 10**10 + video_number * 10**4 + frame_index


def posetrack_images(
    video_name: str,
    num_frames: int,
    *,
    split: str = "val",
    video_number: int | None = None,
    source: str | None = None,
    file_name_pattern: str = DEFAULT_FILE_NAME_PATTERN,
) -> list[dict[str, Any]]:
    """``images`` entries for a video without ground truth (e.g. ``vidpose extract``).

    Args:
        video_name: e.g. "012834_mpii_test"; the video number and source are read from a
            PoseTrack-style name, else they must be given.
        num_frames: frames in the video.
        split: the split folder of the file names.
        video_number, source: override or supply the id parts ("mpii", "bonn", "mpiinew").
        file_name_pattern: format string with {split}, {video}, {frame}.

    Returns:
        One dict per frame with id, frame_id, vid_id, file_name and nframes.
    """
    match = _VIDEO_NAME.match(video_name)
    if video_number is None or source is None:
        if match is None:
            raise ValueError(
                f"video {video_name!r} is not named like a PoseTrack video "
                "('<number>_<mpii|bonn|mpiinew>_...'): pass video_number= and source="
            )
        video_number = int(match.group(1)) if video_number is None else video_number
        source = match.group(2) if source is None else source
    images = []
    for frame in range(num_frames):
        image_id = posetrack_image_id(source, video_number, frame)
        images.append(
            {
                "id": image_id,
                "frame_id": image_id,
                "vid_id": f"{video_number:06d}",
                "file_name": file_name_pattern.format(split=split, video=video_name, frame=frame),
                "nframes": num_frames,
            }
        )
    return images


def images_from_frames(frames: Sequence[FrameRecord]) -> list[dict[str, Any]]:
    """``images`` entries from the frame records of a ground-truth reader."""
    return [
        {
            "id": int(frame.image_id),
            "frame_id": int(frame.image_id),
            "file_name": frame.image_path,
            "nframes": int(frame.num_frames),
            "is_labeled": bool(frame.is_labeled),
        }
        for frame in frames
    ]


def write_posetrack_predictions(
    path: str | Path,
    images: Sequence[Mapping[str, Any]],
    predictions: Mapping[int, Sequence[PredictedPerson]],
    *,
    skeleton: Skeleton = POSETRACK,
    boxes: str | None = None,
) -> Path:
    """Write one video's predictions as a PoseTrack per-video JSON file.

    Args:
        path: output file; name it like the ground-truth file (the tools pair by basename).
        images: the ground truth's ``images`` (same count, order, ids and file names are
            required), or ``posetrack_images(...)`` / ``images_from_frames(...)``.
        predictions: image id -> predicted persons of that frame (frames without an entry
            have no predictions).
        skeleton: joint layout (K = skeleton.num_joints).
        boxes: which person boxes produced the predictions, recorded in the file as
            ``{"vidpose": {"boxes": ...}}`` (both tools ignore the extra key) and reported
            by the evaluator.

    Returns:
        The path written (atomically: a temporary file renamed over it).
    """
    path = Path(path)
    known_ids = {image["id"] for image in images}
    unknown = sorted(set(predictions) - known_ids)
    if unknown:
        raise EvaluationInputError(
            f"{path}: predictions for image ids not among the images: {unknown[:5]}"
        )
    annotations = []
    for image in images:
        persons = predictions.get(image["id"], ())
        seen: set[int] = set()
        for index, person in enumerate(persons):
            if person.track_id in seen:
                raise EvaluationInputError(
                    f"{path}: track id {person.track_id} twice in image {image['id']}"
                )
            seen.add(person.track_id)
            annotations.append(_posetrack_annotation(person, image["id"], index, skeleton, path))
    document: dict[str, Any] = {
        "images": [{key: image[key] for key in _IMAGE_KEYS if key in image} for image in images],
        "annotations": annotations,
        "categories": [
            {
                "id": 1,
                "name": "person",
                "supercategory": "person",
                "keypoints": list(skeleton.joint_names),
                "skeleton": [[a + 1, b + 1] for a, b in skeleton.limbs],
            }
        ],
    }
    if boxes is not None:
        document["vidpose"] = {"boxes": boxes}
    write_json_atomic(path, document)
    return path


def write_coco_results(
    path: str | Path,
    predictions: Mapping[int, Sequence[PredictedPerson]],
    *,
    skeleton: Skeleton = POSETRACK,
    category_id: int = 1,
) -> Path:
    """Write a COCO keypoint results list (image_id, category_id, keypoints, score).

    Joints not predicted are written as (0, 0, 0); pycocotools still compares them with
    visible ground truth, so predict every joint for COCO AP.
    """
    path = Path(path)
    results = []
    for image_id, persons in predictions.items():
        for index, person in enumerate(persons):
            keypoints, scores = _checked_arrays(person, skeleton, f"{path}: image {image_id}")
            predicted = np.isfinite(keypoints).all(axis=1)
            score = person.score
            if score is None:
                score = float(scores[predicted].mean()) if predicted.any() else 0.0
            results.append(
                {
                    "image_id": image_id,
                    "category_id": category_id,
                    "keypoints": _keypoint_triples(keypoints, predicted),
                    "score": float(score),
                    "id": image_id * 100 + index,
                    **_uncertainty_field(person, predicted, skeleton, path),
                }
            )
    write_json_atomic(path, results)
    return path


def _posetrack_annotation(
    person: PredictedPerson, image_id: int, index: int, skeleton: Skeleton, path: Path
) -> dict[str, Any]:
    keypoints, scores = _checked_arrays(person, skeleton, f"{path}: image {image_id}")
    if isinstance(person.track_id, bool) or not isinstance(person.track_id, int | np.integer):
        raise EvaluationInputError(f"{path}: image {image_id}: track_id must be an int")
    if person.track_id < 0:
        raise EvaluationInputError(f"{path}: image {image_id}: track_id must be >= 0")
    predicted = np.isfinite(keypoints).all(axis=1)
    annotation: dict[str, Any] = {
        "id": image_id * 100 + index,
        "image_id": image_id,
        "category_id": 1,
        "track_id": int(person.track_id),
        "keypoints": _keypoint_triples(keypoints, predicted),
        "scores": np.where(predicted, scores, 0.0).astype(float).tolist(),
    }
    if person.bbox is not None:
        annotation["bbox"] = np.asarray(person.bbox, dtype=float).reshape(4).tolist()
    elif predicted.any():
        low, high = keypoints[predicted].min(axis=0), keypoints[predicted].max(axis=0)
        annotation["bbox"] = [*low.tolist(), *(high - low).tolist()]
    if person.score is not None:
        annotation["score"] = float(person.score)
    annotation.update(_uncertainty_field(person, predicted, skeleton, path))
    return annotation


def _uncertainty_field(
    person: PredictedPerson, predicted: np.ndarray, skeleton: Skeleton, path: Path
) -> dict[str, Any]:
    """{"keypoint_uncertainty": [K] pixels, null for joints not predicted or without
    a finite value} when the person has one, else {}."""
    if person.uncertainty is None:
        return {}
    values = np.asarray(person.uncertainty, dtype=np.float64).reshape(-1)
    if values.shape != (skeleton.num_joints,):
        raise EvaluationInputError(
            f"{path}: uncertainty must have {skeleton.num_joints} values, got {values.size}"
        )
    keep = predicted & np.isfinite(values)
    shown = [float(value) if known else None for value, known in zip(values, keep, strict=True)]
    return {"keypoint_uncertainty": shown}


def _checked_arrays(
    person: PredictedPerson, skeleton: Skeleton, where: str
) -> tuple[np.ndarray, np.ndarray]:
    k = skeleton.num_joints
    keypoints = np.asarray(person.keypoints, dtype=np.float64)
    if keypoints.ndim != 2 or keypoints.shape[0] != k or keypoints.shape[1] not in (2, 3):
        raise EvaluationInputError(
            f"{where}: keypoints must be [{k}, 2] or [{k}, 3], got {list(keypoints.shape)}"
        )
    keypoints = keypoints[:, :2]
    scores = np.asarray(person.scores, dtype=np.float64).reshape(-1)
    if scores.shape != (k,):
        raise EvaluationInputError(f"{where}: scores must have {k} values, got {scores.size}")
    predicted = np.isfinite(keypoints).all(axis=1)
    if np.isinf(keypoints).any() or not np.isfinite(scores[predicted]).all():
        raise EvaluationInputError(f"{where}: infinite keypoints or non-finite scores")
    return keypoints, scores


def _keypoint_triples(keypoints: np.ndarray, predicted: np.ndarray) -> list[float]:
    triples = np.zeros((len(keypoints), 3))
    triples[predicted, :2] = keypoints[predicted]
    triples[predicted, 2] = 1.0
    return triples.reshape(-1).tolist()
