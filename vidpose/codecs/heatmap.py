"""Keypoint <-> heatmap codec: one object encodes training targets and decodes predictions.

Frames of reference (see ``vidpose.codecs.geometry`` for the pixel convention):

- *input pixels*: pixels of the model input crop, H x W (256 x 192 by default);
- *heatmap pixels*: pixels of the heatmap grid, h x w (64 x 48 by default).

The two encodings differ only in how input pixels map to heatmap pixels:

- ``"gaussian"`` (HRNet / SimpleBaseline): heatmap = input * w / W, the convention
  of most published checkpoints;
- ``"udp"`` (Huang et al., "The Devil is in the Details: Delving into Unbiased Data
  Processing for Human Pose Estimation", CVPR 2020): heatmap = input * (w - 1) / (W - 1),
  so the first and last pixel centres of both grids coincide. A horizontal flip of
  the input is then exactly a flip of the heatmap; with ``"gaussian"`` the flipped
  heatmap is off by 1 - w / W heatmap pixels, which ``flip_heatmaps`` corrects.

Both encodings draw the Gaussian at the exact sub-pixel position (no rounding to the
grid, the "unbiased encoding" of Zhang et al., "Distribution-Aware Coordinate
Representation for Human Pose Estimation", CVPR 2020, section 3.2), and both decode
with the DARK sub-pixel refinement of the same paper (``refine="dark"``) or, for the
plain baseline of a comparison, with the integer argmax alone (``refine="none"``; the
choice is a decoding option: a trained model switches without retraining).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from vidpose.codecs.geometry import inside_crop

if TYPE_CHECKING:
    from vidpose.config import DataConfig

Encoding = Literal["gaussian", "udp"]
Refinement = Literal["dark", "none"]


class HeatmapCodec:
    """Encode keypoints into Gaussian heatmaps and decode heatmaps into keypoints.

    Args:
        input_size: (H, W) of the model input crop in pixels.
        heatmap_size: (h, w) of the heatmap grid.
        sigma: standard deviation of the target Gaussian, in heatmap pixels.
        encoding: "gaussian" (scale W / w) or "udp" (scale (W - 1) / (w - 1)).
        blur_sigma: standard deviation of the smoothing DARK applies before taking the
            log; None = ``sigma`` (the paper modulates with the target's own kernel);
            0 disables smoothing (exact for clean Gaussian maps, brittle on network output).
        refine: sub-pixel refinement of the argmax in :meth:`decode`: "dark" (DARK's
            Taylor step) or "none" (the integer argmax: the quantised decoding whose
            error grows with the heatmap stride).
    """

    def __init__(
        self,
        *,
        input_size: tuple[int, int],
        heatmap_size: tuple[int, int],
        sigma: float = 2.0,
        encoding: Encoding = "gaussian",
        blur_sigma: float | None = None,
        refine: Refinement = "dark",
    ) -> None:
        if encoding not in ("gaussian", "udp"):
            raise ValueError(
                f"HeatmapCodec: encoding must be 'gaussian' or 'udp', got {encoding!r}"
            )
        if refine not in ("dark", "none"):
            raise ValueError(f"HeatmapCodec: refine must be 'dark' or 'none', got {refine!r}")
        if sigma <= 0:
            raise ValueError(f"HeatmapCodec: sigma must be positive, got {sigma}")
        if min(*input_size, *heatmap_size) < 2:
            raise ValueError(
                f"HeatmapCodec: input_size {tuple(input_size)} and heatmap_size "
                f"{tuple(heatmap_size)} must be at least 2 x 2"
            )
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.heatmap_size = (int(heatmap_size[0]), int(heatmap_size[1]))
        self.sigma = float(sigma)
        self.encoding: Encoding = encoding
        self.blur_sigma = self.sigma if blur_sigma is None else float(blur_sigma)
        self.refine: Refinement = refine
        in_h, in_w = self.input_size
        map_h, map_w = self.heatmap_size
        if encoding == "udp":
            # UDP: align the first and last pixel centres (Huang et al. 2020, section 3.2).
            self._input_to_map = np.array([(map_w - 1) / (in_w - 1), (map_h - 1) / (in_h - 1)])
        else:
            self._input_to_map = np.array([map_w / in_w, map_h / in_h])

    def __repr__(self) -> str:
        return (
            f"HeatmapCodec(input_size={self.input_size}, heatmap_size={self.heatmap_size}, "
            f"sigma={self.sigma}, encoding={self.encoding!r}, blur_sigma={self.blur_sigma}, "
            f"refine={self.refine!r})"
        )

    # ------------------------------------------------------------------ coordinates

    def input_to_heatmap(self, points: npt.ArrayLike | torch.Tensor) -> np.ndarray | torch.Tensor:
        """[..., 2] input pixels -> [..., 2] heatmap pixels (torch in, torch out)."""
        if isinstance(points, torch.Tensor):
            return points * torch.as_tensor(
                self._input_to_map, dtype=points.dtype, device=points.device
            )
        return np.asarray(points, dtype=np.float64) * self._input_to_map

    def heatmap_to_input(self, points: npt.ArrayLike | torch.Tensor) -> np.ndarray | torch.Tensor:
        """[..., 2] heatmap pixels -> [..., 2] input pixels (torch in, torch out)."""
        if isinstance(points, torch.Tensor):
            return points / torch.as_tensor(
                self._input_to_map, dtype=points.dtype, device=points.device
            )
        return np.asarray(points, dtype=np.float64) / self._input_to_map

    @property
    def flip_shift(self) -> float:
        """Heatmap pixels by which a mirrored heatmap must move right to match the input flip.

        Mirroring the input maps x to W - 1 - x. With x_h = s x (s the input-to-heatmap
        factor) that is x_h -> s (W - 1) - x_h = (w - 1 - x_h) + shift, i.e. the plain
        mirror of the heatmap grid plus shift = s (W - 1) - (w - 1):
        1 - w / W (0.75 for stride 4) for "gaussian", 0 for "udp".
        """
        in_w = self.input_size[1]
        map_w = self.heatmap_size[1]
        shift = float(self._input_to_map[0] * (in_w - 1) - (map_w - 1))
        return 0.0 if abs(shift) < 1e-9 else shift

    # ------------------------------------------------------------------ encode

    def encode(
        self, keypoints: npt.ArrayLike, visible: npt.ArrayLike
    ) -> tuple[np.ndarray, np.ndarray]:
        """Gaussian target heatmaps for one person.

        Args:
            keypoints: [K, 2] x, y in input pixels.
            visible: [K] bool, True for joints that are annotated (PoseTrack marks
                annotated joints with visibility 0 too: pass "annotated", not v > 0).

        Returns:
            heatmaps: [K, h, w] float32 in [0, 1]; the peak is 1 only when the joint
                falls exactly on a pixel centre (the Gaussian is not snapped to the grid).
            weights: [K] float32, 1 for joints that are visible and inside the input
                crop ([-0.5, W - 0.5) x [-0.5, H - 0.5), the crop's pixel extent), else 0;
                their heatmaps are all zero.
        """
        keypoints = np.asarray(keypoints, dtype=np.float64)
        visible = np.asarray(visible, dtype=bool)
        if keypoints.ndim != 2 or keypoints.shape[1] != 2 or visible.shape != keypoints.shape[:1]:
            raise ValueError(
                f"HeatmapCodec.encode: expected keypoints [K, 2] and visible [K], got "
                f"{keypoints.shape} and {visible.shape}"
            )
        map_h, map_w = self.heatmap_size
        inside = inside_crop(keypoints, visible, self.input_size)
        centers = self.input_to_heatmap(np.where(inside[:, None], keypoints, 0.0))
        # The 2-D Gaussian is separable: exp(-(dx^2 + dy^2) / 2s^2) = gx * gy.
        denominator = 2.0 * self.sigma**2
        gauss_x = np.exp(-((np.arange(map_w) - centers[:, :1]) ** 2) / denominator)  # [K, w]
        gauss_y = np.exp(-((np.arange(map_h) - centers[:, 1:]) ** 2) / denominator)  # [K, h]
        heatmaps = gauss_y[:, :, None] * gauss_x[:, None, :] * inside[:, None, None]
        return heatmaps.astype(np.float32), inside.astype(np.float32)

    # The training targets this codec makes (besides the keypoints and weights every
    # sample has): the names of ``targets``'s dict, which the heads' losses read.
    target_names = ("heatmaps",)

    def targets(self, keypoints: npt.ArrayLike, visible: npt.ArrayLike) -> dict[str, np.ndarray]:
        """The named training targets of one person (the dataset's interface to a codec).

        Args:
            keypoints: [K, 2] x, y in input pixels.
            visible: [K] bool, annotated joints.

        Returns:
            {"heatmaps": [K, h, w] float32, "target_weight": [K] float32} (:meth:`encode`).
        """
        heatmaps, weights = self.encode(keypoints, visible)
        return {"heatmaps": heatmaps, "target_weight": weights}

    # ------------------------------------------------------------------ decode

    def decode(self, heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keypoints and scores from heatmaps: argmax plus DARK sub-pixel refinement
        (``refine="dark"``), or the integer argmax alone (``refine="none"``).

        Args:
            heatmaps: [B, K, h, w] (any float dtype, any device).

        Returns:
            keypoints: [B, K, 2] float32 x, y in input pixels (map them to image pixels
                with ``vidpose.codecs.geometry.crop_to_image`` and the crop's inverse affine).
            scores: [B, K] float32, the heatmap maximum of each joint.
        """
        if heatmaps.ndim != 4 or tuple(heatmaps.shape[-2:]) != self.heatmap_size:
            raise ValueError(
                f"HeatmapCodec.decode: expected heatmaps [B, K, {self.heatmap_size[0]}, "
                f"{self.heatmap_size[1]}], got {tuple(heatmaps.shape)}"
            )
        heatmaps = heatmaps.detach().float()
        batch, joints, map_h, map_w = heatmaps.shape
        scores, flat_index = heatmaps.reshape(batch, joints, -1).max(dim=-1)
        peak_x = (flat_index % map_w).float()
        peak_y = torch.div(flat_index, map_w, rounding_mode="floor").float()
        if self.refine == "dark":
            offset = self._dark_offset(heatmaps, flat_index)
        else:
            offset = torch.zeros(batch, joints, 2, device=heatmaps.device)
        keypoints_map = torch.stack([peak_x, peak_y], dim=-1) + offset
        return self.heatmap_to_input(keypoints_map), scores

    def _dark_offset(self, heatmaps: torch.Tensor, flat_index: torch.Tensor) -> torch.Tensor:
        """[B, K, 2] sub-pixel offset from the integer argmax, in heatmap pixels.

        DARK (Zhang et al., CVPR 2020, section 3.1): smooth the heatmap with a Gaussian
        so that it is close to the Gaussian the network was trained to produce ("distribution
        modulation"), take the log, which turns a Gaussian into a quadratic, and take one
        Newton step, the maximum of the second-order Taylor expansion: mu = m - H(m)^-1 D'(m),
        with gradient D' and Hessian H from central finite differences, which are exact
        for a quadratic. DARK rescales the smoothed map to the original maximum; that adds
        a constant to the log and changes no derivative, so it is skipped here.

        Two departures, both for peaks near the border of the map:
        - the 3x3 stencil is centred on the argmax moved one pixel inside the map when
          the argmax is on the border (the Newton step of a quadratic lands on its
          maximum from any starting point, so this stays exact for a clean Gaussian);
        - peaks closer than 2 * blur_sigma to the border are refined on the unsmoothed
          map: the zero-padded smoothing (DARK's) pulls them up to ~1.7 pixels inward,
          while on the interior it cuts the error on noisy maps about fivefold.
        """
        batch, joints, map_h, map_w = heatmaps.shape
        peak_row = torch.div(flat_index, map_w, rounding_mode="floor")
        peak_col = flat_index % map_w
        stencil_row = peak_row.clamp(1, map_h - 2)
        stencil_col = peak_col.clamp(1, map_w - 2)
        stencil_index = (stencil_row * map_w + stencil_col)[..., None]  # [B, K, 1]

        def derivatives(log_map: torch.Tensor) -> list[torch.Tensor]:
            flat = log_map.reshape(batch, joints, -1)

            def at(d_row: int, d_col: int) -> torch.Tensor:
                return flat.gather(-1, stencil_index + (d_row * map_w + d_col))[..., 0]

            center = at(0, 0)
            return [
                0.5 * (at(0, 1) - at(0, -1)),  # d/dx
                0.5 * (at(1, 0) - at(-1, 0)),  # d/dy
                at(0, 1) - 2 * center + at(0, -1),  # d2/dx2
                at(1, 0) - 2 * center + at(-1, 0),  # d2/dy2
                0.25 * (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1)),  # d2/dxdy
            ]

        raw = derivatives(heatmaps.clamp(min=1e-10).log())
        if self.blur_sigma > 0:
            smoothed = _gaussian_blur(heatmaps, self.blur_sigma)
            blurred = derivatives(smoothed.clamp(min=1e-10).log())
            margin = math.ceil(2.0 * self.blur_sigma)
            interior = (
                (peak_row >= margin)
                & (peak_row <= map_h - 1 - margin)
                & (peak_col >= margin)
                & (peak_col <= map_w - 1 - margin)
            )
            raw = [torch.where(interior, b, r) for b, r in zip(blurred, raw, strict=True)]
        grad_x, grad_y, hess_xx, hess_yy, hess_xy = raw
        determinant = hess_xx * hess_yy - hess_xy**2
        # Newton step only at a proper maximum (negative-definite Hessian); flat or
        # saddle-shaped maps (e.g. all-zero heatmaps) keep the integer argmax.
        is_maximum = (determinant > 1e-12) & (hess_xx < 0)
        safe_determinant = torch.where(is_maximum, determinant, torch.ones_like(determinant))
        step_x = -(hess_yy * grad_x - hess_xy * grad_y) / safe_determinant
        step_y = -(hess_xx * grad_y - hess_xy * grad_x) / safe_determinant
        refined_x = torch.where(is_maximum, stencil_col + step_x, peak_col.float())
        refined_y = torch.where(is_maximum, stencil_row + step_y, peak_row.float())
        offset = torch.stack([refined_x - peak_col, refined_y - peak_row], dim=-1)
        # The maximum of a unimodal map lies within one pixel of its argmax; a longer
        # step means the quadratic model does not hold there.
        return offset.clamp(-1.0, 1.0)

    # ------------------------------------------------------------------ flip test

    def flip_heatmaps(
        self, heatmaps: torch.Tensor, flip_permutation: npt.ArrayLike
    ) -> torch.Tensor:
        """Heatmaps predicted on a mirrored input, brought back to the unmirrored input.

        See ``flip_heatmaps``; the sub-pixel shift is this codec's ``flip_shift``.
        """
        return flip_heatmaps(heatmaps, flip_permutation, shift=self.flip_shift)


def flip_heatmaps(
    heatmaps: torch.Tensor, flip_permutation: npt.ArrayLike, *, shift: float = 0.0
) -> torch.Tensor:
    """Mirror heatmaps horizontally and swap left/right joint channels.

    For the flip test: the model sees the mirrored crop; its heatmaps, passed through
    this function, line up with the heatmaps of the unmirrored crop and can be averaged.

    Args:
        heatmaps: [..., K, h, w].
        flip_permutation: [K] ints, ``flip_permutation[i]`` = the slot joint i moves to
            under a flip (``Skeleton.flip_permutation``); must be its own inverse.
        shift: heatmap pixels to move the mirrored maps to the right, in [0, 1):
            ``HeatmapCodec.flip_shift`` (0 for "udp"; 1 - w / W for "gaussian", where
            HRNet rounds it to a whole pixel). The fractional part is applied by linear
            interpolation; the first column repeats the border.

    Returns:
        [..., K, h, w]. With shift = 0 applying it twice gives the input back exactly;
        with a fractional shift twice gives a symmetric 3-tap blur of the input along x
        (peaks stay in place).
    """
    permutation = torch.as_tensor(np.asarray(flip_permutation), dtype=torch.long)
    joints = heatmaps.shape[-3]
    if permutation.shape != (joints,) or not torch.equal(
        permutation[permutation], torch.arange(joints)
    ):
        raise ValueError(
            f"flip_heatmaps: flip_permutation must be a self-inverse permutation of the "
            f"{joints} joint channels, got {permutation.tolist()}"
        )
    if not 0.0 <= shift < 1.0:
        raise ValueError(f"flip_heatmaps: shift must be in [0, 1) heatmap pixels, got {shift}")
    # Channel i of the result holds the joint that sat in slot permutation[i] before.
    flipped = heatmaps.flip(-1).index_select(-3, permutation.to(heatmaps.device))
    if shift > 0:
        # result[x] = flipped[x - shift] = (1 - shift) flipped[x] + shift flipped[x - 1]
        previous = torch.cat([flipped[..., :1], flipped[..., :-1]], dim=-1)
        flipped = (1.0 - shift) * flipped + shift * previous
    return flipped


def _gaussian_blur(heatmaps: torch.Tensor, sigma: float) -> torch.Tensor:
    """[B, K, h, w] -> [B, K, h, w] Gaussian smoothing per channel (zero padding, as DARK)."""
    radius = max(1, math.ceil(3.0 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=heatmaps.dtype, device=heatmaps.device)
    kernel = torch.exp(-(taps**2) / (2.0 * sigma**2))
    kernel = kernel / kernel.sum()
    batch, joints, map_h, map_w = heatmaps.shape
    planes = heatmaps.reshape(batch * joints, 1, map_h, map_w)
    # Separable: one pass along x, one along y.
    planes = F.conv2d(planes, kernel.view(1, 1, 1, -1), padding=(0, radius))
    planes = F.conv2d(planes, kernel.view(1, 1, -1, 1), padding=(radius, 0))
    return planes.reshape(batch, joints, map_h, map_w)


def build_codec(data: DataConfig) -> HeatmapCodec:
    """The codec described by a data config (input size, heatmap stride, sigma, encoding,
    the decoding's refinement)."""
    in_h, in_w = data.input_size
    return HeatmapCodec(
        input_size=(in_h, in_w),
        heatmap_size=(in_h // data.heatmap_stride, in_w // data.heatmap_stride),
        sigma=data.sigma,
        encoding=data.encoding,
        refine=data.refine,
    )
