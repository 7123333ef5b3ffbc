"""VideoWriter: H.264 mp4 through PyAV, read back frame by frame."""

from __future__ import annotations

import av
import numpy as np
import pytest

from vidpose.data.video_writer import VideoWriter


def read_back(path) -> tuple[list[np.ndarray], str, str]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        return frames, stream.codec_context.name, stream.codec_context.pix_fmt


def test_writes_every_frame_as_h264(tmp_path):
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (128, 128, 128), (250, 250, 20)]
    path = tmp_path / "sub/clip.mp4"
    with VideoWriter(path, fps=10) as writer:
        for colour in colours:
            writer.write(np.full((48, 64, 3), colour, dtype=np.uint8))
    assert writer.frame_count == 5
    frames, codec, pixel_format = read_back(path)
    assert (codec, pixel_format) == ("h264", "yuv420p")
    assert len(frames) == 5 and frames[0].shape == (48, 64, 3)
    for frame, colour in zip(frames, colours, strict=True):
        np.testing.assert_allclose(frame.reshape(-1, 3).mean(axis=0), colour, atol=6)
    assert list(tmp_path.glob("sub/.*tmp*")) == []


def test_odd_sizes_are_padded_not_cropped(tmp_path):
    frame = np.zeros((21, 33, 3), dtype=np.uint8)
    frame[:, -1] = 255  # the last column must survive
    with VideoWriter(tmp_path / "odd.mp4") as writer:
        writer.write(frame)
        writer.write(frame)
    frames, _, _ = read_back(tmp_path / "odd.mp4")
    assert len(frames) == 2 and frames[0].shape == (22, 34, 3)
    assert frames[0][:, 32].mean() > 200 and frames[0][:, 28].mean() < 30


def test_failure_leaves_no_file(tmp_path):
    path = tmp_path / "broken.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(path) as writer:
            writer.write(np.zeros((16, 16, 3), dtype=np.uint8))
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_invalid_frames(tmp_path):
    writer = VideoWriter(tmp_path / "v.mp4")
    with pytest.raises(ValueError, match=r"expected an \[H, W, 3\] uint8 RGB frame"):
        writer.write(np.zeros((16, 16, 3), dtype=np.float32))
    writer.write(np.zeros((16, 16, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="frame 1 is 20x16, expected 16x16"):
        writer.write(np.zeros((16, 20, 3), dtype=np.uint8))
    writer.close()
    with pytest.raises(ValueError, match="write\\(\\) after close\\(\\)"):
        writer.write(np.zeros((16, 16, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="no frame was written"):
        VideoWriter(tmp_path / "empty.mp4").close()
    assert not (tmp_path / "empty.mp4").exists()
