"""PoseTrack evaluation entry points: folders or merged files in, a report out.

Besides computing the metrics, the evaluation decides what each official tool would
do with the files (``--protocol`` names the mAP tool; MOTA always follows poseval and
HOTA the PoseTrack21 kit): it refuses, with the tool's reason, what the protocol's tool
refuses, and warns (``PoseTrackReport.warnings``, one line each) where it gives a
number that an official tool does not define: files only the other tool accepts, NaN
and infinite keypoints, ties whose order decides the AP, frames the kit stops on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from vidpose.data.skeleton import POSETRACK, Skeleton
from vidpose.evaluation.average_precision import JointAveragePrecision, posetrack_average_precision
from vidpose.evaluation.hota import posetrack_hota
from vidpose.evaluation.mota import TrackingMode, check_tracking_mode, posetrack_mota
from vidpose.evaluation.posetrack_json import (
    MISSING_SCORE,
    POSEVAL_MAX_TRACK_ID,
    EvaluationInputError,
    VideoAnnotations,
    check_same_frames,
    format_track_id,
    load_posetrack_videos,
    pair_videos,
)
from vidpose.evaluation.protocols import PreparedVideo, Protocol, check_protocol, prepare_video
from vidpose.evaluation.report import UNKNOWN_BOXES, JointScores, PoseTrackReport

# Printed under the tracking table: the two MOTPs differ (mota.py).
MOTP_DEFINITIONS = {
    "official": "MOTP as poseval prints it: 1 - (distance sum over all motmetrics events, "
    "the RAW event of every pair within half a head size included) / matches",
    "corrected": "MOTP of the matches only: 1 - mean head-normalised distance of the matched pairs",
}


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
        EvaluationInputError: a file is malformed, the files do not pair, or the
            protocol's tool refuses them (the message says why).
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
    rules_needed = ["posetrack18", "posetrack21"] if tracking else [protocol]
    prepared = {
        rules: [prepare_video(gt, pred, rules, skeleton) for gt, pred in pairs]
        for rules in rules_needed
    }
    warnings = _check_tools_accept(pairs, prepared, protocol, tracking, skeleton)
    warnings += _headless_warnings([gt for gt, _ in pairs], skeleton)
    ap = posetrack_average_precision(prepared[protocol], protocol)
    warnings += _tie_warnings(ap, [pred for _, pred in pairs], skeleton)
    warnings += _kit_stop_warnings(pairs, prepared, protocol, tracking, tracking_mode)

    metrics = {
        "AP": JointScores.from_joints(ap.ap, skeleton),
        "AP precision": JointScores.from_joints(ap.precision, skeleton),
        "AP recall": JointScores.from_joints(ap.recall, skeleton),
    }
    if tracking:
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
        warnings=warnings,
        motp_definition=MOTP_DEFINITIONS[tracking_mode] if tracking else None,
    )


# ----------------------------------------------------------------------------- tools' limits


def _check_tools_accept(
    pairs: Sequence[tuple[VideoAnnotations, VideoAnnotations]],
    prepared: Mapping[str, list[PreparedVideo]],
    protocol: Protocol,
    tracking: bool,
    skeleton: Skeleton,
) -> list[str]:
    """Refuse what the protocol's tool refuses; warn where vidpose goes past a tool.

    poseval (protocol posetrack18; MOTA always) needs ``categories`` (convert.py
    Video.from_new reads categories[0].keypoints) and refuses track ids >= 10000
    (load_data_dir asserts it for every annotation of both files). The PoseTrack21 kit
    (protocol posetrack21; HOTA always) needs integer track ids >= 0 in the frames it
    evaluates (get_preprocessed_seq_data builds ``np.ones(max id + 1)`` and indexes it
    with the ids: a float id raises, a negative one indexes from the end). NaN and
    infinite values both tools evaluate, each by its own rule.

    Returns:
        The warnings: what a tracking metric's tool would refuse, NaN and infinite values.
    """
    warnings = []
    for side, role in enumerate(("ground truth", "prediction")):
        videos = [pair[side] for pair in pairs]
        kit_rows = [
            (video.gt if side == 0 else video.pred).rows
            for video in prepared.get("posetrack21", [])
        ]
        warnings += _check_poseval_accepts(videos, role, protocol, tracking, skeleton)
        if protocol == "posetrack21" or tracking:
            warnings += _check_kit_accepts(videos, kit_rows, role, protocol)
        warnings += _non_finite_warnings(videos, role, protocol, tracking, skeleton)
    return warnings


def _check_poseval_accepts(
    videos: Sequence[VideoAnnotations],
    role: str,
    protocol: Protocol,
    tracking: bool,
    skeleton: Skeleton,
) -> list[str]:
    """poseval's refusals: an error under posetrack18, a warning for MOTA under posetrack21."""
    warnings = []
    # 'categories' belongs to a file (a merged file holds many videos).
    without = {str(video.source): 1 for video in videos if not video.has_categories}
    if without and protocol == "posetrack18":
        raise EvaluationInputError(
            f"{next(iter(without))}: 'categories' is missing ({role} files without it: "
            f"{len(without)}); protocol posetrack18 follows poseval, which maps joints by the "
            "names in categories[0].keypoints and rejects files without it (--protocol "
            "posetrack21 accepts them: the PoseTrack21 kit reads joints by slot)"
        )
    if without and tracking:
        warnings.append(
            f"{role.capitalize()} files without 'categories': {len(without)} "
            f"({_list_files(without)}); poseval rejects them; MOTA, MOTP, Prec and Rec are "
            f"computed anyway, with poseval's rules and the {skeleton.name} joints by slot"
        )

    too_large = {
        _label(video): int(np.sum(video.written_track_ids >= POSEVAL_MAX_TRACK_ID))
        for video in videos
    }
    too_large = {label: count for label, count in too_large.items() if count}
    if too_large and protocol == "posetrack18":
        first, count = next(iter(too_large.items()))
        raise EvaluationInputError(
            f"{first}: {count} annotations have a track id >= {POSEVAL_MAX_TRACK_ID} ({role} "
            f"files with such ids: {len(too_large)}); protocol posetrack18 follows poseval, "
            f"which refuses them (it asserts track_id < {POSEVAL_MAX_TRACK_ID} to number "
            "tracks uniquely over videos): number each video's tracks from 0, or use "
            "--protocol posetrack21"
        )
    if too_large and tracking:
        warnings.append(
            f"{role.capitalize()} track ids >= {POSEVAL_MAX_TRACK_ID}: "
            f"{sum(too_large.values())} ({_list_files(too_large)}); poseval refuses such "
            "files; MOTA, MOTP, Prec and Rec are computed anyway, with poseval's rules"
        )
    return warnings


def _check_kit_accepts(
    videos: Sequence[VideoAnnotations],
    kit_rows: Sequence[np.ndarray],
    role: str,
    protocol: Protocol,
) -> list[str]:
    """The kit's refusal: an error under posetrack21, a warning for HOTA under posetrack18.

    Args:
        kit_rows: per video, the rows of the persons the kit evaluates (labeled frames,
            after the ignore regions): ids elsewhere never reach its id map.
    """
    unreadable = {}
    for video, rows in zip(videos, kit_rows, strict=True):
        written = video.written_track_ids[rows]
        bad = video.float_track_ids[rows] | (written < 0)
        if bad.any():
            first = np.flatnonzero(bad)[0]
            example = format_track_id(written[first], video.float_track_ids[rows][first])
            unreadable[_label(video)] = (int(bad.sum()), example)
    if not unreadable:
        return []
    if protocol == "posetrack21":
        first, (count, example) = next(iter(unreadable.items()))
        raise EvaluationInputError(
            f"{first}: {count} track ids in evaluated frames are not integers >= 0 (e.g. "
            f"{example}; {role} files with such ids: {len(unreadable)}); protocol "
            "posetrack21 follows the PoseTrack21 kit, which cannot read them (it indexes an "
            "array with the track ids: a JSON float such as 3.0 raises, a negative id indexes "
            "from the end): write track ids as integers >= 0, or use --protocol posetrack18"
        )
    counts = {label: count for label, (count, _) in unreadable.items()}
    return [
        f"{role.capitalize()} track ids in labeled frames written as floats (3.0) or "
        f"negative: {sum(counts.values())} ({_list_files(counts)}); the PoseTrack21 kit "
        "refuses such files; HOTA is computed anyway, with the kit's rules (ids compare by "
        "value, 3.0 == 3)"
    ]


def _non_finite_warnings(
    videos: Sequence[VideoAnnotations],
    role: str,
    protocol: Protocol,
    tracking: bool,
    skeleton: Skeleton,
) -> list[str]:
    """Count the scored joints with a NaN or infinite x, y, visibility or score."""
    counts = {}
    joints = skeleton.scored_indices
    for video in videos:
        values = np.concatenate([video.keypoints[:, joints], video.scores[:, joints, None]], -1)
        count = int(np.sum(~np.isfinite(values).all(axis=-1)))
        if count:
            counts[_label(video)] = count
    if not counts:
        return []
    poseval = (
        "poseval keeps such a joint (it is not (0, 0, 0)) and it never matches: a prediction "
        "is a false positive, a ground-truth joint a miss"
    )
    kit = (
        "the PoseTrack21 kit keeps a joint only if x > 0 and y > 0: NaN and -inf joints are "
        "absent, +inf ones never match"
    )
    if tracking:
        rule = f"{poseval} (posetrack18 mAP, MOTA); {kit} (posetrack21 mAP, HOTA)"
    else:
        rule = poseval if protocol == "posetrack18" else kit
    return [
        f"{role.capitalize()} joints with NaN or infinite keypoint values or scores: "
        f"{sum(counts.values())} ({_list_files(counts)}); {rule}; a NaN score ranks above "
        "every other (np.argsort sorts NaN last)"
    ]


def _headless_warnings(videos: Sequence[VideoAnnotations], skeleton: Skeleton) -> list[str]:
    """Count, per file, the ground-truth persons of labeled frames with annotated joints but
    no usable head box (``bbox_head`` missing or of zero size): PCKh's threshold is half
    their head size, so no prediction can ever match them and their joints are all
    misses (the ground truth scored against itself then stays below 100)."""
    counts = {}
    joints = skeleton.scored_indices
    for video in videos:
        labeled = np.ones(video.num_frames, bool) if video.is_labeled is None else video.is_labeled
        in_labeled = labeled[video.person_frame] if video.num_persons else np.zeros(0, bool)
        # a joint written as anything but (0, 0, 0) is annotated (to one tool or both)
        annotated = np.any(np.nan_to_num(video.keypoints[:, joints]) != 0, axis=(1, 2))
        sizes = video.head_sizes
        headless = ~(np.isfinite(sizes) & (sizes > 0))
        count = int(np.sum(in_labeled & annotated & headless))
        if count:
            counts[_label(video)] = count
    if not counts:
        return []
    return [
        f"Ground-truth persons without a usable head box ('bbox_head' missing or of zero "
        f"size): {sum(counts.values())} ({_list_files(counts)}); PCKh needs the head size, "
        "so no prediction can match them and their joints count as misses (give them a "
        "bbox_head, or remove them)"
    ]


def _tie_warnings(
    ap: JointAveragePrecision, predictions: Sequence[VideoAnnotations], skeleton: Skeleton
) -> list[str]:
    """Warn when equal scores of a true and a false positive make the official AP undefined.

    Both tools rank with ``np.argsort(scores)[::-1]`` (poseval computeRPC, the kit's
    compute_rpc); numpy's default sort does not keep the order of equal values, and which
    order it gives differs between numpy versions and CPUs.
    """
    ties = ap.ties
    tied = int(ties.tied_predictions.sum())
    if not tied:
        return []
    spread = np.where(ties.undefined_joints, ties.spread, 0.0)
    widest = int(np.argmax(spread))
    joint_names = [skeleton.joint_names[int(slot)] for slot in skeleton.scored_indices]
    lowest = JointScores.from_joints(ties.lowest_ap, skeleton).total
    highest = JointScores.from_joints(ties.highest_ap, skeleton).total
    labels = {video.name: _label(video) for video in predictions}
    by_file = {labels[name]: count for name, count in ties.tied_by_video.items()}
    return [
        "Predicted joints tied in score with a prediction of the other outcome (true vs "
        f"false positive) of the same joint: {tied} ({_list_files(by_file)}); both official "
        "tools order equal scores with np.argsort, whose order differs between numpy versions "
        "and CPUs, so their AP is not reproducible for "
        f"{int(ties.undefined_joints.sum())} of {len(spread)} joints: up to "
        f"{spread[widest]:.1f} AP apart ({joint_names[widest]}), Total between {lowest:.2f} "
        f"and {highest:.2f}; vidpose ranks equal scores in reverse pooling order "
        "(docs/evaluation.md)"
    ]


def _kit_stop_warnings(
    pairs: Sequence[tuple[VideoAnnotations, VideoAnnotations]],
    prepared: Mapping[str, list[PreparedVideo]],
    protocol: Protocol,
    tracking: bool,
    tracking_mode: TrackingMode,
) -> list[str]:
    """Warn about labeled frames on which the PoseTrack21 kit stops (no official number).

    Two kinds: a labeled frame with ignore polygons and no ground-truth person left after
    them stops both the kit's mAP and HOTA (PreparedVideo.frames_left_without_ground_truth);
    a labeled frame with predictions but no ground-truth person stops its mAP
    (PosemAP.eval_sequence reads the undefined name ``pre_idx`` there).
    """
    metrics = []
    if protocol == "posetrack21":
        metrics.append("mAP")
    if tracking and tracking_mode == "official":
        metrics.append("HOTA")
    if not metrics:
        return []
    labels = {gt.name: _label(gt) for gt, _ in pairs}
    emptied, unmatched = {}, {}
    for video in prepared["posetrack21"]:
        stops = video.frames_left_without_ground_truth()
        gt_persons, pred_persons = video.persons_per_frame()
        if stops.any():
            emptied[labels[video.name]] = int(stops.sum())
        only_predictions = ~stops & (gt_persons == 0) & (pred_persons > 0)
        if only_predictions.any():
            unmatched[labels[video.name]] = int(only_predictions.sum())
    warnings = []
    if emptied:
        hota = (
            " (HOTA: the frame's own, not the whole sequence's as elsewhere in official mode)"
            if "HOTA" in metrics
            else ""
        )
        warnings.append(
            "Labeled frames with no ground-truth person left after their ignore regions: "
            f"{sum(emptied.values())} ({_list_files(emptied)}); the PoseTrack21 kit stops on "
            "such a frame (IndexError in _calculate_pckh), so it gives no "
            f"{' or '.join(metrics)} for these files; vidpose counts the frame's predicted "
            f"joints as false positives{hota}"
        )
    if unmatched and protocol == "posetrack21":
        warnings.append(
            "Labeled frames with predictions but no ground-truth person: "
            f"{sum(unmatched.values())} ({_list_files(unmatched)}); the PoseTrack21 kit's mAP "
            "stops on such a frame (NameError 'pre_idx' in PosemAP.eval_sequence); vidpose "
            "counts the predictions as false positives"
        )
    return warnings


def _label(video: VideoAnnotations) -> str:
    """The file of a video, and the video's name when the file holds several."""
    if video.source.stem == video.name:
        return str(video.source)
    return f"{video.source} [{video.name}]"


def _list_files(counts: Mapping[str, int], shown: int = 5) -> str:
    """'a.json: 3, b.json: 1 and 4 more files'."""
    items = [f"{label}: {count}" for label, count in list(counts.items())[:shown]]
    rest = len(counts) - shown
    return ", ".join(items) + (f" and {rest} more files" if rest > 0 else "")


def _boxes_from_files(videos: Sequence[VideoAnnotations]) -> str:
    notes = {video.boxes for video in videos}
    if len(notes) == 1 and None not in notes:
        return notes.pop()
    if len(notes - {None}) > 1:
        return "mixed: " + "; ".join(sorted(note for note in notes if note))
    return UNKNOWN_BOXES
