"""The files one video's extraction writes, fed one finished frame at a time.

- :class:`JsonOutput`: the PoseTrack prediction file, rewritten atomically now and then
  (its save schedule is in the class docstring);
- :class:`CsvOutput`: one row per joint, flushed after every frame;
- :class:`OverlayOutput`: the H.264 overlay with skeletons, boxes and track ids.

:class:`FrameResult` is what they are fed: the people of one finished frame. Where the
files go is :func:`output_paths`; what a crash keeps is in the docstring of
``vidpose.inference.extract``, which drives these writers.
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from vidpose.data.draw import draw_pose
from vidpose.data.skeleton import Skeleton
from vidpose.evaluation.writers import (
    PredictedPerson,
    posetrack_images,
    write_posetrack_predictions,
)


@dataclass
class FrameResult:
    """The people of one finished frame (P people, K joints).

    Attributes:
        frame_index: 0-based frame number.
        boxes: [P, 4] x, y, w, h person boxes used (frame pixels).
        box_scores: [P] box (detection) scores.
        keypoints: [P, K, 2] x, y, frame pixels.
        scores: [P, K] joint confidences.
        track_ids: [P] int64 track ids, unique within the frame.
        uncertainty: [P, K] per-joint uncertainty in frame pixels, or None (the head
            has none).
    """

    frame_index: int
    boxes: np.ndarray
    box_scores: np.ndarray
    keypoints: np.ndarray
    scores: np.ndarray
    track_ids: np.ndarray
    uncertainty: np.ndarray | None = None

    @property
    def num_people(self) -> int:
        return len(self.track_ids)


class _PersonRows:
    """Every person of every finished frame, packed in arrays that grow by doubling:
    about 230 bytes per person (float32), not a Python object per value, so a long
    video's results stay small next to the model."""

    def __init__(self, joints: int) -> None:
        self.count = 0
        self.frame = np.zeros(0, np.int32)
        self.track = np.zeros(0, np.int64)
        self.boxes = np.zeros((0, 4), np.float32)
        self.box_scores = np.zeros(0, np.float32)
        self.keypoints = np.zeros((0, joints, 2), np.float32)
        self.scores = np.zeros((0, joints), np.float32)
        self.uncertainty = np.zeros((0, joints), np.float32)  # NaN: the head has none

    def append(self, result: FrameResult) -> None:
        needed = self.count + result.num_people
        if needed > len(self.frame):
            capacity = max(needed, 2 * len(self.frame), 64)
            fields = ("frame", "track", "boxes", "box_scores", "keypoints", "scores", "uncertainty")
            for field_name in fields:
                old = getattr(self, field_name)
                grown = np.zeros((capacity, *old.shape[1:]), old.dtype)
                grown[: self.count] = old[: self.count]
                setattr(self, field_name, grown)
        rows = slice(self.count, needed)
        self.frame[rows] = result.frame_index
        self.track[rows] = result.track_ids
        self.boxes[rows] = result.boxes
        self.box_scores[rows] = result.box_scores
        self.keypoints[rows] = result.keypoints
        self.scores[rows] = result.scores
        self.uncertainty[rows] = np.nan if result.uncertainty is None else result.uncertainty
        self.count = needed


class JsonOutput:
    """The PoseTrack prediction file of one video, kept as compact arrays and rewritten
    atomically through ``vidpose.evaluation.writers.write_posetrack_predictions``.

    Periodic saves rewrite the whole file, which grows with the video; to keep their
    total cost a bounded share of the run on long videos, a save happens when at least
    ``save_every`` frames were finished since the last one *and* the time since the last
    save is at least its duration divided by ``time_share`` (0.1: ten times as long).
    ``time_share`` None saves every ``save_every`` frames whatever it costs. A partial
    file lists only the finished frames in ``images`` (each with ``nframes`` the video's
    length when known).
    """

    def __init__(
        self,
        path: Path,
        *,
        name: str,
        skeleton: Skeleton,
        file_names: Callable[[int], str],
        num_frames: int | None,
        save_every: int,
        time_share: float | None,
        boxes_note: str,
    ) -> None:
        self.path = path
        self.name = name
        self.skeleton = skeleton
        self.file_names = file_names
        self.num_frames = num_frames
        self.save_every = max(1, save_every)
        self.time_share = time_share
        self.boxes_note = boxes_note
        self.people = _PersonRows(skeleton.num_joints)
        self.finished = 0  # frames 0 .. finished - 1 are done
        self._saved_frames = 0
        self._last_save_end = time.monotonic()
        self._last_save_seconds = 0.0

    def add(self, result: FrameResult) -> None:
        if result.frame_index != self.finished:
            raise ValueError(f"frame {result.frame_index} finished after frame {self.finished - 1}")
        self.people.append(result)
        self.finished += 1
        due = self.finished - self._saved_frames >= self.save_every
        since = time.monotonic() - self._last_save_end
        cheap = self.time_share is None or since * self.time_share >= self._last_save_seconds
        if due and cheap:
            self.save(complete=False)

    def images(self, total: int) -> list[dict[str, Any]]:
        """``images`` entries of frames 0..total-1: PoseTrack ids for PoseTrack-named
        videos (so the file pairs with the ground truth), frame numbers otherwise."""
        try:
            images = posetrack_images(self.name, total)
        except ValueError:  # not a PoseTrack name, or too many frames for its id scheme
            images = [{"id": index, "frame_id": index, "nframes": total} for index in range(total)]
        for index, image in enumerate(images):
            image["file_name"] = self.file_names(index)
        return images

    def save(self, *, complete: bool) -> None:
        finished = self.finished
        total = finished if complete or self.num_frames is None else self.num_frames
        images = self.images(max(total, finished))[:finished]
        people = self.people
        predictions: dict[int, list[PredictedPerson]] = {}
        for row in range(people.count):
            image_id = images[people.frame[row]]["id"]
            predictions.setdefault(image_id, []).append(
                PredictedPerson(
                    keypoints=people.keypoints[row],
                    scores=people.scores[row],
                    track_id=int(people.track[row]),
                    bbox=people.boxes[row],
                    score=float(people.box_scores[row]),
                    uncertainty=(
                        people.uncertainty[row]
                        if np.isfinite(people.uncertainty[row]).any()
                        else None
                    ),
                )
            )
        start = time.monotonic()
        write_posetrack_predictions(
            self.path, images, predictions, skeleton=self.skeleton, boxes=self.boxes_note
        )
        self._saved_frames = finished
        self._last_save_end = time.monotonic()
        self._last_save_seconds = self._last_save_end - start


class CsvOutput:
    """``video,frame,track,joint,x,y,score,uncertainty`` rows, flushed after every frame
    (uncertainty empty when the head has none; x, y, score and uncertainty empty for an
    absent joint: a NaN keypoint, e.g. a joint the skeleton never annotates)."""

    HEADER = ("video", "frame", "track", "joint", "x", "y", "score", "uncertainty")

    def __init__(self, path: Path, *, name: str, skeleton: Skeleton) -> None:
        self.path = path
        self.name = name
        self.joint_names = skeleton.joint_names
        self._handle: TextIO = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115
        self._writer = csv.writer(self._handle)
        self._writer.writerow(self.HEADER)

    def add(self, result: FrameResult) -> None:
        for person in range(result.num_people):
            track = int(result.track_ids[person])
            for joint, joint_name in enumerate(self.joint_names):
                x, y = result.keypoints[person, joint]
                if not (np.isfinite(x) and np.isfinite(y)):
                    self._writer.writerow(
                        (self.name, result.frame_index, track, joint_name, "", "", "", "")
                    )
                    continue
                uncertainty = (
                    "" if result.uncertainty is None else f"{result.uncertainty[person, joint]:.2f}"
                )
                self._writer.writerow(
                    (
                        self.name,
                        result.frame_index,
                        track,
                        joint_name,
                        f"{x:.2f}",
                        f"{y:.2f}",
                        f"{result.scores[person, joint]:.4f}",
                        uncertainty,
                    )
                )
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


class OverlayOutput:
    """The overlay video: every frame with its people's skeletons, boxes and ids."""

    def __init__(self, path: Path, *, fps: float, skeleton: Skeleton, threshold: float) -> None:
        from vidpose.data.video_writer import VideoWriter  # PyAV only when a run renders

        # x264's "veryfast" preset: the overlay is a preview, and "medium" made writing
        # it the largest cost after the model at 1280x720 (docs/benchmarks.md, section a)
        self.writer = VideoWriter(path, fps=fps, preset="veryfast")
        self.skeleton = skeleton
        self.threshold = threshold

    def add(self, result: FrameResult, frame: np.ndarray) -> None:
        canvas = frame
        for person in range(result.num_people):
            canvas = draw_pose(
                canvas,
                result.keypoints[person],
                result.scores[person],
                self.skeleton,
                int(result.track_ids[person]),
                threshold=self.threshold,
                box=result.boxes[person],
            )
        self.writer.write(canvas)

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        self.writer.abort()


def output_paths(out_dir: str | os.PathLike, name: str) -> dict[str, Path]:
    """Where the outputs of video ``name`` go: keys json, csv, mp4, done, and lock (the
    file a run holds a lock on while it writes the others)."""
    out_dir = Path(out_dir)
    suffixes = ("json", "csv", "mp4", "done", "lock")
    return {suffix: out_dir / f"{name}.{suffix}" for suffix in suffixes}


class VideoLock:
    """An exclusive, non-blocking lock on one video's outputs (``<name>.lock``), so two
    runs writing to one folder never write the same video at once: the second finds it
    held and leaves the video alone. The operating system releases the lock when its
    holder exits, even killed, so a crashed run never blocks a later one; the lock
    file itself stays (deleting it would race with a run opening it).

    Use as a context manager; ``acquired`` says whether this process holds it.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.acquired = False
        self._handle: Any = None

    def __enter__(self) -> VideoLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.path, "a+b")  # noqa: SIM115 (held until __exit__)
        try:
            _lock_file(self._handle)
        except OSError:  # held by another process
            self._handle.close()
            self._handle = None
            return self
        self.acquired = True
        self._handle.seek(0)
        self._handle.truncate()
        self._handle.write(f"{os.getpid()}\n".encode())
        self._handle.flush()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._handle is not None:
            try:
                _unlock_file(self._handle)
            finally:
                self._handle.close()
                self._handle = None
                self.acquired = False


if os.name == "nt":  # pragma: no cover - Windows
    import msvcrt

    def _lock_file(handle: Any) -> None:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)

    def _unlock_file(handle: Any) -> None:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock_file(handle: Any) -> None:
        # flock: per open file, so a second open in the same process conflicts too
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock_file(handle: Any) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
