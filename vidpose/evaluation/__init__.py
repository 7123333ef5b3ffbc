"""PoseTrack mAP / MOTA / keypoint HOTA, COCO OKS AP, and writers in the official formats.

Typical use (``vidpose test``, ``vidpose eval``)::

    from vidpose.evaluation import PredictedPerson, evaluate_posetrack, write_posetrack_predictions

    write_posetrack_predictions(out_dir / f"{video}.json", gt_images, {image_id: [person, ...]},
                                boxes="ground truth")
    report = evaluate_posetrack(gt_dir, out_dir, protocol="posetrack18", tracking=True)
    print(report.format_tables())
"""

from vidpose.evaluation.average_precision import (
    JointAveragePrecision,
    TieSpread,
    posetrack_average_precision,
    voc_average_precision,
)
from vidpose.evaluation.coco import evaluate_coco_keypoints
from vidpose.evaluation.hota import HotaMetrics, posetrack_hota
from vidpose.evaluation.mota import TRACKING_MODES, MotMetrics, TrackingMode, posetrack_mota
from vidpose.evaluation.posetrack_eval import evaluate_posetrack, evaluate_posetrack_videos
from vidpose.evaluation.posetrack_json import (
    EvaluationInputError,
    VideoAnnotations,
    load_posetrack_videos,
    pair_videos,
    parse_posetrack_json,
)
from vidpose.evaluation.protocols import PROTOCOLS, PreparedVideo, Protocol, prepare_video
from vidpose.evaluation.report import JointScores, PoseTrackReport
from vidpose.evaluation.writers import (
    PredictedPerson,
    images_from_frames,
    posetrack_image_id,
    posetrack_images,
    write_coco_results,
    write_posetrack_predictions,
)

__all__ = [
    "PROTOCOLS",
    "TRACKING_MODES",
    "EvaluationInputError",
    "HotaMetrics",
    "JointAveragePrecision",
    "JointScores",
    "MotMetrics",
    "PoseTrackReport",
    "PredictedPerson",
    "PreparedVideo",
    "Protocol",
    "TieSpread",
    "TrackingMode",
    "VideoAnnotations",
    "evaluate_coco_keypoints",
    "evaluate_posetrack",
    "evaluate_posetrack_videos",
    "images_from_frames",
    "load_posetrack_videos",
    "pair_videos",
    "parse_posetrack_json",
    "posetrack_average_precision",
    "posetrack_hota",
    "posetrack_image_id",
    "posetrack_images",
    "posetrack_mota",
    "prepare_video",
    "voc_average_precision",
    "write_coco_results",
    "write_posetrack_predictions",
]
