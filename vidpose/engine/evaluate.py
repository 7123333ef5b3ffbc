"""The evaluation loop: predict a split, write official prediction files, score them.

Used by validation during training and by ``vidpose test``. Boxes are either the
ground-truth persons (their track ids are kept) or a detections file (track ids
then come from the pose tracker run over each video). Every result says which.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from vidpose.codecs.geometry import crop_lengths_to_image, crop_to_image
from vidpose.config import Config
from vidpose.data.records import VideoRecord
from vidpose.data.skeleton import Skeleton, get_skeleton


@dataclass
class PersonPrediction:
    """One person's prediction in image pixels (an item of ``predict_dataset``)."""

    video: str
    frame_index: int
    image_id: int
    track_id: int  # -1 when the boxes carry no identity
    keypoints: np.ndarray  # [K, 2] image pixels
    scores: np.ndarray  # [K]
    box: np.ndarray  # [4] x, y, w, h
    box_score: float
    uncertainty: np.ndarray | None = None  # [K] image pixels, where the head has one


@dataclass
class EvaluationResult:
    summary: dict[str, float]  # metric name -> value (percent)
    main_metric: float  # PoseTrack: total mAP; COCO: AP
    prediction_dir: Path
    boxes: str  # which boxes were used, in words
    table: str  # the printed tables
    report: Any = field(default=None, repr=False)  # PoseTrackReport or the COCO stats
    predictions: list[PersonPrediction] = field(default_factory=list, repr=False)


@torch.no_grad()
def predict_dataset(
    model: nn.Module,
    dataset,
    *,
    batch_size: int,
    device: torch.device,
    steps: int | None = None,
    hypotheses: int | None = None,
    flip_test: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    show_progress: bool = True,
    reuse_tokens: bool = True,
) -> list[PersonPrediction]:
    """Run the model over every clip of an evaluation ``ClipDataset``.

    The model answers with the head contract (``PoseEstimator.predict``: keypoints in
    input-crop pixels, scores, and an uncertainty where the head has one); they are
    mapped to image pixels with each clip's inverse affine. Sampling noise comes from a
    generator seeded with ``seed``, so two runs agree.

    A model trained with own-box crops (the dataset's ``neighbour_boxes`` "own") crops
    frame t of a person the same way in every clip that holds it, so with
    ``reuse_tokens`` each such crop goes through the backbone once
    (``vidpose.inference.token_cache.predict_with_cache``), keyed by (video, frame,
    box); the answers are ``model.predict``'s up to float rounding. The loader still
    decodes and crops every frame of every clip (docs/extraction.md says why).
    """
    from vidpose.inference.token_cache import TokenCache, predict_with_cache, supports_tokens

    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    generator = torch.Generator(device=device).manual_seed(seed)
    predictions: list[PersonPrediction] = []
    cache = None
    if (
        reuse_tokens
        and getattr(dataset, "neighbour_boxes", "key") == "own"
        and len(getattr(dataset, "frame_offsets", ())) > 1
        and supports_tokens(model)
    ):
        cache = TokenCache()
    sampling: dict[str, Any] = {"steps": steps, "hypotheses": hypotheses, "generator": generator}
    for batch in tqdm(loader, desc="predict", disable=not show_progress, dynamic_ncols=True):
        frames = batch["frames"].to(device)
        if cache is None:
            answer = model.predict(frames, flip_test=flip_test, **sampling)
        else:
            keys = _clip_keys(batch)
            _evict_before(cache, keys)
            answer = predict_with_cache(model, frames, keys, cache, flip_test=flip_test, **sampling)
        inverse = batch["inverse_affine"].double()
        image_points = crop_to_image(answer.keypoints.cpu().double(), inverse)
        uncertainty = None
        if answer.uncertainty is not None:
            uncertainty = crop_lengths_to_image(answer.uncertainty.cpu().double(), inverse)
        for i in range(len(image_points)):
            predictions.append(
                PersonPrediction(
                    video=batch["video"][i],
                    frame_index=int(batch["frame_index"][i]),
                    image_id=int(batch["image_id"][i]),
                    track_id=int(batch["track_id"][i]),
                    keypoints=image_points[i].numpy(),
                    scores=answer.scores[i].cpu().double().numpy(),
                    box=batch["box"][i].double().numpy(),
                    box_score=float(batch["box_score"][i]),
                    uncertainty=None if uncertainty is None else uncertainty[i].numpy(),
                )
            )
    return predictions


def _clip_keys(batch: dict[str, Any]) -> list[list[Any]]:
    """[B][T] the token-cache key of each crop of a batch: ((video, frame), box)."""
    from vidpose.inference.token_cache import cache_key

    indices = batch["frame_indices"].tolist()
    boxes = batch["frame_boxes"].double().numpy()
    return [
        [cache_key((video, frame), box) for frame, box in zip(frames, clip_boxes, strict=True)]
        for video, frames, clip_boxes in zip(batch["video"], indices, boxes, strict=True)
    ]


def _evict_before(cache: Any, keys: list[list[Any]]) -> None:
    """Drop the cached crops no later clip needs: the dataset goes through the videos
    in order and through each video's key frames in order, so a video absent from the
    batch is done, and a frame before the batch's earliest clip frame of its video will
    not come back (in another order this only costs encodings, never a wrong answer)."""
    first: dict[str, int] = {}
    for clip in keys:
        for (video, frame), _ in clip:
            first[video] = min(frame, first.get(video, frame))
    cache.evict(lambda frame_id: frame_id[0] in first and frame_id[1] >= first[frame_id[0]])


def assign_track_ids(predictions: list[PersonPrediction], sigmas: np.ndarray) -> None:
    """Give detections track ids with the pose tracker, video by video, in frame order."""
    from vidpose.inference.tracker import PoseTracker

    by_video: dict[str, dict[int, list[PersonPrediction]]] = defaultdict(lambda: defaultdict(list))
    for prediction in predictions:
        by_video[prediction.video][prediction.frame_index].append(prediction)
    for frames in by_video.values():
        tracker = PoseTracker(sigmas=sigmas)
        for frame_index in sorted(frames):
            people = frames[frame_index]
            ids = tracker.update(
                frame_index,
                np.stack([p.box for p in people]),
                np.stack([p.keypoints for p in people]),
                np.stack([p.scores for p in people]),
            )
            for person, track_id in zip(people, ids, strict=True):
                person.track_id = int(track_id)


def unique_track_ids_per_frame(predictions: list[PersonPrediction]) -> None:
    """Ground-truth persons without a track id (COCO) get 0, 1, ... within their frame."""
    used: dict[int, set[int]] = defaultdict(set)
    for prediction in predictions:
        if prediction.track_id >= 0:
            used[prediction.image_id].add(prediction.track_id)
    for prediction in predictions:
        if prediction.track_id < 0:
            taken = used[prediction.image_id]
            prediction.track_id = next(i for i in range(len(taken) + 1) if i not in taken)
            taken.add(prediction.track_id)


def write_predictions(
    predictions: list[PersonPrediction],
    videos: list[VideoRecord],
    out_dir: Path,
    *,
    skeleton: Skeleton,
    boxes: str,
) -> list[Path]:
    """One PoseTrack prediction file per video, named like its ground-truth file."""
    from vidpose.evaluation import PredictedPerson, images_from_frames, write_posetrack_predictions

    by_video: dict[str, dict[int, list[PredictedPerson]]] = defaultdict(lambda: defaultdict(list))
    for p in predictions:
        by_video[p.video][p.image_id].append(
            PredictedPerson(
                keypoints=p.keypoints,
                scores=p.scores,
                track_id=p.track_id,
                bbox=p.box,
                uncertainty=p.uncertainty,
            )
        )
    written = []
    for video in videos:
        name = video.source.name if video.source is not None else f"{video.name}.json"
        written.append(
            write_posetrack_predictions(
                out_dir / name,
                images_from_frames(video.frames),
                by_video.get(video.name, {}),
                skeleton=skeleton,
                boxes=boxes,
            )
        )
    return written


def evaluate_model(
    config: Config,
    model: nn.Module,
    *,
    out_dir: str | Path,
    device: torch.device | str = "cpu",
    boxes: str | None = None,
    steps: int | None = None,
    hypotheses: int | None = None,
    flip_test: bool | None = None,
    show_progress: bool = True,
    check: bool = True,
) -> EvaluationResult:
    """Predict the validation split of ``config`` and evaluate it.

    Args:
        boxes: "gt" or a detections file; default ``config.data.val_boxes``.
        steps, hypotheses, flip_test: default ``config.test``.
        out_dir: prediction files are written here (PoseTrack: one JSON per video,
            COCO: ``results.json``); checked writable before predicting.
        check: before predicting, read every annotation file and check the images
            (``data.check_images``), every problem reported at once
            (``vidpose.data.checks``); ground truth that repeats a track id in a frame
            is refused here, not after predicting. False: a caller that checked (the
            trainer's validation).

    Raises:
        vidpose.data.checks.DatasetProblems: the split's problems, all listed.
        vidpose.data.json_fields.AnnotationError, FileNotFoundError: a detections file
            (``boxes``) that is malformed or missing.
        vidpose.runtime.OutputError: ``out_dir`` cannot be written.

    A PCT pose tokenizer (``model.head: pct_tokenizer``) has no image input: it is
    evaluated by :func:`evaluate_tokenizer` instead (ground-truth poses only).
    """
    if config.model.head == "pct_tokenizer":
        if boxes not in (None, "gt"):
            raise ValueError(
                f"boxes={boxes!r}: a pose tokenizer reconstructs the ground-truth poses; "
                "detections do not apply"
            )
        return evaluate_tokenizer(
            config, model, out_dir=out_dir, device=device, show_progress=show_progress
        )
    from vidpose.data.boxes import load_boxes
    from vidpose.data.checks import image_problems, raise_problems, read_split
    from vidpose.data.clips import build_dataset
    from vidpose.data.posetrack import read_dataset, repeated_track_ids
    from vidpose.runtime import InputError, prepare_output_folder

    device = torch.device(device)
    out_dir = Path(out_dir)
    data, test = config.data, config.test
    boxes = boxes or data.val_boxes
    steps = steps if steps is not None else test.steps
    hypotheses = hypotheses if hypotheses is not None else test.hypotheses
    flip_test = test.flip_test if flip_test is None else flip_test
    skeleton = get_skeleton(data.skeleton)
    if check:
        prepare_output_folder(out_dir, "the predictions folder")
        videos, problems = read_split(config, "val")
        problems += repeated_track_ids(videos)
    else:
        videos, problems = read_dataset(data.format, data.root, data.val_annotations), []
    detections = None
    if boxes != "gt":
        detections = load_boxes(boxes, videos, score_threshold=data.det_score_threshold)
    dataset = build_dataset(config, "val", videos, boxes=detections)
    if check:
        problems += image_problems(dataset, data.check_images)
        raise_problems(problems, f"the validation split ({data.root}/{data.val_annotations})")
    if len(dataset) == 0:
        raise InputError(
            f"the validation split ({data.root}/{data.val_annotations}) has no person to "
            f"evaluate with boxes={boxes!r}"
        )
    predictions = predict_dataset(
        model,
        dataset,
        batch_size=test.batch_size,
        device=device,
        steps=steps,
        hypotheses=hypotheses,
        flip_test=flip_test,
        seed=config.train.seed,
        show_progress=show_progress,
    )
    boxes_used = "ground truth" if boxes == "gt" else f"detections: {boxes}"
    if detections is not None:
        assign_track_ids(predictions, np.asarray(skeleton.sigmas))
    unique_track_ids_per_frame(predictions)
    out_dir.mkdir(parents=True, exist_ok=True)

    if data.format == "coco":
        from vidpose.evaluation import PredictedPerson, evaluate_coco_keypoints, write_coco_results

        people: dict[int, list[PredictedPerson]] = defaultdict(list)
        for p in predictions:
            people[p.image_id].append(
                PredictedPerson(
                    keypoints=p.keypoints,
                    scores=p.scores,
                    track_id=p.track_id,
                    bbox=p.box,
                    score=p.box_score * float(np.mean(p.scores)),
                    uncertainty=p.uncertainty,
                )
            )
        results_path = write_coco_results(out_dir / "results.json", people, skeleton=skeleton)
        stats = evaluate_coco_keypoints(
            Path(data.root) / data.val_annotations, results_path, skeleton=skeleton
        )
        table = f"COCO keypoint evaluation ({boxes_used} boxes)\n" + "\n".join(
            f"  {name:5s} {value:6.2f}" for name, value in stats.items()
        )
        return EvaluationResult(stats, stats["AP"], out_dir, boxes_used, table, stats, predictions)

    from vidpose.evaluation import evaluate_posetrack

    write_predictions(predictions, videos, out_dir, skeleton=skeleton, boxes=boxes_used)
    report = evaluate_posetrack(
        Path(data.root) / data.val_annotations,
        out_dir,
        protocol=test.protocol,
        boxes=boxes_used,
        skeleton=skeleton,
    )
    summary = _posetrack_summary(report, skeleton)
    return EvaluationResult(
        summary, summary["mAP"], out_dir, boxes_used, report.format_tables(), report, predictions
    )


def _posetrack_summary(report, skeleton: Skeleton) -> dict[str, float]:
    """Total mAP and group APs as plain floats (NaN kept) for logs and JSON."""
    average_precision = report.metrics["AP"]
    summary = {"mAP": float(average_precision.total)}
    for group, value in average_precision.groups.items():
        if group != "Total":
            summary[f"AP_{group}"] = float(value)
    return summary


@torch.no_grad()
def evaluate_tokenizer(
    config: Config,
    model: nn.Module,
    *,
    out_dir: str | Path,
    device: torch.device | str = "cpu",
    show_progress: bool = True,
) -> EvaluationResult:
    """Evaluate PCT's pose tokenizer (stage I) on the validation split's poses.

    Every ground-truth person of the split is cropped as for evaluation (no frame is
    decoded), tokenised and decoded back in eval mode (no joint masking, no codebook
    update). Summary (also written to ``out_dir/reconstruction.json``):

    - "reconstruction_px", "reconstruction_px_median": mean and median distance of the
      visible joints to their reconstruction, input-crop pixels;
    - "perplexity": exp(entropy) of the token ids chosen over the split (V at most);
    - "codebook_used": entries chosen at least once over the split;
    - "dead_entries": entries no training batch chose for ``model.pct.dead_after`` steps
      (the training state; 0 right after re-seeding), "reseeded_entries": entries
      re-seeded so far.

    The main metric is -reconstruction_px (higher is better, as every main metric).

    Args:
        model: a ``PoseTokenizerModel`` (``vidpose.models.build.build_model``).
        out_dir: where ``reconstruction.json`` is written.
    """
    from dataclasses import replace

    from vidpose.data.clips import build_dataset
    from vidpose.data.json_fields import write_json_atomic
    from vidpose.data.posetrack import read_dataset
    from vidpose.models.heads.pct_tokenizer import codebook_perplexity

    device = torch.device(device)
    out_dir = Path(out_dir)
    data = config.data
    skeleton = get_skeleton(data.skeleton)
    videos = read_dataset(data.format, data.root, data.val_annotations)
    ground_truth = replace(config, data=replace(data, val_boxes="gt"))
    dataset = build_dataset(ground_truth, "val", videos, load_images=False)
    tokenizer = model.head
    model.eval()
    loader = DataLoader(dataset, batch_size=config.test.batch_size, shuffle=False)
    joints = skeleton.num_joints
    joint_error = torch.zeros(joints, dtype=torch.float64)
    joint_count = torch.zeros(joints, dtype=torch.float64)
    usage = torch.zeros(tokenizer.codebook_size, dtype=torch.float64)
    errors = []
    for batch in tqdm(loader, desc="reconstruct", disable=not show_progress, dynamic_ncols=True):
        keypoints = batch["keypoints"].to(device)
        visible = batch["target_weight"].to(device) > 0
        outputs = tokenizer(keypoints, visible)
        distance = (outputs["keypoints"].float() - keypoints.float()).norm(dim=-1)  # [B, K]
        distance = torch.where(visible, distance, 0.0).double().cpu()
        errors.append(distance[visible.cpu()])
        joint_error += distance.sum(0)
        joint_count += visible.double().sum(0).cpu()
        ids = outputs["token_ids"].flatten().cpu()
        usage += torch.bincount(ids, minlength=tokenizer.codebook_size).double()
    every = torch.cat(errors) if errors else torch.zeros(0, dtype=torch.float64)
    if every.numel() == 0:
        raise ValueError(
            f"the validation split ({data.root}/{data.val_annotations}) has no visible joint "
            "to reconstruct"
        )
    summary = {
        "reconstruction_px": float(every.mean()),
        "reconstruction_px_median": float(every.median()),
        "perplexity": codebook_perplexity(usage),
        "codebook_used": float((usage > 0).sum()),
        "dead_entries": float(tokenizer.codebook.dead_entries()),
        "reseeded_entries": float(tokenizer.codebook.reseeded.sum()),
    }
    per_joint = (joint_error / joint_count.clamp_min(1)).tolist()
    lines = [
        f"PCT tokenizer: {len(dataset)} ground-truth poses reconstructed "
        f"({int(joint_count.sum())} visible joints)",
        f"  reconstruction error  {summary['reconstruction_px']:.3f} px mean, "
        f"{summary['reconstruction_px_median']:.3f} px median (input-crop pixels)",
        f"  codebook              perplexity {summary['perplexity']:.1f}, "
        f"{int(summary['codebook_used'])} of {tokenizer.codebook_size} entries used, "
        f"{int(summary['dead_entries'])} dead, {int(summary['reseeded_entries'])} re-seeded",
        "  per joint (px): "
        + ", ".join(
            f"{name} {error:.2f}"
            for name, error, count in zip(
                skeleton.joint_names, per_joint, joint_count.tolist(), strict=True
            )
            if count > 0
        ),
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "reconstruction.json", summary)
    return EvaluationResult(
        summary,
        -summary["reconstruction_px"],
        out_dir,
        "ground truth",
        "\n".join(lines),
        report={"per_joint_px": dict(zip(skeleton.joint_names, per_joint, strict=True))},
    )
