"""Builders of small PoseTrack-format documents for the evaluation tests.

Every ground-truth person gets the head box (0, 0, 30, 40): diagonal 50, head size
0.6 x 50 = 30, so a predicted joint matches (PCKh@0.5) when it is within 15 px.
"""

from __future__ import annotations

import copy
import json
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from vidpose.data.skeleton import POSETRACK
from vidpose.evaluation import PoseTrackReport, evaluate_posetrack, posetrack_images

HEAD_BOX = [0.0, 0.0, 30.0, 40.0]
SCORED = [int(slot) for slot in POSETRACK.scored_indices]
Points = Mapping[int, tuple[float, float]]


def keypoints_from(points: Points) -> list[float]:
    """51 numbers with (x, y, 1) at the given slots and (0, 0, 0) elsewhere."""
    values = [0.0] * 51
    for slot, (x, y) in points.items():
        values[3 * slot : 3 * slot + 3] = [float(x), float(y), 1.0]
    return values


def gt_person(track_id: int, points: Points, head_box: list[float] | None = HEAD_BOX) -> dict:
    person = {"track_id": track_id, "category_id": 1, "keypoints": keypoints_from(points)}
    if head_box is not None:
        person["bbox_head"] = list(head_box)
    return person


def pred_person(track_id: int, points: Points, scores: float | Mapping[int, float] = 1.0) -> dict:
    per_joint = [0.0] * 17
    for slot in points:
        per_joint[slot] = scores if isinstance(scores, int | float) else scores[slot]
    return {"track_id": track_id, "keypoints": keypoints_from(points), "scores": per_joint}


def video_document(
    name: str,
    frames: Sequence[Sequence[dict]],
    *,
    labeled: Sequence[bool] | None = None,
    ignore: Mapping[int, list[list[tuple[float, float]]]] | None = None,
) -> dict:
    """A per-video document; frame i holds persons ``frames[i]``.

    Args:
        labeled: is_labeled per frame (default: frames with persons).
        ignore: frame index -> polygons, each a list of (x, y) vertices.
    """
    images = posetrack_images(name, len(frames))
    annotations = []
    for index, (image, persons) in enumerate(zip(images, frames, strict=True)):
        image["is_labeled"] = bool(labeled[index]) if labeled is not None else bool(persons)
        polygons = (ignore or {}).get(index, [])
        image["ignore_regions_x"] = [[float(x) for x, _ in polygon] for polygon in polygons]
        image["ignore_regions_y"] = [[float(y) for _, y in polygon] for polygon in polygons]
        for number, person in enumerate(persons):
            annotations.append(
                {"id": image["id"] * 100 + number, "image_id": image["id"], **person}
            )
    return {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person", "keypoints": list(POSETRACK.joint_names)}],
    }


def predictions_document(gt_document: dict, frames: Sequence[Sequence[dict]]) -> dict:
    """Predictions on the ground truth's images: frame i holds ``frames[i]``."""
    images = [
        {"id": image["id"], "file_name": image["file_name"]} for image in gt_document["images"]
    ]
    annotations = [
        {"image_id": image["id"], **person}
        for image, persons in zip(images, frames, strict=True)
        for person in persons
    ]
    return {"images": images, "annotations": annotations, "categories": gt_document["categories"]}


def gt_as_predictions(
    gt_document: dict, move: Callable[[np.ndarray], np.ndarray] | None = None
) -> dict:
    """Predictions copied from the ground truth, every joint scored 1.

    Args:
        move: optional function of the [17, 3] keypoints returning new ones.
    """
    document = copy.deepcopy(gt_document)
    for annotation in document["annotations"]:
        keypoints = np.asarray(annotation.pop("keypoints"), dtype=float).reshape(17, 3)
        annotation.pop("bbox_head", None)
        if move is not None:
            keypoints = move(keypoints)
        annotation["keypoints"] = keypoints.reshape(-1).tolist()
        annotation["scores"] = [1.0] * 17
    for image in document["images"]:
        for key in ("is_labeled", "ignore_regions_x", "ignore_regions_y"):
            image.pop(key, None)
    return document


def random_ground_truth(
    rng: np.random.Generator, num_videos: int = 3, num_frames: int = 6, num_persons: int = 3
) -> dict[str, dict]:
    """Random videos: persons walk on separate lanes, about 10% of joints unannotated."""
    documents = {}
    for video in range(num_videos):
        name = f"{video + 1:06d}_mpii_test"
        starts = [(100.0 + 400.0 * person, 150.0) for person in range(num_persons)]
        offsets = rng.uniform(-60, 60, size=(num_persons, 17, 2))
        frames = []
        for frame in range(num_frames):
            persons = []
            for person in range(num_persons):
                base = np.asarray(starts[person]) + [4.0 * frame, 2.0 * frame]
                points = {
                    slot: tuple(base + offsets[person, slot])
                    for slot in SCORED
                    if rng.random() > 0.1
                }
                persons.append(gt_person(person, points))
            frames.append(persons)
        documents[name] = video_document(name, frames)
    return documents


def save(folder: Path, name: str, document: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(document))
    return path


def save_all(folder: Path, documents: Mapping[str, dict]) -> Path:
    for name, document in documents.items():
        save(folder, name, document)
    return folder


def evaluate_documents(
    folder: Path, ground_truth: Mapping[str, dict], predictions: Mapping[str, dict], **options
) -> PoseTrackReport:
    """Write both sides to fresh sub-folders of ``folder`` and evaluate them."""
    run = Path(tempfile.mkdtemp(dir=folder))
    save_all(run / "gt", ground_truth)
    save_all(run / "pred", predictions)
    return evaluate_posetrack(run / "gt", run / "pred", **options)


@pytest.fixture
def pt() -> SimpleNamespace:
    """The builders above, for tests (conftest functions cannot be imported by name)."""
    return SimpleNamespace(
        HEAD_BOX=HEAD_BOX,
        SCORED=SCORED,
        keypoints_from=keypoints_from,
        gt_person=gt_person,
        pred_person=pred_person,
        video_document=video_document,
        predictions_document=predictions_document,
        gt_as_predictions=gt_as_predictions,
        random_ground_truth=random_ground_truth,
        save=save,
        save_all=save_all,
        evaluate_documents=evaluate_documents,
    )
