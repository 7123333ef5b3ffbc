"""How the synthetic pictures look: textures and colours, a person's clothes, skin and
hair (:class:`_Appearance`), and the cluttered background of a scene.

Everything is drawn from the video's numpy Generator, so the seed fixes the looks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw


def _texture(
    rng: np.random.Generator, size: int, colour: np.ndarray, patterned: bool = True
) -> np.ndarray:
    """[size, size, 3] uint8 texture around ``colour`` (RGB 0..255): plain, stripes,
    checks or blotches (only plain or blotches unless ``patterned``), with fine noise."""
    if patterned:
        kind = rng.choice(["plain", "stripes", "checks", "blotches"], p=[0.3, 0.3, 0.15, 0.25])
    else:
        kind = rng.choice(["plain", "blotches"])
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    pattern = np.zeros((size, size), dtype=np.float32)
    period = rng.uniform(3.0, 9.0)
    if kind == "stripes":
        angle = rng.uniform(0, math.pi)
        pattern = np.sign(
            np.sin((xs * math.cos(angle) + ys * math.sin(angle)) * 2 * math.pi / period)
        )
    elif kind == "checks":
        pattern = np.sign(np.sin(xs * 2 * math.pi / period) * np.sin(ys * 2 * math.pi / period))
    elif kind == "blotches":
        pattern = _smooth_noise(rng, size, size, cells=max(2, size // 10))
    strength = rng.uniform(12, 40)
    noise = rng.normal(0.0, 6.0, (size, size, 1)).astype(np.float32)
    image = colour[None, None, :] + (pattern[..., None] * strength + noise)
    return np.clip(image, 0, 255).astype(np.uint8)


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """[height, width] float32 low-frequency noise in about -1..1 (a random grid
    upsampled bilinearly)."""
    grid = rng.uniform(0, 255, (cells + 1, cells + 1)).astype(np.uint8)
    smooth = Image.fromarray(grid).resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(smooth, dtype=np.float32) / 127.5 - 1.0


def _random_colour(
    rng: np.random.Generator, saturation: tuple[float, float], value: tuple[float, float]
) -> np.ndarray:
    """An RGB colour (float 0..255) of random hue and the given saturation/value ranges."""
    hue = rng.uniform(0, 1)
    sat, val = rng.uniform(*saturation), rng.uniform(*value)
    sector, fraction = divmod(hue * 6, 1)
    p, q, t = val * (1 - sat), val * (1 - sat * fraction), val * (1 - sat * (1 - fraction))
    rgb = [(val, t, p), (q, val, p), (p, val, t), (p, q, val), (t, p, val), (val, p, q)][
        int(sector) % 6
    ]
    return np.array(rgb) * 255


_SKIN_TONES = np.array(
    [[241, 194, 167], [224, 172, 134], [198, 134, 96], [161, 102, 68], [110, 70, 45]]
)
_HAIR = np.array([[30, 22, 18], [70, 45, 30], [120, 80, 40], [200, 170, 110], [110, 110, 110]])


@dataclass
class _Appearance:
    """Textures of one person, in the person's own frame (they move with the person)."""

    textures: dict[str, np.ndarray]  # shirt, sleeve, pants, skin, shoes, hair: [S, S, 3] uint8
    side_tint: float  # left parts x (1 + tint), right parts x (1 - tint)
    build: float  # width factor of the parts
    limbs: float  # length factor of the limbs
    eye_colour: tuple[int, int, int]
    nose_colour: tuple[int, int, int]


def _make_appearance(rng: np.random.Generator, texture_size: int) -> _Appearance:
    skin = _SKIN_TONES[rng.integers(len(_SKIN_TONES))] + rng.normal(0, 8, 3)
    shirt = _random_colour(rng, (0.2, 0.9), (0.3, 0.95))
    pants = _random_colour(rng, (0.1, 0.7), (0.15, 0.6))
    textures = {
        "shirt": _texture(rng, texture_size, shirt),
        "pants": _texture(rng, texture_size, pants),
        "skin": np.clip(skin + rng.normal(0, 3, (texture_size, texture_size, 3)), 0, 255).astype(
            np.uint8
        ),
        "shoes": _texture(rng, texture_size, _random_colour(rng, (0.0, 0.5), (0.05, 0.35))),
        "hair": _texture(
            rng, texture_size, _HAIR[rng.integers(len(_HAIR))] + rng.normal(0, 6, 3), False
        ),
    }
    # Short sleeves show skin on the forearms.
    textures["sleeve"] = textures["shirt"] if rng.uniform() < 0.6 else textures["skin"]
    return _Appearance(
        textures=textures,
        side_tint=float(rng.uniform(0.04, 0.12) * rng.choice([-1, 1])),
        build=float(rng.uniform(0.9, 1.15)),
        limbs=float(rng.uniform(0.96, 1.04)),
        eye_colour=(25, 20, 20),
        nose_colour=tuple(int(c) for c in np.clip(skin * 0.7, 0, 255)),
    )


_PART_TEXTURE = {
    "torso": "shirt", "neck": "skin", "head": "skin",
    "thigh": "pants", "shin": "pants", "foot": "shoes",
    "upper_arm": "shirt", "forearm": "sleeve", "hand": "skin",
}  # fmt: skip


def _make_background(
    rng: np.random.Generator, width: int, height: int, horizon: float
) -> np.ndarray:
    """[height, width, 3] uint8 cluttered scene: wall and floor gradients, random shapes
    (boxes, discs, polygons, poles, limb-like sticks), blotchy and fine noise."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    wall_a, wall_b = (
        _random_colour(rng, (0.05, 0.5), (0.3, 0.9)),
        _random_colour(rng, (0.05, 0.5), (0.3, 0.9)),
    )
    floor_a, floor_b = (
        _random_colour(rng, (0.05, 0.4), (0.2, 0.7)),
        _random_colour(rng, (0.05, 0.4), (0.2, 0.7)),
    )
    angle = rng.uniform(0, 2 * math.pi)
    ramp = (xs * math.cos(angle) + ys * math.sin(angle)) / max(width, height) * 0.5 + 0.5
    wall = wall_a * (1 - ramp[..., None]) + wall_b * ramp[..., None]
    depth = np.clip((ys - horizon) / max(1.0, height - horizon), 0, 1)[..., None]
    floor = floor_a * (1 - depth) + floor_b * depth
    image = np.where((ys >= horizon)[..., None], floor, wall)
    image += 25 * _smooth_noise(rng, height, width, cells=8)[..., None]
    canvas = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    scale = max(width, height)
    for _ in range(int(rng.integers(14, 30))):
        colour = tuple(int(c) for c in _random_colour(rng, (0.0, 0.9), (0.1, 0.95)))
        kind = rng.choice(
            ["rect", "ellipse", "polygon", "pole", "stick"], p=[0.3, 0.2, 0.2, 0.15, 0.15]
        )
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        w, h = rng.uniform(0.03, 0.25, 2) * scale
        if kind == "rect":
            draw.rectangle((x, y, x + w, y + h), fill=colour)
        elif kind == "ellipse":
            draw.ellipse((x, y, x + w, y + h), fill=colour)
        elif kind == "polygon":
            corners = rng.uniform(-0.5, 0.5, (int(rng.integers(3, 7)), 2)) * [w, h] + [x, y]
            draw.polygon([tuple(p) for p in corners], fill=colour)
        elif kind == "pole":
            draw.rectangle((x, 0 if rng.uniform() < 0.5 else y, x + w * 0.15, height), fill=colour)
        else:  # a limb-like stick with round ends: the detector must not take it for a person
            radius = rng.uniform(0.01, 0.03) * scale
            end = (x + rng.uniform(-1, 1) * w, y + rng.uniform(-1, 1) * h)
            draw.line([(x, y), end], fill=colour, width=max(1, int(2 * radius)))
            for cx, cy in ((x, y), end):
                draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=colour)
    image = np.asarray(canvas, dtype=np.float32)
    image += rng.normal(0, 5, (height, width, 1)).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)
