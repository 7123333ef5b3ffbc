"""Curves of the search: per step and per joint, how far the keypoints moved, how
confident they are, how far the hypotheses spread, how wide the look-up masks are
and (with ground truth) how far the keypoints are from the target.

All numbers come from :class:`vidpose.visualization.search.SearchTrajectory` (the
sampler's recorded steps); distances are in input-crop pixels.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

# A bare Figure draws to files without pyplot: no global backend or figure state.
from matplotlib.figure import Figure

from vidpose.data.skeleton import Skeleton
from vidpose.visualization.search_panels import joint_palette, short_joint_name

if TYPE_CHECKING:  # search.py imports this module; the types are only annotations here
    from vidpose.visualization.search import GroundTruth, SearchTrajectory


def plot_search_curves(
    trajectory: SearchTrajectory,
    skeleton: Skeleton,
    path: str | os.PathLike,
    *,
    joints: Sequence[int] | None = None,
    ground_truth: GroundTruth | None = None,
    dpi: int = 100,
) -> Path:
    """Write a PNG of the per-step curves (one thin line per joint, the mean thick).

    Panels: keypoint displacement since the previous step (from step 2 on), confidence
    (heatmap maximum of the consensus), hypothesis spread (RMS distance to their mean),
    effective look-up mask area per scale (mean over joints; 100% = reads everywhere),
    and, with ``ground_truth``, the distance to the target keypoints.

    Args:
        trajectory: what the sampler recorded.
        skeleton: joint names.
        path: the PNG file (parent folders are created).
        joints: joints to draw (default: the skeleton's scored joints).
        ground_truth: target keypoints in input pixels.
        dpi: resolution (the figure is 10 x 5.6 inches, 12.5 x 5.6 with ground truth).

    Returns:
        ``path``.
    """
    joints = list(skeleton.scored_indices if joints is None else joints)
    steps = np.arange(1, trajectory.num_steps + 1)
    palette = [tuple(c / 255 for c in colour) for colour in joint_palette(trajectory.num_joints)]
    names = [short_joint_name(skeleton.joint_names[joint]) for joint in joints]

    per_joint = [
        ("moved since previous step (px)", trajectory.displacement()),
        ("confidence (heatmap max)", trajectory.consensus_scores.astype(np.float64)),
        ("hypothesis spread (px, RMS)", trajectory.spread()),
    ]
    if ground_truth is not None:
        per_joint.append(
            ("distance to ground truth (px)", ground_truth.error(trajectory.consensus_keypoints))
        )
    columns = 3 if ground_truth is not None else 2
    figure = Figure(figsize=(12.5 if ground_truth is not None else 10, 5.6), dpi=dpi)
    axes = figure.subplots(2, columns).ravel()
    for axis, (title, values) in zip(axes, per_joint, strict=False):
        for line, joint in enumerate(joints):
            axis.plot(steps, values[:, joint], color=palette[joint], lw=0.9, alpha=0.8,
                      label=names[line], marker=".", ms=3)  # fmt: skip
        with np.errstate(invalid="ignore"):
            mean = np.array(
                [np.nan if np.isnan(row).all() else np.nanmean(row) for row in values[:, joints]]
            )
        axis.plot(steps, mean, color="black", lw=2.2, label="mean", marker="o", ms=4)
        axis.set_title(title, fontsize=10)

    area_axis = axes[len(per_joint)]
    areas = trajectory.mask_area()[:, :, joints].mean(axis=-1) * 100  # [S, scales]
    for scale, name in enumerate(trajectory.scale_names()):
        area_axis.plot(steps, areas[:, scale], lw=2, marker="o", ms=4, label=f"scale {name}")
    area_axis.set_title("look-up mask area (% of map, mean over joints)", fontsize=10)
    area_axis.set_ylim(0, 105)
    area_axis.legend(fontsize=7, loc="upper right")
    for axis in axes[len(per_joint) + 1 :]:
        axis.axis("off")

    labels = [f"{s}\nt={t}" for s, t in zip(steps, trajectory.t, strict=True)]
    for axis in axes[: len(per_joint) + 1]:
        axis.set_xticks(steps, labels, fontsize=7)
        axis.set_xlim(0.7, trajectory.num_steps + 0.3)
        axis.grid(alpha=0.3)
        axis.tick_params(axis="y", labelsize=7)
    handles, legend_labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, legend_labels, loc="center right", fontsize=7, frameon=False)
    figure.suptitle(
        f"search over {trajectory.num_steps} steps, {trajectory.num_hypotheses} hypotheses "
        "(step 1 has no previous keypoints)",
        fontsize=10,
    )
    figure.tight_layout(rect=(0, 0, 0.88, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    return path
