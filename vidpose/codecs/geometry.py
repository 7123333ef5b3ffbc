"""Crop geometry: person boxes, centre/scale, affine crop matrices and back-projection.

Coordinate convention, used by every function here, by the transforms, the heatmap
codec and the clip dataset: a point (x, y) is in pixels, x to the right, y down, and
the centre of pixel (column i, row j) is at (i, j). A W-pixel-wide image therefore
spans [-0.5, W - 0.5] and its horizontal mirror maps x to W - 1 - x.

A crop is described by a centre (cx, cy) and a scale (sw, sh): the size in image
pixels of the region that fills the model input. ``crop_affine`` maps that region
onto the input crop so that its edges land on the crop's edges; the region centre
lands on the crop centre ((W - 1) / 2, (H - 1) / 2). Keeping the centre on the
crop centre (rather than on W / 2, as HRNet's ``get_affine_transform`` does) makes
a mirror of the crop the same as a mirror of the image about the box centre, which
the flip test relies on (Huang et al., "The Devil is in the Details: Delving into
Unbiased Data Processing for Human Pose Estimation", CVPR 2020, section 3).

Matrices are 2x3 ``[[a, b, c], [d, e, f]]`` acting on column vectors (x, y, 1).
Functions accept numpy arrays; ``apply_affine`` also accepts torch tensors and
broadcasts over leading batch axes.
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import torch

ArrayOrTensor = TypeVar("ArrayOrTensor", np.ndarray, torch.Tensor)


def box_to_center_scale(
    box: npt.ArrayLike, *, aspect_ratio: float, padding: float = 1.25
) -> tuple[np.ndarray, np.ndarray]:
    """Centre and crop scale of person boxes.

    The box is enlarged to the model input's aspect ratio (the shorter side grows,
    the box is never cut) and then by ``padding`` around its centre.

    Args:
        box: [..., 4] x, y, w, h in image pixels (x, y = top-left corner).
        aspect_ratio: width / height of the model input (192 / 256 by default).
        padding: enlargement factor applied after fixing the aspect ratio.

    Returns:
        center: [..., 2] float64, image pixels.
        scale: [..., 2] float64, (sw, sh) region size in image pixels, sw / sh == aspect_ratio.
    """
    box = np.asarray(box, dtype=np.float64)
    if box.shape[-1] != 4:
        raise ValueError(f"box: expected shape [..., 4] (x, y, w, h), got {box.shape}")
    if aspect_ratio <= 0 or padding <= 0:
        raise ValueError(
            f"aspect_ratio and padding must be positive, got {aspect_ratio} and {padding}"
        )
    x, y, w, h = np.moveaxis(box, -1, 0)
    center = np.stack([x + w * 0.5, y + h * 0.5], axis=-1)
    # Grow the side that is too short for the input's aspect ratio.
    wider = w > aspect_ratio * h
    width = np.where(wider, w, h * aspect_ratio)
    height = np.where(wider, w / aspect_ratio, h)
    scale = np.stack([width, height], axis=-1) * padding
    return center, scale


def center_scale_to_box(center: npt.ArrayLike, scale: npt.ArrayLike) -> np.ndarray:
    """The region a centre/scale pair covers, as boxes.

    Args:
        center: [..., 2] image pixels.
        scale: [..., 2] (sw, sh) image pixels.

    Returns:
        [..., 4] float64 x, y, w, h in image pixels.
    """
    center = np.asarray(center, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    return np.concatenate([center - scale * 0.5, scale], axis=-1)


def crop_affine(
    center: npt.ArrayLike,
    scale: npt.ArrayLike,
    *,
    output_size: tuple[int, int],
    rotation: float = 0.0,
    flip: bool = False,
) -> np.ndarray:
    """Affine matrix from image pixels to crop pixels.

    The crop shows the region of size ``scale`` around ``center``, rotated by
    ``rotation`` degrees counter-clockwise as seen on screen, and mirrored
    horizontally (after rotation) when ``flip`` is set:

        q = diag(W / sw, H / sh) @ R(rotation) @ (p - center) + ((W - 1) / 2, (H - 1) / 2)
        q_x <- W - 1 - q_x                      (flip)

    with R(a) = [[cos a, sin a], [-sin a, cos a]] (y points down, so this turns the
    content counter-clockwise on screen).

    Args:
        center: [2] image pixels.
        scale: [2] (sw, sh) image pixels of the region that fills the crop.
        output_size: (W, H) of the crop in pixels (note: width first, like PIL).
        rotation: degrees.
        flip: mirror the crop horizontally.

    Returns:
        [2, 3] float64, image pixels -> crop pixels.
    """
    cx, cy = np.asarray(center, dtype=np.float64).reshape(2)
    sw, sh = np.asarray(scale, dtype=np.float64).reshape(2)
    if sw <= 0 or sh <= 0:
        raise ValueError(f"scale: expected positive (sw, sh), got {(sw, sh)}")
    out_w, out_h = output_size
    zoom_x, zoom_y = out_w / sw, out_h / sh
    angle = math.radians(rotation)
    cos, sin = math.cos(angle), math.sin(angle)
    linear = np.array([[zoom_x * cos, zoom_x * sin], [-zoom_y * sin, zoom_y * cos]])
    offset = np.array([(out_w - 1) * 0.5, (out_h - 1) * 0.5]) - linear @ np.array([cx, cy])
    matrix = np.concatenate([linear, offset[:, None]], axis=1)
    if flip:
        mirror = np.array([[-1.0, 0.0, out_w - 1.0], [0.0, 1.0, 0.0]])
        matrix = compose_affine(mirror, matrix)
    return matrix


def invert_affine(matrix: npt.ArrayLike) -> np.ndarray:
    """Inverse of a 2x3 affine matrix ([2, 3] -> [2, 3], float64)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape != (2, 3):
        raise ValueError(f"affine matrix: expected shape (2, 3), got {matrix.shape}")
    linear_inverse = np.linalg.inv(matrix[:, :2])
    return np.concatenate([linear_inverse, -linear_inverse @ matrix[:, 2:]], axis=1)


def compose_affine(second: npt.ArrayLike, first: npt.ArrayLike) -> np.ndarray:
    """The 2x3 matrix of ``first`` followed by ``second`` (second @ first)."""
    second = np.asarray(second, dtype=np.float64)
    first = np.asarray(first, dtype=np.float64)
    linear = second[:, :2] @ first[:, :2]
    offset = second[:, :2] @ first[:, 2] + second[:, 2]
    return np.concatenate([linear, offset[:, None]], axis=1)


def apply_affine(points: ArrayOrTensor, matrix: ArrayOrTensor) -> ArrayOrTensor:
    """Apply affine matrices to points.

    Args:
        points: [..., N, 2] (x, y) in the source frame (numpy or torch).
        matrix: [..., 2, 3], broadcastable against the points' leading axes
            (a single [2, 3] matrix for all points, or one per batch item).

    Returns:
        [..., N, 2] points in the target frame, same type as ``points``.
    """
    if points.shape[-1] != 2 or tuple(matrix.shape[-2:]) != (2, 3):
        raise ValueError(
            f"apply_affine: expected points [..., N, 2] and matrix [..., 2, 3], "
            f"got {tuple(points.shape)} and {tuple(matrix.shape)}"
        )
    if isinstance(points, torch.Tensor):
        matrix = torch.as_tensor(matrix, dtype=points.dtype, device=points.device)
    else:
        matrix = np.asarray(matrix)
    linear = matrix[..., :2].swapaxes(-1, -2)  # [..., 2, 2], so that row-vector @ linear
    return points @ linear + matrix[..., None, :, 2]


def crop_to_image(points: ArrayOrTensor, inverse_affine: ArrayOrTensor) -> ArrayOrTensor:
    """Back-project crop pixels to image pixels.

    Args:
        points: [..., K, 2] crop pixels (e.g. decoded keypoints; heatmap pixels are
            turned into crop pixels by ``HeatmapCodec.heatmap_to_input`` first).
        inverse_affine: [..., 2, 3] crop -> image matrices (``invert_affine`` of the
            crop's ``crop_affine``; the clip dataset returns it as ``inverse_affine``).

    Returns:
        [..., K, 2] image pixels.
    """
    return apply_affine(points, inverse_affine)


def crop_lengths_to_image(lengths: ArrayOrTensor, inverse_affine: ArrayOrTensor) -> ArrayOrTensor:
    """Scale lengths in crop pixels (e.g. a per-joint uncertainty) to image pixels.

    A crop's affine is a similarity (scale, rotation, translation; a flip keeps the
    length scale), so a length scales by sqrt(|det L|) of the inverse's linear part L.

    Args:
        lengths: [..., K] crop pixels.
        inverse_affine: [..., 2, 3] crop -> image matrices, one per leading index.

    Returns:
        [..., K] image pixels, same type as ``lengths``.
    """
    if isinstance(lengths, torch.Tensor):
        matrix = torch.as_tensor(inverse_affine, dtype=lengths.dtype, device=lengths.device)
        factor = torch.linalg.det(matrix[..., :2]).abs().sqrt()
    else:
        matrix = np.asarray(inverse_affine, dtype=np.float64)
        factor = np.sqrt(np.abs(np.linalg.det(matrix[..., :2])))
    return lengths * factor[..., None]


def inside_crop(
    keypoints: npt.ArrayLike, visible: npt.ArrayLike, input_size: tuple[int, int]
) -> np.ndarray:
    """[K] bool: joints that are annotated, finite and inside the crop's pixel extent
    [-0.5, W - 0.5) x [-0.5, H - 0.5) (the joints every head is trained on).

    Args:
        keypoints: [K, 2] x, y in input-crop pixels.
        visible: [K] bool, annotated joints.
        input_size: (H, W) of the crop.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    height, width = input_size
    x, y = keypoints[:, 0], keypoints[:, 1]
    with np.errstate(invalid="ignore"):
        return (
            np.asarray(visible, dtype=bool)
            & np.isfinite(x)
            & np.isfinite(y)
            & (x >= -0.5)
            & (x < width - 0.5)
            & (y >= -0.5)
            & (y < height - 0.5)
        )
