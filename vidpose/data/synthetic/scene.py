"""Sampling a video's plan: :func:`make_scene` draws the background, the people and
their motion, the occluders and the ignore regions from one numpy Generator, before
any frame is drawn; the :class:`~vidpose.data.synthetic.render.Scene` it returns
renders frame by frame.
"""

from __future__ import annotations

import math

import numpy as np

from vidpose.data.synthetic.appearance import _make_background
from vidpose.data.synthetic.motion import _PersonTrack, _plan_person
from vidpose.data.synthetic.occluders import _plan_occluder
from vidpose.data.synthetic.render import Scene


def make_scene(
    rng: np.random.Generator,
    *,
    frames: int,
    persons: int,
    size: tuple[int, int],
    occlusion: float,
) -> Scene:
    """Plan a video: background, ``persons`` annotated people, occluders (each person is
    crossed by one with probability ``occlusion``), and in about a third of the videos
    an ignore region over a few small unannotated people far away.

    Args:
        rng: the only source of randomness.
        frames: number of frames F.
        persons: annotated people P.
        size: (width, height) of the frames in pixels.
        occlusion: probability in [0, 1] that an occluder crosses a given person.
    """
    width, height = size
    horizon = height * rng.uniform(0.15, 0.35)
    # Ground-plane scale: a person whose feet touch the bottom edge is 0.8 frames tall.
    slope = 0.8 * height / (height - horizon)
    margin = max(4, int(0.06 * width))
    background = _make_background(rng, width + 2 * margin, height + 2 * margin, horizon + margin)
    pan_start = rng.uniform(0, 2 * margin, 2) * [1.0, 0.3]
    pan_end = rng.uniform(0, 2 * margin, 2) * [1.0, 0.3]
    steps = np.linspace(0, 1, frames)[:, None]
    pan = np.round(pan_start + (pan_end - pan_start) * steps).astype(np.int64)

    tracks: list[_PersonTrack] = []
    for index in range(persons):
        start, walker = None, None
        if index >= 1 and rng.uniform() < 0.5:
            # Cross the first person: start mirrored and head the other way.
            first = tracks[0]
            feet = first.root[0, 1] + 0.49 * first.height[0]
            start = (width - first.root[0, 0], feet * rng.uniform(0.95, 1.05), -first.yaw[0])
            walker = True
        tracks.append(
            _plan_person(rng, frames, width, height, horizon, slope, start=start, walker=walker)
        )

    extras, polygons = [], []
    if rng.uniform() < 0.35:
        # Small people far away, left unannotated and covered by an ignore region, as
        # PoseTrack does for crowds in the background.
        left = rng.uniform() < 0.5
        region_width = rng.uniform(0.18, 0.3) * width
        x0 = margin + (
            rng.uniform(0.0, 0.05) * width
            if left
            else width - region_width - rng.uniform(0.0, 0.05) * width
        )
        feet = horizon + rng.uniform(0.2, 0.28) * height / slope
        body = slope * (feet - horizon)
        for _ in range(int(rng.integers(1, 3))):
            x = x0 + rng.uniform(0.25, 0.75) * region_width
            start = (
                x,
                feet + margin + rng.uniform(-0.02, 0.02) * height,
                rng.uniform(-math.pi, math.pi),
            )
            extras.append(
                _plan_person(
                    rng, frames, width + 2 * margin, height + 2 * margin, horizon + margin, slope,
                    start=start, walker=False, feet_range=(start[1] - 1, start[1] + 1),
                )
            )  # fmt: skip
        top, bottom = feet + margin - 1.25 * body, feet + margin + 0.1 * body
        jitter = rng.uniform(-0.04, 0.04, (4, 2)) * [region_width, body]
        polygons.append(
            np.array(
                [[x0, top], [x0 + region_width, top], [x0 + region_width, bottom], [x0, bottom]]
            )
            + jitter
        )

    occluders = [
        _plan_occluder(rng, track, frames) for track in tracks if rng.uniform() < occlusion
    ]
    noise = np.clip(rng.normal(0, 3.0, (height + 16, width + 16, 3)), -127, 127).astype(np.int8)
    flicker = np.cumsum(rng.normal(0, 0.01, frames))
    return Scene(
        size=(width, height),
        num_frames=frames,
        background=background,
        pan=pan,
        persons=tracks,
        extras=extras,
        occluders=occluders,
        ignore_polygons=polygons,
        noise=noise,
        noise_offsets=rng.integers(0, 16, (frames, 2)),
        brightness=1.0 + np.clip(flicker - flicker.mean(), -0.06, 0.06),
    )
