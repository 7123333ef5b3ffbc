"""Procedural PoseTrack21-format videos with exact ground truth.

A scene is planned once (:func:`make_scene`: background, people's motion, occluders,
ignore regions) and rendered frame by frame (:meth:`Scene.render`), so videos of any
length stream through memory. :func:`generate_dataset` writes a whole dataset:

    images/{train,val}/<video>/<6-digit frame>.jpg
    posetrack_data/{train,val}/<video>.json     PoseTrack21 layout, every field
    videos/{train,val}/<video>.mp4              the same frames as H.264
    coco/{train,val}.json                       the labeled frames in COCO keypoint format
    hidden_by/{train,val}.json                  why each hidden joint is hidden (see below)

People are articulated 2D projections of a small 3D stick body (x to the person's
left, y up, z forward, in body heights), rotated about the vertical axis by their
heading and drawn as textured capsules far-to-near, so turning swaps which side is in
front. Walkers follow a gait cycle (hip/knee angles, arm swing opposite to the legs,
pelvis bob), stand-ers turn and gesture; everyone's scale follows a ground plane
(lower in the picture = closer = larger). Occluders cross people and people cross
each other, so some joints are hidden in one frame and visible in its neighbours.

Ground truth is exact: every keypoint is the centre of the disc that ends the drawn
limb at that joint (nose: the centre of the nose dot; head top / bottom: just inside
the head). A part-label image rendered alongside the picture decides visibility: a
joint has flag 1 when the pixel under it belongs to one of the person's parts that
meet at that joint, else 0 (still annotated, as in PoseTrack). Joints outside the
image are unannotated (0, 0, 0); the ear slots are always (0, 0, 0).

What hides a joint is known too, which PoseTrack's flag cannot say: the part label
under it is an occluder, another person, or the person's own body (a far-side limb
behind the torso, a nose facing away). ``hidden_by/<split>.json`` lists, for every
labeled person, the cause code of each joint (``HIDDEN_BY``), keyed by image id and
track id; benchmarks score occluded joints by cause with it (:func:`read_hidden_by`).

Everything random comes from one numpy Generator per video, seeded by
(seed, split, video index): the same seed gives the same bytes.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from vidpose.config import SynthConfig
from vidpose.data.json_fields import write_json_atomic
from vidpose.data.posetrack import posetrack_category, posetrack_image_id, write_posetrack_json
from vidpose.data.records import FrameRecord, PersonAnnotation, VideoRecord
from vidpose.data.skeleton import POSETRACK

NUM_JOINTS = POSETRACK.num_joints
FPS = 25

# ----------------------------------------------------------------------------- body model

# Drawn parts; label value of part k of person p is 1 + p * NUM_PARTS + k.
PARTS = (
    "torso", "neck", "head",
    "left_thigh", "left_shin", "left_foot", "right_thigh", "right_shin", "right_foot",
    "left_upper_arm", "left_forearm", "left_hand", "right_upper_arm", "right_forearm", "right_hand",
)  # fmt: skip
NUM_PARTS = len(PARTS)
OCCLUDER_LABEL = -1
# Why a joint is hidden, codes of SyntheticFrame.hidden_by and hidden_by/<split>.json;
# 0 also for joints that are not annotated.
HIDDEN_BY = ("seen", "occluder", "another person", "own body")
_PART = {name: index for index, name in enumerate(PARTS)}

# Parts whose pixels make a joint "seen": the limbs that meet at the joint (shoulders
# and hips also count the torso, which covers them in frontal views).
_JOINT_PARTS: dict[str, tuple[str, ...]] = {
    "nose": ("head",),
    "head_bottom": ("head", "neck"),
    "head_top": ("head",),
    **{
        f"{side}_{joint}": tuple(f"{side}_{part}" for part in parts) + extra
        for side in ("left", "right")
        for joint, parts, extra in (
            ("shoulder", ("upper_arm",), ("torso",)),
            ("elbow", ("upper_arm", "forearm"), ()),
            ("wrist", ("forearm", "hand"), ()),
            ("hip", ("thigh",), ("torso",)),
            ("knee", ("thigh", "shin"), ()),
            ("ankle", ("shin", "foot"), ()),
        )
    },
}
# [K, NUM_PARTS] bool: which parts reveal each keypoint slot (the ears: none).
_REVEALS = np.zeros((NUM_JOINTS, NUM_PARTS), dtype=bool)
for _joint, _parts in _JOINT_PARTS.items():
    for _part in _parts:
        _REVEALS[POSETRACK.index(_joint), _PART[_part]] = True

# Proportions in body heights (ankle to head top is about 1), y up from the pelvis.
_HIP = (0.075, -0.02)  # half width, height
_SHOULDER = (0.12, 0.30)
_NECK_BASE = 0.31
_HEAD_BOTTOM, _HEAD_CENTRE, _HEAD_TOP = 0.375, 0.44, 0.505
_HEAD_RADII = (0.058, 0.075)  # x, y; the head ellipse reaches 0.365 .. 0.515
_NOSE = (0.43, 0.052)  # height, forward
_EYE = (0.022, 0.452, 0.045)  # half spacing, height, forward
_THIGH, _SHIN, _UPPER_ARM, _FOREARM, _HAND, _FOOT = 0.235, 0.235, 0.17, 0.15, 0.06, 0.075
# Part radii (times the person's build factor).
_RADIUS = {
    "neck": 0.03, "thigh": 0.056, "shin": 0.044, "foot": 0.026,
    "upper_arm": 0.038, "forearm": 0.032, "hand": 0.027,
    "torso_shoulder": 0.05, "torso_hip": 0.058, "torso_chest": 0.075, "torso_belly": 0.07,
}  # fmt: skip
# Draw-order depth offsets: arms and legs level with the body's centre plane are drawn
# over the torso, the head over the neck.
_TORSO_DEPTH, _NECK_DEPTH, _HEAD_DEPTH = -0.02, 0.005, 0.01


@dataclass
class _Pose:
    """Joint angles (radians) of one person in one frame."""

    phase: float = 0.0  # gait phase of the left leg
    gait: float = 0.0  # 0 standing .. ~1.2 brisk walk (scales the swing amplitudes)
    arm_raise: tuple[float, float] = (0.12, 0.12)  # abduction, left / right
    arm_forward: tuple[float, float] = (0.0, 0.0)  # extra shoulder flexion
    elbow: tuple[float, float] = (0.3, 0.3)  # elbow flexion
    elbow_up: tuple[float, float] = (0.0, 0.0)  # 0: forearm bends forward, 1: upward
    stance: float = 0.04  # leg abduction
    knee: tuple[float, float] = (0.05, 0.05)  # extra knee flexion
    lean: float = 0.0  # forward lean of the upper body


def _body_points(pose: _Pose, build: float, limbs: float) -> dict[str, np.ndarray]:
    """3D points of the body in body heights: x to the person's left, y up, z forward.

    Returns named [3] points: every PoseTrack joint plus the helper points the parts
    need (neck base, head centre, eyes, hand tips, toes, torso centres).
    """
    points: dict[str, np.ndarray] = {}
    bob = 0.012 * pose.gait * math.cos(2 * pose.phase)  # the pelvis rises twice a cycle
    lean_sin, lean_cos = math.sin(pose.lean), math.cos(pose.lean)

    def upper(x: float, y: float, z: float) -> np.ndarray:
        # points above the pelvis lean forward about the pelvis
        return np.array([x, y * lean_cos - z * lean_sin + bob, y * lean_sin + z * lean_cos])

    for side, sign, phase in (("left", 1.0, pose.phase), ("right", -1.0, pose.phase + math.pi)):
        index = 0 if side == "left" else 1
        # Legs: hip flexion swings sinusoidally; the knee flexes in the swing phase
        # (thigh moving forward, cos(phase) > 0), most shortly before mid-swing.
        hip = np.array([sign * _HIP[0] * build, _HIP[1] + bob, 0.0])
        thigh_angle = 0.45 * pose.gait * math.sin(phase)
        knee_flex = pose.knee[index] + 0.75 * pose.gait * max(0.0, math.cos(phase - 0.3)) ** 2
        spread = math.sin(pose.stance), math.cos(pose.stance)
        thigh = np.array(
            [
                sign * spread[0],
                -math.cos(thigh_angle) * spread[1],
                math.sin(thigh_angle) * spread[1],
            ]
        )
        shin_angle = thigh_angle - knee_flex
        shin = np.array(
            [sign * spread[0], -math.cos(shin_angle) * spread[1], math.sin(shin_angle) * spread[1]]
        )
        knee = hip + _THIGH * limbs * thigh
        ankle = knee + _SHIN * limbs * shin
        points[f"{side}_hip"], points[f"{side}_knee"], points[f"{side}_ankle"] = hip, knee, ankle
        points[f"{side}_toe"] = ankle + np.array([0.0, -0.02, _FOOT * limbs])

        # Arms swing against the same-side leg.
        shoulder = upper(sign * _SHOULDER[0] * build, _SHOULDER[1], 0.0)
        raise_, forward = (
            pose.arm_raise[index],
            pose.arm_forward[index] - 0.35 * pose.gait * math.sin(phase),
        )
        upper_arm = np.array(
            [
                sign * math.sin(raise_),
                -math.cos(raise_) * math.cos(forward),
                math.cos(raise_) * math.sin(forward),
            ]
        )
        elbow = shoulder + _UPPER_ARM * limbs * upper_arm
        # The forearm turns away from the upper arm towards a bend direction between
        # "forward" and "up", made perpendicular to the upper arm.
        bend = np.array([0.0, pose.elbow_up[index], 1.0 - pose.elbow_up[index]])
        bend = bend - bend.dot(upper_arm) * upper_arm
        norm = np.linalg.norm(bend)
        bend = bend / norm if norm > 1e-6 else np.array([0.0, 0.0, 1.0])
        flex = pose.elbow[index]
        forearm = math.cos(flex) * upper_arm + math.sin(flex) * bend
        wrist = elbow + _FOREARM * limbs * forearm
        points[f"{side}_shoulder"], points[f"{side}_elbow"], points[f"{side}_wrist"] = (
            shoulder,
            elbow,
            wrist,
        )
        points[f"{side}_hand_tip"] = wrist + _HAND * limbs * forearm
        points[f"{side}_eye"] = upper(sign * _EYE[0], _EYE[1], _EYE[2])

    points["neck_base"] = upper(0.0, _NECK_BASE, 0.0)
    points["head_bottom"] = upper(0.0, _HEAD_BOTTOM, 0.0)
    points["head_centre"] = upper(0.0, _HEAD_CENTRE, 0.0)
    points["head_top"] = upper(0.0, _HEAD_TOP, 0.0)
    points["nose"] = upper(0.0, _NOSE[0], _NOSE[1])
    points["chest"] = upper(0.0, 0.2, 0.0)
    points["belly"] = np.array([0.0, 0.05 + bob, 0.0])
    return points


# ----------------------------------------------------------------------------- appearance


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


# ----------------------------------------------------------------------------- motion


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


# ----------------------------------------------------------------------------- background


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


# ----------------------------------------------------------------------------- rasterising


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


@dataclass
class _ProjectedBody:
    """A person's points in image pixels, and the depth (towards the camera, body heights)."""

    uv: dict[str, np.ndarray]
    depth: dict[str, float]
    yaw: float
    height: float


def _project(track: _PersonTrack, t: int, offset: np.ndarray | None = None) -> _ProjectedBody:
    """The body of frame ``t`` in image pixels (``offset`` is subtracted from the root)."""
    appearance = track.appearance
    points = _body_points(track.poses[t], appearance.build, appearance.limbs)
    yaw, body = float(track.yaw[t]), float(track.height[t])
    root = track.root[t] - (offset if offset is not None else 0.0)
    cos, sin = math.cos(yaw), math.sin(yaw)
    uv, depth = {}, {}
    for name, (x, y, z) in points.items():
        # Rotation about the vertical axis: forward (z) goes to image right at yaw
        # +pi/2, and the person's left (x) faces away from the camera then.
        rotated_x, rotated_z = x * cos + z * sin, -x * sin + z * cos
        uv[name] = root + body * np.array([rotated_x, -y])
        depth[name] = rotated_z
    return _ProjectedBody(uv=uv, depth=depth, yaw=yaw, height=body)


def _body_parts(body: _ProjectedBody, build: float) -> list[tuple[float, str, _Shape]]:
    """(depth, part name, shape) of every part, unsorted."""
    uv, depth, scale = body.uv, body.depth, body.height * build

    def radius(name: str) -> float:
        return max(1.0, _RADIUS[name] * scale)

    def capsule(a: str, b: str, size: str) -> _Shape:
        return _Shape("discs", np.stack([uv[a], uv[b]]), np.array([radius(size)] * 2))

    parts = []
    for side in ("left", "right"):
        for part, a, b in (
            ("thigh", "hip", "knee"), ("shin", "knee", "ankle"), ("foot", "ankle", "toe"),
            ("upper_arm", "shoulder", "elbow"), ("forearm", "elbow", "wrist"),
            ("hand", "wrist", "hand_tip"),
        ):  # fmt: skip
            first, second = f"{side}_{a}", f"{side}_{b}"
            parts.append(
                ((depth[first] + depth[second]) / 2, f"{side}_{part}", capsule(first, second, part))
            )
    torso_points = ["left_shoulder", "right_shoulder", "left_hip", "right_hip", "chest", "belly"]
    torso_radii = [
        "torso_shoulder",
        "torso_shoulder",
        "torso_hip",
        "torso_hip",
        "torso_chest",
        "torso_belly",
    ]
    torso = _Shape(
        "discs",
        np.stack([uv[name] for name in torso_points]),
        np.array([radius(r) for r in torso_radii]),
    )
    parts.append((_TORSO_DEPTH, "torso", torso))
    parts.append((_NECK_DEPTH, "neck", capsule("neck_base", "head_bottom", "neck")))
    head_radii = np.array(_HEAD_RADII) * body.height
    parts.append((_HEAD_DEPTH, "head", _Shape("ellipse", uv["head_centre"][None], head_radii)))
    return parts


def _paint_person(
    canvas: _Canvas,
    track: _PersonTrack,
    t: int,
    person: int | None,
    offset: np.ndarray | None = None,
) -> _ProjectedBody:
    """Draw one person's parts far-to-near; ``person`` None draws an unannotated extra
    (no labels, no silhouette)."""
    body = _project(track, t, offset)
    appearance = track.appearance
    size = appearance.textures["skin"].shape[0]
    origin = body.uv["belly"] - size / 2  # the texture moves with the person
    outline = max(0.6, body.height / 120)
    for depth, name, shape in sorted(_body_parts(body, appearance.build), key=lambda part: part[0]):
        side, _, kind = (
            name.partition("_") if name.startswith(("left", "right")) else ("", "", name)
        )
        # Parts on the far side are in shadow; a per-person tint tells left from right
        # without colour-coding them.
        shade = 1.0 - 0.28 * float(np.clip(-depth / 0.12, 0.0, 1.0))
        if side:
            shade *= 1.0 + appearance.side_tint * (1 if side == "left" else -1)
        label = 1 + person * NUM_PARTS + _PART[name] if person is not None else None
        canvas.paint(
            shape, appearance.textures[_PART_TEXTURE[kind]], origin, shade, label, person, outline
        )
        if name == "head":
            _paint_face(canvas, body, shape, appearance, origin, outline)
    return body


def _paint_face(
    canvas: _Canvas,
    body: _ProjectedBody,
    head: _Shape,
    appearance: _Appearance,
    origin: np.ndarray,
    outline: float,
) -> None:
    """Hair over the back and top of the head, eyes and nose on the side facing the camera."""
    centre, (rx, ry) = head.points[0], head.radii
    facing = math.cos(body.yaw)  # 1: faces the camera, -1: shows the back of the head
    sideways = math.sin(body.yaw)  # + : faces image right
    # The hair ellipse sits up and to the back; seen from behind it covers the head.
    cover = 0.5 + 0.5 * max(0.0, -facing)
    hair_centre = centre + np.array([-sideways * 0.35 * rx, -(1.0 - cover) * 1.1 * ry])
    hair = _Shape("ellipse", hair_centre[None], np.array([rx, ry]) * (0.92 + 0.2 * cover))
    head_window = _rasterise(head, canvas.width, canvas.height)
    hair_window = _rasterise(hair, canvas.width, canvas.height)
    if head_window is not None and hair_window is not None:
        (x0, y0, x1, y1), head_mask = head_window
        (hx0, hy0, hx1, hy1), mask = hair_window
        hair_mask = np.zeros(head_mask.shape, dtype=bool)
        # the hair window, clipped to the head window
        ox0, oy0, ox1, oy1 = max(x0, hx0), max(y0, hy0), min(x1, hx1), min(y1, hy1)
        if ox1 > ox0 and oy1 > oy0:
            hair_mask[oy0 - y0 : oy1 - y0, ox0 - x0 : ox1 - x0] = (
                mask[oy0 - hy0 : oy1 - hy0, ox0 - hx0 : ox1 - hx0] > 0
            )
            hair_mask &= head_mask > 0
            pixels = _texture_window(appearance.textures["hair"], origin, (x0, y0, x1, y1))
            canvas.image[y0:y1, x0:x1][hair_mask] = pixels[hair_mask]
    dot = max(0.6, body.height * 0.009)
    for eye in ("left_eye", "right_eye"):
        if body.depth[eye] > 0.015:
            x, y = body.uv[eye]
            _dot(canvas.image, x, y, dot, appearance.eye_colour)
    if facing > -0.2:
        x, y = body.uv["nose"]
        _dot(canvas.image, x, y, max(1.0, body.height * 0.012), appearance.nose_colour)


def _dot(
    image: np.ndarray, x: float, y: float, radius: float, colour: tuple[int, int, int]
) -> None:
    """A filled disc of ``radius`` pixels centred on (x, y), drawn into the array."""
    height, width = image.shape[:2]
    x0, x1 = max(0, int(math.floor(x - radius))), min(width, int(math.ceil(x + radius)) + 1)
    y0, y1 = max(0, int(math.floor(y - radius))), min(height, int(math.ceil(y + radius)) + 1)
    if x1 <= x0 or y1 <= y0:
        return
    ys, xs = np.mgrid[y0:y1, x0:x1]
    inside = (xs - x) ** 2 + (ys - y) ** 2 <= radius**2 + 0.25
    image[y0:y1, x0:x1][inside] = colour


# ----------------------------------------------------------------------------- scenes

# A light 3x3 blur (cheaper than GaussianBlur): drawn edges are otherwise crisper than
# any camera's.
_SOFTEN = ImageFilter.Kernel((3, 3), [1, 2, 1, 2, 12, 2, 1, 2, 1], scale=24)


@dataclass
class SyntheticFrame:
    """One rendered frame and its exact ground truth (pixels of this frame).

    Attributes:
        image: [H, W, 3] uint8 RGB.
        keypoints: [P, 17, 3] x, y, v in the PoseTrack slots; v = 1 where the joint is
            seen, 0 where it is hidden (by an occluder, another person or its own
            body); (0, 0, 0) for joints outside the image and for the ear slots.
        boxes: [P, 4] x, y, w, h: tight box of the drawn person (occluded parts
            included), clipped to the image.
        head_boxes: [P, 4] x, y, w, h: box of the head ellipse.
        areas: [P] pixels covered by the person (occluded parts included).
        labels: [H, W] int32 part labels: 0 background, -1 occluder, 1 + p * NUM_PARTS
            + part index (``PARTS``) for person p.
        hidden_by: [P, 17] int cause codes (index into ``HIDDEN_BY``): 0 for seen or
            unannotated joints, else what covers the joint.
    """

    image: np.ndarray
    keypoints: np.ndarray
    boxes: np.ndarray
    head_boxes: np.ndarray
    areas: np.ndarray
    labels: np.ndarray
    hidden_by: np.ndarray


@dataclass
class Scene:
    """A planned video; :meth:`render` draws frame ``t`` (0 <= t < num_frames).

    Persons and occluders move in image pixels; the background, the unannotated
    people far away and the ignore regions over them move with a slow camera pan.
    """

    size: tuple[int, int]  # width, height
    num_frames: int
    background: np.ndarray  # [H + 2m, W + 2m, 3] uint8, wider than the view by the pan margin m
    pan: np.ndarray  # [F, 2] integer offset of the view into the background
    persons: list[_PersonTrack]
    extras: list[_PersonTrack] = field(default_factory=list)  # in background pixels
    occluders: list[_Occluder] = field(default_factory=list)
    ignore_polygons: list[np.ndarray] = field(default_factory=list)  # [N, 2] background pixels
    noise: np.ndarray | None = None  # [H + 16, W + 16, 3] int8 sensor noise, cropped per frame
    noise_offsets: np.ndarray | None = None  # [F, 2]
    brightness: np.ndarray | None = None  # [F] lighting flicker

    def ignore_regions(self, t: int) -> list[np.ndarray]:
        """Ignore polygons of frame ``t``: each [N, 2] x, y in image pixels."""
        return [polygon - self.pan[t] for polygon in self.ignore_polygons]

    def render(self, t: int) -> SyntheticFrame:
        """Draw frame ``t`` and measure its ground truth."""
        if not 0 <= t < self.num_frames:
            raise IndexError(f"frame {t} is outside the scene's {self.num_frames} frames")
        width, height = self.size
        px, py = (int(v) for v in self.pan[t])
        canvas = _Canvas(
            self.background[py : py + height, px : px + width].copy(), len(self.persons)
        )
        for extra in self.extras:
            _paint_person(canvas, extra, t, None, offset=self.pan[t])
        # Far to near: lower feet in the picture are closer to the camera.
        order = sorted(
            range(len(self.persons)),
            key=lambda p: self.persons[p].root[t, 1] + 0.49 * self.persons[p].height[t],
        )
        bodies: dict[int, _ProjectedBody] = {}
        for person in order:
            bodies[person] = _paint_person(canvas, self.persons[person], t, person)
        for occluder in self.occluders:
            centre = occluder.centre + occluder.velocity * t
            shape = _occluder_shape(occluder, centre)
            origin = centre - occluder.texture.shape[0] / 2
            canvas.paint(shape, occluder.texture, origin, 1.0, OCCLUDER_LABEL)

        image = canvas.image.astype(np.float32)
        if self.brightness is not None:
            image *= self.brightness[t]
        if self.noise is not None and self.noise_offsets is not None:
            nx, ny = self.noise_offsets[t]
            image += self.noise[ny : ny + height, nx : nx + width]
        picture = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
        picture = picture.filter(_SOFTEN)

        count = len(self.persons)
        keypoints = np.zeros((count, NUM_JOINTS, 3))
        hidden_by = np.zeros((count, NUM_JOINTS), dtype=np.int64)
        boxes, head_boxes, areas = np.zeros((count, 4)), np.zeros((count, 4)), np.zeros(count)
        for person, body in bodies.items():
            keypoints[person], hidden_by[person] = _measure_keypoints(body, canvas.labels, person)
            head = body.uv["head_centre"]
            radii = np.array(_HEAD_RADII) * body.height
            head_boxes[person] = [*(head - radii), *(2 * radii)]
            silhouette = canvas.silhouettes[person]
            areas[person] = silhouette.sum()
            if areas[person]:
                rows, columns = (
                    np.flatnonzero(silhouette.any(axis=1)),
                    np.flatnonzero(silhouette.any(axis=0)),
                )
                boxes[person] = [
                    columns[0],
                    rows[0],
                    columns[-1] - columns[0] + 1,
                    rows[-1] - rows[0] + 1,
                ]
        return SyntheticFrame(
            image=np.asarray(picture),
            keypoints=keypoints,
            boxes=boxes,
            head_boxes=head_boxes,
            areas=areas,
            labels=canvas.labels,
            hidden_by=hidden_by,
        )


def _occluder_shape(occluder: _Occluder, centre: np.ndarray) -> _Shape:
    half = occluder.size / 2
    if occluder.kind == "ellipse":
        return _Shape("ellipse", centre[None], half)
    if occluder.kind == "rect":
        corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half + centre
        return _Shape("polygon", corners, np.zeros(0))
    return _Shape("polygon", occluder.outline * occluder.size + centre, np.zeros(0))


def _measure_keypoints(
    body: _ProjectedBody, labels: np.ndarray, person: int
) -> tuple[np.ndarray, np.ndarray]:
    """[17, 3] x, y, v of a drawn person, read against the part-label image, and [17]
    the ``HIDDEN_BY`` code of each joint."""
    height, width = labels.shape
    keypoints = np.zeros((NUM_JOINTS, 3))
    causes = np.zeros(NUM_JOINTS, dtype=np.int64)
    for slot, name in enumerate(POSETRACK.joint_names):
        if name not in body.uv or not _REVEALS[slot].any():
            continue  # the ear slots: never annotated in PoseTrack
        x, y = body.uv[name]
        if not (0 <= x < width and 0 <= y < height):
            continue  # outside the image: not annotated, as in PoseTrack
        label = int(labels[min(height - 1, int(round(y))), min(width - 1, int(round(x)))])
        owner, part = divmod(label - 1, NUM_PARTS)
        seen = label >= 1 and owner == person and bool(_REVEALS[slot, part])
        if name == "nose" and math.cos(body.yaw) <= -0.2:
            seen = False  # the nose is only drawn on a head that does not face away
        keypoints[slot] = (x, y, 1.0 if seen else 0.0)
        if not seen:
            if label == OCCLUDER_LABEL:
                causes[slot] = HIDDEN_BY.index("occluder")
            elif label >= 1 and owner != person:
                causes[slot] = HIDDEN_BY.index("another person")
            else:
                causes[slot] = HIDDEN_BY.index("own body")
    return keypoints, causes


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


# ----------------------------------------------------------------------------- dataset

SPLITS = ("train", "val")
_SPLIT_CODE = {"train": 0, "val": 1}


def validation_labeled(num_frames: int) -> np.ndarray:
    """[F] bool: PoseTrack's validation pattern, the central 30 frames plus every 4th
    frame outside them (counted from the central block). Videos of 30 frames or fewer
    are fully labeled."""
    labeled = np.zeros(num_frames, dtype=bool)
    start = max(0, (num_frames - 30) // 2)
    stop = min(num_frames, start + 30)
    labeled[start:stop] = True
    labeled[start::-4] = True
    labeled[stop - 1 :: 4] = True
    return labeled


def video_name(split: str, index: int, videos: int) -> str:
    """Name of video ``index`` (0-based) of ``split``: ``000001_mpii_test`` for
    validation; training videos are numbered after the validation ones
    (``000009_mpii_train`` when there are 8 per split) so that image ids are unique
    across splits."""
    number = index + 1 if split == "val" else videos + index + 1
    return f"{number:06d}_mpii_{'test' if split == 'val' else 'train'}"


def generate_dataset(
    out_dir: str | os.PathLike,
    *,
    videos: int = SynthConfig.videos,
    frames: int = SynthConfig.frames,
    persons: int = SynthConfig.persons,
    size: tuple[int, int] = SynthConfig.size,
    occlusion: float = SynthConfig.occlusion,
    seed: int = SynthConfig.seed,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write a synthetic PoseTrack21-layout dataset (see the module docstring).

    Args:
        out_dir: dataset root to create.
        videos: videos per split (train and val each get this many).
        frames: frames per video.
        persons: annotated people per video (1..99).
        size: (width, height) of the frames, each at least 32.
        occlusion: probability in [0, 1] that an occluder crosses a person.
        seed: the same seed gives byte-identical JSON and images.
        overwrite: replace the dataset folders (images, posetrack_data, videos, coco)
            of a non-empty ``out_dir``; without it a non-empty ``out_dir`` is an error.
        progress: show a tqdm progress bar (one step per video).

    Returns:
        ``out_dir`` as a Path. Use it with ``data.format: posetrack21``, ``data.root:
        <out_dir>``, ``data.{train,val}_annotations: posetrack_data/{train,val}``.
    """
    from tqdm import tqdm

    from vidpose.visualization.video import VideoWriter

    _check_options(videos, frames, persons, size, occlusion)
    out = Path(out_dir)
    _prepare_output(out, overwrite)
    width, height = size
    with tqdm(total=2 * videos, desc="vidpose synth", unit="video", disable=not progress) as bar:
        for split in SPLITS:
            coco_images, coco_annotations, hidden = [], [], []
            for index in range(videos):
                name = video_name(split, index, videos)
                rng = np.random.default_rng([seed, _SPLIT_CODE[split], index])
                scene = make_scene(
                    rng, frames=frames, persons=persons, size=(width, height), occlusion=occlusion
                )
                labeled = (
                    validation_labeled(frames) if split == "val" else np.ones(frames, dtype=bool)
                )
                records = []
                video_path = out / "videos" / split / f"{name}.mp4"
                with VideoWriter(video_path, fps=FPS, crf=18, preset="ultrafast") as writer:
                    for t in range(frames):
                        rendered = scene.render(t)
                        image_path = f"images/{split}/{name}/{t:06d}.jpg"
                        (out / image_path).parent.mkdir(parents=True, exist_ok=True)
                        Image.fromarray(rendered.image).save(out / image_path, quality=92)
                        writer.write(rendered.image)
                        record = _frame_record(
                            scene, rendered, name, t, image_path, bool(labeled[t])
                        )
                        records.append(record)
                        if record.is_labeled:
                            hidden += [
                                [record.image_id, person.track_id, causes.tolist()]
                                for person, causes in zip(
                                    record.persons, rendered.hidden_by, strict=True
                                )
                            ]
                            coco_images.append(_coco_image(record, width, height))
                            coco_annotations += [
                                _coco_annotation(person, record.image_id, area)
                                for person, area in zip(record.persons, rendered.areas, strict=True)
                            ]
                video = VideoRecord(name=name, frames=records)
                write_posetrack_json(
                    video, out / "posetrack_data" / split / f"{name}.json", posetrack21=True
                )
                bar.update(1)
            coco = {
                "images": coco_images,
                "annotations": coco_annotations,
                "categories": [posetrack_category()],
            }
            write_json_atomic(out / "coco" / f"{split}.json", coco)
            write_json_atomic(
                out / "hidden_by" / f"{split}.json",
                {"codes": list(HIDDEN_BY), "image_id, track_id, codes": hidden},
            )
    return out


def _frame_record(
    scene: Scene, rendered: SyntheticFrame, name: str, t: int, image_path: str, labeled: bool
) -> FrameRecord:
    image_id = posetrack_image_id(name, t)
    video_number = int(name[:6])
    persons = []
    if labeled:
        for index, keypoints in enumerate(rendered.keypoints):
            persons.append(
                PersonAnnotation(
                    track_id=index,
                    bbox=rendered.boxes[index],
                    keypoints=keypoints,
                    head_box=rendered.head_boxes[index],
                    annotation_id=image_id * 100 + index,
                    # PoseTrack21's identity across videos: every synthetic person is new.
                    person_id=video_number * 100 + index,
                )
            )
    return FrameRecord(
        video=name,
        frame_index=t,
        image_id=image_id,
        image_path=image_path,
        is_labeled=labeled,
        num_frames=scene.num_frames,
        ignore_regions=scene.ignore_regions(t),
        persons=persons,
    )


def _coco_image(record: FrameRecord, width: int, height: int) -> dict:
    return {"id": record.image_id, "file_name": record.image_path, "width": width, "height": height}


def _coco_annotation(person: PersonAnnotation, image_id: int, area: float) -> dict:
    """COCO visibility: 2 seen, 1 annotated but hidden, 0 not annotated."""
    keypoints = []
    annotated = person.annotated
    for (x, y, seen), present in zip(person.keypoints, annotated, strict=True):
        flag = (2 if seen else 1) if present else 0
        keypoints += [round(float(x), 2), round(float(y), 2), flag]
    return {
        "id": person.annotation_id,
        "image_id": image_id,
        "category_id": 1,
        "bbox": [round(float(v), 2) for v in person.bbox],
        "keypoints": keypoints,
        "num_keypoints": int(annotated.sum()),
        "area": float(area),
        "iscrowd": 0,
    }


def _check_options(
    videos: int, frames: int, persons: int, size: tuple[int, int], occlusion: float
) -> None:
    problems = []
    if videos < 1:
        problems.append(f"videos must be at least 1, got {videos}")
    if frames < 1:
        problems.append(f"frames must be at least 1, got {frames}")
    if not 1 <= persons <= 99:
        problems.append(f"persons must be in 1..99 (annotation ids keep two digits), got {persons}")
    if len(size) != 2 or min(size) < 32:
        problems.append(f"size must be (width, height), each at least 32, got {tuple(size)}")
    if not 0.0 <= occlusion <= 1.0:
        problems.append(f"occlusion must be a probability in [0, 1], got {occlusion}")
    if problems:
        raise ValueError("synthetic dataset: " + "; ".join(problems))


_OUTPUTS = ("images", "posetrack_data", "videos", "coco", "hidden_by")


def _prepare_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{out}: folder is not empty; choose a new folder or pass overwrite=True "
                "(vidpose synth --overwrite) to replace its images, posetrack_data, videos "
                "and coco folders"
            )
        for name in _OUTPUTS:
            if (out / name).is_dir():
                shutil.rmtree(out / name)
    out.mkdir(parents=True, exist_ok=True)


def read_hidden_by(root: str | os.PathLike, split: str) -> dict[tuple[int, int], np.ndarray]:
    """The ``HIDDEN_BY`` codes of a generated split: (image id, track id) -> [17] int.

    Raises:
        FileNotFoundError: the dataset has no ``hidden_by/<split>.json`` (it was
            generated before the file existed, or is not synthetic).
    """
    path = Path(root) / "hidden_by" / f"{split}.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no hidden-joint causes (only datasets written by vidpose synth have them)"
        )
    content = json.loads(path.read_text())
    if content.get("codes") != list(HIDDEN_BY):
        raise ValueError(
            f"{path}: field 'codes' is {content.get('codes')}, expected {list(HIDDEN_BY)}"
        )
    return {
        (int(image_id), int(track_id)): np.asarray(codes, dtype=np.int64)
        for image_id, track_id, codes in content["image_id, track_id, codes"]
    }
