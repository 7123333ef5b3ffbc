"""Result tables: per-joint values, the Head/Shou/.../Total groups, text and JSON."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vidpose.data.skeleton import POSETRACK, Skeleton

UNKNOWN_BOXES = "unknown (the prediction files do not say; pass boxes= / --boxes)"


@dataclass
class JointScores:
    """One metric per scored joint and its reporting groups.

    Attributes:
        per_joint: joint name -> value (percent), in skeleton order.
        groups: "Head", "Shou", "Elb", "Wri", "Hip", "Knee", "Ankl" (plain means of their
            joints, NaN if one is NaN, as poseval's getCum) and "Total".
    """

    per_joint: dict[str, float]
    groups: dict[str, float]

    @classmethod
    def from_joints(
        cls, values: np.ndarray, skeleton: Skeleton = POSETRACK, total: float | None = None
    ) -> JointScores:
        """Build from [J] values over ``skeleton.scored_indices``.

        Args:
            values: [J] per-joint values.
            total: the Total to report; default the mean over joints with a value (both
                tools: NaN joints are left out), NaN when none has one.
        """
        scored = [int(slot) for slot in skeleton.scored_indices]
        values = np.asarray(values, dtype=np.float64)
        per_joint = {
            skeleton.joint_names[slot]: float(v) for slot, v in zip(scored, values, strict=True)
        }
        groups = {
            name: float(np.mean([values[scored.index(slot)] for slot in slots]))
            for name, slots in skeleton.groups.items()
        }
        if total is None:
            defined = values[~np.isnan(values)]
            total = float(defined.mean()) if defined.size else math.nan
        groups["Total"] = float(total)
        return cls(per_joint, groups)

    @property
    def total(self) -> float:
        return self.groups["Total"]


@dataclass
class PoseTrackReport:
    """Everything one PoseTrack evaluation measured.

    Attributes:
        protocol: "posetrack18" or "posetrack21" (decides the mAP rules).
        boxes: which person boxes the predictions were made with.
        num_videos: videos evaluated.
        num_frames: frames evaluated for mAP under ``protocol``.
        metrics: name -> JointScores. Always "AP", "AP precision", "AP recall"; with
            tracking also "MOTA", "MOTP", "Prec", "Rec" (poseval rules) and "HOTA",
            "DetA", "AssA", "LocA", "DetRe", "DetPr", "AssRe", "AssPr" (PoseTrack21 kit).
        tracking_mode: "official" or "corrected" when tracking was evaluated, else None.
        notes: remarks about the inputs (ignored files, missing scores, ...).
        warnings: where a number is not one an official tool gives: files a tool would
            refuse, values it treats by a rule of its own, results it leaves undefined
            (each names the files and counts).
        motp_definition: which MOTP the tracking table shows (official: poseval's sum over
            all motmetrics events; corrected: matches only), None without tracking.
    """

    protocol: str
    boxes: str
    num_videos: int
    num_frames: int
    metrics: dict[str, JointScores]
    tracking_mode: str | None = None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    motp_definition: str | None = None

    @property
    def ap(self) -> JointScores:
        return self.metrics["AP"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (NaN written as null)."""
        return {
            "protocol": self.protocol,
            "boxes": self.boxes,
            "num_videos": self.num_videos,
            "num_frames": self.num_frames,
            "tracking_mode": self.tracking_mode,
            "metrics": {
                name: {
                    "groups": {k: _json_number(v) for k, v in scores.groups.items()},
                    "per_joint": {k: _json_number(v) for k, v in scores.per_joint.items()},
                }
                for name, scores in self.metrics.items()
            },
            "motp_definition": self.motp_definition,
            "warnings": list(self.warnings),
            "notes": list(self.notes),
        }

    def format_tables(self) -> str:
        """The tables as text: AP by joint group, then tracking if evaluated."""
        lines = [
            f"PoseTrack evaluation: protocol {self.protocol}, {self.num_videos} videos, "
            f"{self.num_frames} frames evaluated",
            f"Person boxes: {self.boxes}",
            "",
            "Per-joint average precision (PCKh@0.5)",
            *_table(self.metrics, ["AP"]),
        ]
        if "MOTA" in self.metrics:
            lines += [
                "",
                f"Tracking, CLEAR-MOT as poseval computes it ({self.tracking_mode} mode)",
                *_table(self.metrics, ["MOTA", "MOTP", "Prec", "Rec"]),
                *([self.motp_definition] if self.motp_definition else []),
                "",
                f"Keypoint HOTA as the PoseTrack21 kit computes it ({self.tracking_mode} mode)",
                *_table(self.metrics, ["HOTA", "DetA", "AssA", "LocA"]),
            ]
        lines += [f"Warning: {warning}" for warning in self.warnings]
        lines += [f"Note: {note}" for note in self.notes]
        return "\n".join(lines)


def _table(metrics: dict[str, JointScores], names: list[str]) -> list[str]:
    columns = list(next(iter(metrics.values())).groups)
    rows = ["       " + "".join(f"{column:>7}" for column in columns)]
    for name in names:
        groups = metrics[name].groups
        rows.append(f"{name:<7}" + "".join(f"{groups[column]:>7.1f}" for column in columns))
    return rows


def _json_number(value: float) -> float | None:
    return None if math.isnan(value) else value
