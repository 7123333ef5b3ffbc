"""Fixtures for the extraction tests: stand-in models, tiny videos, a tiny checkpoint."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from vidpose.codecs.heatmap import HeatmapCodec
from vidpose.data.skeleton import POSETRACK
from vidpose.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from vidpose.inference.predictor import VideoPosePredictor
from vidpose.models.estimator import predict_with_flip
from vidpose.models.heads.contract import (
    HeadPrediction,
    merge_flipped_coordinates,
    merge_flipped_heatmaps,
)

REPO = Path(__file__).resolve().parents[2]
TINY_CONFIG = REPO / "configs" / "synthetic_tiny.yaml"

# A small crop keeps the stand-in models fast; the real tiny config uses 128 x 96.
FAKE_INPUT = (64, 48)
FAKE_HEATMAP = (16, 12)

# Joint positions of a standing person inside the crop, as fractions of (W, H):
# head at the top, ankles at the bottom, left joints on the crop's right.
_TEMPLATE = np.array(
    [
        [0.50, 0.18], [0.50, 0.24], [0.50, 0.12], [0.55, 0.16], [0.45, 0.16],
        [0.62, 0.30], [0.38, 0.30], [0.66, 0.44], [0.34, 0.44], [0.68, 0.56],
        [0.32, 0.56], [0.58, 0.58], [0.42, 0.58], [0.58, 0.72], [0.42, 0.72],
        [0.58, 0.86], [0.42, 0.86],
    ]
)  # fmt: skip


def crop_intensities(frames: torch.Tensor) -> torch.Tensor:
    """[B, T, 3, H, W] normalised crops -> [B, T] RGB value (0..255) at the crop centre."""
    height, width = frames.shape[-2:]
    centre = frames[..., height // 2, width // 2]  # [B, T, 3]
    return (centre * torch.as_tensor(IMAGENET_STD) + torch.as_tensor(IMAGENET_MEAN)).mean(-1) * 255


class FakeModel(torch.nn.Module):
    """Stands in for PoseEstimator.predict: poses at known crop positions, answered with
    the head contract (``HeadPrediction``).

    kind "template": every person gets the same standing pose inside its crop, so the
    keypoints move with the box. kind "dot": every joint sits on the brightest pixel of
    the key frame's crop, so the keypoints show where the crop really looked.
    uncertainty: a per-joint uncertainty of that many crop pixels for every joint.
    answer "heatmaps": Gaussian heatmaps at those points, decoded by the codec (a
    heatmap head; the flip test averages heatmaps); "coordinates": the points
    themselves (a regression head; the flip test mirrors coordinates). The flip test
    is the library's (``predict_with_flip`` and the contract's merge functions).
    Records the batch sizes and the crops' mean intensities ([B, T]) of every call.
    """

    def __init__(
        self,
        kind: str,
        codec: HeatmapCodec,
        key_index: int,
        answer: str = "heatmaps",
        uncertainty: float | None = None,
    ) -> None:
        super().__init__()
        self.kind = kind
        self.codec = codec
        self.key_index = key_index
        self.answer = answer
        self.uncertainty = uncertainty
        self.batch_sizes: list[int] = []
        self.intensities: list[np.ndarray] = []
        self.weight = torch.nn.Parameter(torch.zeros(1))  # so .to(device) has a parameter

    def predict(self, frames: torch.Tensor, flip_test: bool = False, **sampling) -> HeadPrediction:
        if flip_test:
            return predict_with_flip(
                self._predict_once, frames, head=self, flip_permutation=POSETRACK.flip_permutation
            )
        return self._predict_once(frames)

    def merge_flipped(self, prediction, mirrored, flip_permutation) -> HeadPrediction:
        if self.answer == "heatmaps":
            return merge_flipped_heatmaps(prediction, mirrored, flip_permutation, codec=self.codec)
        return merge_flipped_coordinates(
            prediction, mirrored, flip_permutation, input_width=self.codec.input_size[1]
        )

    def _predict_once(self, frames: torch.Tensor) -> HeadPrediction:
        self.batch_sizes.append(len(frames))
        self.intensities.append(crop_intensities(frames).numpy())
        height, width = self.codec.input_size
        all_points = []
        for clip in frames:
            if self.kind == "template":
                points = _TEMPLATE * [width - 1, height - 1]
            else:
                brightness = clip[self.key_index].sum(0)
                flat = int(brightness.argmax())
                points = np.tile([flat % width, flat // width], (17, 1)).astype(float)
            all_points.append(points)
        uncertainty = None
        if self.uncertainty is not None:
            uncertainty = torch.full((len(frames), 17), float(self.uncertainty))
        if self.answer == "coordinates":
            keypoints = torch.as_tensor(np.stack(all_points), dtype=torch.float32)
            return HeadPrediction(
                keypoints=keypoints, scores=torch.ones(keypoints.shape[:2]), uncertainty=uncertainty
            )
        heatmaps = torch.stack(
            [
                torch.from_numpy(self.codec.encode(points, np.ones(17, bool))[0])
                for points in all_points
            ]
        )
        keypoints, scores = self.codec.decode(heatmaps)
        return HeadPrediction(
            keypoints=keypoints, scores=scores, heatmaps=heatmaps, uncertainty=uncertainty
        )


@pytest.fixture
def make_predictor() -> Callable[..., VideoPosePredictor]:
    """make_predictor(kind="template", offsets=(-1, 0, 1), answer="heatmaps",
    uncertainty=None, **kwargs) with a FakeModel."""

    def make(
        kind: str = "template",
        offsets: Sequence[int] = (-1, 0, 1),
        answer: str = "heatmaps",
        uncertainty: float | None = None,
        **kwargs,
    ) -> VideoPosePredictor:
        codec = HeatmapCodec(input_size=FAKE_INPUT, heatmap_size=FAKE_HEATMAP, sigma=1.0)
        model = FakeModel(
            kind, codec, key_index=list(offsets).index(0), answer=answer, uncertainty=uncertainty
        )
        return VideoPosePredictor(
            model, input_size=FAKE_INPUT, skeleton=POSETRACK, frame_offsets=offsets, **kwargs
        )

    return make


def write_video(
    path: Path, frames: Sequence[np.ndarray], *, fps: int = 10, faststart: bool = False
) -> Path:
    """H.264 mp4 of [H, W, 3] uint8 frames (faststart puts the index first, so a
    truncated copy stays openable and breaks off mid-stream)."""
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "12", "preset": "ultrafast"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def draw_person(canvas: ImageDraw.ImageDraw, box: np.ndarray, colour: tuple) -> None:
    """A stick figure filling box [x, y, w, h]."""
    x, y, w, h = box
    cx = x + w / 2
    canvas.ellipse((cx - w * 0.15, y, cx + w * 0.15, y + h * 0.2), fill=colour)
    canvas.line((cx, y + h * 0.2, cx, y + h * 0.6), fill=colour, width=3)
    canvas.line((x, y + h * 0.35, x + w, y + h * 0.35), fill=colour, width=3)
    canvas.line((cx, y + h * 0.6, x + w * 0.1, y + h), fill=colour, width=3)
    canvas.line((cx, y + h * 0.6, x + w * 0.9, y + h), fill=colour, width=3)


def crossing_scene(frames: int = 24, size: tuple[int, int] = (160, 96)):
    """Two stick figures walking towards each other and crossing mid-video.

    Returns:
        images: list of [H, W, 3] uint8; boxes: [frames, 2, 4] x, y, w, h per person
        (person 0 walks right, person 1 walks left).
    """
    width, height = size
    step = (width - 40) / (frames - 1)
    images, boxes = [], []
    for index in range(frames):
        people = np.array([[8 + step * index, 16, 24, 64], [width - 32 - step * index, 18, 24, 64]])
        image = Image.new("RGB", size, (30, 30, 30))
        canvas = ImageDraw.Draw(image)
        draw_person(canvas, people[0], (230, 80, 80))
        draw_person(canvas, people[1], (80, 160, 230))
        images.append(np.asarray(image))
        boxes.append(people)
    return images, np.stack(boxes)


@pytest.fixture
def crossing(tmp_path) -> tuple[list[np.ndarray], np.ndarray, Path]:
    """(frames, boxes [F, 2, 4], mp4 file) of two people crossing (``crossing_scene``)."""
    images, boxes = crossing_scene()
    return images, boxes, write_video(tmp_path / "crossing.mp4", images)


@pytest.fixture
def write_mp4() -> Callable[..., Path]:
    """``write_video(path, frames, fps=10, faststart=False)``."""
    return write_video


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint of the real tiny diffusion model (random weights) with its config."""
    from vidpose.checkpoint import Checkpoint, save_checkpoint
    from vidpose.config import load_config, to_dict
    from vidpose.models.build import build_model

    config = load_config(TINY_CONFIG)
    torch.manual_seed(0)
    model = build_model(config)
    path = tmp_path_factory.mktemp("checkpoint") / "tiny.safetensors"
    return save_checkpoint(Checkpoint(model=model.state_dict(), config=to_dict(config)), path)
