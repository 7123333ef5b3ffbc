"""Keypoint <-> heatmap + offset codec: the targets and the decoding of the CAL head.

Wang et al., "Low-resolution human pose estimation" (Pattern Recognition 2022, arXiv
2109.09090): at a low input resolution the heatmap grid is coarse and its integer
argmax is off by up to half a heatmap pixel (2 input pixels at stride 4); a second
branch regresses, at every heatmap pixel near a joint, the offset from that pixel to
the joint, and the decoding reads it at the argmax.

Frames of reference are the :class:`~vidpose.codecs.heatmap.HeatmapCodec`'s (input
pixels and heatmap pixels, "gaussian" or "udp" mapping between them); the heatmap part
*is* a HeatmapCodec (composition), so both encodings and their flip shift carry over.

The targets of one person (``targets``):

- ``heatmaps`` [K, h, w]: the HeatmapCodec's Gaussians;
- ``offsets`` [2K, h, w], joint-major (channel 2k is joint k's x offset, 2k + 1 its y
  offset), in heatmap pixels divided by ``scale``: at heatmap pixel q within ``radius``
  heatmap pixels (Euclidean) of the joint's heatmap position t, (t - q) / scale, else
  0 (CAL: (joint - pixel) / 1.5 within 4 heatmap pixels);
- ``offset_mask`` [K, h, w]: 1 where an offset target is defined (within the radius of
  a joint that is annotated and inside the crop), else 0;
- ``target_weight`` [K].

Decoding (CAL's inference): p = the integer argmax of each heatmap, keypoint =
p + scale * offset(p) in heatmap pixels, mapped to input pixels like the heatmaps.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch

from vidpose.codecs.geometry import inside_crop
from vidpose.codecs.heatmap import HeatmapCodec


class HeatmapOffsetCodec:
    """Encode keypoints into heatmaps and offset fields; decode argmax + offset.

    Args:
        heatmap: the codec of the heatmap part (sizes, sigma, encoding).
        radius: heatmap pixels around each joint where the offsets are trained (CAL: 4).
        scale: offsets are stored divided by it, and multiplied back when decoding
            (CAL: 1.5), which keeps the regression targets near [-3, 3].
    """

    # The training targets this codec makes (the dataset stores each, the CAL head's
    # loss reads them).
    target_names = ("heatmaps", "offsets", "offset_mask")

    def __init__(self, *, heatmap: HeatmapCodec, radius: float = 4.0, scale: float = 1.5) -> None:
        if radius <= 0 or scale <= 0:
            raise ValueError(
                f"HeatmapOffsetCodec: radius and scale must be positive, got {radius} and {scale}"
            )
        self.heatmap = heatmap
        self.radius = float(radius)
        self.scale = float(scale)

    def __repr__(self) -> str:
        return (
            f"HeatmapOffsetCodec(heatmap={self.heatmap!r}, radius={self.radius}, "
            f"scale={self.scale})"
        )

    # ------------------------------------------------------------------ the heatmap part

    @property
    def input_size(self) -> tuple[int, int]:
        """(H, W) of the model input crop."""
        return self.heatmap.input_size

    @property
    def heatmap_size(self) -> tuple[int, int]:
        """(h, w) of the heatmap and offset grid."""
        return self.heatmap.heatmap_size

    def input_to_heatmap(self, points: npt.ArrayLike | torch.Tensor) -> np.ndarray | torch.Tensor:
        """[..., 2] input pixels -> [..., 2] heatmap pixels (``HeatmapCodec``'s)."""
        return self.heatmap.input_to_heatmap(points)

    def heatmap_to_input(self, points: npt.ArrayLike | torch.Tensor) -> np.ndarray | torch.Tensor:
        """[..., 2] heatmap pixels -> [..., 2] input pixels (``HeatmapCodec``'s)."""
        return self.heatmap.heatmap_to_input(points)

    # ------------------------------------------------------------------ encode

    def encode(
        self, keypoints: npt.ArrayLike, visible: npt.ArrayLike
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Heatmaps and offset fields for one person.

        Args:
            keypoints: [K, 2] x, y in input pixels.
            visible: [K] bool, annotated joints.

        Returns:
            heatmaps: [K, h, w] float32 (``HeatmapCodec.encode``).
            offsets: [2K, h, w] float32, joint-major x, y: (t - q) / scale within the
                radius, 0 elsewhere.
            offset_mask: [K, h, w] float32, 1 within the radius of joints with weight 1.
            weights: [K] float32, 1 for joints annotated and inside the crop.
        """
        heatmaps, weights = self.heatmap.encode(keypoints, visible)
        keypoints = np.asarray(keypoints, dtype=np.float64)
        inside = inside_crop(keypoints, np.asarray(visible, dtype=bool), self.input_size)
        map_h, map_w = self.heatmap_size
        centers = self.input_to_heatmap(np.where(inside[:, None], keypoints, 0.0))  # [K, 2]
        to_x = centers[:, :1, None] - np.arange(map_w)[None, None, :]  # [K, 1, w]: t_x - q_x
        to_y = centers[:, 1:, None] - np.arange(map_h)[None, :, None]  # [K, h, 1]: t_y - q_y
        within = (to_x**2 + to_y**2 <= self.radius**2) & inside[:, None, None]  # [K, h, w]
        offsets = np.stack(
            [np.where(within, to_x / self.scale, 0.0), np.where(within, to_y / self.scale, 0.0)],
            axis=1,
        )  # [K, 2, h, w]
        return (
            heatmaps,
            offsets.reshape(-1, map_h, map_w).astype(np.float32),
            within.astype(np.float32),
            weights,
        )

    def targets(self, keypoints: npt.ArrayLike, visible: npt.ArrayLike) -> dict[str, np.ndarray]:
        """The named training targets of one person (the dataset's interface to a codec).

        Returns:
            {"heatmaps": [K, h, w], "offsets": [2K, h, w], "offset_mask": [K, h, w],
            "target_weight": [K]}, float32 (:meth:`encode`).
        """
        heatmaps, offsets, mask, weights = self.encode(keypoints, visible)
        return {
            "heatmaps": heatmaps,
            "offsets": offsets,
            "offset_mask": mask,
            "target_weight": weights,
        }

    # ------------------------------------------------------------------ decode

    def decode(
        self, heatmaps: torch.Tensor, offsets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Keypoints and scores: the integer argmax p of each heatmap moved by the offset
        predicted there, p + scale * offset(p) (CAL's inference).

        Args:
            heatmaps: [B, K, h, w].
            offsets: [B, 2K, h, w] joint-major x, y (divided by ``scale``).

        Returns:
            keypoints: [B, K, 2] float32 x, y in input pixels.
            scores: [B, K] float32, the heatmap maximum of each joint.
        """
        batch, joints = heatmaps.shape[:2]
        if (
            heatmaps.ndim != 4
            or tuple(heatmaps.shape[-2:]) != self.heatmap_size
            or tuple(offsets.shape) != (batch, 2 * joints, *self.heatmap_size)
        ):
            raise ValueError(
                f"HeatmapOffsetCodec.decode: expected heatmaps [B, K, {self.heatmap_size[0]}, "
                f"{self.heatmap_size[1]}] and offsets [B, 2K, ...] of the same grid, got "
                f"{tuple(heatmaps.shape)} and {tuple(offsets.shape)}"
            )
        heatmaps = heatmaps.detach().float()
        offsets = offsets.detach().float()
        map_w = self.heatmap_size[1]
        scores, flat_index = heatmaps.reshape(batch, joints, -1).max(dim=-1)
        peak = torch.stack(
            [flat_index % map_w, torch.div(flat_index, map_w, rounding_mode="floor")], dim=-1
        ).float()  # [B, K, 2]
        field = offsets.reshape(batch, joints, 2, -1)  # [B, K, 2, h*w]
        at_peak = field.gather(-1, flat_index[:, :, None, None].expand(-1, -1, 2, 1))[..., 0]
        return self.heatmap_to_input(peak + self.scale * at_peak), scores

    # ------------------------------------------------------------------ flip test

    def flip_heatmaps(
        self, heatmaps: torch.Tensor, flip_permutation: npt.ArrayLike
    ) -> torch.Tensor:
        """Heatmaps of a mirrored input brought back (``HeatmapCodec.flip_heatmaps``)."""
        return self.heatmap.flip_heatmaps(heatmaps, flip_permutation)

    def flip_offsets(self, offsets: torch.Tensor, flip_permutation: npt.ArrayLike) -> torch.Tensor:
        """Offsets predicted on a mirrored input, brought back to the unmirrored input.

        The mirror maps heatmap x to c - x (c = the codec's mirror centre), so the field
        is resampled at the mirrored pixel exactly as the heatmaps are (flipped, shifted
        by ``flip_shift``, left/right joints swapped), and its x component changes
        sign: t_x - q_x = -(t'_x - q'_x). An offset field is linear in the pixel within
        the radius, so the linear interpolation of a fractional shift is exact there.

        Args:
            offsets: [..., 2K, h, w] joint-major x, y.
            flip_permutation: [K] self-inverse left/right swap.

        Returns:
            [..., 2K, h, w].
        """
        *leading, channels, map_h, map_w = offsets.shape
        per_joint = offsets.reshape(*leading, channels // 2, 2, map_h, map_w)
        # joints on axis -3, where flip_heatmaps permutes them: [..., 2, K, h, w]
        flipped = self.flip_heatmaps(per_joint.transpose(-4, -3), flip_permutation)
        sign = torch.tensor([-1.0, 1.0], dtype=offsets.dtype, device=offsets.device)
        flipped = flipped * sign.view(2, 1, 1, 1)
        return flipped.transpose(-4, -3).reshape(offsets.shape)
