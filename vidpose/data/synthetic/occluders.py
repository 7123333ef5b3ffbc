"""Occluders: textured shapes that cross a person, in front of everyone.

Each is planned to pass over one person at a random moment, entering and leaving
within a few frames, so that the joints it hides are visible in the neighbouring
frames (:func:`_plan_occluder`); :func:`_occluder_shape` is where it is in a frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vidpose.data.synthetic.appearance import _random_colour, _texture
from vidpose.data.synthetic.motion import _PersonTrack
from vidpose.data.synthetic.raster import _Shape


@dataclass
class _Occluder:
    """A textured shape moving at constant velocity in front of everyone."""

    kind: str  # "rect", "ellipse" or "blob"
    centre: np.ndarray  # [2] at frame 0
    velocity: np.ndarray  # [2] pixels per frame
    size: np.ndarray  # [2] width, height in pixels
    outline: np.ndarray  # [N, 2] blob outline relative to the centre, in units of size
    texture: np.ndarray  # [S, S, 3]


def _plan_occluder(rng: np.random.Generator, track: _PersonTrack, frames: int) -> _Occluder:
    """An occluder that passes over ``track`` at a random moment, entering and leaving
    within a few frames so that the hidden joints are visible in neighbouring frames."""
    when = int(rng.integers(max(1, frames // 5), max(2, (4 * frames) // 5)))
    when = min(when, frames - 1)
    body = track.height[when]
    size = np.array([rng.uniform(0.25, 0.5), rng.uniform(0.25, 0.6)]) * body
    target = (
        track.root[when] + np.array([rng.uniform(-0.12, 0.12), rng.uniform(-0.35, 0.35)]) * body
    )
    angle = rng.normal(0, 0.35) + rng.choice([0, math.pi])  # mostly horizontal motion
    crossing_frames = rng.uniform(6, 14)
    speed = (size[0] + 0.35 * body) / crossing_frames
    velocity = speed * np.array([math.cos(angle), math.sin(angle)])
    corners = int(rng.integers(5, 9))
    angles = np.sort(rng.uniform(0, 2 * math.pi, corners))
    radii = rng.uniform(0.3, 0.5, corners)
    outline = np.stack([np.cos(angles) * radii, np.sin(angles) * radii], axis=1)
    texture_size = int(max(size) * 1.2) + 4
    return _Occluder(
        kind=str(rng.choice(["rect", "ellipse", "blob"])),
        centre=target - velocity * when,
        velocity=velocity,
        size=size,
        outline=outline,
        texture=_texture(rng, texture_size, _random_colour(rng, (0.1, 0.8), (0.2, 0.9))),
    )


def _occluder_shape(occluder: _Occluder, centre: np.ndarray) -> _Shape:
    half = occluder.size / 2
    if occluder.kind == "ellipse":
        return _Shape("ellipse", centre[None], half)
    if occluder.kind == "rect":
        corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half + centre
        return _Shape("polygon", corners, np.zeros(0))
    return _Shape("polygon", occluder.outline * occluder.size + centre, np.zeros(0))
