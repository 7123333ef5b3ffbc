"""The search as images: every step's panels in one grid (:func:`render_search_grid`),
one animation frame per step (:func:`render_step_frames`), and the animations written
as GIF and H.264 mp4.

Grid layout: one row per step (a diffusion step, a decoder layer), in order; columns:
the step's input x_t (diffusion), the masks at each scale (coarse to fine: where the
step read the features), the keypoints (over the x0 estimate, with heatmaps) with arrows
from where the step started, the G hypotheses' keypoints and their spread (when there
are hypotheses to compare), then one panel per joint. What a trajectory did not record
gets no column.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from vidpose.data.skeleton import Skeleton
from vidpose.visualization.search_panels import (
    BACKGROUND,
    TEXT_COLOUR,
    PanelStyle,
    StepPanels,
    panel_font,
    step_label,
)
from vidpose.visualization.trajectory import GroundTruth, SearchTrajectory


@dataclass(frozen=True)
class GridLayout:
    """Where the panels of a grid image are.

    Attributes:
        rows, columns: panel counts (rows = steps).
        panel: (height, width) of a panel.
        header: height of the title band above the first row.
        label_width: width of the step labels left of the first column.
        gap: pixels between panels.
    """

    rows: int
    columns: int
    panel: tuple[int, int]
    header: int
    label_width: int
    gap: int

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the whole image."""
        height = self.header + self.rows * (self.panel[0] + self.gap)
        width = self.label_width + self.columns * (self.panel[1] + self.gap)
        return height, width

    def cell(self, row: int, column: int) -> tuple[int, int]:
        """(top, left) pixel of panel (row, column)."""
        if not (0 <= row < self.rows and 0 <= column < self.columns):
            raise IndexError(
                f"GridLayout: no panel ({row}, {column}) in {self.rows}x{self.columns}"
            )
        top = self.header + row * (self.panel[0] + self.gap)
        left = self.label_width + column * (self.panel[1] + self.gap)
        return top, left


def grid_layout(
    rows: int, columns: int, style: PanelStyle, *, label_width: int | None = None
) -> GridLayout:
    """The layout :func:`render_search_grid` uses for ``rows`` x ``columns`` panels."""
    return GridLayout(
        rows=rows,
        columns=columns,
        panel=style.panel,
        header=round(style.font_size * 1.8),
        label_width=round(style.font_size * 6.5) if label_width is None else label_width,
        gap=2,
    )


def _assemble(
    panels: Sequence[Sequence[np.ndarray]],
    layout: GridLayout,
    titles: Sequence[str],
    labels: Sequence[str],
    font_size: int,
) -> np.ndarray:
    canvas = Image.new("RGB", layout.size[::-1], BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = panel_font(font_size)
    for column, title in enumerate(titles):
        _, left = layout.cell(0, column)
        draw.text((left + 2, 3), title, fill=TEXT_COLOUR, font=font)
    for row, (row_panels, label) in enumerate(zip(panels, labels, strict=True)):
        top, _ = layout.cell(row, 0)
        draw.multiline_text((3, top + 3), label, fill=TEXT_COLOUR, font=font, spacing=2)
        for column, panel in enumerate(row_panels):
            top, left = layout.cell(row, column)
            canvas.paste(Image.fromarray(panel), (left, top))
    return np.asarray(canvas)


def render_search_grid(
    trajectory: SearchTrajectory,
    crop: np.ndarray,
    skeleton: Skeleton,
    *,
    joints: Sequence[int] | None = None,
    joint_panels: Sequence[int] | None = None,
    ground_truth: GroundTruth | None = None,
    panel_height: int = 128,
) -> tuple[np.ndarray, GridLayout]:
    """All steps as one image: a row per step, the summary panels then one per joint.

    Args:
        trajectory: what the head recorded.
        crop: [H_in, W_in, 3] uint8 the key frame's crop.
        skeleton: limbs and names.
        joints: the joints drawn in the summary panels (default: the scored joints).
        joint_panels: the joints with a panel of their own after the summary panels
            (default: ``joints``; ``[]`` for none).
        ground_truth: target keypoints to draw (green crosses).
        panel_height: pixels per panel row.

    Returns:
        image [height, width, 3] uint8 and its :class:`GridLayout` (rows = S steps).
    """
    style = PanelStyle.for_height(panel_height, trajectory.input_size)
    panels = StepPanels(trajectory, crop, skeleton, style, joints=joints, ground_truth=ground_truth)
    per_joint = panels.joints if joint_panels is None else list(joint_panels)
    rows = [
        panels.summary_panels(step) + [panels.joint_panel(step, j) for j in per_joint]
        for step in range(trajectory.num_steps)
    ]
    layout = grid_layout(trajectory.num_steps, len(rows[0]), style)
    labels = [step_label(trajectory, step) for step in range(trajectory.num_steps)]
    titles = panels.column_titles(per_joint)
    return _assemble(rows, layout, titles, labels, style.font_size), layout


def render_step_frames(
    trajectory: SearchTrajectory,
    crop: np.ndarray,
    skeleton: Skeleton,
    *,
    joints: Sequence[int] | None = None,
    ground_truth: GroundTruth | None = None,
    panel_height: int = 160,
) -> list[np.ndarray]:
    """One animation frame per step (exactly S frames, no intro frame): that step's
    summary panels side by side under a title band, all frames the same size.

    Args: as :func:`render_search_grid` (no joint panels).

    Returns:
        S images [height, width, 3] uint8.
    """
    style = PanelStyle.for_height(panel_height, trajectory.input_size)
    panels = StepPanels(trajectory, crop, skeleton, style, joints=joints, ground_truth=ground_truth)
    frames = []
    for step in range(trajectory.num_steps):
        row = panels.summary_panels(step)
        layout = grid_layout(1, len(row), style)
        label = step_label(trajectory, step)
        titles = panels.column_titles()
        frames.append(_assemble([row], layout, titles, [label], style.font_size))
    return frames


def write_gif(
    frames: Sequence[np.ndarray],
    path: str | os.PathLike,
    *,
    step_ms: int = 900,
    hold_ms: int = 2500,
) -> Path:
    """An animated GIF, one frame per image, looping; the last frame is held ``hold_ms``.

    Args:
        frames: [H, W, 3] uint8 images of one size.
        path: the ``.gif`` file (parent folders are created).
    """
    if not frames:
        raise ValueError(f"write_gif({path}): no frames")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(np.asarray(frame)) for frame in frames]
    durations = [step_ms] * (len(images) - 1) + [hold_ms]
    # disposal 1 and no optimisation: every frame is stored whole, so a frame that
    # happens to equal the previous one is still counted (PIL would merge them).
    images[0].save(
        path,
        save_all=True,
        append_images=images[1:],
        duration=durations,
        loop=0,
        optimize=False,
        disposal=1,
    )
    return path


def write_mp4(frames: Sequence[np.ndarray], path: str | os.PathLike, *, fps: float = 1.0) -> Path:
    """An H.264 mp4 with one video frame per image (``VideoWriter``)."""
    from vidpose.data.video_writer import VideoWriter

    with VideoWriter(path, fps=fps) as writer:
        for frame in frames:
            writer.write(np.asarray(frame))
    return Path(path)
