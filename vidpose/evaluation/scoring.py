"""The library side of ``vidpose eval``: prediction files scored against ground truth,
the tables as text and the numbers as a dict, optionally written as JSON
(:func:`score_files`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from vidpose.runtime import writing


@dataclass
class ScoredFiles:
    """What :func:`score_files` found.

    Attributes:
        text: the tables, as ``vidpose eval`` prints them.
        result: the numbers, as the JSON file holds them (NaN as None).
    """

    text: str
    result: dict[str, Any]


def score_files(
    ground_truth: str | os.PathLike,
    predictions: str | os.PathLike,
    *,
    coco: bool = False,
    protocol: str = "posetrack18",
    tracking: bool = False,
    tracking_mode: str = "official",
    boxes: str | None = None,
    json_path: str | os.PathLike | None = None,
) -> ScoredFiles:
    """PoseTrack mAP (and with ``tracking`` MOTA / MOTP / keypoint HOTA) of prediction
    files, or with ``coco`` the COCO OKS AP of a results file: ``vidpose eval``.

    Raises:
        vidpose.evaluation.EvaluationInputError: a missing or malformed file (the file
            and the field named).
        vidpose.runtime.OutputError: ``json_path`` cannot be written.
    """
    from vidpose.data.json_fields import write_json_atomic
    from vidpose.evaluation.coco import evaluate_coco_keypoints
    from vidpose.evaluation.posetrack_eval import evaluate_posetrack

    if coco:
        stats = evaluate_coco_keypoints(ground_truth, predictions)
        text = f"COCO keypoint OKS AP (boxes: {boxes or 'unknown'})\n" + "  ".join(
            f"{name} {value:.1f}" for name, value in stats.items()
        )
        result = {"coco": {k: None if v != v else v for k, v in stats.items()}, "boxes": boxes}
    else:
        report = evaluate_posetrack(
            ground_truth,
            predictions,
            protocol=protocol,
            tracking=tracking,
            tracking_mode=tracking_mode,
            boxes=boxes,
        )
        text, result = report.format_tables(), report.to_dict()
    if json_path is not None:
        with writing(json_path, "the metrics file"):
            write_json_atomic(json_path, result)
    return ScoredFiles(text, result)
