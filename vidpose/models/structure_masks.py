"""Maps rendered from (noisy) keypoints: Gaussian heatmaps, keypoint discs, limb segments.

DiffusionPose (Qiu et al., "Learning Structure-Guided Diffusion Model for 2D Human Pose
Estimation", arXiv 2306.17074, section 3.2) renders three things from the noisy
keypoints y_t: noisy heatmaps y_t^hm = phi(y_t, sigma) (SimpleBaseline's Gaussians),
a keypoint mask M^kps (a disc of width delta_kps around each point) and a skeleton mask
M^ske (segments of width delta_ske along the limbs between connected points).

Everything here works in *heatmap pixels* of an H x W grid, pixel centres at integers
(the codec's frame: ``HeatmapCodec.input_to_heatmap``). The widths are read as radii:
a pixel belongs to a disc (a limb) when its centre lies within ``radius`` of the point
(of the segment), so a mask is 2 radius + 1 pixels across (the paper gives no formula;
this is ours). The masks are binary: they select features, nothing flows back to the
points (the noisy points are an input of the network, never a parameter).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _pixel_centres(size: tuple[int, int], like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(xs [1, 1, 1, W], ys [1, 1, H, 1]): heatmap pixel centres."""
    height, width = size
    xs = torch.arange(width, dtype=like.dtype, device=like.device).view(1, 1, 1, width)
    ys = torch.arange(height, dtype=like.dtype, device=like.device).view(1, 1, height, 1)
    return xs, ys


def squared_distance_to_points(points: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[N, K, H, W] squared distance of every pixel centre to each point.

    Args:
        points: [N, K, 2] x, y in heatmap pixels.
        size: (H, W).
    """
    xs, ys = _pixel_centres(size, points)
    return (xs - points[..., 0, None, None]) ** 2 + (ys - points[..., 1, None, None]) ** 2


def gaussian_heatmaps(points: torch.Tensor, size: tuple[int, int], sigma: float) -> torch.Tensor:
    """phi(y, sigma): one Gaussian of peak 1 per point, at its exact sub-pixel position.

    The codec's training target (``HeatmapCodec.encode``: unbiased, not snapped to the
    grid) for every point, without the visibility zeroing: a noisy point is always drawn.

    Args:
        points: [N, K, 2] x, y in heatmap pixels.
        size: (H, W).
        sigma: standard deviation in heatmap pixels.

    Returns:
        [N, K, H, W] in (0, 1].
    """
    return torch.exp(-squared_distance_to_points(points, size) / (2.0 * sigma**2))


def keypoint_masks(points: torch.Tensor, size: tuple[int, int], radius: float) -> torch.Tensor:
    """Per-joint discs: pixels whose centre lies within ``radius`` of the joint's point.

    A disc that holds no pixel centre (a radius under about 0.7, or a point at the far
    corner of the grid: the crop extends half an input pixel past the last heatmap
    centre) keeps the pixel nearest to its point, so every joint looks up somewhere.

    Args:
        points: [N, K, 2] x, y in heatmap pixels.
        size: (H, W).
        radius: delta_kps, heatmap pixels.

    Returns:
        [N, K, H, W] float 0 / 1, at least one 1 per joint.
    """
    squared = squared_distance_to_points(points, size)
    inside = squared <= radius**2
    nearest = squared <= squared.flatten(-2).min(dim=-1).values[..., None, None]
    empty = ~inside.flatten(-2).any(dim=-1)
    return (inside | (nearest & empty[..., None, None])).to(points.dtype)


def limb_masks(
    points: torch.Tensor,
    limbs: Sequence[tuple[int, int]],
    size: tuple[int, int],
    radius: float,
) -> torch.Tensor:
    """Per-limb segments: pixels whose centre lies within ``radius`` of the segment
    between the limb's two points (a capsule: a band with round ends).

    The distance to segment a-b of pixel centre p is |p - (a + s (b - a))| with
    s = clamp((p - a) . (b - a) / |b - a|^2, 0, 1), the closest point of the segment;
    a limb whose points coincide is a disc.

    Args:
        points: [N, K, 2] x, y in heatmap pixels.
        limbs: L (joint, joint) pairs (``Skeleton.limbs``).
        size: (H, W).
        radius: delta_ske, heatmap pixels.

    Returns:
        [N, L, H, W] float 0 / 1 (no limbs: [N, 0, H, W]).
    """
    pairs = torch.as_tensor(list(limbs), dtype=torch.long, device=points.device).view(-1, 2)
    start = points[:, pairs[:, 0]]  # [N, L, 2]
    end = points[:, pairs[:, 1]]
    direction = end - start
    length_squared = (direction**2).sum(-1)  # [N, L]
    xs, ys = _pixel_centres(size, points)
    from_x = xs - start[..., 0, None, None]  # [N, L, 1, W]
    from_y = ys - start[..., 1, None, None]  # [N, L, H, 1]
    dx, dy = direction[..., 0, None, None], direction[..., 1, None, None]
    along = (from_x * dx + from_y * dy) / length_squared.clamp(min=1e-12)[..., None, None]
    along = along.clamp(0.0, 1.0)  # [N, L, H, W]
    squared = (from_x - along * dx) ** 2 + (from_y - along * dy) ** 2
    return (squared <= radius**2).to(points.dtype)


def union(masks: torch.Tensor) -> torch.Tensor:
    """[N, M, H, W] -> [N, 1, H, W]: a pixel is in the union if it is in any mask
    (an empty set of masks gives an empty union)."""
    if masks.shape[1] == 0:
        return masks.new_zeros(masks.shape[0], 1, *masks.shape[2:])
    return masks.amax(dim=1, keepdim=True)


def normalised_per_map(masks: torch.Tensor) -> torch.Tensor:
    """[..., H, W] masks scaled to sum to 1 over each map (the head contract's
    trajectory "masks": where a step looked). Every map must be non-empty
    (:func:`keypoint_masks` guarantees it)."""
    return masks / masks.sum(dim=(-2, -1), keepdim=True).clamp(min=1e-12)
