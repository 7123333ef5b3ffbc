"""PoseTrack evaluation entry points: folders or merged files in, a report out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vidpose.data.skeleton import POSETRACK, Skeleton
from vidpose.evaluation.average_precision import posetrack_average_precision
from vidpose.evaluation.hota import posetrack_hota
from vidpose.evaluation.mota import TrackingMode, check_tracking_mode, posetrack_mota
from vidpose.evaluation.posetrack_json import (
    MISSING_SCORE,
    VideoAnnotations,
    check_same_frames,
    load_posetrack_videos,
    pair_videos,
)
from vidpose.evaluation.protocols import Protocol, check_protocol, prepare_video
from vidpose.evaluation.report import UNKNOWN_BOXES, JointScores, PoseTrackReport


def evaluate_posetrack(
    ground_truth: str | Path,
    predictions: str | Path,
    *,
    protocol: Protocol = "posetrack18",
    tracking: bool = False,
    tracking_mode: TrackingMode = "official",
    boxes: str | None = None,
    skeleton: Skeleton = POSETRACK,
) -> PoseTrackReport:
    """Evaluate prediction files against PoseTrack ground truth.

    Args:
        ground_truth: folder of per-video JSON files, or one merged JSON file.
        predictions: the same for the predictions (one file per ground-truth video, same
            basename; extra prediction files are ignored and listed in the notes).
        protocol: "posetrack18" (poseval's mAP rules) or "posetrack21" (the PoseTrack21
            kit's). Tracking metrics always follow their own tool: MOTA/MOTP/precision/
            recall poseval, keypoint HOTA the PoseTrack21 kit.
        tracking: also compute the tracking metrics.
        tracking_mode: "official" (reproduce the tools' quirks) or "corrected".
        boxes: which person boxes produced the predictions (e.g. "ground truth",
            "detections: path/to/boxes.json"); default: what the prediction files say.
        skeleton: the joint layout of the files.

    Raises:
        EvaluationInputError: a file is malformed, or the files do not pair.
    """
    gt_videos = load_posetrack_videos(ground_truth, role="ground truth", skeleton=skeleton)
    pred_videos = load_posetrack_videos(predictions, role="predictions", skeleton=skeleton)
    pairing = pair_videos(gt_videos, pred_videos)
    report = evaluate_posetrack_videos(
        pairing.pairs,
        protocol=protocol,
        tracking=tracking,
        tracking_mode=tracking_mode,
        boxes=boxes,
        skeleton=skeleton,
    )
    if pairing.unmatched_predictions:
        report.notes.append(
            f"{len(pairing.unmatched_predictions)} prediction videos without ground truth were "
            f"ignored: {', '.join(pairing.unmatched_predictions[:10])}"
        )
    return report


def evaluate_posetrack_videos(
    pairs: Sequence[tuple[VideoAnnotations, VideoAnnotations]],
    *,
    protocol: Protocol = "posetrack18",
    tracking: bool = False,
    tracking_mode: TrackingMode = "official",
    boxes: str | None = None,
    skeleton: Skeleton = POSETRACK,
) -> PoseTrackReport:
    """Evaluate (ground truth, predictions) video pairs already in memory.

    Videos are pooled in name order (the PoseTrack21 kit sorts sequences; the order
    only matters for ties between equal scores).
    """
    check_protocol(protocol)
    check_tracking_mode(tracking_mode)
    pairs = sorted(pairs, key=lambda pair: pair[0].name)
    for gt, pred in pairs:
        check_same_frames(gt, pred)
    prepared = {protocol: [prepare_video(gt, pred, protocol, skeleton) for gt, pred in pairs]}
    ap = posetrack_average_precision(prepared[protocol], protocol)

    metrics = {
        "AP": JointScores.from_joints(ap.ap, skeleton),
        "AP precision": JointScores.from_joints(ap.precision, skeleton),
        "AP recall": JointScores.from_joints(ap.recall, skeleton),
    }
    if tracking:
        for rules in ("posetrack18", "posetrack21"):
            if rules not in prepared:
                prepared[rules] = [prepare_video(gt, pred, rules, skeleton) for gt, pred in pairs]
        mot = posetrack_mota(prepared["posetrack18"], tracking_mode)
        metrics["MOTA"] = JointScores.from_joints(mot.mota, skeleton)
        metrics["MOTP"] = JointScores.from_joints(mot.motp, skeleton)
        metrics["Prec"] = JointScores.from_joints(mot.precision, skeleton)
        metrics["Rec"] = JointScores.from_joints(mot.recall, skeleton)
        hota = posetrack_hota(prepared["posetrack21"], tracking_mode)
        for name, values in (
            ("HOTA", hota.hota),
            ("DetA", hota.det_a),
            ("AssA", hota.ass_a),
            ("LocA", hota.loc_a),
            ("DetRe", hota.det_re),
            ("DetPr", hota.det_pr),
            ("AssRe", hota.ass_re),
            ("AssPr", hota.ass_pr),
        ):
            metrics[name] = JointScores.from_joints(values[:-1], skeleton, total=values[-1])

    notes = []
    without_scores = [pred.name for _, pred in pairs if np.any(pred.scores == MISSING_SCORE)]
    if without_scores:
        notes.append(
            f"{len(without_scores)} prediction videos have persons without 'scores'; both "
            f"official tools then use {MISSING_SCORE:g} ({', '.join(without_scores[:5])})"
        )
    return PoseTrackReport(
        protocol=protocol,
        boxes=boxes or _boxes_from_files([pred for _, pred in pairs]),
        num_videos=len(pairs),
        num_frames=sum(video.num_frames for video in prepared[protocol]),
        metrics=metrics,
        tracking_mode=tracking_mode if tracking else None,
        notes=notes,
    )


def _boxes_from_files(videos: Sequence[VideoAnnotations]) -> str:
    notes = {video.boxes for video in videos}
    if len(notes) == 1 and None not in notes:
        return notes.pop()
    if len(notes - {None}) > 1:
        return "mixed: " + "; ".join(sorted(note for note in notes if note))
    return UNKNOWN_BOXES
