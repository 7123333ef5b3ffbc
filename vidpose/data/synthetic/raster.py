"""Shapes to pixels for the synthetic renderer.

A :class:`_Shape` (a capsule, the hull of several discs, an ellipse or a polygon) is
rasterised in the window of the image it covers (:func:`_rasterise`); a
:class:`_Canvas` fills it with a tiled texture inside a darker outline and records,
per pixel, the part label and the person's silhouette that the ground truth is
measured against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw


def _convex_hull(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Convex hull of 2D points, counter-clockwise (Andrew's monotone chain). Plain
    Python floats: for a few dozen points this beats numpy's per-element overhead."""
    points = sorted(points)

    def half(sequence: list[tuple[float, float]]) -> list[tuple[float, float]]:
        chain: list[tuple[float, float]] = []
        for px, py in sequence:
            while len(chain) >= 2:
                (ax, ay), (bx, by) = chain[-2], chain[-1]
                if (bx - ax) * (py - ay) - (by - ay) * (px - ax) > 0:
                    break
                chain.pop()
            chain.append((px, py))
        return chain

    lower, upper = half(points), half(points[::-1])
    return lower[:-1] + upper[:-1]


_RING = [(math.cos(a), math.sin(a)) for a in np.linspace(0, 2 * math.pi, 12, endpoint=False)]


@dataclass
class _Shape:
    """A drawable region: the convex hull of discs, an ellipse or a polygon (pixels)."""

    kind: str  # "discs", "ellipse", "polygon"
    points: np.ndarray  # discs: [N, 2] centres; ellipse: [1, 2] centre; polygon: [N, 2]
    radii: np.ndarray  # discs: [N]; ellipse: [2] rx, ry; polygon: unused

    def bounds(self, grow: float) -> np.ndarray:
        """[4] x0, y0, x1, y1 (float) of the shape grown by ``grow`` pixels."""
        if self.kind == "discs":
            low = (self.points - self.radii[:, None]).min(axis=0)
            high = (self.points + self.radii[:, None]).max(axis=0)
        elif self.kind == "ellipse":
            low, high = self.points[0] - self.radii, self.points[0] + self.radii
        else:
            low, high = self.points.min(axis=0), self.points.max(axis=0)
        return np.concatenate([low - grow - 1, high + grow + 1])

    def draw(self, draw: ImageDraw.ImageDraw, offset: np.ndarray, grow: float, fill: int) -> None:
        """Draw the shape grown by ``grow`` pixels, shifted by -``offset``, in ``fill``."""
        if self.kind == "discs" and len(self.points) == 2:
            # A capsule: the band between the two end discs, and the discs.
            (ax, ay), (bx, by) = (self.points - offset).tolist()
            ra, rb = (self.radii + grow).tolist()
            length = math.hypot(bx - ax, by - ay)
            if length > 1e-6:
                nx, ny = -(by - ay) / length, (bx - ax) / length
                band = [(ax + nx * ra, ay + ny * ra), (bx + nx * rb, by + ny * rb)]
                band += [(bx - nx * rb, by - ny * rb), (ax - nx * ra, ay - ny * ra)]
                draw.polygon(band, fill=fill)
            for (cx, cy), radius in (((ax, ay), ra), ((bx, by), rb)):
                draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=fill)
        elif self.kind == "discs":
            # Several discs: their convex hull (the torso).
            circles = zip(
                (self.points - offset).tolist(), (self.radii + grow).tolist(), strict=True
            )
            ring = [(cx + r * dx, cy + r * dy) for (cx, cy), r in circles for dx, dy in _RING]
            draw.polygon(_convex_hull(ring), fill=fill)
        elif self.kind == "ellipse":
            (cx, cy), (rx, ry) = self.points[0] - offset, self.radii + grow
            draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=fill)
        else:
            draw.polygon([tuple(p) for p in self.points - offset], fill=fill)


def _rasterise(
    shape: _Shape, width: int, height: int, outline: float = 0.0
) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
    """The shape drawn inside the image: its window (x0, y0, x1, y1) and a uint8 array
    of that window with 2 inside the shape, 1 on the ``outline``-pixel ring around it,
    0 elsewhere; None when the shape is outside the image."""
    x0, y0, x1, y1 = shape.bounds(outline)
    x0, y0 = max(0, int(math.floor(x0))), max(0, int(math.floor(y0)))
    x1, y1 = min(width, int(math.ceil(x1)) + 1), min(height, int(math.ceil(y1)) + 1)
    if x1 <= x0 or y1 <= y0:
        return None
    window = Image.new("L", (x1 - x0, y1 - y0), 0)
    draw = ImageDraw.Draw(window)
    # PIL truncates coordinates to whole pixels; shifting by half a pixel turns that into
    # rounding, so a disc drawn at (x, y) is centred on the pixel nearest to (x, y).
    offset = np.array([x0, y0], dtype=np.float64) - 0.5
    if outline > 0:
        shape.draw(draw, offset, outline, fill=1)
    shape.draw(draw, offset, 0.0, fill=2)
    return (x0, y0, x1, y1), np.asarray(window)


def _texture_window(
    texture: np.ndarray, origin: np.ndarray, box: tuple[int, int, int, int]
) -> np.ndarray:
    """The texture pixels under image window ``box`` for a texture whose top-left corner
    sits at image point ``origin`` (tiled, so any window is covered)."""
    x0, y0, x1, y1 = box
    top, left = y0 - int(origin[1]), x0 - int(origin[0])
    size_y, size_x = texture.shape[:2]
    if 0 <= top and top + (y1 - y0) <= size_y and 0 <= left and left + (x1 - x0) <= size_x:
        return texture[top : top + y1 - y0, left : left + x1 - x0]  # the usual case: a view
    rows = (np.arange(y0, y1) - int(origin[1])) % size_y
    columns = (np.arange(x0, x1) - int(origin[0])) % size_x
    return texture[np.ix_(rows, columns)]


class _Canvas:
    """The frame being drawn plus its part-label image and per-person silhouettes."""

    def __init__(self, image: np.ndarray, num_persons: int) -> None:
        self.image = image
        self.height, self.width = image.shape[:2]
        self.labels = np.zeros((self.height, self.width), dtype=np.int32)
        self.silhouettes = np.zeros((num_persons, self.height, self.width), dtype=bool)

    def paint(
        self,
        shape: _Shape,
        texture: np.ndarray,
        origin: np.ndarray,
        shade: float,
        label: int | None,
        person: int | None = None,
        outline: float = 1.0,
    ) -> None:
        """Fill ``shape`` with the texture (times ``shade``) inside a darker outline;
        record ``label`` (None: leave the labels) and the person's silhouette."""
        drawn = _rasterise(shape, self.width, self.height, outline)
        if drawn is None:
            return
        (x0, y0, x1, y1), window_mask = drawn
        outer_mask = window_mask > 0
        gain = np.array([0.0, 0.55 * shade, shade], dtype=np.float32)[window_mask[outer_mask]]
        pixels = _texture_window(texture, origin, (x0, y0, x1, y1))[outer_mask] * gain[:, None]
        self.image[y0:y1, x0:x1][outer_mask] = np.minimum(pixels, 255).astype(np.uint8)
        if label is not None:
            self.labels[y0:y1, x0:x1][outer_mask] = label
        if person is not None:
            self.silhouettes[person, y0:y1, x0:x1] |= outer_mask
