"""Per-video pose extraction: a video in, keypoints with stable track ids out.

The pipeline for one video (DESIGN.md section 4)::

    frames (streamed) -> ring buffer -> person boxes of the key frame
        -> clips at the model's frame offsets -> VideoPosePredictor -> keypoints, scores
        -> PoseTracker (IoU + OKS) -> track ids -> writers

This module runs that loop; which videos a run takes and what they are called is
``vidpose.inference.inputs``, the writers are ``vidpose.inference.outputs``. The
names a caller needs (the CLI, scripts) are all importable from here (``__all__``).

Streaming. Frames are read one at a time into a :class:`FrameRing` of
``max(offsets) - min(offsets) + 1`` frames, so memory does not grow with the video.
With future offsets (e.g. +1), frame t is finished only once frame t + max(offsets)
has been read; at the ends of the video the offsets are clamped to the first and last
frame (the clip repeats the edge frame), as the training clips do.

Tracking after estimation. A clip only needs its key frame's box, not a track id, so
the poses are estimated first and the tracker then matches people on box IoU *and*
pose OKS (``vidpose.inference.tracker``), which keeps ids through crossings better
than boxes alone.

Outputs, in ``out_dir``, named after the video (its file stem, or its folder name for
a folder of images):

- ``<name>.json``: PoseTrack prediction file written by
  ``vidpose.evaluation.writers.write_posetrack_predictions`` (every frame in ``images``,
  with PoseTrack image ids when the video is named like one, e.g. ``012834_mpii_test``,
  so the file pairs with its ground truth, else ids = frame numbers; one annotation per
  person and frame with ``track_id``, ``keypoints`` (51 numbers), ``scores`` (17),
  ``bbox``; ``categories``). Written atomically: at the end, when the run stops on an
  error, and every ``save_every`` frames on the way (less often for long videos, see
  ``vidpose.inference.outputs.JsonOutput``); a partial file lists only the finished frames.
- ``<name>.csv``: one row per joint, ``video,frame,track,joint,x,y,score,uncertainty``,
  flushed after every frame (``uncertainty``: the model's per-joint expected error in
  frame pixels, e.g. the spread of a diffusion head's hypotheses; empty for heads
  without one). The JSON carries the same numbers as ``keypoint_uncertainty``, a
  field the official PoseTrack tools ignore.
- ``<name>.mp4`` (with ``render``): H.264 overlay with skeletons and track ids.
- ``<name>.done``: written last, when every output is complete, with the outputs'
  provenance; a re-run skips the video when it exists and its provenance matches.

The same answer every time: the sampler's noise is seeded per video and frame
(:func:`frame_seed`), so a frame's keypoints do not depend on the videos or frames
processed before it; joints the skeleton never annotates (``Skeleton.scored``) are
written as absent (NaN keypoints: (0, 0, 0) in the JSON, empty in the CSV); a run
holds a lock on ``<name>.lock`` while it writes a video (``VideoLock``), so two runs
on one folder never write the same video; and ``.done`` records what produced the
outputs (:func:`provenance`): a re-run with another model, video or settings redoes
the video (:func:`stale_reason` says why) instead of keeping stale outputs. Optional:
a pose-score floor (``min_pose_score``: no person where the model sees nobody) and
One Euro smoothing per track (``vidpose.inference.smoothing``).

What a crash keeps: the CSV has every finished frame; after a Python exception
(including Ctrl-C and a read error) the JSON also has every finished frame; after a
hard kill (SIGKILL, power loss) the JSON holds the frames of its last periodic save.
The overlay video exists only when the video finished. Without ``.done`` the outputs
are partial, and the video is processed from its first frame again on the next run.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vidpose.data.frames import FrameReadError, open_frames
from vidpose.data.json_fields import write_json_atomic
from vidpose.inference.clip_boxes import ClipBoxes
from vidpose.inference.inputs import (
    collect_videos,
    parse_shard,
    select_shard,
    video_fps,
    video_name,
)
from vidpose.inference.outputs import (
    CsvOutput,
    FrameResult,
    JsonOutput,
    OverlayOutput,
    VideoLock,
    output_paths,
)
from vidpose.inference.person_boxes import PersonBoxSource
from vidpose.inference.predictor import VideoPosePredictor
from vidpose.inference.smoothing import KeypointSmoother, OneEuroSettings
from vidpose.inference.tracker import PoseTracker


class ExtractionError(RuntimeError):
    """Processing a frame failed; the message names the video file and the frame."""


# --------------------------------------------------------------------------- streaming


@dataclass
class BufferedFrame:
    """One decoded frame: ``array`` [H, W, 3] uint8 RGB and the same as a PIL image
    (made once, since every clip that uses the frame crops from it)."""

    index: int
    array: np.ndarray
    image: Image.Image


class FrameRing:
    """The last ``capacity`` frames of a stream, indexed by frame number.

    Args:
        capacity: frames held at most; pushing more drops the oldest.

    Attributes:
        high_water: the most frames ever held at once (tests assert it never exceeds
            ``capacity``).
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"FrameRing: capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._frames: deque[BufferedFrame] = deque()
        self.high_water = 0

    def __len__(self) -> int:
        return len(self._frames)

    def push(self, frame: BufferedFrame) -> None:
        """Append the next frame (its index must follow the last one)."""
        if self._frames and frame.index != self._frames[-1].index + 1:
            raise ValueError(
                f"FrameRing: frame {frame.index} pushed after {self._frames[-1].index}"
            )
        if len(self._frames) == self.capacity:
            self._frames.popleft()
        self._frames.append(frame)
        self.high_water = max(self.high_water, len(self._frames))

    def __getitem__(self, index: int) -> BufferedFrame:
        if not self._frames or not self._frames[0].index <= index <= self._frames[-1].index:
            held = f"{self._frames[0].index}..{self._frames[-1].index}" if self._frames else "none"
            raise KeyError(f"FrameRing: frame {index} is not held (holding {held})")
        return self._frames[index - self._frames[0].index]


def clip_frame_indices(key: int, offsets: Sequence[int], last: int) -> list[int]:
    """Frame numbers of the clip of key frame ``key``: ``key + offset`` clamped to
    [0, last] (the first and last frames stand in for frames outside the video)."""
    return [min(max(key + offset, 0), last) for offset in offsets]


# --------------------------------------------------------------------------- settings and report


@dataclass
class ExtractOptions:
    """Settings of an extraction run.

    Attributes:
        render: also write ``<name>.mp4`` with skeletons and track ids.
        track: match people across frames with PoseTracker; False gives each frame's
            people ids 0..P-1 in box order (single-person mode: always id 0).
        max_frames: stop after this many frames of each video (None: all).
        save_every: frames between periodic saves of the JSON (see
            ``vidpose.inference.outputs.JsonOutput``).
        save_time_share: the periodic saves of a long video are spaced out so that they
            take at most about this share of the run's time; None: every ``save_every``.
        overwrite: process videos that have a ``.done`` marker again.
        progress: show a tqdm bar per video (frames/s and persons/s).
        boxes_note: what the boxes were (e.g. "detections: dets.json"), recorded in the
            JSON's ``vidpose`` section (evaluations print it) and in the ``.done`` marker.
        render_threshold: joints scoring below this are drawn as rings in the overlay.
        decoder: video decoder (``vidpose.data.frames.VideoFileSource``): "pyav"
            (default: extraction reads frames in order, and PyAV's memory stays flat
            with the video's length; decord held 653 MiB of frames ahead on a
            1280x720 file, see docs/benchmarks.md, section c), "decord", or "auto"
            (decord, PyAV when decord cannot open the file).
        seed: the base of every frame's sampling seed (``frame_seed``: one per video
            name and frame, so a frame's keypoints are the same whatever ran before).
        min_pose_score: a person whose mean score over the skeleton's scored joints is
            below this is not written (nor tracked): single-person mode's way of saying
            "nobody here" without a detector. 0 keeps everyone.
        smoothing: One Euro filter settings (``vidpose.inference.smoothing``) applied
            per track to the written keypoints; None: the model's keypoints as they are.
        provenance: more entries for the ``.done`` marker's record of what produced
            the outputs (e.g. the checkpoint file); a re-run whose record differs redoes
            the video instead of skipping it.
    """

    render: bool = False
    track: bool = True
    max_frames: int | None = None
    save_every: int = 100
    save_time_share: float | None = 0.1
    overwrite: bool = False
    progress: bool = True
    boxes_note: str = ""
    render_threshold: float = 0.3
    decoder: str = "pyav"
    seed: int = 0
    min_pose_score: float = 0.0
    smoothing: OneEuroSettings | None = None
    provenance: dict[str, Any] = field(default_factory=dict)


@dataclass
class VideoSummary:
    """What happened to one video.

    Attributes:
        video: the input path.
        name: the output name.
        status: "done", "skipped" (a ``.done`` marker of the same provenance existed),
            "locked" (another run is writing this video's outputs now: left alone) or
            "failed".
        frames: frames finished (and written).
        persons: person detections processed.
        seconds: wall time.
        error: the failure message (file and frame), for "failed".
        outputs: the files written.
        max_buffered_frames: the ring buffer's high-water mark.
        decoder: the video decoder that read the frames ("pyav" or "decord"; None
            when the frames were passed in, or none was read).
        note: why a video with a ``.done`` marker was redone (its outputs came from
            another model, video or settings), else None.
    """

    video: Path
    name: str
    status: str
    frames: int = 0
    persons: int = 0
    seconds: float = 0.0
    error: str | None = None
    outputs: list[Path] = field(default_factory=list)
    max_buffered_frames: int = 0
    decoder: str | None = None
    note: str | None = None


@dataclass
class ExtractionReport:
    """Summaries of every video of a run, in processing order."""

    videos: list[VideoSummary]

    @property
    def failures(self) -> list[VideoSummary]:
        return [video for video in self.videos if video.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failures


# --------------------------------------------------------------------------- one video


def extract_video(
    video: str | os.PathLike,
    predictor: VideoPosePredictor,
    boxes: PersonBoxSource,
    out_dir: str | os.PathLike,
    *,
    options: ExtractOptions | None = None,
    frames: Iterable[np.ndarray] | None = None,
    tracker: PoseTracker | None = None,
) -> VideoSummary:
    """Extract the poses of one video and write its outputs (see the module docstring).

    Args:
        video: a video file or a folder of images.
        predictor: the pose model (its ``frame_offsets`` set the clips).
        boxes: where each frame's people are (``vidpose.inference.person_boxes``).
        out_dir: output folder (created).
        options: run settings.
        frames: the frames, [H, W, 3] uint8 RGB in order, instead of reading ``video``
            (e.g. from a camera); ``video`` still names the outputs.
        tracker: the tracker to use (default: a fresh ``PoseTracker`` with the
            skeleton's OKS sigmas, when ``options.track``).

    Returns:
        The summary; status "skipped" when a ``.done`` marker of the same provenance
        exists (and not ``options.overwrite``), "locked" when another process is
        writing this video's outputs.

    Raises:
        FrameReadError: a frame could not be read (file and frame named); the frames
            finished before it are written (JSON and CSV), without a ``.done`` marker.
        ExtractionError: processing a frame failed (file and frame named).
    """
    options = options or ExtractOptions()
    video = Path(video)
    name = video_name(video)
    paths = output_paths(out_dir, name)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    produced_by = provenance(
        video, predictor, options, boxes=boxes, given_frames=frames is not None
    )
    with VideoLock(paths["lock"]) as lock:
        if not lock.acquired:
            return VideoSummary(video, name, "locked", outputs=[paths["lock"]])
        # checked under the lock: a run that held it may have just finished the video
        stale = stale_reason(paths["done"], produced_by)
        if paths["done"].exists() and stale is None and not options.overwrite:
            return VideoSummary(video, name, "skipped", outputs=[paths["done"]])
        paths["done"].unlink(missing_ok=True)
        summary = _extract_locked(
            video, name, paths, predictor, boxes, options, frames, tracker, produced_by
        )
        summary.note = stale if stale and stale != "no .done marker" else None
        return summary


def _extract_locked(
    video: Path,
    name: str,
    paths: dict[str, Path],
    predictor: VideoPosePredictor,
    boxes: PersonBoxSource,
    options: ExtractOptions,
    frames: Iterable[np.ndarray] | None,
    tracker: PoseTracker | None,
    produced_by: dict[str, Any],
) -> VideoSummary:
    """``extract_video`` once this process holds the video's lock."""
    source = None
    if frames is None:
        source = open_frames(video, backend=options.decoder)
        frames = source
    total = _length(frames)
    if options.max_frames is not None:
        frames = itertools.islice(frames, options.max_frames)
        total = options.max_frames if total is None else min(total, options.max_frames)
    if tracker is None and options.track:
        tracker = PoseTracker(sigmas=np.asarray(predictor.skeleton.sigmas))
    fps = video_fps(video)
    smoother = None
    if options.smoothing is not None:
        smoother = KeypointSmoother(fps=fps, settings=options.smoothing)

    json_output = JsonOutput(
        paths["json"],
        name=name,
        skeleton=predictor.skeleton,
        file_names=_file_namer(video, name, source),
        num_frames=total,
        save_every=options.save_every,
        time_share=options.save_time_share,
        boxes_note=options.boxes_note,
    )
    csv_output = CsvOutput(paths["csv"], name=name, skeleton=predictor.skeleton)
    overlay = None
    if options.render:
        overlay = OverlayOutput(
            paths["mp4"],
            fps=fps,
            skeleton=predictor.skeleton,
            threshold=options.render_threshold,
        )
    summary = VideoSummary(video, name, "failed")
    start = time.monotonic()
    progress = _progress_bar(name, total, enabled=options.progress)

    def finish(result: FrameResult, frame: np.ndarray) -> None:
        if smoother is not None and result.num_people:
            result.keypoints = smoother(result.frame_index, result.track_ids, result.keypoints)
        json_output.add(result)
        csv_output.add(result)
        if overlay is not None:
            overlay.add(result, frame)
        summary.frames += 1
        summary.persons += result.num_people
        if progress is not None:
            # tqdm shows frames/s itself (unit "frame"); persons/s is the mean over the video.
            elapsed = max(time.monotonic() - start, 1e-9)
            progress.set_postfix_str(f"{summary.persons / elapsed:.1f} persons/s", refresh=False)
            progress.update(1)

    frame_step = _FrameStep(video, name, predictor, boxes, tracker, options)
    completed = False
    try:
        ring = _stream(video, frames, predictor=predictor, step=frame_step, finish=finish)
        summary.max_buffered_frames = ring.high_water
        completed = True
    finally:
        summary.seconds = time.monotonic() - start
        summary.decoder = getattr(source, "backend_in_use", None)  # None: images or given
        if progress is not None:
            progress.close()
        csv_output.close()
        if json_output.finished:
            json_output.save(complete=completed)
        if overlay is not None:
            if completed and summary.frames:
                overlay.close()
            else:
                overlay.abort()
    if summary.frames == 0:
        raise ExtractionError(f"{video}: no frames could be read")
    summary.outputs = [paths["json"], paths["csv"]] + ([paths["mp4"]] if overlay else [])
    summary.status = "done"
    marker = {
        "video": str(video),
        "frames": summary.frames,
        "persons": summary.persons,
        "seconds": round(summary.seconds, 3),
        "outputs": [str(path) for path in summary.outputs],
        "produced_by": produced_by,
    }
    write_json_atomic(paths["done"], marker)
    return summary


# --------------------------------------------------------------------------- provenance


def frame_seed(name: str, frame: int, base: int = 0) -> int:
    """The sampling seed of frame ``frame`` of the video named ``name``: a hash of the
    three, so each frame draws the same noise whether its video runs alone, after
    others, in another shard or after a crash (one generator shared across a run made
    a frame's keypoints depend on everything sampled before it)."""
    digest = hashlib.sha256(f"{base}/{name}/{frame}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def provenance(
    video: Path,
    predictor: VideoPosePredictor,
    options: ExtractOptions,
    *,
    boxes: Any = None,
    given_frames: bool = False,
) -> dict[str, Any]:
    """What produces a video's outputs, recorded in its ``.done`` marker: the video file
    (size and modification time; for a folder of images, their count, total size and
    latest time), the model (``VideoPosePredictor.fingerprint``: weights and sampling
    settings), where the boxes come from (a detections file by its SHA-256), and the
    settings that change the numbers."""
    record: dict[str, Any] = {
        "video": None if given_frames else _file_state(video),
        "model": predictor.fingerprint(),
        "boxes": options.boxes_note,
        "seed": options.seed,
        "max_frames": options.max_frames,
        "min_pose_score": options.min_pose_score,
        "smoothing": None if options.smoothing is None else vars(options.smoothing),
    }
    detections = getattr(boxes, "source", None)
    if isinstance(detections, str) and Path(detections).is_file():
        # by content: a detections file rewritten unchanged (the demo does) is the same
        record["boxes_file"] = hashlib.sha256(Path(detections).read_bytes()).hexdigest()
    record.update(options.provenance)
    return json.loads(json.dumps(record, default=str))  # as the marker will read back


def _file_state(path: Path) -> dict[str, Any] | None:
    if path.is_dir():
        files = [p for p in path.iterdir() if p.is_file()]
        stats = [p.stat() for p in files]
        return {
            "files": len(files),
            "size": sum(s.st_size for s in stats),
            "mtime_ns": max((s.st_mtime_ns for s in stats), default=0),
        }
    if path.is_file():
        stat = path.stat()
        return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    return None


def stale_reason(marker: Path, produced_by: dict[str, Any]) -> str | None:
    """Why a ``.done`` marker does not vouch for outputs that ``produced_by`` would make
    (the differing entries named), or None when it does."""
    if not marker.is_file():
        return "no .done marker"
    try:
        recorded = json.loads(marker.read_text()).get("produced_by")
    except (OSError, ValueError, AttributeError):
        return "its .done marker is unreadable"
    if recorded is None:
        return "its .done marker records no provenance (an older vidpose)"
    differing = sorted(
        key for key in set(recorded) | set(produced_by) if recorded.get(key) != produced_by.get(key)
    )
    if not differing:
        return None
    return f"outputs were made with another {', '.join(differing)}; redone"


# --------------------------------------------------------------------------- one frame


class _FrameStep:
    """Boxes, poses and track ids of one key frame (``__call__``), with the run's
    per-video settings."""

    def __init__(
        self,
        video: Path,
        name: str,
        predictor: VideoPosePredictor,
        boxes: PersonBoxSource,
        tracker: PoseTracker | None,
        options: ExtractOptions,
    ) -> None:
        self.video = video
        self.name = name
        self.predictor = predictor
        self.boxes = boxes
        self.tracker = tracker
        self.options = options
        scored = np.asarray(predictor.skeleton.scored, dtype=bool)
        self.scored = scored
        self.box_scores_from_pose = bool(getattr(boxes, "box_scores_from_pose", False))
        # Own-box crops (a model trained with data.neighbour_boxes: own): each frame's
        # boxes are kept for the clips that reach it, a neighbour's box is the one
        # matched by IoU (vidpose.inference.clip_boxes), and each person-frame is
        # encoded once (the token cache; None for key-box crops).
        own = getattr(predictor, "neighbour_boxes", "key") == "own"
        self.clip_boxes = ClipBoxes(boxes, predictor.frame_offsets, own=own)
        self.cache = predictor.token_cache() if own else None

    def __call__(self, key: int, last: int, ring: FrameRing) -> tuple[FrameResult, np.ndarray]:
        key_frame = ring[key]
        predictor = self.predictor
        try:
            person_boxes, box_scores = self.clip_boxes.key_boxes(key, last, ring)
            indices = clip_frame_indices(key, predictor.frame_offsets, last)
            clip = [ring[index].image for index in indices]
            seed = frame_seed(self.name, key, self.options.seed)
            own_boxes: dict[str, Any] = {}
            if self.clip_boxes.own:
                if self.cache is not None:  # frames before this clip's first: never again
                    first = min(indices)
                    self.cache.evict(lambda frame: frame >= first)
                own_boxes = {
                    "clip_boxes": self.clip_boxes.clip_boxes(indices, person_boxes),
                    "frame_ids": indices,
                    "cache": self.cache,
                }
            prediction = predictor.predict(clip, person_boxes, seed=seed, **own_boxes)
            self.boxes.observe(key, prediction.keypoints, prediction.scores)
            keypoints, scores = prediction.keypoints, prediction.scores
            uncertainty = prediction.uncertainty
            pose_scores = scores[:, self.scored].mean(axis=1) if len(scores) else np.zeros(0)
            if self.box_scores_from_pose:
                box_scores = pose_scores.copy()  # a box over the frame is no detection
            keep = pose_scores >= self.options.min_pose_score
            if not keep.all():
                person_boxes, box_scores = person_boxes[keep], box_scores[keep]
                keypoints, scores = keypoints[keep], scores[keep]
                uncertainty = None if uncertainty is None else uncertainty[keep]
            if self.tracker is not None:
                # joints the skeleton never annotates do not count in the pose similarity
                tracked_scores = np.where(self.scored, scores, 0.0)
                track_ids = self.tracker.update(key, person_boxes, keypoints, tracked_scores)
            else:
                track_ids = np.arange(len(person_boxes), dtype=np.int64)
        except Exception as error:
            raise ExtractionError(
                f"{self.video}: frame {key}: {type(error).__name__}: {error}"
            ) from error
        # Joints the skeleton never annotates (PoseTrack's ears) are written as absent:
        # the model was never taught them, so their numbers mean nothing.
        keypoints = keypoints.copy()
        scores = scores.copy()
        keypoints[:, ~self.scored] = np.nan
        scores[:, ~self.scored] = 0.0
        if uncertainty is not None:
            uncertainty = uncertainty.copy()
            uncertainty[:, ~self.scored] = np.nan
        result = FrameResult(
            key, person_boxes, box_scores, keypoints, scores, track_ids, uncertainty
        )
        return result, key_frame.array


def _stream(
    video: Path,
    frames: Iterable[np.ndarray],
    *,
    predictor: VideoPosePredictor,
    step: Callable[[int, int, FrameRing], tuple[FrameResult, np.ndarray]],
    finish: Callable[[FrameResult, np.ndarray], None],
) -> FrameRing:
    """Read ``frames`` once, finishing each frame as soon as its clip is complete.

    Raises:
        FrameReadError: after the frames read before the failure are finished.
    """
    offsets = predictor.frame_offsets
    lookahead = max(offsets)
    ring = FrameRing(max(offsets) - min(offsets) + 1)
    next_key = 0  # the next frame to finish
    last_read = -1
    read_error: FrameReadError | None = None
    iterator: Iterator[np.ndarray] = iter(frames)
    while True:
        try:
            array = next(iterator)
        except StopIteration:
            break
        except FrameReadError as error:
            read_error = error
            break
        last_read += 1
        array = _check_frame(array, video, last_read)
        ring.push(BufferedFrame(last_read, array, Image.fromarray(array)))
        # Frame t is complete once frame t + max(offsets) has been read.
        while next_key + lookahead <= last_read:
            finish(*step(next_key, last_read, ring))
            next_key += 1
    # The video ended (or broke off): the last frames' future offsets clamp to the end.
    while next_key <= last_read:
        finish(*step(next_key, last_read, ring))
        next_key += 1
    if read_error is not None:
        raise read_error
    return ring


def _check_frame(array: Any, video: Path, index: int) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ExtractionError(
            f"{video}: frame {index}: expected [H, W, 3] uint8 RGB, got shape "
            f"{array.shape} dtype {array.dtype}"
        )
    return np.ascontiguousarray(array)


def _length(frames: Iterable[np.ndarray]) -> int | None:
    try:
        return len(frames)  # type: ignore[arg-type]
    except TypeError:
        return None
    except FrameReadError:
        return None  # counting failed; reading reports the error with its frame


def _file_namer(video: Path, name: str, source: Any) -> Callable[[int], str]:
    """``file_name`` of frame i in the JSON: ``<name>/<image file>`` for a folder of
    images, ``<name>/<i:06d>.jpg`` for a video (the PoseTrack layout)."""
    paths = getattr(source, "paths", None)
    if video.is_dir() and paths:
        return lambda index: f"{name}/{paths[index].name}"
    return lambda index: f"{name}/{index:06d}.jpg"


def _progress_bar(name: str, total: int | None, *, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=name, unit="frame", dynamic_ncols=True, leave=True)


# --------------------------------------------------------------------------- many videos


def extract_videos(
    videos: Sequence[str | os.PathLike],
    predictor: VideoPosePredictor,
    boxes_for: Callable[[Path], PersonBoxSource],
    out_dir: str | os.PathLike,
    *,
    options: ExtractOptions | None = None,
    on_failure: Callable[[VideoSummary], None] | None = None,
) -> ExtractionReport:
    """Extract every video; a video that fails is reported and the others go on.

    Args:
        videos: video files or image folders (see ``collect_videos``).
        predictor: the pose model.
        boxes_for: a fresh box source for a video (called once per video; e.g. reading
            its detections file). Errors it raises fail that video only.
        out_dir: output folder.
        options: run settings.
        on_failure: called with the summary of each failed video as it fails (the CLI
            prints it at once).

    Returns:
        The report, one summary per video in order.
    """
    options = options or ExtractOptions()
    summaries = []
    for video in videos:
        video = Path(video)
        start = time.monotonic()
        try:
            # A finished video of the same provenance is skipped before its box source is
            # made (reading a detections file, say); extract_video checks again under
            # the video's lock.
            marker = output_paths(out_dir, video_name(video))["done"]
            produced_by = provenance(video, predictor, options)
            # (a marker recording a detections file differs here and is checked there)
            done = marker.exists() and stale_reason(marker, produced_by) is None
            if done and not options.overwrite:
                summary = VideoSummary(video, video_name(video), "skipped", outputs=[marker])
            else:
                summary = extract_video(
                    video, predictor, boxes_for(video), out_dir, options=options
                )
        except Exception as error:  # one bad video must not stop the others
            message = str(error) if str(video) in str(error) else f"{video}: {error}"
            summary = VideoSummary(
                video,
                video_name(video),
                "failed",
                seconds=time.monotonic() - start,
                error=f"{type(error).__name__}: {message}",
            )
            if on_failure is not None:
                on_failure(summary)
        summaries.append(summary)
    return ExtractionReport(summaries)


def format_report(report: ExtractionReport) -> str:
    """A short plain-text account of a run: counts, throughput, failures."""
    done = [video for video in report.videos if video.status == "done"]
    skipped = [video for video in report.videos if video.status == "skipped"]
    locked = [video for video in report.videos if video.status == "locked"]
    frames = sum(video.frames for video in done)
    persons = sum(video.persons for video in done)
    seconds = sum(video.seconds for video in done)
    rate = (
        f", {frames / seconds:.1f} frames/s, {persons / seconds:.1f} persons/s" if seconds else ""
    )
    lines = [
        f"{len(done)} videos extracted ({frames} frames, {persons} persons{rate}), "
        f"{len(skipped)} skipped as already done, {len(report.failures)} failed"
        + (f", {len(locked)} left to another run writing them now" if locked else "")
    ]
    for video in done:
        if video.note:
            lines.append(f"  {video.name}: {video.note}")
    for failure in report.failures:
        lines.append(f"  FAILED {failure.video}: {failure.error}")
    return "\n".join(lines)


# The run's whole API in one place: the inputs' and outputs' names a caller needs are
# re-exported here, so that ``from vidpose.inference.extract import ...`` serves them all.
__all__ = [
    "BufferedFrame",
    "ExtractOptions",
    "ExtractionError",
    "ExtractionReport",
    "FrameResult",
    "FrameRing",
    "VideoSummary",
    "clip_frame_indices",
    "collect_videos",
    "extract_video",
    "extract_videos",
    "format_report",
    "frame_seed",
    "output_paths",
    "parse_shard",
    "provenance",
    "select_shard",
    "stale_reason",
    "video_fps",
    "video_name",
]
