"""Panels of the search (a recorded
:class:`~vidpose.visualization.trajectory.SearchTrajectory`), drawn with PIL; every
function reads only the trajectory and the crop. The grid and the animations that
assemble them are ``vidpose.visualization.search_grid``.

Coordinate frames (see also ``vidpose.visualization.trajectory``):

- *input pixels*: pixels of the model input crop, H_in x W_in (pixel centres at
  integers, ``vidpose.codecs.geometry``); keypoints are stored in this frame.
- *heatmap pixels*: x_h = x_in * f with the codec's factor f
  (``SearchTrajectory.input_to_heatmap``).
- *mask cells*: a mask of h_s x w_s cells divides a pixel grid of H x W
  (``SearchTrajectory.mask_grid``) evenly, cell j covering grid pixels
  [j * H / h_s, (j + 1) * H / h_s): the heatmap grid for the diffusion look-up masks
  (the heatmaps area-averaged), the crop itself for attention maps on feature levels.
- *panel pixels*: the crop drawn zoomed by z = panel size / input size;
  x_p = (x_in + 0.5) * z - 0.5 (pixel extents match).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vidpose.data.draw import draw_pose
from vidpose.data.skeleton import Skeleton
from vidpose.visualization.trajectory import GroundTruth, SearchTrajectory

# Colours of the markers drawn over the panels (RGB).
CONSENSUS_COLOUR = (0, 255, 255)  # the step's keypoint (decoded from the hypothesis mean)
HYPOTHESIS_COLOUR = (255, 255, 255)  # one hypothesis' keypoint in a joint panel
GROUND_TRUTH_COLOUR = (60, 255, 60)
ARROW_COLOUR = (255, 255, 255)
BACKGROUND = (24, 24, 24)
TEXT_COLOUR = (235, 235, 235)


def summary_column_count(
    num_scales: int,
    *,
    input_column: bool = True,
    hypothesis_column: bool = True,
    skeleton_column: bool = False,
) -> int:
    """Columns before the joint panels: x_t (with ``input_column``), one mask per
    scale, the limb mask (with ``skeleton_column``: DiffusionPose), keypoints,
    hypotheses (with ``hypothesis_column``)."""
    return num_scales + 1 + int(input_column) + int(hypothesis_column) + int(skeleton_column)


def shows_hypotheses(trajectory: SearchTrajectory) -> bool:
    """Whether the hypotheses get a column and a curve: with several of them, or from a
    sampler (x_t recorded: G is its setting, and G = 1 is shown as such). A
    deterministic head's single hypothesis would only repeat the keypoints."""
    return trajectory.num_hypotheses > 1 or trajectory.x_t is not None


def mask_title(trajectory: SearchTrajectory, scale_name: str) -> str:
    """The column title of one mask scale: "mask 1/16" for the diffusion look-up,
    "looked at 1/16" for attention maps (where a decoder layer sampled)."""
    if trajectory.mask_source == "attention":
        return f"looked at {scale_name}"
    return f"mask {scale_name}"


# --------------------------------------------------------------------------- sampling maps


def panel_coordinates(panel_size: int, input_size: int) -> np.ndarray:
    """[panel_size] input-pixel coordinate of each panel pixel centre along one axis.

    The crop of ``input_size`` pixels is shown on ``panel_size`` pixels: zoom
    z = panel_size / input_size and x_in = (x_p + 0.5) / z - 0.5 (pixel extents match).
    """
    zoom = panel_size / input_size
    return (np.arange(panel_size) + 0.5) / zoom - 0.5


def to_panel(points: np.ndarray, input_size: tuple[int, int], panel: tuple[int, int]) -> np.ndarray:
    """[..., 2] input pixels -> panel pixels (x_p = (x_in + 0.5) * z - 0.5 per axis).

    Args:
        points: [..., 2] x, y in input pixels.
        input_size: (H_in, W_in).
        panel: (height, width) of the panel.
    """
    zoom = np.array([panel[1] / input_size[1], panel[0] / input_size[0]])
    return (np.asarray(points, dtype=np.float64) + 0.5) * zoom - 0.5


def resample_heatmaps(
    maps: np.ndarray,
    input_to_heatmap: tuple[float, float],
    input_size: tuple[int, int],
    panel: tuple[int, int],
) -> np.ndarray:
    """Heatmaps drawn at panel resolution, bilinear, aligned with the keypoints.

    Each panel pixel is mapped to input pixels, then to heatmap pixels with the codec's
    factor, and the heatmap is interpolated there (borders repeat). A plain image
    resize would shift the maps by half a heatmap pixel against decoded keypoints.

    Args:
        maps: [..., H, W].
        input_to_heatmap: (fx, fy) heatmap pixels per input pixel.
        input_size: (H_in, W_in).
        panel: (height, width).

    Returns:
        [..., height, width] float32.
    """
    height, width = maps.shape[-2:]
    ys = panel_coordinates(panel[0], input_size[0]) * input_to_heatmap[1]
    xs = panel_coordinates(panel[1], input_size[1]) * input_to_heatmap[0]

    def weights(coords: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        coords = np.clip(coords, 0, length - 1)
        low = np.minimum(np.floor(coords).astype(np.int64), length - 2 if length > 1 else 0)
        high = np.minimum(low + 1, length - 1)
        return low, high, (coords - low).astype(np.float32)

    y0, y1, wy = weights(ys, height)
    x0, x1, wx = weights(xs, width)
    maps = np.asarray(maps, dtype=np.float32)
    rows = maps[..., y0, :] * (1 - wy)[:, None] + maps[..., y1, :] * wy[:, None]
    return rows[..., x0] * (1 - wx) + rows[..., x1] * wx


def resample_masks(
    masks: np.ndarray,
    grid_size: tuple[int, int],
    input_to_grid: tuple[float, float],
    input_size: tuple[int, int],
    panel: tuple[int, int],
) -> np.ndarray:
    """Masks drawn at panel resolution as blocks (nearest cell).

    Mask cell j of a map with h_s rows covers grid rows [j * H / h_s, (j + 1) * H / h_s)
    (``SearchTrajectory.mask_grid``: the heatmaps a look-up mask area-averages,
    ``vidpose.models.interaction.heatmap_masks``; the crop for a feature level's
    attention map, with factor 1); the blocks show the resolution the step really
    reads at.

    Args:
        masks: [..., h_s, w_s].
        grid_size: (H, W) of the grid the cells divide.
        input_to_grid: (fx, fy) grid pixels per input pixel.
        input_size, panel: as :func:`resample_heatmaps`.

    Returns:
        [..., height, width] float32.
    """
    cells_h, cells_w = masks.shape[-2:]
    ys = panel_coordinates(panel[0], input_size[0]) * input_to_grid[1]
    xs = panel_coordinates(panel[1], input_size[1]) * input_to_grid[0]
    # Grid pixel centres are at integers: pixel i spans [i - 0.5, i + 0.5).
    rows = np.clip(np.floor((ys + 0.5) * cells_h / grid_size[0]), 0, cells_h - 1).astype(int)
    cols = np.clip(np.floor((xs + 0.5) * cells_w / grid_size[1]), 0, cells_w - 1).astype(int)
    return np.asarray(masks, dtype=np.float32)[..., rows, :][..., cols]


# --------------------------------------------------------------------------- colours


def _colormap(name: str) -> np.ndarray:
    """[256, 3] float32 RGB lookup table of a matplotlib colormap."""
    from matplotlib import colormaps

    return colormaps[name](np.linspace(0, 1, 256))[:, :3].astype(np.float32)


_LUTS: dict[str, np.ndarray] = {}


def colorize(values: np.ndarray, cmap: str = "inferno") -> np.ndarray:
    """[H, W] values in [0, 1] -> [H, W, 3] float32 RGB in [0, 1] (clipped)."""
    if cmap not in _LUTS:
        _LUTS[cmap] = _colormap(cmap)
    index = np.clip(np.nan_to_num(values) * 255 + 0.5, 0, 255).astype(np.int64)
    return _LUTS[cmap][index]


def overlay(background: np.ndarray, values: np.ndarray, cmap: str = "inferno") -> np.ndarray:
    """Blend a [0, 1] map over a (dimmed, grey) image, opacity growing with the value.

    Args:
        background: [H, W, 3] uint8.
        values: [H, W] in [0, 1] (clipped).

    Returns:
        [H, W, 3] uint8. Where a value is 0 the dimmed image shows; at 1 the colour.
    """
    base = dimmed(background).astype(np.float32) / 255
    values = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float32)), 0, 1)
    alpha = (0.15 + 0.85 * values)[..., None]
    blended = base * (1 - alpha) + colorize(values, cmap) * alpha
    return np.clip(blended * 255 + 0.5, 0, 255).astype(np.uint8)


def dimmed(image: np.ndarray, brightness: float = 0.55) -> np.ndarray:
    """[H, W, 3] uint8 -> the same, grey and darker (so coloured overlays stand out)."""
    grey = np.asarray(image, dtype=np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.repeat((grey * brightness)[..., None], 3, axis=-1).astype(np.uint8)


def joint_palette(num_joints: int) -> list[tuple[int, int, int]]:
    """K distinguishable RGB colours (matplotlib's tab20, then evenly spaced hues)."""
    if num_joints <= 20:
        table = _colormap("tab20")  # 256 samples of 20 colours: take one per colour
        picks = [table[int((index + 0.5) / 20 * 256)] for index in range(num_joints)]
    else:
        picks = _colormap("hsv")[np.linspace(0, 255, num_joints, endpoint=False).astype(int)]
    return [tuple(int(c * 255 + 0.5) for c in colour) for colour in picks]


def short_joint_name(name: str) -> str:
    """ "left_wrist" -> "L wrist" (panel captions are narrow)."""
    for side, letter in (("left_", "L "), ("right_", "R ")):
        if name.startswith(side):
            return letter + name[len(side) :]
    return name.replace("_", " ")


# --------------------------------------------------------------------------- drawing


def panel_font(size: int) -> ImageFont.ImageFont:
    """PIL's default font at ``size`` pixels (8 at least)."""
    return ImageFont.load_default(size=max(8, int(size)))


def _caption(image: Image.Image, text: str, *, font_size: int) -> None:
    """Write ``text`` on a dark band across the top of ``image`` (in place)."""
    if not text:
        return
    font = panel_font(font_size)
    draw = ImageDraw.Draw(image, "RGBA")
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    draw.rectangle((0, 0, image.width, bottom - top + 4), fill=(0, 0, 0, 150))
    draw.text((3 - left, 2 - top), text, fill=TEXT_COLOUR, font=font)


def _marker(draw: ImageDraw.ImageDraw, point: np.ndarray, radius: float, colour, outline=None):
    x, y = float(point[0]), float(point[1])
    draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour, outline=outline)


def _cross(draw: ImageDraw.ImageDraw, point: np.ndarray, size: float, colour, width: int = 1):
    x, y = float(point[0]), float(point[1])
    draw.line((x - size, y - size, x + size, y + size), fill=colour, width=width)
    draw.line((x - size, y + size, x + size, y - size), fill=colour, width=width)


def _arrow(draw: ImageDraw.ImageDraw, start: np.ndarray, end: np.ndarray, colour, width: int):
    """A line from ``start`` to ``end`` with a head at ``end``; nothing under half a pixel."""
    start, end = np.asarray(start, np.float64), np.asarray(end, np.float64)
    vector = end - start
    length = float(np.hypot(*vector))
    if length < 0.5:
        return
    draw.line((*start, *end), fill=colour, width=width)
    direction = vector / length
    normal = np.array([-direction[1], direction[0]])
    head = min(5.0, 0.5 * length + 1.5)
    base = end - direction * head
    corners = [tuple(end), tuple(base + normal * head * 0.5), tuple(base - normal * head * 0.5)]
    draw.polygon(corners, fill=colour)


def _combined(maps: np.ndarray) -> np.ndarray:
    """[K, h, w] -> [h, w]: max over the joints, each joint first scaled to peak 1 (masks
    sum to 1, so their absolute values depend on the map size; heatmap peaks differ
    from joint to joint)."""
    maps = np.asarray(maps, dtype=np.float32)
    peaks = maps.reshape(len(maps), -1).max(axis=1)
    return (maps / np.maximum(peaks, 1e-12)[:, None, None]).max(axis=0)


@dataclass(frozen=True)
class PanelStyle:
    """Sizes shared by every panel of a drawing.

    Attributes:
        panel: (height, width) of one panel in pixels.
        font_size: caption text height.
        marker: keypoint marker radius.
        line: line width of limbs and arrows.
    """

    panel: tuple[int, int]
    font_size: int
    marker: float
    line: int

    @classmethod
    def for_height(cls, panel_height: int, input_size: tuple[int, int]) -> PanelStyle:
        """Panels ``panel_height`` tall with the crop's aspect ratio."""
        if panel_height < 16:
            raise ValueError(f"panel_height must be at least 16 pixels, got {panel_height}")
        width = max(1, round(panel_height * input_size[1] / input_size[0]))
        return cls(
            panel=(panel_height, width),
            font_size=max(9, round(panel_height / 13)),
            marker=max(1.5, panel_height / 64),
            line=max(1, round(panel_height / 110)),
        )


class StepPanels:
    """Draws the panels of one step (all functions of the trajectory only).

    Args:
        trajectory: what the head recorded.
        crop: [H_in, W_in, 3] uint8 the key frame's crop (the model input, unnormalised).
        skeleton: limbs and joint names.
        style: panel sizes.
        joints: the joints drawn (combined views, markers, panels of their own);
            default: the skeleton's scored joints.
        ground_truth: drawn as green crosses when given.
    """

    def __init__(
        self,
        trajectory: SearchTrajectory,
        crop: np.ndarray,
        skeleton: Skeleton,
        style: PanelStyle,
        *,
        joints: Sequence[int] | None = None,
        ground_truth: GroundTruth | None = None,
    ) -> None:
        crop = np.asarray(crop)
        if crop.shape != (*trajectory.input_size, 3) or crop.dtype != np.uint8:
            raise ValueError(
                f"StepPanels: crop must be [{trajectory.input_size[0]}, "
                f"{trajectory.input_size[1]}, 3] uint8 (the model input), got {crop.shape} "
                f"{crop.dtype}"
            )
        if skeleton.num_joints != trajectory.num_joints:
            raise ValueError(
                f"StepPanels: skeleton {skeleton.name!r} has {skeleton.num_joints} joints, "
                f"the trajectory {trajectory.num_joints}"
            )
        self.trajectory = trajectory
        self.skeleton = skeleton
        self.style = style
        self.joints = list(skeleton.scored_indices if joints is None else joints)
        self.ground_truth = ground_truth
        height, width = style.panel
        self.background = np.asarray(
            Image.fromarray(crop).resize((width, height), Image.Resampling.BILINEAR)
        )
        self.palette = joint_palette(trajectory.num_joints)
        self.starts = trajectory.step_starts()
        self.displacement = trajectory.displacement()
        self.spread = trajectory.spread()
        target = trajectory.target(ground_truth)
        self.mask_near = trajectory.mask_mass_near(target, trajectory.near_radius)
        self.masks_recorded = trajectory.masks_recorded()
        self.has_target = np.isfinite(target).all(axis=1)
        self.scale_names = trajectory.scale_names()
        self.hypothesis_column = shows_hypotheses(trajectory)

    # ------------------------------------------------------------------ helpers

    def _panel_points(self, points: np.ndarray) -> np.ndarray:
        return to_panel(points, self.trajectory.input_size, self.style.panel)

    def _heat(self, maps: np.ndarray) -> np.ndarray:
        return resample_heatmaps(
            maps, self.trajectory.input_to_heatmap, self.trajectory.input_size, self.style.panel
        )

    def _finish(self, pixels: np.ndarray, caption: str) -> np.ndarray:
        image = Image.fromarray(pixels)
        _caption(image, caption, font_size=self.style.font_size)
        return np.asarray(image)

    def _draw_ground_truth(self, draw: ImageDraw.ImageDraw, joints: Sequence[int]) -> None:
        if self.ground_truth is None:
            return
        points = self._panel_points(self.ground_truth.keypoints)
        for joint in joints:
            if self.ground_truth.visible[joint]:
                _cross(draw, points[joint], self.style.marker + 1, GROUND_TRUTH_COLOUR)

    def _draw_moves(self, draw: ImageDraw.ImageDraw, step: int, joints: Sequence[int]) -> None:
        """White arrows from where each joint's keypoint started the step (the previous
        step's, or the layer's reference) to where it ended; none without a start."""
        starts = self._panel_points(self.starts[step])
        ends = self._panel_points(self.trajectory.consensus_keypoints[step])
        for joint in joints:
            if np.isfinite(starts[joint]).all():
                _arrow(draw, starts[joint], ends[joint], ARROW_COLOUR, self.style.line)

    # ------------------------------------------------------------------ panels

    def input_panel(self, step: int) -> np.ndarray:
        """The step's input x_t (hypothesis mean, clamped to [0, 1], max over joints)."""
        x_t = self.trajectory.x_t[step].mean(axis=0)  # [K, H, W]
        values = self._heat(np.clip(x_t, 0, 1)).max(axis=0)
        return self._finish(overlay(self.background, values), "")

    def skeleton_panel(self, step: int) -> np.ndarray:
        """The limb mask the step read the features through (DiffusionPose's M^ske,
        hypothesis mean, drawn as heatmap-grid cells); caption: its share of the map."""
        values = self.trajectory.skeleton_masks[step].mean(axis=0)  # [H, W] in [0, 1]
        drawn = resample_masks(
            values,
            self.trajectory.heatmap_size,
            self.trajectory.input_to_heatmap,
            self.trajectory.input_size,
            self.style.panel,
        )
        caption = f"area {100 * float(values.mean()):.0f}%"
        return self._finish(overlay(self.background, drawn, cmap="viridis"), caption)

    def mask_panel(self, step: int, scale: int) -> np.ndarray:
        """Where the step read at ``scale``: each joint's mask (hypothesis mean) scaled
        to peak 1, max over joints; caption: the mean share of the masks within
        ``near_radius`` of the target (ground truth, else the final keypoints). A step
        that recorded no masks (TFPose's coarse layer) shows the dimmed crop, "none"."""
        if not self.masks_recorded[step]:
            return self._finish(dimmed(self.background), "none")
        masks = self.trajectory.masks[scale][step].mean(axis=0)  # [K, h_s, w_s]
        values = _combined(masks[self.joints])
        grid_size, input_to_grid = self.trajectory.mask_grid
        drawn = resample_masks(
            values, grid_size, input_to_grid, self.trajectory.input_size, self.style.panel
        )
        joints = [joint for joint in self.joints if self.has_target[joint]]
        near = self.mask_near[step, scale, joints]
        caption = f"near {100 * near.mean():.0f}%" if joints else ""
        return self._finish(overlay(self.background, drawn, cmap="viridis"), caption)

    def keypoint_panel(self, step: int) -> np.ndarray:
        """The step's pose (the consensus keypoints) with white arrows from where each
        joint started the step (the previous step's keypoint, or the layer's
        reference), over the x0 estimate when there are heatmaps (hypothesis mean, each
        joint scaled to peak 1, max over joints); caption: mean move."""
        if self.trajectory.heatmaps is not None:
            heat = np.clip(self.trajectory.heatmaps[step], 0, 1).mean(axis=0)
            # Scaled per joint: where each joint is matters here; how sure the model is
            # shows in the joint panels' captions and the curves.
            combined = _combined(heat[self.joints])
            image = Image.fromarray(overlay(self.background, self._heat(combined)))
        else:
            image = Image.fromarray(dimmed(self.background))
        points = self._panel_points(self.trajectory.consensus_keypoints[step])
        # Arrows first: the joints drawn over them keep the arrow tips from hiding them.
        self._draw_moves(ImageDraw.Draw(image), step, self.joints)
        shown = np.zeros(self.trajectory.num_joints, dtype=bool)
        shown[self.joints] = True
        pixels = draw_pose(
            np.asarray(image),
            points,
            np.where(shown, 1.0, 0.0),
            self.skeleton,
            radius=self.style.marker,
            line_width=self.style.line,
        )
        image = Image.fromarray(pixels)
        self._draw_ground_truth(ImageDraw.Draw(image), self.joints)
        moved = self.displacement[step, self.joints]
        caption = f"moved {np.nanmean(moved):.1f}px" if np.isfinite(moved).any() else ""
        return self._finish(np.asarray(image), caption)

    def hypothesis_panel(self, step: int) -> np.ndarray:
        """Every hypothesis' keypoints (a dot per hypothesis, a colour per joint) and a
        circle of radius the RMS spread around their mean; caption: mean spread."""
        image = Image.fromarray(dimmed(self.background))
        draw = ImageDraw.Draw(image)
        points = self._panel_points(self.trajectory.keypoints[step])  # [G, K, 2]
        zoom = self.style.panel[0] / self.trajectory.input_size[0]
        for joint in self.joints:
            colour = self.palette[joint]
            centre = points[:, joint].mean(axis=0)
            radius = self.spread[step, joint] * zoom
            if radius >= 1:
                draw.ellipse(
                    (
                        centre[0] - radius,
                        centre[1] - radius,
                        centre[0] + radius,
                        centre[1] + radius,
                    ),
                    outline=colour,
                )
            for hypothesis in range(self.trajectory.num_hypotheses):
                _marker(draw, points[hypothesis, joint], self.style.marker * 0.8, colour)
        spread = float(np.mean(self.spread[step, self.joints]))
        caption = f"spread {spread:.1f}px"
        return self._finish(np.asarray(image), caption)

    def joint_panel(self, step: int, joint: int) -> np.ndarray:
        """One joint: its x0 heatmap when there are heatmaps (hypothesis mean, scaled to
        peak 1; else the dimmed crop and the arrow from where the joint started the
        step), the hypotheses' keypoints (white dots) and the consensus keypoint
        (cyan); caption: the consensus score (with heatmaps: the peak before scaling)."""
        heatmaps = self.trajectory.heatmaps
        if heatmaps is not None:
            heat = np.clip(heatmaps[step, :, joint], 0, 1).mean(axis=0)
            heat = heat / max(float(heat.max()), 1e-6)
            image = Image.fromarray(overlay(self.background, self._heat(heat)))
        else:
            image = Image.fromarray(dimmed(self.background))
        draw = ImageDraw.Draw(image)
        if heatmaps is None:
            self._draw_moves(draw, step, [joint])
        for point in self._panel_points(self.trajectory.keypoints[step, :, joint]):
            _marker(draw, point, max(1.0, self.style.marker * 0.6), HYPOTHESIS_COLOUR)
        self._draw_ground_truth(draw, [joint])
        centre = self._panel_points(self.trajectory.consensus_keypoints[step, joint])
        _marker(draw, centre, self.style.marker, CONSENSUS_COLOUR, outline=(0, 0, 0))
        score = self.trajectory.consensus_scores[step, joint]
        caption = f"max {score:.2f}" if heatmaps is not None else f"score {score:.2f}"
        return self._finish(np.asarray(image), caption)

    def summary_panels(self, step: int) -> list[np.ndarray]:
        """x_t (diffusion), the masks coarse to fine, the limb mask (DiffusionPose),
        the keypoints, the hypotheses (:func:`shows_hypotheses`)."""
        panels = [] if self.trajectory.x_t is None else [self.input_panel(step)]
        panels += [self.mask_panel(step, scale) for scale in range(len(self.trajectory.masks))]
        if self.trajectory.skeleton_masks is not None:
            panels.append(self.skeleton_panel(step))
        panels.append(self.keypoint_panel(step))
        if self.hypothesis_column:
            panels.append(self.hypothesis_panel(step))
        return panels

    def column_titles(self, joint_panels: Sequence[int] = ()) -> list[str]:
        """Titles of the summary columns, then of the ``joint_panels``."""
        titles = [] if self.trajectory.x_t is None else ["input x_t"]
        titles += [mask_title(self.trajectory, name) for name in self.scale_names]
        if self.trajectory.skeleton_masks is not None:
            titles.append("limb mask")
        titles.append("x0, keypoints" if self.trajectory.heatmaps is not None else "keypoints")
        if self.hypothesis_column:
            titles.append(f"{self.trajectory.num_hypotheses} hypotheses")
        return titles + [short_joint_name(self.skeleton.joint_names[j]) for j in joint_panels]


def step_label(trajectory: SearchTrajectory, step: int) -> str:
    """The row label: a diffusion step by its time steps, "step 2/5\\nt 799->599" (t_prev
    -1 is the data); any other step by the head's label, a parenthesis on a line of its
    own ("layer 0\\n(coarse)", "layer 3")."""
    if trajectory.t is None:
        return trajectory.labels[step].replace(" (", "\n(")
    t_prev = trajectory.t_prev[step]
    target = "x0" if t_prev < 0 else str(t_prev)
    return f"step {step + 1}/{trajectory.num_steps}\nt {trajectory.t[step]}->{target}"
