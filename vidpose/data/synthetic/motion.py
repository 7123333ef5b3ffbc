"""How a synthetic person moves: a trajectory for the whole video
(:class:`_PersonTrack`), planned before any frame is drawn.

Walkers follow a gait cycle (hip/knee angles, arm swing opposite to the legs, pelvis
bob) and turn at the image borders and now and then; stand-ers turn in place and
gesture. Everyone stands on a ground plane: lower in the picture is closer and larger
(:func:`_ground_height`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vidpose.data.synthetic.appearance import _Appearance, _make_appearance
from vidpose.data.synthetic.body import _Pose


@dataclass
class _PersonTrack:
    """A person's whole trajectory, one entry per frame (image pixels)."""

    root: np.ndarray  # [F, 2] pelvis position
    height: np.ndarray  # [F] body height in pixels
    yaw: np.ndarray  # [F] heading: 0 faces the camera, +pi/2 faces image right
    poses: list[_Pose]
    appearance: _Appearance


def _ground_height(feet_y: np.ndarray, horizon: float, slope: float) -> np.ndarray:
    """Body height of a person standing at ``feet_y`` on a ground plane whose horizon is
    at ``horizon``: proportional to the distance below the horizon (pinhole camera)."""
    return slope * (feet_y - horizon)


def _plan_person(
    rng: np.random.Generator,
    frames: int,
    width: int,
    height: int,
    horizon: float,
    slope: float,
    start: tuple[float, float, float] | None = None,
    walker: bool | None = None,
    feet_range: tuple[float, float] | None = None,
) -> _PersonTrack:
    """Simulate one person in a ``width`` x ``height`` picture.

    A walker follows a gait cycle and turns at the image borders and now and then; a
    stand-er turns in place and gestures. ``start`` = (x, feet_y, heading) forces the
    start (people crossing), ``walker`` the kind (None: random), ``feet_range`` the
    band of feet heights (default: people 0.36 .. 0.8 frames tall).
    """
    feet_low, feet_high = feet_range or (horizon + 0.36 * height / slope, 0.97 * height)
    walker = bool(rng.uniform() < 0.65) if walker is None else walker
    if start is None:
        feet_y = rng.uniform(feet_low, feet_high)
        x = rng.uniform(0.15, 0.85) * width
        heading = rng.uniform(-math.pi, math.pi)
        if walker and rng.uniform() < 0.6:  # mostly across the picture: side views
            heading = rng.choice([-1, 1]) * rng.uniform(1.1, 2.0)
    else:
        x, feet_y, heading = start
    speed = rng.uniform(0.025, 0.05) if walker else 0.0  # body heights per frame
    turn_rate = rng.uniform(0.15, 0.35)  # radians per frame while turning
    turn_way = rng.choice([-1.0, 1.0])  # which way a 180-degree turn goes
    spin = rng.uniform(-0.08, 0.08) if not walker else 0.0
    phase = rng.uniform(0, 2 * math.pi)
    yaw, target = heading, heading

    gesture = rng.choice(["relaxed", "wave", "flap", "reach"], p=[0.4, 0.25, 0.2, 0.15])
    if walker and gesture in ("flap", "reach"):
        gesture = "relaxed"
    wave_side = int(rng.integers(2))
    rhythm = rng.uniform(0.25, 0.6)  # gesture angular speed, radians per frame
    base_raise = rng.uniform(0.08, 0.25, 2)
    base_elbow = rng.uniform(0.15, 0.6, 2)
    stance = rng.uniform(0.02, 0.12) if not walker else 0.03
    lean = rng.uniform(-0.03, 0.12) if walker else rng.uniform(-0.05, 0.06)

    roots, heights, yaws, poses = [], [], [], []
    for t in range(frames):
        body = float(_ground_height(np.array(feet_y), horizon, slope))
        # Turn towards the target heading; a half turn goes the person's preferred way.
        delta = (target - yaw + math.pi) % (2 * math.pi) - math.pi
        if abs(abs(delta) - math.pi) < 0.3:
            delta = turn_way * abs(delta)
        yaw += float(np.clip(delta, -turn_rate, turn_rate)) + spin
        # Walk along the current heading; slow down while turning.
        step = speed * body * max(0.25, math.cos(delta / 2) ** 2)
        x += step * math.sin(yaw)
        feet_y += 0.35 * step * math.cos(yaw)  # depth motion is foreshortened on the ground
        margin = 0.22 * body
        if walker:
            ahead_x = x + 6 * step * math.sin(yaw)
            ahead_y = feet_y + 6 * 0.35 * step * math.cos(yaw)
            if not margin < ahead_x < width - margin:
                target = -target  # mirror the x component of the heading
            elif not feet_low < ahead_y < feet_high:
                target = math.pi - target  # mirror the depth component
            elif rng.uniform() < 0.03:
                target = rng.uniform(-math.pi, math.pi)
        x = float(np.clip(x, margin, width - margin))
        feet_y = float(np.clip(feet_y, feet_low, feet_high))
        body = float(_ground_height(np.array(feet_y), horizon, slope))
        gait = min(1.0, speed / 0.04) * max(0.25, math.cos(delta / 2) ** 2) if walker else 0.0
        # Stride of about 0.75 body heights per gait cycle.
        phase += 2 * math.pi * speed * max(0.25, math.cos(delta / 2) ** 2) / 0.75
        pose = _Pose(phase=phase, gait=gait, stance=stance, lean=lean)
        raise_, forward = list(base_raise), [0.0, 0.0]
        elbow, elbow_up = list(base_elbow), [0.0, 0.0]
        beat = math.sin(rhythm * t)
        if gesture == "wave":
            raise_[wave_side] = 2.2 + 0.25 * beat
            elbow[wave_side], elbow_up[wave_side] = 0.9 + 0.5 * beat, 1.0
        elif gesture == "flap":
            raise_ = [1.3 + 1.1 * beat] * 2
            elbow = [0.2, 0.2]
        elif gesture == "reach":
            forward = [1.2 + 0.3 * beat, 0.6 - 0.4 * beat]
            elbow = [0.3, 0.8]
        pose.arm_raise, pose.arm_forward = tuple(raise_), tuple(forward)
        pose.elbow, pose.elbow_up = tuple(elbow), tuple(elbow_up)
        if not walker:
            pose.knee = (0.05 + 0.05 * rng.uniform(), 0.05 + 0.05 * rng.uniform())
        roots.append((x, feet_y - 0.49 * body))  # the pelvis is 0.49 body heights above the feet
        heights.append(body)
        yaws.append(yaw)
        poses.append(pose)

    # Textures tile, so they need not cover outstretched arms: one body height is enough.
    texture_size = int(max(heights)) + 8
    return _PersonTrack(
        root=np.array(roots),
        height=np.array(heights),
        yaw=np.array(yaws),
        poses=poses,
        appearance=_make_appearance(rng, texture_size),
    )
