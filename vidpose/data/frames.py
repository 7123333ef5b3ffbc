"""Frame sources: a folder of images or a video file, read as RGB uint8 arrays.

Both sources support ``len()``, random access ``source[i] -> [H, W, 3] uint8`` and a
streaming iterator, and are safe to hand to ``torch.utils.data.DataLoader`` workers:

- ``ImageFolderSource`` holds only paths.
- ``VideoFileSource`` opens its decoder lazily, on the first frame read in each
  process, and drops it when pickled. A decord ``VideoReader`` that was opened in the
  parent hangs when a forked worker uses it (its decoder threads do not survive the
  fork) and aborts when the worker frees it, so a reader inherited through a fork is
  never touched: it is parked, unused, and the worker opens its own.

Video decoding uses decord by default and falls back to PyAV when decord is not
installed or cannot open the file (AV1, some truncated files). Every failure to read
raises ``FrameReadError`` naming the file and the frame index.

Frames come out as the video is shown: a phone video stored sideways with a display
matrix (rotation metadata) is turned upright (:func:`upright`). Such a video is always
read with PyAV, with a warning when decord was asked for: decord applies the matrix
itself but returned 4 channels of shifted pixels for a rotated 64x48 video here.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

Backend = Literal["auto", "decord", "pyav"]

# Readers inherited through fork(): using or freeing them in the child hangs or aborts
# (decord's decoder threads exist only in the parent), so they are kept alive here and
# never touched again.
_INHERITED_READERS: list[Any] = []


class FrameReadError(OSError):
    """A frame could not be read: the message names the file and the frame index."""


def open_frames(
    path: str | os.PathLike, *, backend: Backend = "auto"
) -> ImageFolderSource | VideoFileSource:
    """Open a folder of images (sorted by name), a single image, or a video file.

    Args:
        path: a directory of images, an image file, or a video file.
        backend: video decoder, see ``VideoFileSource``.
    """
    path = Path(path)
    if path.is_dir():
        return ImageFolderSource.from_folder(path)
    if not path.exists():
        raise FileNotFoundError(
            f"frame source not found: {path} (expected an image folder or a video file)"
        )
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageFolderSource([path])
    return VideoFileSource(path, backend=backend)


class ImageFolderSource:
    """Frames stored as image files, one per frame.

    Args:
        paths: image files in frame order.
    """

    def __init__(self, paths: Sequence[str | os.PathLike]) -> None:
        self.paths = [Path(path) for path in paths]

    @classmethod
    def from_folder(cls, folder: str | os.PathLike) -> ImageFolderSource:
        """All images of ``folder`` (suffixes in ``IMAGE_SUFFIXES``), sorted by file name."""
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"image folder not found: {folder}")
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise FileNotFoundError(
                f"image folder {folder} holds no images (looked for {', '.join(IMAGE_SUFFIXES)})"
            )
        return cls(paths)

    def __repr__(self) -> str:
        first = self.paths[0] if self.paths else None
        return f"ImageFolderSource({len(self.paths)} images, first={first})"

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        """Frame ``index`` as [H, W, 3] uint8 RGB."""
        index = _check_index(index, len(self.paths), repr(self))
        path = self.paths[index]
        try:
            with Image.open(path) as image:
                return np.asarray(image.convert("RGB"))
        except (OSError, ValueError, SyntaxError) as error:
            raise FrameReadError(
                f"{path}: cannot read frame {index} of {len(self.paths)}: {error}"
            ) from error

    def __iter__(self) -> Iterator[np.ndarray]:
        for index in range(len(self.paths)):
            yield self[index]


class VideoFileSource:
    """Frames of a video file, decoded on demand.

    Args:
        path: the video file.
        backend: "auto" (decord, PyAV if decord is missing or cannot open the file),
            "decord" or "pyav".
        threads: decoder threads; 0 lets the decoder choose (use 1 inside DataLoader
            workers, which already run in parallel).
    """

    def __init__(
        self, path: str | os.PathLike, *, backend: Backend = "auto", threads: int = 0
    ) -> None:
        if backend not in ("auto", "decord", "pyav"):
            raise ValueError(
                f"VideoFileSource: backend must be auto, decord or pyav, got {backend!r}"
            )
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"video file not found: {self.path}")
        self.backend = backend
        self.threads = threads
        self._reader: _DecordReader | _PyAVReader | None = None
        self._reader_pid: int | None = None
        self._length: int | None = None

    def __repr__(self) -> str:
        return f"VideoFileSource({str(self.path)!r}, backend={self.backend!r})"

    # -- pickling: never ship a decoder to another process
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_reader"] = None
        state["_reader_pid"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    @property
    def backend_in_use(self) -> str | None:
        """ "decord" or "pyav" once a reader is open in this process, else None."""
        reader = self._reader if self._reader_pid == os.getpid() else None
        return None if reader is None else reader.name

    def _open(self, index: int | None) -> _DecordReader | _PyAVReader:
        """The reader of this process, opened on first use."""
        if self._reader is not None and self._reader_pid == os.getpid():
            return self._reader
        if self._reader is not None:
            # Inherited through fork: park it, see _INHERITED_READERS.
            _INHERITED_READERS.append(self._reader)
            self._reader = None
        where = "while counting frames" if index is None else f"for frame {index}"
        reasons = []
        if self.backend in ("auto", "decord"):
            try:
                self._reader = _DecordReader(self.path, self.threads)
            except _RotatedVideo as error:
                # decord turns such videos itself but mislays the pixels of some sizes
                # (4 channels of shifted data at 48x64): PyAV reads them, turned upright
                reasons.append(str(error))
            except ImportError as error:
                if self.backend == "decord":
                    raise FrameReadError(
                        f"{self.path}: backend 'decord' requested but {error}"
                    ) from error
                reasons.append(f"decord is not installed ({error})")
            except Exception as error:  # decord raises DECORDError, RuntimeError, AssertionError
                reasons.append(f"decord: {_first_line(error)}")
                if self.backend == "decord":
                    raise FrameReadError(
                        f"{self.path}: cannot open video {where}: {reasons[-1]}"
                    ) from error
        if self._reader is None:
            try:
                self._reader = _PyAVReader(self.path, self.threads)
            except Exception as error:
                reasons.append(f"PyAV: {_first_line(error)}")
                raise FrameReadError(
                    f"{self.path}: cannot open video {where}: {'; '.join(reasons)}"
                ) from error
            if reasons and (self.backend == "auto" or self._rotated(reasons)):
                warnings.warn(f"{self.path}: {reasons[0]}; reading it with PyAV", stacklevel=3)
        self._reader_pid = os.getpid()
        return self._reader

    @staticmethod
    def _rotated(reasons: list[str]) -> bool:
        return any("display rotation" in reason for reason in reasons)

    def __len__(self) -> int:
        # The reader opened for counting stays open for the reads that follow (a
        # video is opened, and with PyAV demuxed, once); a worker forked afterwards
        # parks it and opens its own, like any reader opened in the parent.
        if self._length is None:
            self._length = len(self._open(None))
        return self._length

    def __getitem__(self, index: int) -> np.ndarray:
        """Frame ``index`` as [H, W, 3] uint8 RGB (negative indices count from the end)."""
        reader = self._open(index if isinstance(index, int) else None)
        index = _check_index(index, len(reader), self.path)
        try:
            return reader.frame(index)
        except FrameReadError:
            raise
        except Exception as error:
            raise FrameReadError(
                f"{self.path}: cannot decode frame {index} of {len(reader)} "
                f"({reader.name}): {_first_line(error)} (corrupt or truncated file?)"
            ) from error

    def __iter__(self) -> Iterator[np.ndarray]:
        """Every frame in order, decoded sequentially (no seeking)."""
        reader = self._open(0)
        yield from reader.stream(self.path)


# --------------------------------------------------------------------------- backends


class _RotatedVideo(Exception):
    """The video has a display rotation, which decord mishandles."""


class _DecordReader:
    name = "decord"

    def __init__(self, path: Path, threads: int) -> None:
        import decord

        turns = _display_turns(path)
        if turns:
            raise _RotatedVideo(
                f"decord misreads videos with a display rotation ({90 * turns} degrees here)"
            )

        # fault_tol=0: fail instead of silently repeating frames decord could not decode.
        self.reader = decord.VideoReader(
            str(path), ctx=decord.cpu(0), num_threads=threads, fault_tol=0
        )

    def __len__(self) -> int:
        return len(self.reader)

    def frame(self, index: int) -> np.ndarray:
        return self.reader[index].asnumpy()

    def stream(self, path: Path) -> Iterator[np.ndarray]:
        for index in range(len(self.reader)):
            try:
                yield self.reader[index].asnumpy()
            except Exception as error:
                raise FrameReadError(
                    f"{path}: cannot decode frame {index} of {len(self.reader)} (decord): "
                    f"{_first_line(error)} (corrupt or truncated file?)"
                ) from error


class _PyAVReader:
    """Random access on top of PyAV: a presentation-timestamp index built by demuxing
    (no decoding), a seek to the keyframe before the target, and decoding forward.
    Reads in increasing order continue decoding without seeking."""

    name = "pyav"
    _FORWARD_WITHOUT_SEEK = 64  # frames: decoding forward is cheaper than a seek this close

    def __init__(self, path: Path, threads: int) -> None:
        import av

        self._container: Any = None  # set first: __del__ runs even when opening fails
        self.path = path
        self.threads = threads
        container = av.open(str(path))
        try:
            if not container.streams.video:
                raise ValueError("the file has no video stream")
            stream = container.streams.video[0]
            declared = stream.frames
            timestamps = [packet.pts for packet in container.demux(stream) if packet.size > 0]
        finally:
            container.close()
        if not timestamps:
            raise ValueError("no video packets could be read")
        self.timestamps = sorted(timestamps) if None not in timestamps else None
        self.readable = len(timestamps)
        # A container that declares more frames than it holds packets for is truncated:
        # keep the declared length (what decord reports) and fail on the missing frames.
        self.length = max(declared, self.readable)
        self._index_of = {pts: i for i, pts in enumerate(self.timestamps or [])}
        self._frames: Iterator[Any] | None = None
        self._next_index = 0

    def __len__(self) -> int:
        return self.length

    def _open_container(self) -> Any:
        import av

        container = av.open(str(self.path))
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if self.threads:
            stream.thread_count = self.threads
        return container

    def frame(self, index: int) -> np.ndarray:
        if index >= self.readable:
            raise FrameReadError(
                f"{self.path}: cannot read frame {index} of {self.length}: the file holds "
                f"only {self.readable} frames (truncated?)"
            )
        ahead = index - self._next_index
        if self._frames is None or not 0 <= ahead < self._FORWARD_WITHOUT_SEEK:
            self._seek(index)
        try:
            for frame in self._frames:
                current = self._frame_index(frame)
                self._next_index = current + 1
                if current == index:
                    return upright(frame)
                if current > index:
                    break
        except BaseException:
            self._frames = None  # the decoder state is unknown: seek afresh next time
            raise
        self._frames = None
        raise FrameReadError(
            f"{self.path}: cannot read frame {index} of {self.length}: the decoder "
            f"stopped before it (corrupt or truncated file?)"
        )

    def _frame_index(self, frame: Any) -> int:
        if self.timestamps is None:
            return self._next_index  # no timestamps: count in presentation order
        try:
            return self._index_of[frame.pts]
        except KeyError:
            raise FrameReadError(
                f"{self.path}: decoded a frame with timestamp {frame.pts} that the demuxer "
                f"did not list (corrupt file?)"
            ) from None

    def _seek(self, index: int) -> None:
        if self._container is not None:
            self._container.close()
        self._container = self._open_container()
        stream = self._container.streams.video[0]
        self._next_index = 0
        if self.timestamps is not None and index > 0:
            # Seek lands on the keyframe at or before the target; decoding goes on from there.
            self._container.seek(self.timestamps[index], stream=stream, backward=True)
            self._next_index = -1  # unknown until the first decoded frame
        self._frames = iter(self._container.decode(stream))

    def stream(self, path: Path) -> Iterator[np.ndarray]:
        container = self._open_container()
        index = 0
        try:
            for frame in container.decode(container.streams.video[0]):
                yield upright(frame)
                index += 1
        except Exception as error:
            raise FrameReadError(
                f"{path}: cannot decode frame {index} of {self.length} (pyav): "
                f"{_first_line(error)} (corrupt or truncated file?)"
            ) from error
        finally:
            container.close()
        if index < self.length:
            raise FrameReadError(
                f"{path}: cannot read frame {index} of {self.length}: the decoder stopped "
                f"(truncated file?)"
            )

    def __del__(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            except Exception:
                pass


def _display_turns(path: Path) -> int:
    """Quarter turns counter-clockwise of a video's display matrix (0 when none, or when
    PyAV cannot tell): read from its first decoded frame."""
    try:
        import av

        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                return (round(getattr(frame, "rotation", 0) or 0) // 90) % 4
    except Exception:  # unreadable: the reader opened next reports it
        return 0
    return 0


def upright(frame: Any) -> np.ndarray:
    """A decoded PyAV frame as [H, W, 3] uint8 RGB, as the video is shown: turned by the
    display matrix a phone writes for a video filmed upright or sideways (PyAV's
    ``frame.rotation``, degrees counter-clockwise; decord applies it itself, so both
    backends give the same picture)."""
    array = frame.to_ndarray(format="rgb24")
    turns = (round(getattr(frame, "rotation", 0) or 0) // 90) % 4
    return np.ascontiguousarray(np.rot90(array, k=turns)) if turns else array


def _check_index(index: Any, length: int, name: Any) -> int:
    if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
        raise TypeError(f"{name}: frame index must be an int, got {type(index).__name__}")
    if not -length <= index < length:
        raise IndexError(f"{name}: frame index {index} out of range for {length} frames")
    return int(index) % length


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"
