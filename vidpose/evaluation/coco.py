"""COCO keypoint AP/AR through pycocotools, with OKS sigmas from the skeleton.

pycocotools' COCOeval defaults to the 17 COCO sigmas. For another skeleton (the
PoseTrack layout of the synthetic COCO export: head_bottom and head_top in the eye
slots) its ``params.kpt_oks_sigmas`` is set to that skeleton's sigmas, so the OKS of
each slot uses the falloff of the joint it really holds.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vidpose.data.json_fields import AnnotationError, FieldReader, annotation_reader, describe
from vidpose.data.skeleton import SKELETONS, Skeleton
from vidpose.evaluation.posetrack_json import EvaluationInputError

COCO_STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")


def evaluate_coco_keypoints(
    ground_truth: str | Path | Mapping[str, Any],
    results: str | Path | Sequence[Mapping[str, Any]],
    *,
    skeleton: Skeleton | None = None,
) -> dict[str, float]:
    """COCO keypoint AP and AR (percent) of a results list against a COCO file.

    Args:
        ground_truth: COCO keypoint annotations (path or decoded dict). Missing
            ``iscrowd`` (0), ``area`` (bbox w x h) and ``num_keypoints`` (joints with
            v > 0) are filled in, since COCOeval needs them.
        results: COCO results (path or list of dicts with image_id, category_id,
            keypoints [3K], score).
        skeleton: whose OKS sigmas to use; default: the skeleton whose joint names equal
            ``categories[0].keypoints``.

    Returns:
        AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl, each x 100 (NaN where
        pycocotools has nothing to measure, e.g. APm without medium-sized persons).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    where = str(ground_truth) if isinstance(ground_truth, str | Path) else "ground truth"
    dataset = _load(ground_truth, "ground truth")
    if not isinstance(dataset, Mapping) or "annotations" not in dataset:
        raise EvaluationInputError(f"{where}: not a COCO annotation file")
    skeleton = skeleton or _skeleton_of(dataset, where)
    detections = _checked_results(
        _load(results, "results"),
        str(results) if isinstance(results, str | Path) else "results",
        skeleton.num_joints,
    )
    dataset = _with_required_fields(dataset, where, skeleton.num_joints)
    if not detections:
        return dict.fromkeys(COCO_STAT_NAMES, 0.0)
    image_ids = {image["id"] for image in dataset["images"]}
    unknown = {result["image_id"] for result in detections} - image_ids
    if unknown:
        raise EvaluationInputError(
            f"results refer to image ids absent from {where}: {sorted(unknown)[:5]}"
        )

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco_gt = COCO()
        coco_gt.dataset = dataset
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(detections)
        evaluator = COCOeval(coco_gt, coco_dt, iouType="keypoints")
        evaluator.params.kpt_oks_sigmas = np.asarray(skeleton.sigmas, dtype=np.float64)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    # COCOeval writes -1 where a statistic is undefined (e.g. no medium-sized person).
    return {
        name: float(value) * 100 if value >= 0 else math.nan
        for name, value in zip(COCO_STAT_NAMES, evaluator.stats, strict=True)
    }


def _load(source: Any, what: str) -> Any:
    if isinstance(source, str | Path):
        try:
            with open(source, encoding="utf-8") as handle:
                return json.load(handle)
        except FileNotFoundError:
            raise EvaluationInputError(f"{source}: COCO {what} file not found") from None
        except (OSError, ValueError) as error:
            reason = " ".join(str(error).split())
            raise EvaluationInputError(f"{source}: cannot read COCO {what} ({reason})") from None
    return source


def _checked_results(results: Any, shown: str, joints: int) -> list[dict[str, Any]]:
    """The results list, each result checked as the PoseTrack reader checks predictions:
    an integer ``image_id`` and ``category_id``, ``keypoints`` of 3 K finite numbers and a
    finite ``score``. pycocotools checks none of it: NaN keypoints scored AP 100 and a
    result of 3 numbers was read as a one-joint pose.

    Raises:
        EvaluationInputError: naming the file, the result and the field.
    """
    if not isinstance(results, list):
        hint = " (a ground-truth file?)" if isinstance(results, Mapping) else ""
        raise EvaluationInputError(
            f"{shown}: the top level is {describe(results)}{hint}, expected a list of COCO "
            "keypoint results [{image_id, category_id, keypoints, score}, ...]"
        )
    checked = []
    for position, result in enumerate(results):
        reader = FieldReader(result, file=shown, what=f"result #{position}")
        try:
            reader.integer("image_id")
            reader.integer("category_id")
            reader.numbers("keypoints", 3 * joints)
            reader.number("score")
        except AnnotationError as error:
            raise EvaluationInputError(str(error)) from None
        checked.append(result)
    return checked


def _skeleton_of(dataset: Mapping[str, Any], where: str) -> Skeleton:
    categories = dataset.get("categories") or []
    names = tuple(categories[0].get("keypoints", ())) if categories else ()
    for skeleton in SKELETONS.values():
        if skeleton.joint_names == names:
            return skeleton
    raise EvaluationInputError(
        f"{where}: categories[0].keypoints {list(names)} match no known skeleton "
        f"({', '.join(SKELETONS)}); pass skeleton="
    )


def _with_required_fields(
    dataset: Mapping[str, Any], where: str, joints: int | None = None
) -> dict[str, Any]:
    """The ground truth checked (images with integer ids; annotations on listed images
    with 3 K finite keypoint numbers and a 4-number ``bbox`` or an ``area``) and the
    fields COCOeval needs filled in.

    Raises:
        EvaluationInputError: naming the file, the record and the field.
    """
    try:
        top = FieldReader(dataset, file=where, what="top level")
        image_ids = {
            FieldReader(image, file=where, what=f"images[{index}]").integer("id")
            for index, image in enumerate(top.objects("images"))
        }
        annotations = []
        for index, annotation in enumerate(top.objects("annotations")):
            reader, _ = annotation_reader(annotation, index, where, image_ids)
            reader.numbers("keypoints", None if joints is None else 3 * joints)
            annotation = dict(annotation)
            annotation.setdefault("iscrowd", 0)
            if "area" not in annotation:
                if not reader.has("bbox"):
                    raise reader.error("bbox", "is missing", "a bbox or an area (OKS needs it)")
                box = reader.numbers("bbox", 4)
                annotation["area"] = float(box[2] * box[3])
            if "num_keypoints" not in annotation:
                annotation["num_keypoints"] = int(np.count_nonzero(annotation["keypoints"][2::3]))
            annotations.append(annotation)
    except AnnotationError as error:
        raise EvaluationInputError(str(error)) from None
    return {**dataset, "annotations": annotations}
