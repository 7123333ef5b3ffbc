"""Top-down pose prediction on video clips: frames and person boxes in, keypoints out.

:class:`VideoPosePredictor` is built once from a model (the expensive part: weights on
the device, crop geometry) and then answers cheap calls, one per key frame:

    predictor = build_predictor(model, config, device="cuda")
    result = predictor.predict(clip_frames, boxes)   # keypoints [P, K, 2] in frame pixels

A clip is the key frame and its neighbours at the model's frame offsets (the config's
``data.frame_offsets``, e.g. (-1, 0, 1)). Every frame of the clip is cropped with the
key frame's box (enlarged to the input's aspect ratio and by ``box_padding``), or, for a
model trained with ``data.neighbour_boxes: own``, each frame with the person's own box in
it (``clip_boxes``, found by the caller), exactly as the training clip dataset crops
(``vidpose.data.transforms.warp_frames`` and ``normalize_frames``), so the model sees at
inference what it saw in training. Boxes partly or wholly outside the frame are fine:
the crop is black where the frame is not.

Own-box crops are shared by the clips that contain the same person-frame: with a
:class:`~vidpose.inference.token_cache.TokenCache` (``token_cache()``) each is encoded
by the backbone once, and each clip only fuses cached tokens (``predict(...,
frame_ids=, cache=)``).

Tracking is not done here (see ``vidpose.inference.tracker`` and
``vidpose.inference.extract``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
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
from vidpose.inference.token_cache import TokenCache, cache_key, supports_tokens
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
        neighbour_boxes: how the model's training cropped the neighbour frames
            (``data.neighbour_boxes``): "key" (the key frame's box) or "own" (each
            frame's own box: callers pass ``clip_boxes``, and may reuse tokens).
        reuse_tokens: with "own", let callers encode each person-frame once
            (:meth:`token_cache`); False encodes every clip in full (for comparisons).
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
        neighbour_boxes: str = "key",
        reuse_tokens: bool = True,
    ) -> None:
        offsets = tuple(int(offset) for offset in frame_offsets)
        if 0 not in offsets:
            raise ValueError(f"frame_offsets must include 0 (the key frame), got {list(offsets)}")
        if neighbour_boxes not in ("key", "own"):
            raise ValueError(f"neighbour_boxes must be 'key' or 'own', got {neighbour_boxes!r}")
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
        self.neighbour_boxes = neighbour_boxes
        self.reuse_tokens = reuse_tokens
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

    def crop_clips(
        self,
        frames: Sequence[Frame],
        boxes: npt.ArrayLike,
        clip_boxes: npt.ArrayLike | None = None,
    ) -> torch.Tensor:
        """Model input for people of one key frame.

        Args:
            frames: T frames (uint8 [H, W, 3] RGB arrays or PIL RGB images) in the order
                of ``frame_offsets``.
            boxes: [P, 4] x, y, w, h key-frame boxes (frame pixels).
            clip_boxes: [P, T, 4] the box each frame of each clip is cropped around
                (own-box crops); None: the key box in every frame.

        Returns:
            [P, T, 3, H, W] float32 normalised crops (ImageNet mean/std), on the CPU.
        """
        images = self._images(frames)
        height, width = self.input_size
        if clip_boxes is None:
            affines = self.crop_affines(boxes)  # [P, 2, 3]: one warp per clip
        else:
            affines = self._clip_affines(clip_boxes, len(frames))  # [P, T, 2, 3]
        clips = [
            normalize_frames(warp_frames(images, affine, (width, height))) for affine in affines
        ]
        if not clips:
            return torch.zeros((0, len(frames), 3, height, width))
        return torch.from_numpy(np.stack(clips))

    def _images(self, frames: Sequence[Frame]) -> list[Image.Image]:
        if len(frames) != len(self.frame_offsets):
            raise ValueError(
                f"expected {len(self.frame_offsets)} frames (offsets {list(self.frame_offsets)}), "
                f"got {len(frames)}"
            )
        # PIL images once per frame: converting a frame costs more than warping a crop.
        return [
            frame if isinstance(frame, Image.Image) else Image.fromarray(frame) for frame in frames
        ]

    def _clip_affines(self, clip_boxes: npt.ArrayLike, length: int) -> np.ndarray:
        """[P, T, 2, 3] the crop affine of each frame of each clip from ``clip_boxes``."""
        clip_boxes = np.asarray(clip_boxes, dtype=np.float64)
        if clip_boxes.ndim != 3 or clip_boxes.shape[1:] != (length, 4):
            raise ValueError(
                f"clip_boxes: expected [P, {length}, 4] (a box per person and clip frame), "
                f"got shape {list(clip_boxes.shape)}"
            )
        return self.crop_affines(clip_boxes.reshape(-1, 4)).reshape(-1, length, 2, 3)

    def token_cache(self) -> TokenCache | None:
        """A fresh cache of person-frame tokens for one video, or None where tokens
        cannot be shared: key-box crops differ from clip to clip, ``reuse_tokens`` is
        off, or the model does not split encoding (``supports_tokens``)."""
        if self.neighbour_boxes != "own" or not self.reuse_tokens:
            return None
        return TokenCache() if supports_tokens(self.model) else None

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
            if self.neighbour_boxes != "key":  # (key-box fingerprints stay as they were)
                settings = (*settings, self.neighbour_boxes)
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
        return self._collect(
            self._predict(clips[start : start + self.batch_size].to(self.device, non_blocking=True))
            for start in range(0, len(clips), self.batch_size)
        )

    def _collect(self, answers: Iterable[HeadPrediction]) -> CropPrediction:
        """The batches' answers joined on the CPU (uncertainty where every batch has it)."""
        keypoints, scores, uncertainty = [], [], []
        for answer in answers:
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

    @torch.inference_mode()
    def predict_cached(
        self,
        frames: Sequence[Frame],
        clip_boxes: npt.ArrayLike,
        frame_ids: Sequence[Any],
        cache: TokenCache,
        *,
        seed: int | None = None,
    ) -> CropPrediction:
        """Keypoints in crop pixels, each person-frame's crop encoded once.

        The crops ``cache`` lacks are cut and encoded (``encode_frames``; with the flip
        test their mirror images too) and cached; each clip then fuses its cached tokens
        (``predict_from_tokens``). The answer is :meth:`predict_crops`'s on the same
        crops, up to float rounding (the backbone sees other batches).

        Args:
            frames: T frames, as :meth:`crop_clips`.
            clip_boxes: [P, T, 4] the box each frame of each clip is cropped around.
            frame_ids: T ids of the clip's frames (e.g. frame numbers): a crop is known
                by (frame id, box).
            cache: the video's cache (:meth:`token_cache`).
            seed: as :meth:`predict_crops`.
        """
        images = self._images(frames)
        length = len(images)
        affines = self._clip_affines(clip_boxes, length)
        boxes = np.asarray(clip_boxes, dtype=np.float64)
        keys = [
            [cache_key(frame_ids[i], boxes[person, i]) for i in range(length)]
            for person in range(len(boxes))
        ]
        height, width = self.input_size
        flat_affines = affines.reshape(-1, 2, 3)

        def crops(positions: list[int]) -> torch.Tensor:
            chosen = [images[position % length] for position in positions]
            warped = warp_frames(chosen, flat_affines[positions], (width, height))
            return torch.from_numpy(normalize_frames(warped))

        cache.encode_missing(
            [key for clip in keys for key in clip],
            crops,
            self.model.encode_frames,
            mirrored=self.flip_test,
            batch_size=self.batch_size * length,  # the images of a full-clip batch
            device=self.device,
        )
        if seed is not None:
            self.generator.manual_seed(seed)

        def answers() -> Iterator[HeadPrediction]:
            for start in range(0, len(keys), self.batch_size):
                tokens, mirrored = cache.gather(keys[start : start + self.batch_size])
                yield self._answer(
                    len(tokens),
                    lambda sampling, t=tokens, m=mirrored: self.model.predict_from_tokens(
                        t, mirrored_tokens=m if self.flip_test else None, **sampling
                    ),
                )

        return self._collect(answers())

    def _predict(self, batch: torch.Tensor) -> HeadPrediction:
        # The flip test, when on, is the head's own (heatmap heads average heatmaps,
        # coordinate heads mirror coordinates back): PoseEstimator.predict(flip_test=).
        return self._answer(
            len(batch),
            lambda sampling: self.model.predict(batch, flip_test=self.flip_test, **sampling),
        )

    def _answer(
        self, count: int, predict: Callable[[dict[str, Any]], HeadPrediction]
    ) -> HeadPrediction:
        """``predict(sampling options)`` for ``count`` clips, its keypoints' shape checked."""
        sampling: dict[str, Any] = {"generator": self.generator}
        if self.steps is not None:
            sampling["steps"] = self.steps
        if self.hypotheses is not None:
            sampling["hypotheses"] = self.hypotheses
        answer = predict(sampling)
        expected = (count, self.skeleton.num_joints, 2)
        if tuple(answer.keypoints.shape) != expected:
            raise ValueError(
                f"model.predict returned keypoints of shape {tuple(answer.keypoints.shape)}, "
                f"expected {list(expected)} (batch, joints of the skeleton, x y)"
            )
        return answer

    def predict(
        self,
        frames: Sequence[Frame],
        boxes: npt.ArrayLike,
        *,
        seed: int | None = None,
        clip_boxes: npt.ArrayLike | None = None,
        frame_ids: Sequence[Any] | None = None,
        cache: TokenCache | None = None,
    ) -> PosePrediction:
        """Poses of the people in one key frame.

        Args:
            frames: T frames of one video, uint8 [H, W, 3] RGB (or PIL RGB images), in
                the order of ``frame_offsets`` (the key frame at offset 0); near the video
                ends repeat the first or last frame for offsets that fall outside.
            boxes: [P, 4] x, y, w, h person boxes of the key frame, frame pixels (P may be 0).
            seed: the sampler's seed for this call (None: go on drawing from the
                generator, whose answers then depend on the calls before).
            clip_boxes: [P, T, 4] the box each clip frame is cropped around, for a model
                trained with own-box crops (the key position holds ``boxes``); None:
                the key box in every frame.
            frame_ids: T ids of the clip's frames (e.g. frame numbers), with ``cache``.
            cache: the video's token cache (:meth:`token_cache`): crops it holds are not
                encoded again (:meth:`predict_cached`); needs ``clip_boxes`` and
                ``frame_ids``.

        Returns:
            keypoints [P, K, 2] and scores [P, K] in pixels of the full frame.
        """
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        joints = self.skeleton.num_joints
        if len(boxes) == 0:
            return PosePrediction(np.zeros((0, joints, 2)), np.zeros((0, joints)), boxes, None)
        if (
            cache is not None
            and clip_boxes is not None
            and frame_ids is not None
            and supports_tokens(self.model)
        ):
            crop = self.predict_cached(frames, clip_boxes, frame_ids, cache, seed=seed)
        else:
            crop = self.predict_crops(self.crop_clips(frames, boxes, clip_boxes), seed=seed)
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
        neighbour_boxes=config.data.neighbour_boxes,
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
