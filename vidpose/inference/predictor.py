"""Top-down pose prediction on video clips: frames and person boxes in, keypoints out.

:class:`VideoPosePredictor` is built once from a model (the expensive part: weights on
the device, crop geometry) and then answers cheap calls, one per key frame:

    predictor = build_predictor(model, config, device="cuda")
    result = predictor.predict(clip_frames, boxes)   # keypoints [P, K, 2] in frame pixels

A clip is the key frame and its neighbours at the model's frame offsets (the config's
``data.frame_offsets``, e.g. (-1, 0, 1)). Every frame of the clip is cropped with the
key frame's box (enlarged to the input's aspect ratio and by ``box_padding``), exactly
as the training clip dataset crops (``vidpose.data.transforms.warp_frames`` and
``normalize_frames``), so the model sees at inference what it saw in training. Boxes
partly or wholly outside the frame are fine: the crop is black where the frame is not.

Tracking is not done here (see ``vidpose.inference.tracker`` and
``vidpose.inference.extract``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image

from vidpose.codecs.geometry import (
    box_to_center_scale,
    crop_affine,
    crop_lengths_to_image,
    crop_to_image,
    invert_affine,
)
from vidpose.data.skeleton import Skeleton, get_skeleton
from vidpose.data.transforms import normalize_frames, warp_frames
from vidpose.models.heads.contract import HeadPrediction

if TYPE_CHECKING:
    from vidpose.config import Config

Frame = np.ndarray | Image.Image


class ClipPoseModel(Protocol):
    """What the predictor needs of a model (``vidpose.models.estimator.PoseEstimator``)."""

    def predict(
        self, frames: torch.Tensor, *, flip_test: bool = False, **sampling: Any
    ) -> HeadPrediction:
        """frames [B, T, 3, H, W] normalised crops -> the head contract's answer
        (keypoints [B, K, 2] in input-crop pixels, scores [B, K], optional uncertainty).

        ``sampling`` may hold ``steps``, ``hypotheses`` and ``generator`` (a model
        without random sampling ignores them).
        """
        ...


class CropPrediction(NamedTuple):
    """Poses of B crops in input-crop pixels (``VideoPosePredictor.predict_crops``).

    Attributes:
        keypoints: [B, K, 2] float32 x, y in input-crop pixels.
        scores: [B, K] float32.
        uncertainty: [B, K] float32 input-crop pixels, or None (the head has none).
    """

    keypoints: torch.Tensor
    scores: torch.Tensor
    uncertainty: torch.Tensor | None


@dataclass
class PosePrediction:
    """Poses of the P people of one key frame.

    Attributes:
        keypoints: [P, K, 2] float64 x, y in pixels of the full frame.
        scores: [P, K] float64 per-joint confidences (the head's scores, e.g. heatmap
            maxima, about 0..1).
        boxes: [P, 4] float64 the person boxes the crops were made from (x, y, w, h,
            frame pixels), as given.
        uncertainty: [P, K] float64 per-joint uncertainty in frame pixels (the head's
            expected error, e.g. the spread of a diffusion head's hypotheses), or None
            for heads without one.
    """

    keypoints: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray
    uncertainty: np.ndarray | None = None

    @property
    def num_people(self) -> int:
        return len(self.keypoints)


class VideoPosePredictor:
    """Top-down multi-frame pose predictor (see the module docstring).

    Args:
        model: a module with ``predict(frames [B, T, 3, H, W], flip_test=, **sampling)``
            answering with the head contract (``vidpose.models.estimator.PoseEstimator``);
            it is put in eval mode and moved to ``device``.
        input_size: (H, W) of the model input crop.
        skeleton: joint layout (flip permutation for the flip test, joint count).
        frame_offsets: the clip's frames relative to the key frame, in model order.
        box_padding: enlargement of the (aspect-fixed) box, 1.25 = 25% context.
        device: where the model runs ("cpu", "cuda", "cuda:1", ...).
        steps: sampling steps of a diffusion head (None: the model's default).
        hypotheses: sampling hypotheses of a diffusion head (None: the model's default).
        flip_test: also run on the mirrored crops and merge the answers the head's way.
        batch_size: people per forward pass (a frame with more is split).
        seed: seed of the generator the sampler draws its noise from, when a call
            gives none. ``vidpose.inference.extract`` gives every call its own seed,
            made from the video's name and the frame number (``frame_seed``), so a
            frame's keypoints do not depend on what was predicted before it.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        input_size: tuple[int, int],
        skeleton: Skeleton,
        frame_offsets: Sequence[int],
        box_padding: float = 1.25,
        device: str | torch.device = "cpu",
        steps: int | None = None,
        hypotheses: int | None = None,
        flip_test: bool = False,
        batch_size: int = 32,
        seed: int = 0,
    ) -> None:
        offsets = tuple(int(offset) for offset in frame_offsets)
        if 0 not in offsets:
            raise ValueError(f"frame_offsets must include 0 (the key frame), got {list(offsets)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self._input_size = (int(input_size[0]), int(input_size[1]))
        self.skeleton = skeleton
        self.frame_offsets = offsets
        self.box_padding = box_padding
        self.steps = steps
        self.hypotheses = hypotheses
        self.flip_test = flip_test
        self.batch_size = batch_size
        self.generator = torch.Generator(device=self.device).manual_seed(seed)

    @property
    def input_size(self) -> tuple[int, int]:
        """(H, W) of the model input crop."""
        return self._input_size

    def crop_affines(self, boxes: npt.ArrayLike) -> np.ndarray:
        """[P, 2, 3] frame pixels -> crop pixels for boxes [P, 4] x, y, w, h (frame pixels)."""
        height, width = self.input_size
        centers, scales = box_to_center_scale(
            np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
            aspect_ratio=width / height,
            padding=self.box_padding,
        )
        affines = [
            crop_affine(center, scale, output_size=(width, height))
            for center, scale in zip(centers, np.maximum(scales, 1e-3), strict=True)
        ]
        return np.stack(affines) if affines else np.zeros((0, 2, 3))

    def crop_clips(self, frames: Sequence[Frame], boxes: npt.ArrayLike) -> torch.Tensor:
        """Model input for people of one key frame.

        Args:
            frames: T frames (uint8 [H, W, 3] RGB arrays or PIL RGB images) in the order
                of ``frame_offsets``.
            boxes: [P, 4] x, y, w, h key-frame boxes (frame pixels).

        Returns:
            [P, T, 3, H, W] float32 normalised crops (ImageNet mean/std), on the CPU.
        """
        if len(frames) != len(self.frame_offsets):
            raise ValueError(
                f"expected {len(self.frame_offsets)} frames (offsets {list(self.frame_offsets)}), "
                f"got {len(frames)}"
            )
        height, width = self.input_size
        # PIL images once per frame: converting a frame costs more than warping a crop.
        images = [
            frame if isinstance(frame, Image.Image) else Image.fromarray(frame) for frame in frames
        ]
        clips = [
            normalize_frames(warp_frames(images, affine, (width, height)))
            for affine in self.crop_affines(boxes)
        ]
        if not clips:
            return torch.zeros((0, len(frames), 3, height, width))
        return torch.from_numpy(np.stack(clips))

    def fingerprint(self) -> str:
        """SHA-256 (hex) of what decides this predictor's answers: the model's weights
        and buffers and the sampling and crop settings (computed once; the extraction's
        ``.done`` marker records it, so outputs of another model are not kept)."""
        if getattr(self, "_fingerprint", None) is None:
            digest = hashlib.sha256()
            settings = (
                self.input_size,
                self.frame_offsets,
                self.box_padding,
                self.steps,
                self.hypotheses,
                self.flip_test,
                self.skeleton.name,
            )
            digest.update(repr(settings).encode())
            for name, tensor in self.model.state_dict().items():
                digest.update(name.encode())
                data = tensor.detach().cpu().contiguous()
                digest.update(str(data.dtype).encode() + repr(tuple(data.shape)).encode())
                digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    @torch.inference_mode()
    def predict_crops(self, clips: torch.Tensor, *, seed: int | None = None) -> CropPrediction:
        """Keypoints in crop pixels from ready-made crops.

        Args:
            clips: [B, T, 3, H, W] normalised crops (``crop_clips``).
            seed: reseed the sampler's generator first (None: go on drawing from it).

        Returns:
            keypoints [B, K, 2] float32 x, y in input-crop pixels, scores [B, K] float32,
            and the uncertainty [B, K] (input-crop pixels) when the head has one.
        """
        if seed is not None:
            self.generator.manual_seed(seed)
        keypoints, scores, uncertainty = [], [], []
        for start in range(0, len(clips), self.batch_size):
            batch = clips[start : start + self.batch_size].to(self.device, non_blocking=True)
            answer = self._predict(batch)
            keypoints.append(answer.keypoints.float().cpu())
            scores.append(answer.scores.float().cpu())
            if answer.uncertainty is not None:
                uncertainty.append(answer.uncertainty.float().cpu())
        joints = self.skeleton.num_joints
        if not keypoints:
            return CropPrediction(torch.zeros((0, joints, 2)), torch.zeros((0, joints)), None)
        return CropPrediction(
            torch.cat(keypoints),
            torch.cat(scores),
            torch.cat(uncertainty) if len(uncertainty) == len(keypoints) else None,
        )

    def _predict(self, batch: torch.Tensor) -> HeadPrediction:
        sampling: dict[str, Any] = {"generator": self.generator}
        if self.steps is not None:
            sampling["steps"] = self.steps
        if self.hypotheses is not None:
            sampling["hypotheses"] = self.hypotheses
        # The flip test, when on, is the head's own (heatmap heads average heatmaps,
        # coordinate heads mirror coordinates back): PoseEstimator.predict(flip_test=).
        answer = self.model.predict(batch, flip_test=self.flip_test, **sampling)
        expected = (len(batch), self.skeleton.num_joints, 2)
        if tuple(answer.keypoints.shape) != expected:
            raise ValueError(
                f"model.predict returned keypoints of shape {tuple(answer.keypoints.shape)}, "
                f"expected {list(expected)} (batch, joints of the skeleton, x y)"
            )
        return answer

    def predict(
        self, frames: Sequence[Frame], boxes: npt.ArrayLike, *, seed: int | None = None
    ) -> PosePrediction:
        """Poses of the people in one key frame.

        Args:
            frames: T frames of one video, uint8 [H, W, 3] RGB (or PIL RGB images), in
                the order of ``frame_offsets`` (the key frame at offset 0); near the video
                ends repeat the first or last frame for offsets that fall outside.
            boxes: [P, 4] x, y, w, h person boxes of the key frame, frame pixels (P may be 0).
            seed: the sampler's seed for this call (None: go on drawing from the
                generator, whose answers then depend on the calls before).

        Returns:
            keypoints [P, K, 2] and scores [P, K] in pixels of the full frame.
        """
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        joints = self.skeleton.num_joints
        if len(boxes) == 0:
            return PosePrediction(np.zeros((0, joints, 2)), np.zeros((0, joints)), boxes, None)
        clips = self.crop_clips(frames, boxes)
        crop = self.predict_crops(clips, seed=seed)
        inverse = np.stack([invert_affine(affine) for affine in self.crop_affines(boxes)])
        keypoints = crop_to_image(crop.keypoints.double().numpy(), inverse)
        uncertainty = None
        if crop.uncertainty is not None:
            uncertainty = crop_lengths_to_image(crop.uncertainty.double().numpy(), inverse)
        return PosePrediction(keypoints, crop.scores.double().numpy(), boxes, uncertainty)


def build_predictor(
    model: torch.nn.Module,
    config: Config,
    *,
    device: str | torch.device = "cpu",
    steps: int | None = None,
    hypotheses: int | None = None,
    flip_test: bool | None = None,
    batch_size: int | None = None,
) -> VideoPosePredictor:
    """A predictor for ``model`` with the crop geometry of ``config``.

    Args:
        model: built by ``vidpose.models.build.build_model(config)``, weights loaded.
        config: the model's experiment config (``data`` gives offsets, input size and
            padding; ``test`` gives the defaults below).
        device: where the model runs.
        steps, hypotheses: sampler settings (None: ``config.test``, then the model's).
        flip_test: None: ``config.test.flip_test``.
        batch_size: None: ``config.test.batch_size``.
    """
    return VideoPosePredictor(
        model,
        input_size=config.data.input_size,
        skeleton=get_skeleton(config.data.skeleton),
        frame_offsets=config.data.frame_offsets,
        box_padding=config.data.box_padding,
        device=device,
        steps=steps if steps is not None else config.test.steps,
        hypotheses=hypotheses if hypotheses is not None else config.test.hypotheses,
        flip_test=config.test.flip_test if flip_test is None else flip_test,
        batch_size=batch_size or config.test.batch_size,
    )


def load_estimator(
    checkpoint: str | Path, *, config: str | Path | None = None, overrides: Sequence[str] = ()
) -> tuple[torch.nn.Module, Config]:
    """The model of a vidpose checkpoint, weights loaded, on the CPU in eval mode.

    Args:
        checkpoint: a ``.safetensors`` file written by ``vidpose.checkpoint``.
        config: a YAML config replacing the one stored in the checkpoint (for checkpoints
            without one, or to change inference settings such as ``test.flip_test``).
        overrides: ``key=value`` overrides applied to ``config`` (only with ``config``).

    Returns:
        (model, config). The EMA weights are used when the checkpoint has them (they are
        what validation measured when EMA was on).

    Raises:
        FileNotFoundError: the checkpoint or config file is missing.
        ValueError: the checkpoint is not a vidpose checkpoint, holds no config and none
            was given, or its weights do not fit the model the config describes.
    """
    from vidpose.checkpoint import load_checkpoint
    from vidpose.config import Config, from_dict, load_config
    from vidpose.models.build import build_model

    checkpoint = Path(checkpoint)
    saved = load_checkpoint(checkpoint)
    if config is not None:
        resolved = load_config(config, list(overrides))
    elif saved.config is not None:
        resolved = from_dict(Config, saved.config, source=str(checkpoint))
    else:
        raise ValueError(
            f"{checkpoint}: the checkpoint holds no config; pass the experiment YAML it was "
            f"trained with (--config)"
        )
    model = build_model(resolved)
    weights = saved.ema if saved.ema else saved.model
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as error:
        raise ValueError(
            f"{checkpoint}: the weights do not fit the model of "
            f"{config if config is not None else 'its stored config'}: {error}"
        ) from None
    return model.eval(), resolved
