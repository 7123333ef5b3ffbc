"""Time PoseTrack evaluation (mAP, MOTA, HOTA) on a validation-sized synthetic set.

Builds, in a temporary folder, about what PoseTrack18 validation holds: 170 videos,
each with 30 labeled frames among more unlabeled ones, a few people per frame (some
frames with an ignore polygon), and perturbed predictions (joint noise, dropped
joints and people, false positives, identity switches, random scores). Then times each
stage of vidpose.evaluation on it.

    python tools/bench_eval.py [--videos 170] [--labeled 30] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from vidpose.data.skeleton import POSETRACK
from vidpose.evaluation import (
    PredictedPerson,
    evaluate_posetrack,
    load_posetrack_videos,
    pair_videos,
    posetrack_average_precision,
    posetrack_hota,
    posetrack_images,
    posetrack_mota,
    prepare_video,
    write_posetrack_predictions,
)

SCORED = POSETRACK.scored_indices


def synthetic_video(rng: np.random.Generator, number: int, labeled: int) -> tuple[dict, dict]:
    """One ground-truth document and its predictions (image id -> PredictedPerson list)."""
    name = f"{number:06d}_mpii_test"
    num_frames = labeled * 2
    images = posetrack_images(name, num_frames)
    is_labeled = np.zeros(num_frames, dtype=bool)
    is_labeled[labeled // 2 : labeled // 2 + labeled] = True  # the central frames
    num_people = int(rng.integers(2, 7))
    start = rng.uniform([100, 150], [1100, 500], size=(num_people, 2))
    velocity = rng.normal(0, 3, size=(num_people, 2))
    shape = rng.normal(0, 40, size=(num_people, 17, 2))
    annotations, predictions = [], {}
    for frame, image in enumerate(images):
        image["is_labeled"] = bool(is_labeled[frame])
        polygon = rng.random() < 0.1 and is_labeled[frame]
        image["ignore_regions_x"] = [[0.0, 120.0, 120.0, 0.0]] if polygon else []
        image["ignore_regions_y"] = [[0.0, 0.0, 720.0, 720.0]] if polygon else []
        if not is_labeled[frame]:
            continue
        people = []
        for person in range(num_people):
            if rng.random() < 0.05:  # briefly out of view
                continue
            xy = start[person] + velocity[person] * frame + shape[person]
            keypoints = np.zeros((17, 3))
            keypoints[SCORED, :2] = xy[SCORED]
            keypoints[SCORED, 2] = 1
            keypoints[rng.random(17) < 0.1] = 0  # unannotated joints
            annotations.append(
                {
                    "id": image["id"] * 100 + len(people),
                    "image_id": image["id"],
                    "track_id": person,
                    "category_id": 1,
                    "keypoints": keypoints.reshape(-1).tolist(),
                    "bbox_head": [*(xy[0] - 15).tolist(), 30.0, 35.0],
                }
            )
            if rng.random() < 0.05:  # missed person
                continue
            noisy = xy + rng.normal(0, 6, size=(17, 2))
            noisy[rng.random(17) < 0.05] = np.nan  # dropped joints
            switch = rng.random() < 0.02
            people.append(
                PredictedPerson(
                    keypoints=noisy,
                    scores=rng.uniform(0.2, 1.0, 17),
                    track_id=(person + 1) % num_people if switch else person,
                )
            )
        if rng.random() < 0.1:  # a false positive person
            people.append(
                PredictedPerson(rng.uniform(0, 1200, (17, 2)), rng.uniform(0, 0.5, 17), 99)
            )
        # an identity switch may collide with the person it switched to: keep the first
        unique = {person.track_id: person for person in reversed(people)}
        predictions[image["id"]] = list(unique.values())[::-1]
    document = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person", "keypoints": list(POSETRACK.joint_names)}],
    }
    return document, predictions


def timed(label: str, function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    print(f"{label:<44}{time.perf_counter() - start:8.2f} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=170)
    parser.add_argument("--labeled", type=int, default=30, help="labeled frames per video")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)

    with tempfile.TemporaryDirectory() as folder:
        gt_folder, pred_folder = Path(folder, "gt"), Path(folder, "pred")
        gt_folder.mkdir()
        start = time.perf_counter()
        for number in range(1, args.videos + 1):
            document, predictions = synthetic_video(rng, number, args.labeled)
            name = document["images"][0]["file_name"].split("/")[-2]
            (gt_folder / f"{name}.json").write_text(json.dumps(document))
            write_posetrack_predictions(
                pred_folder / f"{name}.json", document["images"], predictions, boxes="synthetic"
            )
        print(f"{'writing the synthetic set':<44}{time.perf_counter() - start:8.2f} s")

        gt = timed("loading ground truth", load_posetrack_videos, gt_folder, role="ground truth")
        pred = timed("loading predictions", load_posetrack_videos, pred_folder, role="predictions")
        pairs = pair_videos(gt, pred).pairs
        frames = sum(video.num_frames for video in gt.values())
        people = sum(video.num_persons for video in gt.values())
        print(f"{len(pairs)} videos, {frames} frames, {people} ground-truth persons")

        prepared = {}
        for protocol in ("posetrack18", "posetrack21"):
            prepared[protocol] = timed(
                f"preparing frames ({protocol})",
                lambda protocol=protocol: [prepare_video(g, p, protocol) for g, p in pairs],
            )
            ap = timed(
                f"mAP ({protocol})", posetrack_average_precision, prepared[protocol], protocol
            )
            print(f"{'':<44}Total AP {np.nanmean(ap.ap):.1f}")
        mot = timed("MOTA (official)", posetrack_mota, prepared["posetrack18"], "official")
        print(f"{'':<44}Total MOTA {np.nanmean(mot.mota):.1f}")
        hota = timed("HOTA (official)", posetrack_hota, prepared["posetrack21"], "official")
        print(f"{'':<44}Total HOTA {hota.hota[-1]:.1f}")
        report = timed(
            "evaluate_posetrack end to end (with tracking)",
            evaluate_posetrack,
            gt_folder,
            pred_folder,
            tracking=True,
        )
        print()
        print(report.format_tables())


if __name__ == "__main__":
    main()
