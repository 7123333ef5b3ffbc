"""Skeletons: the dataset metadata every other part reads (names, flips, limbs, sigmas).

Transforms read the flip pairs, codecs and evaluators read the scored joints and
OKS sigmas, drawing reads the limbs and colours. Nothing else hard-codes joints.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Skeleton:
    """Joint metadata of one dataset.

    Attributes:
        name: short identifier ("posetrack", "coco").
        joint_names: K names in slot order.
        flip_pairs: (left, right) slot pairs swapped by a horizontal flip.
        limbs: (a, b) slot pairs drawn as bones.
        sigmas: K OKS sigmas (COCO convention: per-joint falloff of the keypoint
            similarity). Slots that are never annotated get the value of a close joint.
        scored: K booleans, False for slots never annotated nor evaluated.
        joint_colors: K RGB colours in 0..255.
        limb_colors: one RGB colour per limb.
        groups: reporting groups (name -> slots) used by the evaluation tables.
    """

    name: str
    joint_names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    limbs: tuple[tuple[int, int], ...]
    sigmas: tuple[float, ...]
    scored: tuple[bool, ...]
    joint_colors: tuple[tuple[int, int, int], ...]
    limb_colors: tuple[tuple[int, int, int], ...]
    groups: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        k = len(self.joint_names)
        for attribute in ("sigmas", "scored", "joint_colors"):
            if len(getattr(self, attribute)) != k:
                raise ValueError(
                    f"Skeleton {self.name!r}: {attribute} has {len(getattr(self, attribute))} "
                    f"entries, expected one per joint ({k})"
                )
        if len(self.limb_colors) != len(self.limbs):
            raise ValueError(f"Skeleton {self.name!r}: one limb colour per limb expected")
        for a, b in (*self.flip_pairs, *self.limbs):
            if not (0 <= a < k and 0 <= b < k):
                raise ValueError(f"Skeleton {self.name!r}: joint pair ({a}, {b}) out of range")

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def flip_permutation(self) -> np.ndarray:
        """Index array p with p[i] = the slot that joint i moves to under a flip."""
        permutation = np.arange(self.num_joints)
        for left, right in self.flip_pairs:
            permutation[left], permutation[right] = right, left
        return permutation

    @property
    def scored_indices(self) -> np.ndarray:
        return np.flatnonzero(np.asarray(self.scored))

    def index(self, joint_name: str) -> int:
        try:
            return self.joint_names.index(joint_name)
        except ValueError:
            raise KeyError(
                f"Skeleton {self.name!r} has no joint {joint_name!r}; joints: "
                f"{', '.join(self.joint_names)}"
            ) from None


_LEFT, _RIGHT, _CENTRE = (0, 160, 255), (255, 128, 0), (60, 200, 60)

# COCO OKS sigmas (Ronchi & Perona, "Benchmarking and Error Diagnosis in
# Multi-Instance Pose Estimation", ICCV 2017; pycocotools COCOeval defaults).
_COCO_SIGMAS = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
    0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
)  # fmt: skip

_BODY_LIMBS = (
    (5, 6), (5, 7), (7, 9), (6, 8), (8, 10), (5, 11), (6, 12), (11, 12),
    (11, 13), (13, 15), (12, 14), (14, 16),
)  # fmt: skip


def _side_colour(joint: int) -> tuple[int, int, int]:
    if joint <= 2:
        return _CENTRE
    return _LEFT if joint % 2 == 1 else _RIGHT


def _limb_colour(limb: tuple[int, int]) -> tuple[int, int, int]:
    a, b = limb
    return _side_colour(b) if _side_colour(a) == _side_colour(b) else _CENTRE


_GROUPS = {
    "Head": (0, 1, 2),
    "Shou": (5, 6),
    "Elb": (7, 8),
    "Wri": (9, 10),
    "Hip": (11, 12),
    "Knee": (13, 14),
    "Ankl": (15, 16),
}

# Slots 3-16 mean the same joints in COCO and PoseTrack.
_EARS_AND_BODY = (
    "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee",
    "left_ankle", "right_ankle",
)  # fmt: skip

_POSETRACK_LIMBS = ((0, 1), (0, 2), (1, 5), (1, 6), *_BODY_LIMBS)
_COCO_LIMBS = ((0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6), *_BODY_LIMBS)

# PoseTrack18/21: COCO's 17 slots with PoseTrack meanings. Slots 1 and 2 hold
# head_bottom and head_top; the ear slots are always (0, 0, 0) in ground truth
# and never scored (shared spec, section 1). Their sigmas follow the closest
# COCO joints (nose for the head points, ears for the unused slots).
POSETRACK = Skeleton(
    name="posetrack",
    joint_names=("nose", "head_bottom", "head_top", *_EARS_AND_BODY),
    flip_pairs=((3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    limbs=_POSETRACK_LIMBS,
    sigmas=(0.026, 0.079, 0.025, *_COCO_SIGMAS[3:]),
    scored=(True, True, True, False, False, *([True] * 12)),
    joint_colors=tuple(_side_colour(j) for j in range(17)),
    limb_colors=tuple(_limb_colour(limb) for limb in _POSETRACK_LIMBS),
    groups=_GROUPS,
)

COCO = Skeleton(
    name="coco",
    joint_names=("nose", "left_eye", "right_eye", *_EARS_AND_BODY),
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    limbs=_COCO_LIMBS,
    sigmas=_COCO_SIGMAS,
    scored=(True,) * 17,
    joint_colors=tuple(_side_colour(j) for j in range(17)),
    limb_colors=tuple(_limb_colour(limb) for limb in _COCO_LIMBS),
    groups={"Head": (0, 1, 2, 3, 4), **{k: v for k, v in _GROUPS.items() if k != "Head"}},
)

SKELETONS: dict[str, Skeleton] = {"posetrack": POSETRACK, "coco": COCO}


def get_skeleton(name: str) -> Skeleton:
    """Return the skeleton called ``name`` ("posetrack" or "coco")."""
    try:
        return SKELETONS[name]
    except KeyError:
        raise KeyError(
            f"unknown skeleton {name!r}; expected one of: {', '.join(SKELETONS)}"
        ) from None
