"""Curves of the search: per step and per joint, how far the keypoints moved, how
confident they are, how far the hypotheses spread, how wide the masks are and (with
ground truth) how far the keypoints are from the target; a curve whose data the
trajectory lacks (masks, hypotheses to compare) is left out.

All numbers come from :class:`vidpose.visualization.trajectory.SearchTrajectory` (the
head's recorded steps); distances are in input-crop pixels.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

# A bare Figure draws to files without pyplot: no global backend or figure state.
from matplotlib.figure import Figure

from vidpose.data.skeleton import Skeleton
from vidpose.visualization.search_panels import (
    joint_palette,
    short_joint_name,
    shows_hypotheses,
    step_label,
)
from vidpose.visualization.trajectory import GroundTruth, SearchTrajectory


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

    Panels (2 x 3): keypoint displacement in the step (since the previous step, from
    step 2 on; or from the layer's reference); confidence (the consensus score: the
    heatmap maximum with heatmaps); hypothesis spread (RMS distance to their mean;
    with several hypotheses or a sampler, :func:`shows_hypotheses`); with
    ``ground_truth``, the distance to the target keypoints; with masks, the effective
    mask area per scale (mean over joints; 100% = reads everywhere) and the share of
    each mask within ``trajectory.near_radius`` of the target (ground truth, else the
    final keypoints) per scale, dashed: a uniform mask's share.

    Args:
        trajectory: what the head recorded.
        skeleton: joint names.
        path: the PNG file (parent folders are created).
        joints: joints to draw (default: the skeleton's scored joints).
        ground_truth: target keypoints in input pixels.
        dpi: resolution of the 12.5 x 5.6 inch figure.

    Returns:
        ``path``.
    """
    joints = list(skeleton.scored_indices if joints is None else joints)
    steps = np.arange(1, trajectory.num_steps + 1)
    palette = [tuple(c / 255 for c in colour) for colour in joint_palette(trajectory.num_joints)]
    names = [short_joint_name(skeleton.joint_names[joint]) for joint in joints]

    moved = "moved since previous step" if trajectory.reference is None else "moved from reference"
    confidence = "heatmap max" if trajectory.heatmaps is not None else "score"
    per_joint = [
        (f"{moved} (px)", trajectory.displacement()),
        (f"confidence ({confidence})", trajectory.consensus_scores.astype(np.float64)),
    ]
    if shows_hypotheses(trajectory):
        per_joint.append(("hypothesis spread (px, RMS)", trajectory.spread()))
    if ground_truth is not None:
        per_joint.append(
            ("distance to ground truth (px)", ground_truth.error(trajectory.consensus_keypoints))
        )
    figure = Figure(figsize=(12.5, 5.6), dpi=dpi)
    axes = figure.subplots(2, 3).ravel()
    for axis, (title, values) in zip(axes, per_joint, strict=False):
        for line, joint in enumerate(joints):
            axis.plot(steps, values[:, joint], color=palette[joint], lw=0.9, alpha=0.8,
                      label=names[line], marker=".", ms=3)  # fmt: skip
        axis.plot(steps, _nanmean_rows(values[:, joints]), color="black", lw=2.2, label="mean",
                  marker="o", ms=4)  # fmt: skip
        axis.set_title(title, fontsize=10)
    used = list(axes[: len(per_joint)])
    if trajectory.masks:
        used += _plot_masks(trajectory, axes[len(per_joint) :], steps, joints, ground_truth)
    for axis in axes[len(used) :]:
        axis.axis("off")

    if trajectory.t is not None:
        labels = [f"{s}\nt={t}" for s, t in zip(steps, trajectory.t, strict=True)]
        title = (
            f"search over {trajectory.num_steps} steps, {trajectory.num_hypotheses} hypotheses "
            "(step 1 has no previous keypoints; dashed: a uniform mask)"
        )
    else:
        labels = [step_label(trajectory, step) for step in range(trajectory.num_steps)]
        title = f"iterative refinement, {trajectory.num_steps} steps: " + ", ".join(
            trajectory.labels
        )
        if trajectory.masks:
            title += " (dashed: a uniform mask)"
    for axis in used:
        axis.set_xticks(steps, labels, fontsize=7)
        axis.set_xlim(0.7, trajectory.num_steps + 0.3)
        axis.grid(alpha=0.3)
        axis.tick_params(axis="y", labelsize=7)
    handles, legend_labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, legend_labels, loc="center right", fontsize=7, frameon=False)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout(rect=(0, 0, 0.89, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    return path


def _plot_masks(
    trajectory: SearchTrajectory,
    axes: Sequence,
    steps: np.ndarray,
    joints: list[int],
    ground_truth: GroundTruth | None,
) -> list:
    """The two mask curves (area, share near the target) on ``axes[0]`` and ``axes[1]``;
    returns those axes. Steps without masks (a coarse layer) leave a gap."""
    noun = "look-up mask" if trajectory.mask_source == "heatmaps" else "attention"
    area_axis = axes[0]
    areas = trajectory.mask_area()[:, :, joints].mean(axis=-1) * 100  # [S, scales]
    scale_names = trajectory.scale_names()
    for scale, name in enumerate(scale_names):
        area_axis.plot(steps, areas[:, scale], lw=2, marker="o", ms=4, label=f"scale {name}")
    area_axis.set_title(f"{noun} area (% of map)", fontsize=10)
    area_axis.set_ylim(0, 105)
    area_axis.legend(fontsize=7, loc="best")

    near_axis = axes[1]
    target = trajectory.target(ground_truth)
    radius = trajectory.near_radius
    shares = trajectory.mask_mass_near(target, radius)[:, :, joints] * 100  # [S, scales, J]
    chance = [
        near[joints].mean(axis=(1, 2)) * 100 for near in trajectory.cells_near(target, radius)
    ]
    valid = np.isfinite(target[joints]).all(axis=1)
    for scale, name in enumerate(scale_names):
        colour = f"C{scale}"
        near_axis.plot(steps, shares[:, scale, valid].mean(axis=-1), color=colour, lw=2,
                       marker="o", ms=4, label=f"scale {name}")  # fmt: skip
        near_axis.axhline(chance[scale][valid].mean(), color=colour, lw=1, ls="--")
    which = "ground truth" if ground_truth is not None else "final keypoints"
    share = "mask" if trajectory.mask_source == "heatmaps" else "attention"
    near_axis.set_title(f"{share} share within {radius:g}px of {which} (%)", fontsize=10)
    near_axis.set_ylim(0, 105)
    return [area_axis, near_axis]


def _nanmean_rows(values: np.ndarray) -> np.ndarray:
    """[S, J] -> [S] mean over the finite entries of each row (NaN for a row with none)."""
    finite = np.isfinite(values)
    counts = finite.sum(axis=1)
    sums = np.where(finite, values, 0.0).sum(axis=1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
