"""The stick body of a synthetic person, and the names and labels of its parts.

A person is a small 3D stick body (x to the person's left, y up, z forward, in body
heights): :func:`_body_points` turns a :class:`_Pose` (joint angles) into named 3D
points, every PoseTrack joint plus the helper points the drawn parts need. The parts
(``PARTS``) are what the renderer draws and labels: part k of person p has the label
1 + p * NUM_PARTS + k in the part-label image, an occluder ``OCCLUDER_LABEL``. A joint
is seen when the label under it is one of the parts that meet at it (``_REVEALS``);
``HIDDEN_BY`` names why it is not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vidpose.data.skeleton import POSETRACK

NUM_JOINTS = POSETRACK.num_joints

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
