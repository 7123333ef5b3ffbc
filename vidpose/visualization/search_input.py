"""The clip whose search is visualised: a validation item, or a person in a video frame.

Both paths build exactly the model input that training and inference build:

- :func:`clip_from_dataset`: item I of the validation ``ClipDataset`` (no
  augmentation), with its target keypoints as ground truth;
- :func:`clip_from_video`: the key frame and its neighbours at the config's frame
  offsets (clamped at the video's ends, as ``vidpose extract`` does), cropped by
  ``VideoPosePredictor.crop_clips`` around a person box from a boxes file or from
  single-person following (``SinglePersonBoxes``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from vidpose.codecs.geometry import invert_affine
from vidpose.data.skeleton import get_skeleton
from vidpose.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from vidpose.runtime import InputError
from vidpose.visualization.search import write_search_outputs
from vidpose.visualization.temporal_view import TemporalWeights
from vidpose.visualization.trajectory import GroundTruth, SearchTrajectory

if TYPE_CHECKING:
    from vidpose.config import Config
    from vidpose.inference.predictor import VideoPosePredictor


class SearchInputError(InputError):
    """The requested clip cannot be built (no such item, frame, track or box)."""


@dataclass
class SearchClip:
    """One person's clip, as the model sees it and as it is drawn.

    Attributes:
        frames: [T, 3, H_in, W_in] float32 normalised crops (the model input).
        crops: [T, H_in, W_in, 3] uint8 the same crops unnormalised, for drawing.
        key_index: position of the key frame among the T frames.
        inverse_affine: [2, 3] input-crop pixels -> pixels of the key frame.
        box: [4] x, y, w, h the person box the crop was made from (frame pixels).
        ground_truth: target keypoints in input pixels, when known.
        description: what the clip is (source, video, frame, track), for the outputs.
    """

    frames: torch.Tensor
    crops: np.ndarray
    key_index: int
    inverse_affine: np.ndarray
    box: np.ndarray
    ground_truth: GroundTruth | None = None
    description: dict[str, Any] = field(default_factory=dict)


def unnormalize_frames(frames: torch.Tensor | np.ndarray) -> np.ndarray:
    """[T, 3, H, W] ImageNet-normalised -> [T, H, W, 3] uint8 RGB (the inverse of
    ``vidpose.data.transforms.normalize_frames``, rounded)."""
    planar = torch.as_tensor(frames).detach().float().cpu().numpy()
    if planar.ndim != 4 or planar.shape[1] != 3:
        raise ValueError(f"unnormalize_frames: expected [T, 3, H, W], got {planar.shape}")
    pixels = planar * IMAGENET_STD[:, None, None] + IMAGENET_MEAN[:, None, None]
    return np.clip(np.rint(pixels * 255), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


# --------------------------------------------------------------------------- dataset


def clip_from_dataset(config: Config, index: int) -> SearchClip:
    """Item ``index`` of the validation clip dataset of ``config``.

    Args:
        config: the experiment config (``data.root``, ``data.val_annotations``, ...).
        index: position in the validation set (negative counts from the end).

    Raises:
        SearchInputError: the index is outside the dataset.
    """
    from vidpose.data.clips import build_dataset_from_config

    dataset = build_dataset_from_config(config, "val")
    if not -len(dataset) <= index < len(dataset):
        raise SearchInputError(
            f"--index {index}: the validation set of {config.data.root!r} "
            f"({config.data.val_annotations}) has {len(dataset)} clips, expected "
            f"0..{len(dataset) - 1}"
        )
    item = dataset[index]
    return SearchClip(
        frames=item["frames"],
        crops=unnormalize_frames(item["frames"]),
        key_index=dataset.key_frame_position,
        inverse_affine=item["inverse_affine"].double().numpy(),
        box=item["box"].double().numpy(),
        ground_truth=GroundTruth(
            keypoints=item["keypoints"].numpy(), visible=item["target_weight"].numpy() > 0
        ),
        description={
            "source": "dataset",
            "root": str(config.data.root),
            "index": int(item["index"]),
            "video": item["video"],
            "frame": int(item["frame_index"]),
            "track": int(item["track_id"]),
        },
    )


# --------------------------------------------------------------------------- video


def track_box(path: str | os.PathLike, video: str, frame: int, track: int) -> np.ndarray:
    """The box of one person in one frame of a boxes file.

    PoseTrack-format JSON (ground truth, or ``vidpose extract`` output) carries track
    ids: ``track`` is the ``track_id``. The other formats of
    ``vidpose.inference.person_boxes.read_detections`` (COCO results, MOT text) are
    read as boxes without identity: ``track`` is then the box's rank in the frame,
    highest score first (0 = best).

    Args:
        path: the boxes file.
        video: the video's name (picks its boxes from a multi-video file).
        frame: 0-based frame index.
        track: track id or rank (see above).

    Returns:
        [4] float64 x, y, w, h in frame pixels.

    Raises:
        SearchInputError: no such frame or person (the message lists what there is).
    """
    path = Path(path)
    if path.suffix.lower() == ".json" and _is_posetrack_file(path):
        return _posetrack_track_box(path, video, frame, track)
    from vidpose.inference.person_boxes import read_detections

    table = read_detections(path, video=video)
    # A DetectionTable answers from the file; the frame argument is not looked at.
    boxes, scores = table.boxes(frame, np.zeros((1, 1, 3), np.uint8))
    order = np.argsort(-scores, kind="stable")
    if not 0 <= track < len(order):
        raise SearchInputError(
            f"{path}: frame {frame} has {len(order)} boxes; this file has no track ids, so "
            f"--track is the box's rank by score, expected 0..{len(order) - 1}, got {track}"
        )
    return boxes[order[track]]


def _is_posetrack_file(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8") as handle:
            content = json.load(handle)
    except (OSError, ValueError):
        return False  # read_detections reports the problem with its own message
    return isinstance(content, dict) and "annotations" in content


def _posetrack_track_box(path: Path, video: str, frame: int, track: int) -> np.ndarray:
    from vidpose.data.posetrack import read_posetrack_file

    videos = read_posetrack_file(path)
    matching = [record for record in videos if record.name == video]
    if len(matching) != 1 and len(videos) > 1:
        raise SearchInputError(
            f"{path}: holds {len(videos)} videos ({', '.join(v.name for v in videos[:4])}"
            f"{', ...' if len(videos) > 4 else ''}) and none is named {video!r}"
        )
    record = matching[0] if matching else videos[0]
    if not 0 <= frame < len(record.frames):
        raise SearchInputError(
            f"{path}: video {record.name!r} lists {len(record.frames)} frames, no frame {frame}"
        )
    persons = [p for p in record.frames[frame].persons if p.bbox[2] > 0 and p.bbox[3] > 0]
    for person in persons:
        if person.track_id == track:
            return np.asarray(person.bbox, dtype=np.float64)
    present = sorted(person.track_id for person in persons)
    raise SearchInputError(
        f"{path}: frame {frame} of video {record.name!r} has no person with track_id {track}; "
        f"track ids there: {present if present else 'none'}"
    )


def follow_single_person(
    predictor: VideoPosePredictor, frames: Any, frame: int, *, follow_frames: int = 8
) -> np.ndarray:
    """The single-person box of ``frame``: ``SinglePersonBoxes`` run over the
    ``follow_frames`` frames before it.

    ``vidpose extract --single-person`` starts with the whole frame at frame 0 and moves
    the box to the previous frame's confident keypoints; here the same rule starts
    ``follow_frames`` frames earlier (the box depends on the last few frames, and
    running the whole video up to ``frame`` would cost a prediction per frame).

    Args:
        predictor: poses of the frames before ``frame``.
        frames: random-access frames (``vidpose.data.frames.open_frames``).
        frame: the key frame.
        follow_frames: how many earlier frames to follow the person through.

    Returns:
        [4] x, y, w, h in frame pixels.
    """
    from vidpose.inference.extract import clip_frame_indices
    from vidpose.inference.person_boxes import SinglePersonBoxes

    source = SinglePersonBoxes()
    last = len(frames) - 1
    for index in range(max(0, frame - follow_frames), frame):
        boxes, _ = source.boxes(index, frames[index])
        clip = [frames[i] for i in clip_frame_indices(index, predictor.frame_offsets, last)]
        prediction = predictor.predict(clip, boxes)
        source.observe(index, prediction.keypoints, prediction.scores)
    boxes, _ = source.boxes(frame, frames[frame])
    return boxes[0]


def clip_from_video(
    predictor: VideoPosePredictor,
    video: str | os.PathLike,
    frame: int,
    *,
    track: int | None = None,
    boxes: str | os.PathLike | None = None,
    follow_frames: int = 8,
) -> SearchClip:
    """The clip of one person at frame ``frame`` of a video (or image folder).

    Args:
        predictor: gives the crop geometry (``crop_clips``, ``crop_affines``) and, in
            single-person mode, the poses that place the box.
        video: a video file or a folder of frame images.
        frame: 0-based key frame.
        track: the person in ``boxes`` (see :func:`track_box`); None or 0 without boxes.
        boxes: a boxes file; None: single-person mode (:func:`follow_single_person`).
        follow_frames: single-person mode: frames followed before ``frame``.

    Raises:
        FileNotFoundError: the video or boxes file is missing.
        SearchInputError: no such frame, track or box.
    """
    from vidpose.data.frames import open_frames
    from vidpose.inference.extract import clip_frame_indices, video_name

    source = open_frames(video)
    count = len(source)
    if not 0 <= frame < count:
        raise SearchInputError(f"{video}: --frame {frame} outside 0..{count - 1} ({count} frames)")
    name = video_name(video)
    if boxes is not None:
        if track is None:
            raise SearchInputError("--boxes needs --track (the person's track id in the file)")
        box = track_box(boxes, name, frame, track)
        how = f"boxes file {boxes}"
    else:
        if track not in (None, 0):
            raise SearchInputError(
                f"--track {track} without --boxes: single-person mode has only track 0"
            )
        box = follow_single_person(predictor, source, frame, follow_frames=follow_frames)
        how = f"single person, followed over {min(frame, follow_frames)} earlier frames"
    indices = clip_frame_indices(frame, predictor.frame_offsets, count - 1)
    clip_frames = [source[index] for index in indices]
    clip = predictor.crop_clips(clip_frames, box[None])[0]  # [T, 3, H, W]
    affine = predictor.crop_affines(box[None])[0]
    return SearchClip(
        frames=clip,
        crops=unnormalize_frames(clip),
        key_index=predictor.frame_offsets.index(0),
        inverse_affine=invert_affine(affine),
        box=np.asarray(box, dtype=np.float64),
        description={
            "source": "video",
            "video": str(video),
            "frame": int(frame),
            "clip_frames": [int(index) for index in indices],
            "track": 0 if track is None else int(track),
            "box": [float(value) for value in box],
            "box_source": how,
        },
    )


def write_clip_search(
    out: str | os.PathLike,
    trajectory: SearchTrajectory,
    clip: SearchClip,
    model: torch.nn.Module,
    config: Config,
    **options: Any,
) -> dict[str, Path]:
    """``write_search_outputs`` for one clip: its crops, key frame and ground truth,
    the config's skeleton and the model's temporal weights; ``options`` pass through
    (joint_panels, animations, panel_height, metadata)."""
    return write_search_outputs(
        out,
        trajectory,
        clip.crops,
        get_skeleton(config.data.skeleton),
        key_index=clip.key_index,
        temporal=TemporalWeights.from_module(model.temporal, config.data.frame_offsets),
        ground_truth=clip.ground_truth,
        **options,
    )
