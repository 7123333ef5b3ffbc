"""Person-centred clip dataset: a key frame's person plus neighbour frames, one crop.

Each sample is one person (training: a labeled person with at least one annotated
joint; evaluation: every ground-truth person, or every given box) in a key frame,
with T frames at ``frame_offsets`` around it (clamped at the ends of the video).
Every frame is cropped with the key frame's box, enlarged to the input's aspect ratio
and by ``box_padding``, and warped identically (``neighbour_boxes="key"``, DiffPose's
crop): neighbour frames are often unlabeled in PoseTrack (validation labels the central
30 frames and every 4th frame outside them). With ``neighbour_boxes="own"`` each frame
is cropped around the person's own box in it instead (the same track's box, interpolated
between annotated frames; a detection matched by IoU for given boxes; the rules and
fallbacks are ``vidpose.data.neighbours``'s), with the same random scale, rotation, flip
and colour: a person-frame then has one crop in every clip, and inference encodes it
once.

JPEG frames are decoded at 1/2, 1/4 or 1/8 scale where the crop takes at most one
pixel in 2, 4 or 8 (``decode_reduced``, ``vidpose.data.transforms.decode_reduction``).

Training randomness (scale, rotation, flip, half-body crop, colour) comes from a
generator seeded with (seed, epoch, index): a sample is the same whatever the worker
count, process count or batch composition. Call ``set_epoch`` before each epoch; the
epoch lives in shared memory so DataLoader workers see it even when persistent.

COCO single-image training is the same class with ``frame_offsets=(0,)`` (COCO
records are one-frame videos).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import torch
from PIL import Image

from vidpose.codecs.geometry import (
    box_to_center_scale,
    center_scale_to_box,
    inside_crop,
    invert_affine,
)
from vidpose.codecs.heatmap import HeatmapCodec
from vidpose.data.frames import FrameReadError
from vidpose.data.neighbours import TrackBoxes, boxes_by_overlap
from vidpose.data.records import FrameRecord, PersonAnnotation, VideoRecord
from vidpose.data.skeleton import Skeleton, get_skeleton
from vidpose.data.transforms import (
    Augmentation,
    ClipTransform,
    decode_reduction,
    draft_reduced,
    own_box_crop,
    prepare_frames,
    sample_clip_transform,
    transform_clip,
    upper_body_joints,
)

if TYPE_CHECKING:
    from vidpose.config import Config


class BoxLike(Protocol):
    """A person box given for evaluation (``vidpose.data.boxes.PersonBox`` fits)."""

    bbox: np.ndarray  # [4] x, y, w, h image pixels
    score: float
    track_id: int | None


class ClipDataset(torch.utils.data.Dataset):
    """Person-centred clips for training and evaluation.

    Args:
        videos: the records of one split (every frame of every video, in order).
        root: dataset root; ``FrameRecord.image_path`` is relative to it.
        frame_offsets: frame offsets around the key frame (an odd number, including 0);
            the clip's frames come in this order.
        input_size: (H, W) of the model input; must equal ``codec.input_size``.
        codec: encodes the target heatmaps (the head's codec,
            ``vidpose.models.heads.contract``); None: keypoint targets only (heads
            that train on coordinates, and evaluation).
        skeleton: flip pairs and the upper/lower body split.
        train: augment, and use only persons with at least one annotated joint.
        augmentation: strengths (ignored when ``train`` is False).
        box_padding: person boxes are enlarged by this factor (after the aspect fix).
        boxes: evaluation boxes instead of the ground-truth persons, keyed by image id
            (e.g. ``vidpose.data.boxes.load_boxes``); only with ``train=False``.
        labeled_only: with ``boxes``, use only frames marked ``is_labeled`` as key
            frames (the only ones any PoseTrack metric reads).
        seed: run seed of the augmentation.
        load_images: decode and crop the frames; False: keypoints alone (models that
            read poses only, ``needs_images`` False: PCT's tokenizer). Augmentation
            draws the same crop either way.
        neighbour_boxes: "key": every frame cropped with the key frame's box (DiffPose);
            "own": each frame with the person's own box in it (module docstring).
        decode_reduced: decode JPEG frames at 1/2, 1/4 or 1/8 scale when the crop
            keeps at least one decoded pixel per crop pixel (False: full size always).

    A sample is a dict:
        frames: [T, 3, H, W] float32, ImageNet-normalised RGB crops ([0, 3, H, W]
            without ``load_images``).
        heatmaps: [K, H/s, W/s] float32 target heatmaps (codec grid); only with a codec
            (in general: the codec's ``target_names``, made by ``codec.targets``).
        target_weight: [K] float32, 1 for annotated joints inside the crop.
        keypoints: [K, 2] float32 target joints in input-crop pixels (after any flip,
            left/right swapped).
        affine: [2, 3] float32, key-frame image pixels -> input-crop pixels (flip included).
        inverse_affine: [2, 3] float32, input-crop pixels -> image pixels.
        center: [2] float32 image pixels; scale: [2] float32 (sw, sh) image pixels
            covered by the crop (after scale augmentation).
        box: [4] float32 x, y, w, h of the person box the crop was built from (the
            half-body box when that augmentation fired).
        frame_boxes: [T, 4] float32 the person box each frame was cropped around (the
            key box repeated with ``neighbour_boxes="key"``; before any half-body crop).
        frame_indices: [T] int64 the clip's frames (clamped at the video's ends).
        rotation: float degrees; flipped: bool.
        box_score: float (1 for ground truth); track_id: int (-1 when unknown).
        image_id: int; video: str; frame_index: int (the key frame).
        index: int, the sample's position in the dataset (for per-sample seeds).
    """

    def __init__(
        self,
        videos: Sequence[VideoRecord],
        root: str | os.PathLike,
        *,
        frame_offsets: Sequence[int] = (-1, 0, 1),
        input_size: tuple[int, int],
        codec: HeatmapCodec | None,
        skeleton: Skeleton,
        train: bool,
        augmentation: Augmentation | None = None,
        box_padding: float = 1.25,
        boxes: Mapping[int, Sequence[BoxLike]] | None = None,
        labeled_only: bool = True,
        seed: int = 0,
        load_images: bool = True,
        neighbour_boxes: Literal["key", "own"] = "key",
        decode_reduced: bool = True,
    ) -> None:
        offsets = tuple(int(offset) for offset in frame_offsets)
        if neighbour_boxes not in ("key", "own"):
            raise ValueError(
                f"ClipDataset: neighbour_boxes must be 'key' or 'own', got {neighbour_boxes!r}"
            )
        if len(offsets) % 2 == 0 or 0 not in offsets:
            raise ValueError(
                f"ClipDataset: frame_offsets must be an odd number of offsets including 0 "
                f"(the key frame), got {list(offsets)}"
            )
        if codec is not None and tuple(input_size) != codec.input_size:
            raise ValueError(
                f"ClipDataset: input_size {tuple(input_size)} differs from the codec's "
                f"input_size {codec.input_size}"
            )
        if train and boxes is not None:
            raise ValueError("ClipDataset: evaluation boxes (boxes=...) need train=False")
        if box_padding <= 0:
            raise ValueError(f"ClipDataset: box_padding must be positive, got {box_padding}")
        self.videos = list(videos)
        self.root = Path(root)
        self.frame_offsets = offsets
        self.key_frame_position = offsets.index(0)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.codec = codec
        self.skeleton = skeleton
        self.train = train
        self.augmentation = augmentation if augmentation is not None else Augmentation()
        self.box_padding = float(box_padding)
        self.boxes = boxes
        self.seed = int(seed)
        self.load_images = bool(load_images)
        self.neighbour_boxes = neighbour_boxes
        self.decode_reduced = bool(decode_reduced)
        # every track's annotated boxes, per video: the own boxes of neighbour frames
        self._tracks = (
            [TrackBoxes(video, _person_box) for video in self.videos]
            if neighbour_boxes == "own" and boxes is None
            else None
        )
        self._upper_body = upper_body_joints(skeleton)
        # One int64 in shared memory: forked or spawned workers read the current epoch.
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        self._samples = self._index_samples(labeled_only)

    # ------------------------------------------------------------------ indexing

    def _index_samples(self, labeled_only: bool) -> np.ndarray:
        """[N, 3] int64 (video, frame, person-or-box position) of every sample."""
        rows: list[tuple[int, int, int]] = []
        for video_position, video in enumerate(self.videos):
            for frame in video.frames:
                if (
                    len(frame.persons)
                    and frame.persons[0].keypoints.shape[0] != self.skeleton.num_joints
                ):
                    raise ValueError(
                        f"{video.source or video.name}: frame {frame.frame_index} has persons "
                        f"with {frame.persons[0].keypoints.shape[0]} joints, the skeleton "
                        f"{self.skeleton.name!r} has {self.skeleton.num_joints}"
                    )
                if self.boxes is not None:
                    if labeled_only and not frame.is_labeled:
                        continue
                    count = len(self.boxes.get(frame.image_id, ()))
                    rows.extend((video_position, frame.frame_index, i) for i in range(count))
                    continue
                for position, person in enumerate(frame.persons):
                    if self.train and not person.annotated.any():
                        continue  # nothing to learn from
                    if _person_box(person) is None:
                        continue  # no area: no crop can be made
                    rows.append((video_position, frame.frame_index, position))
        return np.asarray(rows, dtype=np.int64).reshape(-1, 3)

    def __len__(self) -> int:
        return len(self._samples)

    def __repr__(self) -> str:
        kind = (
            "train" if self.train else ("eval, given boxes" if self.boxes is not None else "eval")
        )
        return (
            f"ClipDataset({len(self)} clips from {len(self.videos)} videos, {kind}, "
            f"T={len(self.frame_offsets)}, input={self.input_size}, root={str(self.root)!r})"
        )

    @property
    def target_keys(self) -> tuple[str, ...]:
        """The sample keys that are training targets (``vidpose.models.heads.contract``):
        keypoints and weights always, and the codec's named targets when there is one."""
        names = self.codec.target_names if self.codec is not None else ()
        return ("keypoints", "target_weight", *names)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of ``epoch`` (seen by DataLoader workers too)."""
        self._epoch[0] = int(epoch)

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def frame_indices(self, video: VideoRecord, frame_index: int) -> list[int]:
        """The clip's frame indices around ``frame_index``, clamped to the video."""
        last = len(video.frames) - 1
        return [min(max(frame_index + offset, 0), last) for offset in self.frame_offsets]

    def frames_read(self) -> list[tuple[VideoRecord, FrameRecord]]:
        """Every frame the samples decode (key frames and their clip neighbours), each
        once, in video and frame order; none without ``load_images``. What a check
        before training or evaluation looks at (``vidpose.data.checks``)."""
        if not self.load_images:
            return []
        needed: set[tuple[int, int]] = set()
        for video_position, frame_index, _ in self._samples.tolist():
            video = self.videos[video_position]
            needed.update((video_position, i) for i in self.frame_indices(video, frame_index))
        return [(self.videos[v], self.videos[v].frames[f]) for v, f in sorted(needed)]

    # ------------------------------------------------------------------ loading

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"ClipDataset: index {index} out of range for {len(self)} clips")
        index = int(index) % len(self)
        video_position, frame_index, item = (int(v) for v in self._samples[index])
        video = self.videos[video_position]
        frame = video.frames[frame_index]
        num_joints = self.skeleton.num_joints

        if self.boxes is not None:
            given = self.boxes[frame.image_id][item]
            box = np.asarray(given.bbox, dtype=np.float64)
            box_score = float(given.score)
            track_id = -1 if given.track_id is None else int(given.track_id)
            keypoints = np.zeros((num_joints, 2))
            visible = np.zeros(num_joints, dtype=bool)
        else:
            person = frame.persons[item]
            box = _person_box(person)
            box_score = float(person.score)
            track_id = int(person.track_id)
            keypoints = np.asarray(person.keypoints[:, :2], dtype=np.float64)
            visible = person.annotated

        in_h, in_w = self.input_size
        jitter = None
        if self.train:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            crop, jitter = sample_clip_transform(
                rng,
                box=box,
                keypoints=keypoints,
                visible=visible,
                augmentation=self.augmentation,
                upper_body=self._upper_body,
                aspect_ratio=in_w / in_h,
                padding=self.box_padding,
            )
        else:
            center, scale = box_to_center_scale(
                box, aspect_ratio=in_w / in_h, padding=self.box_padding
            )
            crop = ClipTransform(center=center, scale=scale, box=box)

        frame_indices = self.frame_indices(video, frame_index)
        frame_boxes = np.repeat(box[None], len(frame_indices), axis=0)
        if self.neighbour_boxes == "own":
            frame_boxes = self._own_boxes(video_position, frame_indices, box, track_id)
            crop = own_box_crop(
                crop, box, frame_boxes, aspect_ratio=in_w / in_h, padding=self.box_padding
            )
        images, reductions = [], None
        if self.load_images:  # else the keypoints follow the same warp; no frame is decoded
            affines = crop.frame_affines((in_w, in_h), len(frame_indices))
            reductions = [
                # a frame repeated by clamping is decoded once, for its densest crop
                decode_reduction(affines[np.asarray(frame_indices) == index])
                if self.decode_reduced
                else 1
                for index in frame_indices
            ]
            images = self._load_frames(video, frame_indices, reductions)
            reductions = [image.info.get("decode_reduction", 1) for image in images]
        crops, crop_keypoints, crop_visible, affine = transform_clip(
            images,
            keypoints,
            visible,
            crop,
            output_size=(in_w, in_h),
            flip_permutation=self.skeleton.flip_permutation,
            reductions=reductions,
        )
        used_box = (
            crop.box if crop.box is not None else center_scale_to_box(crop.center, crop.scale)
        )
        frames = (
            prepare_frames(crops, jitter)
            if self.load_images
            else np.zeros((0, 3, in_h, in_w), dtype=np.float32)
        )
        sample: dict[str, Any] = {"frames": torch.from_numpy(frames)}
        weights = inside_crop(crop_keypoints, crop_visible, self.input_size)
        if self.codec is not None:
            # the codec's named targets (heatmaps, offsets, ...) and its joint weights
            targets = self.codec.targets(crop_keypoints, crop_visible)
            weights = targets.pop("target_weight", weights)
            sample.update({name: torch.from_numpy(value) for name, value in targets.items()})
        sample.update(
            {
                "target_weight": torch.from_numpy(np.asarray(weights, dtype=np.float32)),
                "keypoints": torch.from_numpy(crop_keypoints.astype(np.float32)),
                "affine": torch.from_numpy(affine.astype(np.float32)),
                "inverse_affine": torch.from_numpy(invert_affine(affine).astype(np.float32)),
                "center": torch.from_numpy(np.asarray(crop.center, dtype=np.float32)),
                "scale": torch.from_numpy(np.asarray(crop.scale, dtype=np.float32)),
                "box": torch.from_numpy(np.asarray(used_box, dtype=np.float32)),
                "frame_boxes": torch.from_numpy(np.asarray(frame_boxes, dtype=np.float32)),
                "frame_indices": torch.tensor(frame_indices, dtype=torch.int64),
                "rotation": float(crop.rotation),
                "flipped": bool(crop.flip),
                "box_score": box_score,
                "track_id": track_id,
                "image_id": int(frame.image_id),
                "video": video.name,
                "frame_index": int(frame.frame_index),
                "index": index,
            }
        )
        return sample

    def _own_boxes(
        self, video_position: int, frame_indices: list[int], box: np.ndarray, track_id: int
    ) -> np.ndarray:
        """[T, 4] the person's own box in each frame of its clip (``neighbour_boxes``
        "own"): by track id among the annotations, or by IoU among the given boxes; the
        key box where none is found (``vidpose.data.neighbours``)."""
        video = self.videos[video_position]
        key = self.key_frame_position
        if self.boxes is not None:
            candidates = [
                np.asarray([given.bbox for given in self.boxes.get(video.frames[i].image_id, ())])
                for i in frame_indices
            ]
            return boxes_by_overlap(box[None], candidates, key_position=key)[0][0]
        rows = []
        for position, index in enumerate(frame_indices):
            found = None if position == key else self._tracks[video_position].box(track_id, index)
            rows.append(box if found is None else found[0])
        return np.stack(rows)

    def _load_frames(
        self, video: VideoRecord, frame_indices: list[int], reductions: list[int] | None = None
    ) -> list[Image.Image]:
        """The clip's images (a frame repeated by clamping is decoded once); with
        ``reductions``, frame i decoded at 1/reductions[i] scale where it is a JPEG (the
        reduction applied is in ``image.info["decode_reduction"]``)."""
        loaded: dict[int, Image.Image] = {}
        for position, frame_index in enumerate(frame_indices):
            if frame_index not in loaded:
                reduction = 1 if reductions is None else reductions[position]
                loaded[frame_index] = self._open_image(video, video.frames[frame_index], reduction)
        return [loaded[frame_index] for frame_index in frame_indices]

    def _open_image(
        self, video: VideoRecord, frame: FrameRecord, reduction: int = 1
    ) -> Image.Image:
        path = self.root / frame.image_path
        try:
            image = Image.open(path)
            applied = draft_reduced(image, reduction)  # before load: the decoder's scale
            image.load()
            image.info["decode_reduction"] = applied
        except (OSError, ValueError, SyntaxError) as error:
            raise FrameReadError(
                f"{path}: cannot read frame {frame.frame_index} of video {video.name!r} "
                f"(image_path {frame.image_path!r} in {video.source or 'the records'}, "
                f"relative to root {str(self.root)!r}): {error}"
            ) from error
        return image


def _person_box(person: PersonAnnotation) -> np.ndarray | None:
    """[4] x, y, w, h of a person: its box, else the extent of its annotated joints."""
    box = np.asarray(person.bbox, dtype=np.float64).reshape(-1)
    if box.shape == (4,) and box[2] > 0 and box[3] > 0 and np.isfinite(box).all():
        return box
    points = np.asarray(person.keypoints, dtype=np.float64)[person.annotated, :2]
    if len(points) < 2:
        return None
    top_left, bottom_right = points.min(axis=0), points.max(axis=0)
    if (bottom_right - top_left).max() <= 0:
        return None
    return np.concatenate([top_left, bottom_right - top_left])


# --------------------------------------------------------------------------- building


def build_dataset(
    cfg: Config,
    split: Literal["train", "val"],
    videos: Sequence[VideoRecord],
    *,
    codec: HeatmapCodec | None = None,
    boxes: Mapping[int, Sequence[BoxLike]] | None = None,
    load_images: bool = True,
) -> ClipDataset:
    """The clip dataset of ``split`` from already-read records and the data config.

    Args:
        cfg: the experiment config (reads ``cfg.data`` and ``cfg.train.seed``).
        split: "train" (augmented, persons with annotated joints) or "val".
        videos: the split's records (``vidpose.data.posetrack.read_dataset``).
        codec: the head's codec for training targets (``model.head.codec``); None:
            keypoints and weights only (what evaluation and coordinate heads need).
        boxes: evaluation boxes keyed by image id. None with ``data.val_boxes: gt``
            means the ground-truth persons; with a detections file they are read with
            ``vidpose.data.boxes.load_boxes``.
        load_images: False: keypoints without frames (``ClipDataset``; for models
            whose ``needs_images`` is False).
    """
    if split not in ("train", "val"):
        raise ValueError(f"build_dataset: split must be 'train' or 'val', got {split!r}")
    data = cfg.data
    train = split == "train"
    if not train and boxes is None and data.val_boxes != "gt":
        from vidpose.data.boxes import load_boxes

        boxes = load_boxes(data.val_boxes, list(videos), score_threshold=data.det_score_threshold)
    return ClipDataset(
        videos,
        data.root,
        frame_offsets=data.frame_offsets,
        input_size=data.input_size,
        codec=codec,
        skeleton=get_skeleton(data.skeleton),
        train=train,
        augmentation=Augmentation(
            scale_factor=data.scale_factor,
            rotation_factor=data.rotation_factor,
            flip_prob=data.flip_prob,
            half_body_prob=data.half_body_prob,
            color_jitter=data.color_jitter,
        ),
        box_padding=data.box_padding,
        boxes=None if train else boxes,
        seed=cfg.train.seed,
        load_images=load_images,
        neighbour_boxes=data.neighbour_boxes,
        decode_reduced=data.decode_reduced,
    )


def build_dataset_from_config(
    cfg: Config,
    split: Literal["train", "val"],
    *,
    codec: HeatmapCodec | None = None,
    load_images: bool = True,
) -> ClipDataset:
    """Read the split's annotations (``data.format``, ``data.root``,
    ``data.{train,val}_annotations``) and build its clip dataset (``codec`` and
    ``load_images`` as in :func:`build_dataset`)."""
    from vidpose.data.posetrack import read_dataset

    annotations = cfg.data.train_annotations if split == "train" else cfg.data.val_annotations
    videos = read_dataset(cfg.data.format, cfg.data.root, annotations)
    return build_dataset(cfg, split, videos, codec=codec, load_images=load_images)
