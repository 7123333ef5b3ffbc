"""COCO keypoint AP through pycocotools, with the skeleton's OKS sigmas."""

import numpy as np
import pytest

from vidpose.data.skeleton import COCO, POSETRACK
from vidpose.evaluation import PredictedPerson, evaluate_coco_keypoints, write_coco_results


def coco_ground_truth(xy_per_person, visible, names):
    """One image per person, each person's box 350 x 350 (area 122500)."""
    images, annotations = [], []
    for index, xy in enumerate(xy_per_person, start=1):
        keypoints = np.zeros((17, 3))
        keypoints[visible, :2] = xy[visible]
        keypoints[visible, 2] = 2
        images.append({"id": index, "file_name": f"{index}.jpg", "width": 640, "height": 480})
        annotations.append(
            {
                "id": index,
                "image_id": index,
                "category_id": 1,
                "keypoints": keypoints.reshape(-1).tolist(),
                "bbox": [50.0, 50.0, 350.0, 350.0],
            }
        )
    return {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person", "keypoints": list(names)}],
    }


def test_written_results_of_the_ground_truth_score_100(tmp_path):
    rng = np.random.default_rng(0)
    xy = [rng.uniform(60, 390, (17, 2)) for _ in range(3)]
    visible = [slot for slot in range(17) if slot not in (3, 4)]  # PoseTrack: no ears
    gt = coco_ground_truth(xy, visible, POSETRACK.joint_names)
    predictions = {
        index: [PredictedPerson(points, np.full(17, 0.9), track_id=0)]
        for index, points in enumerate(xy, start=1)
    }
    results = write_coco_results(tmp_path / "results.json", predictions)
    stats = evaluate_coco_keypoints(gt, results)
    assert stats["AP"] == pytest.approx(100.0) and stats["AR"] == pytest.approx(100.0)


def test_posetrack_files_use_the_posetrack_sigmas():
    rng = np.random.default_rng(1)
    xy = [rng.uniform(60, 390, (17, 2)) for _ in range(4)]
    visible = [0, 1, 5]  # nose, head_bottom, left_shoulder
    gt = coco_ground_truth(xy, visible, POSETRACK.joint_names)
    results = []
    for index, points in enumerate(xy, start=1):
        moved = points.copy()
        moved[1, 0] += 40.0  # head_bottom 40 px off
        triples = np.column_stack([moved, np.ones(17)]).reshape(-1).tolist()
        results.append({"image_id": index, "category_id": 1, "keypoints": triples, "score": 1.0})
    # Slot 1 holds head_bottom: sigma 0.079 (PoseTrack) instead of COCO's left eye 0.025.
    # OKS term exp(-d^2 / (2 area (2 sigma)^2)), area 122500: exp(-1600 / 6116) = 0.770
    # vs exp(-1600 / 612.5) = 0.073. OKS = mean over the 3 visible joints: 0.923 passes
    # the thresholds 0.50 ... 0.90 (AP 90), 0.691 only 0.50 ... 0.65 (AP 40).
    inferred = evaluate_coco_keypoints(gt, results)
    assert inferred == evaluate_coco_keypoints(gt, results, skeleton=POSETRACK)
    assert inferred["AP"] == pytest.approx(90.0)
    assert evaluate_coco_keypoints(gt, results, skeleton=COCO)["AP"] == pytest.approx(40.0)
