"""The inputs of an extraction run: which videos, what their outputs are called, which
share of them this process takes, and at what rate the overlay plays.

A video is a file or a folder of images (the PoseTrack ``images/val/<video>/`` layout);
both are read by ``vidpose.data.frames.open_frames``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from vidpose.data.frames import IMAGE_SUFFIXES

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".wmv")

# Frames per second assumed for the overlay of a folder of images (no rate is stored).
DEFAULT_FPS = 25.0


def collect_videos(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """The videos named by files and folders, sorted by path, without repeats.

    A file is a video (or a single image). A folder contributes its video files
    (suffixes in ``VIDEO_SUFFIXES``, not recursive); a folder without videos but with
    images is one video whose frames are its images in name order (the PoseTrack
    ``images/val/<video>/`` layout).

    Raises:
        FileNotFoundError: an input does not exist, or a folder holds neither videos
            nor images.
    """
    found: set[Path] = set()
    for item in inputs:
        path = Path(item)
        if path.is_file():
            found.add(path)
        elif path.is_dir():
            entries = sorted(path.iterdir())
            videos = [p for p in entries if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES]
            if videos:
                found.update(videos)
            elif any(p.suffix.lower() in IMAGE_SUFFIXES for p in entries):
                found.add(path)
            else:
                raise FileNotFoundError(
                    f"{path}: folder holds no videos ({', '.join(VIDEO_SUFFIXES)}) and no images"
                )
        else:
            raise FileNotFoundError(f"{path}: no such video file or folder")
    return sorted(found, key=lambda p: str(p))


def video_name(path: str | os.PathLike) -> str:
    """The name outputs are given: a video file's stem, or an image folder's name."""
    path = Path(path)
    return path.name if path.is_dir() else path.stem


def select_shard(videos: Sequence[Path], index: int, count: int) -> list[Path]:
    """Every ``count``-th video starting at ``index``, of the videos sorted by path.

    Deterministic, so N processes (or machines) given the same inputs and shards
    0/N ... N-1/N split them without overlap and without talking to each other.
    """
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard {index}/{count}: expected 0 <= index < count")
    return sorted(videos, key=lambda p: str(p))[index::count]


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) with 0 <= I < N."""
    try:
        index_text, count_text = text.split("/")
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise ValueError(f"--shard {text!r}: expected I/N, e.g. 0/4") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"--shard {text!r}: expected 0 <= I < N")
    return index, count


def video_fps(path: str | os.PathLike) -> float:
    """Frame rate of a video file (PyAV's average rate), DEFAULT_FPS when unknown."""
    path = Path(path)
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        return DEFAULT_FPS
    import av

    try:
        with av.open(str(path)) as container:
            rate = container.streams.video[0].average_rate
    except Exception:  # unreadable: the frame reader reports it with the frame index
        return DEFAULT_FPS
    return float(rate) if rate else DEFAULT_FPS
