"""H.264 mp4 writing through PyAV (OpenCV's builds here cannot encode H.264); the
counterpart of ``vidpose.data.frames``, which reads them. The synthetic generator, the
extraction overlay and the search animations all write through it.

Usage::

    with VideoWriter("out.mp4", fps=25) as writer:
        for frame in frames:          # [H, W, 3] uint8 RGB
            writer.write(frame)

The file appears under its final name only when the writer closes without an error:
frames go to a temporary file next to it that is renamed at the end (and deleted if
the ``with`` block raises), so an interrupted run never leaves a truncated video that
looks complete.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np


class VideoWriter:
    """Writes RGB frames to an H.264 (libx264, yuv420p) mp4 file.

    Args:
        path: the ``.mp4`` file to create (parent folders are created).
        fps: frames per second (a fraction such as 30000/1001 is kept exactly).
        crf: x264 constant rate factor: 0 lossless, 18 visually lossless, 23 default.
        preset: x264 speed/size trade-off ("ultrafast" ... "veryslow").

    The size is taken from the first frame; every later frame must have the same size.
    yuv420p needs even width and height, so an odd-sized frame gets its last row or
    column repeated (the picture is never cropped or rescaled).
    """

    def __init__(
        self, path: str | os.PathLike, *, fps: float = 25.0, crf: int = 18, preset: str = "medium"
    ) -> None:
        if fps <= 0:
            raise ValueError(f"VideoWriter: fps must be positive, got {fps}")
        self.path = Path(path)
        self.fps = fps
        self.crf = crf
        self.preset = preset
        self.frame_count = 0
        self.size: tuple[int, int] | None = None  # height, width of the input frames
        self._temporary = self.path.with_name(f".{self.path.stem}.{os.getpid()}.tmp.mp4")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self._temporary), mode="w")
        self._stream = None
        self._closed = False

    def write(self, frame: np.ndarray) -> None:
        """Append one frame: [H, W, 3] uint8 RGB."""
        if self._closed:
            raise ValueError(f"VideoWriter({self.path}): write() after close()")
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(
                f"VideoWriter({self.path}): expected an [H, W, 3] uint8 RGB frame, got "
                f"shape {frame.shape} dtype {frame.dtype}"
            )
        if self._stream is None:
            self._open_stream(frame.shape[0], frame.shape[1])
        elif frame.shape[:2] != self.size:
            raise ValueError(
                f"VideoWriter({self.path}): frame {self.frame_count} is "
                f"{frame.shape[1]}x{frame.shape[0]}, expected {self.size[1]}x{self.size[0]} "
                "like the first frame"
            )
        padded = np.pad(
            frame, ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0)), mode="edge"
        )
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(padded), format="rgb24")
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)
        self.frame_count += 1

    def close(self) -> Path:
        """Flush the encoder and move the file to its final name. Returns the path."""
        if self._closed:
            return self.path
        self._closed = True
        if self._stream is None:
            self._container.close()
            self._temporary.unlink(missing_ok=True)
            raise ValueError(f"VideoWriter({self.path}): no frame was written, no video created")
        for packet in self._stream.encode():  # flush delayed frames
            self._container.mux(packet)
        self._container.close()
        os.replace(self._temporary, self.path)
        return self.path

    def abort(self) -> None:
        """Stop without producing the file (the temporary file is deleted)."""
        if not self._closed:
            self._closed = True
            self._container.close()
        self._temporary.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _open_stream(self, height: int, width: int) -> None:
        self.size = (height, width)
        rate = Fraction(self.fps).limit_denominator(1001)
        stream = self._container.add_stream("libx264", rate=rate)
        stream.width = width + width % 2
        stream.height = height + height % 2
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(self.crf), "preset": self.preset}
        self._stream = stream
