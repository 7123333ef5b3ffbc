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
- ``<name>.done``: written last, when every output is complete; a re-run skips the
  video when it exists.

What a crash keeps: the CSV has every finished frame; after a Python exception
(including Ctrl-C and a read error) the JSON also has every finished frame; after a
hard kill (SIGKILL, power loss) the JSON holds the frames of its last periodic save.
The overlay video exists only when the video finished. Without ``.done`` the outputs
are partial, and the video is processed from its first frame again on the next run.
"""

from __future__ import annotations

import itertools
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
    output_paths,
)
from vidpose.inference.person_boxes import PersonBoxSource
from vidpose.inference.predictor import VideoPosePredictor
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
            JSON's ``vidpose`` section (evaluations print it).
        render_threshold: joints scoring below this are drawn as rings in the overlay.
        decoder: video decoder (``vidpose.data.frames.VideoFileSource``): "pyav"
            (default: extraction reads frames in order, and PyAV's memory stays flat
            with the video's length; decord held 653 MiB of frames ahead on a
            1280x720 file, see docs/benchmarks.md, section c), "decord", or "auto"
            (decord, PyAV when decord cannot open the file).
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


@dataclass
class VideoSummary:
    """What happened to one video.

    Attributes:
        video: the input path.
        name: the output name.
        status: "done", "skipped" (a ``.done`` marker existed) or "failed".
        frames: frames finished (and written).
        persons: person detections processed.
        seconds: wall time.
        error: the failure message (file and frame), for "failed".
        outputs: the files written.
        max_buffered_frames: the ring buffer's high-water mark.
        decoder: the video decoder that read the frames ("pyav" or "decord"; None
            when the frames were passed in, or none was read).
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
        The summary; status "skipped" when a ``.done`` marker exists (and not
        ``options.overwrite``).

    Raises:
        FrameReadError: a frame could not be read (file and frame named); the frames
            finished before it are written (JSON and CSV), without a ``.done`` marker.
        ExtractionError: processing a frame failed (file and frame named).
    """
    options = options or ExtractOptions()
    video = Path(video)
    name = video_name(video)
    paths = output_paths(out_dir, name)
    if paths["done"].exists() and not options.overwrite:
        return VideoSummary(video, name, "skipped", outputs=[paths["done"]])
    paths["done"].unlink(missing_ok=True)
    Path(out_dir).mkdir(parents=True, exist_ok=True)

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
            fps=video_fps(video),
            skeleton=predictor.skeleton,
            threshold=options.render_threshold,
        )
    summary = VideoSummary(video, name, "failed")
    start = time.monotonic()
    progress = _progress_bar(name, total, enabled=options.progress)

    def finish(result: FrameResult, frame: np.ndarray) -> None:
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

    completed = False
    try:
        ring = _stream(
            video, frames, predictor=predictor, boxes=boxes, tracker=tracker, finish=finish
        )
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
    }
    write_json_atomic(paths["done"], marker)
    return summary


def _stream(
    video: Path,
    frames: Iterable[np.ndarray],
    *,
    predictor: VideoPosePredictor,
    boxes: PersonBoxSource,
    tracker: PoseTracker | None,
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
            finish(*_process(video, next_key, last_read, ring, predictor, boxes, tracker))
            next_key += 1
    # The video ended (or broke off): the last frames' future offsets clamp to the end.
    while next_key <= last_read:
        finish(*_process(video, next_key, last_read, ring, predictor, boxes, tracker))
        next_key += 1
    if read_error is not None:
        raise read_error
    return ring


def _process(
    video: Path,
    key: int,
    last: int,
    ring: FrameRing,
    predictor: VideoPosePredictor,
    boxes: PersonBoxSource,
    tracker: PoseTracker | None,
) -> tuple[FrameResult, np.ndarray]:
    """Boxes, poses and track ids of key frame ``key``."""
    key_frame = ring[key]
    try:
        person_boxes, box_scores = boxes.boxes(key, key_frame.array)
        person_boxes = np.asarray(person_boxes, dtype=np.float64).reshape(-1, 4)
        box_scores = np.asarray(box_scores, dtype=np.float64).reshape(-1)
        clip = [
            ring[index].image for index in clip_frame_indices(key, predictor.frame_offsets, last)
        ]
        prediction = predictor.predict(clip, person_boxes)
        if tracker is not None:
            track_ids = tracker.update(key, person_boxes, prediction.keypoints, prediction.scores)
        else:
            track_ids = np.arange(len(person_boxes), dtype=np.int64)
        boxes.observe(key, prediction.keypoints, prediction.scores)
    except Exception as error:
        raise ExtractionError(f"{video}: frame {key}: {type(error).__name__}: {error}") from error
    result = FrameResult(
        key,
        person_boxes,
        box_scores,
        prediction.keypoints,
        prediction.scores,
        track_ids,
        prediction.uncertainty,
    )
    return result, key_frame.array


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
            marker = output_paths(out_dir, video_name(video))["done"]
            if marker.exists() and not options.overwrite:
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
    frames = sum(video.frames for video in done)
    persons = sum(video.persons for video in done)
    seconds = sum(video.seconds for video in done)
    rate = (
        f", {frames / seconds:.1f} frames/s, {persons / seconds:.1f} persons/s" if seconds else ""
    )
    lines = [
        f"{len(done)} videos extracted ({frames} frames, {persons} persons{rate}), "
        f"{len(skipped)} skipped as already done, {len(report.failures)} failed"
    ]
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
    "output_paths",
    "parse_shard",
    "select_shard",
    "video_fps",
    "video_name",
]
