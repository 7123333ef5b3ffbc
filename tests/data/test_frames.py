"""Frame sources: both video backends, clear errors, pickling, forked DataLoader workers."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from vidpose.data.frames import (
    FrameReadError,
    ImageFolderSource,
    VideoFileSource,
    open_frames,
)

NUM_FRAMES = 12
WIDTH, HEIGHT = 64, 48


def grey_level(index: int) -> int:
    return 10 + 20 * index


def write_video(path: Path, *, faststart: bool = False) -> Path:
    """A small H.264 mp4 whose frame i is a flat grey of level grey_level(i)."""
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream("libx264", rate=10, options={"g": "4"})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for index in range(NUM_FRAMES):
            pixels = np.full((HEIGHT, WIDTH, 3), grey_level(index), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4")


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_video_backends_read_every_frame(video: Path, backend: str) -> None:
    source = VideoFileSource(video, backend=backend)
    assert len(source) == NUM_FRAMES
    # Random access in a scrambled order (forces seeks backwards and forwards).
    for index in [5, 0, 11, 3, 4, 9, 1, -1]:
        frame = source[index]
        assert frame.shape == (HEIGHT, WIDTH, 3) and frame.dtype == np.uint8
        assert abs(float(frame.mean()) - grey_level(index % NUM_FRAMES)) < 3
    assert source.backend_in_use == backend
    streamed = list(source)
    assert len(streamed) == NUM_FRAMES
    np.testing.assert_array_equal(streamed[7], source[7])


def test_backends_agree(video: Path) -> None:
    decord_source = VideoFileSource(video, backend="decord")
    pyav_source = VideoFileSource(video, backend="pyav")
    assert len(decord_source) == len(pyav_source)
    for index in (0, 6, NUM_FRAMES - 1):
        difference = np.abs(decord_source[index].astype(int) - pyav_source[index].astype(int))
        assert difference.max() <= 2


def test_falls_back_to_pyav_without_decord(video: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "decord", None)  # makes `import decord` fail
    source = VideoFileSource(video)
    with pytest.warns(UserWarning, match="decord is not installed"):
        assert abs(float(source[2].mean()) - grey_level(2)) < 3
    assert source.backend_in_use == "pyav"


@pytest.mark.filterwarnings("ignore:.*reading it with PyAV")
@pytest.mark.parametrize("faststart", [False, True])
def test_truncated_video_names_file_and_frame(tmp_path: Path, faststart: bool) -> None:
    full = write_video(tmp_path / "full.mp4", faststart=faststart).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full[: len(full) * 2 // 3])
    source = VideoFileSource(cut)
    with pytest.raises(FrameReadError) as caught:
        source[NUM_FRAMES - 1]
    message = str(caught.value)
    assert str(cut) in message and f"frame {NUM_FRAMES - 1}" in message


def test_missing_files_raise_clear_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.mp4"
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        VideoFileSource(missing)
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        open_frames(missing)
    source = ImageFolderSource([tmp_path / "000000.jpg"])
    with pytest.raises(FrameReadError, match=r"000000\.jpg: cannot read frame 0 of 1"):
        source[0]


def test_corrupt_image_names_file_and_frame(tmp_path: Path) -> None:
    good = tmp_path / "000000.png"
    Image.new("RGB", (8, 6), (1, 2, 3)).save(good)
    bad = tmp_path / "000001.jpg"
    bad.write_bytes(b"not a jpeg at all")
    source = open_frames(tmp_path)
    assert isinstance(source, ImageFolderSource) and len(source) == 2
    assert source[0].shape == (6, 8, 3) and tuple(source[0][0, 0]) == (1, 2, 3)
    with pytest.raises(FrameReadError, match=r"000001\.jpg: cannot read frame 1 of 2"):
        source[1]


def test_open_frames_picks_the_source(tmp_path: Path, video: Path) -> None:
    for index in (2, 0, 1):
        Image.new("RGB", (4, 4), (index, 0, 0)).save(tmp_path / f"{index:06d}.png")
    folder = open_frames(tmp_path)
    assert [int(frame[0, 0, 0]) for frame in folder] == [0, 1, 2]  # sorted by name
    assert isinstance(open_frames(video), VideoFileSource)


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_pickle_round_trip_of_an_open_source(video: Path, backend: str) -> None:
    source = VideoFileSource(video, backend=backend)
    expected = source[4]  # opens the reader
    assert source.backend_in_use == backend
    restored = pickle.loads(pickle.dumps(source))
    assert restored.backend_in_use is None  # the reader was not shipped
    np.testing.assert_array_equal(restored[4], expected)
    assert len(restored) == NUM_FRAMES


class _FrameDataset(torch.utils.data.Dataset):
    def __init__(self, source: VideoFileSource) -> None:
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(self.source[index])


def test_forked_dataloader_workers_read_frames(video: Path) -> None:
    source = VideoFileSource(video, backend="auto", threads=1)
    expected = np.stack([source[index] for index in range(NUM_FRAMES)])  # parent reader open
    loader = torch.utils.data.DataLoader(
        _FrameDataset(source),
        batch_size=3,
        num_workers=2,
        multiprocessing_context="fork",
        timeout=120,  # a worker stuck on an inherited decoder fails instead of hanging
    )
    frames = torch.cat(list(loader)).numpy()
    np.testing.assert_array_equal(frames, expected)


def test_counting_then_streaming_opens_the_video_once(
    video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vidpose.data.frames as frames_module

    opened = []
    real = frames_module._DecordReader

    def counting_reader(*args, **kwargs):
        opened.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(frames_module, "_DecordReader", counting_reader)
    source = VideoFileSource(video, backend="decord")
    assert len(source) == NUM_FRAMES
    assert sum(1 for _ in source) == NUM_FRAMES
    assert len(opened) == 1
