"""The iterative keypoint-region search of the diffusion head, recorded and written out.

DiffPose's claim is that the look-up interaction searches: at every DDIM step the
current heatmaps x_t become masks that decide where each joint's features are read
(``vidpose.models.interaction``), the denoiser's x0 estimate moves the peaks, and the
next step reads the features there. :class:`SearchTrajectory` holds exactly what the
sampler recorded (the ``trajectory`` that ``PoseEstimator.predict(...,
return_trajectory=True)`` returns) and measures it; nothing here runs the model except
:func:`sample_search`, which makes that one call. :func:`write_search_outputs` writes
every view: the grid and animation (``search_panels``), the curves (``search_plot``),
the temporal view (``temporal_view``) and the numbers (``trajectory.json``).

Keypoints are in *input pixels*: pixels of the model input crop, H_in x W_in, pixel
centres at integers (``vidpose.codecs.geometry``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from vidpose.codecs.heatmap import HeatmapCodec
from vidpose.data.skeleton import Skeleton
from vidpose.visualization.search_panels import (
    render_search_grid,
    render_step_frames,
    write_gif,
    write_mp4,
)
from vidpose.visualization.search_plot import plot_search_curves
from vidpose.visualization.temporal_view import TemporalWeights, render_temporal_view

# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class SearchTrajectory:
    """One person's sampling trajectory as numpy arrays (S steps, G hypotheses, K joints).

    Attributes:
        t: [S] int64 time step of each step's input, in sampling order.
        t_prev: [S] int64 time step each step lands on (-1: the data).
        x_t: [S, G, K, H, W] float32 each step's input in heatmap units (noisy; pure
            noise at the first step when sampling starts from noise).
        heatmaps: [S, G, K, H, W] float32 each step's x0 estimate (heatmap units, unclamped).
        masks: per look-up scale, coarse to fine, [S, G, K, h_s, w_s] float32; each
            joint's mask sums to 1 over its h_s x w_s cells. They are made from x_t.
        keypoints: [S, G, K, 2] float32 x, y in input pixels, decoded from ``heatmaps``.
        scores: [S, G, K] float32 heatmap maxima.
        consensus_keypoints: [S, K, 2] float32 input pixels decoded from the hypothesis
            mean of the clamped x0 estimates; at the last step this is the model's
            output (``predict`` averages the final clamped heatmaps the same way).
        consensus_scores: [S, K] float32.
        input_size: (H_in, W_in) of the crop.
        input_to_heatmap: (fx, fy) heatmap pixels per input pixel (the codec's factor).
    """

    t: np.ndarray
    t_prev: np.ndarray
    x_t: np.ndarray
    heatmaps: np.ndarray
    masks: tuple[np.ndarray, ...]
    keypoints: np.ndarray
    scores: np.ndarray
    consensus_keypoints: np.ndarray
    consensus_scores: np.ndarray
    input_size: tuple[int, int]
    input_to_heatmap: tuple[float, float]

    def __post_init__(self) -> None:
        steps, hypotheses, joints = self.heatmaps.shape[:3]
        expected = {
            "x_t": (self.x_t.shape, self.heatmaps.shape),
            "keypoints": (self.keypoints.shape, (steps, hypotheses, joints, 2)),
            "scores": (self.scores.shape, (steps, hypotheses, joints)),
            "consensus_keypoints": (self.consensus_keypoints.shape, (steps, joints, 2)),
            "consensus_scores": (self.consensus_scores.shape, (steps, joints)),
            "t": (self.t.shape, (steps,)),
            "t_prev": (self.t_prev.shape, (steps,)),
        }
        expected.update(
            {
                f"masks[{index}]": (mask.shape[:3], (steps, hypotheses, joints))
                for index, mask in enumerate(self.masks)
            }
        )
        for name, (shape, wanted) in expected.items():
            if tuple(shape) != tuple(wanted):
                raise ValueError(
                    f"SearchTrajectory: {name} has shape {tuple(shape)}, expected "
                    f"{tuple(wanted)} (S={steps} steps, G={hypotheses}, K={joints})"
                )

    @property
    def num_steps(self) -> int:
        return self.heatmaps.shape[0]

    @property
    def num_hypotheses(self) -> int:
        return self.heatmaps.shape[1]

    @property
    def num_joints(self) -> int:
        return self.heatmaps.shape[2]

    @property
    def heatmap_size(self) -> tuple[int, int]:
        return self.heatmaps.shape[-2], self.heatmaps.shape[-1]

    @classmethod
    def from_trajectory(
        cls, trajectory: Sequence[Mapping[str, Any]], codec: HeatmapCodec, *, sample: int = 0
    ) -> SearchTrajectory:
        """Convert the list ``predict(..., return_trajectory=True)`` returned.

        Args:
            trajectory: S dicts (``DiffusionHead.predict``): "t", "t_prev", "x_t",
                "heatmaps" [B, G, K, H, W], "masks" (3 x [B, G, K, h_s, w_s]),
                "keypoints" [B, G, K, 2], "scores" [B, G, K], keypoints in input pixels
                (the head contract's trajectory, ``HeadPrediction.trajectory``).
            codec: the model's codec (decodes the consensus, gives the input frame).
            sample: which of the B clips.
        """
        if not trajectory:
            raise ValueError("SearchTrajectory.from_trajectory: the trajectory has no steps")
        missing = {"t", "t_prev", "x_t", "heatmaps", "masks", "keypoints", "scores"} - set(
            trajectory[0]
        )
        if missing:
            raise ValueError(
                f"SearchTrajectory.from_trajectory: trajectory entries lack {sorted(missing)}; "
                "expected the dicts of DiffusionHead.predict(..., return_trajectory=True)"
            )

        def stack(key: str) -> torch.Tensor:
            return torch.stack([entry[key][sample].detach().float().cpu() for entry in trajectory])

        heatmaps = stack("heatmaps")  # [S, G, K, H, W]
        # The model's output is the mean over hypotheses of the clamped final x0
        # estimates; the same mean at every step gives the step's consensus.
        consensus_keypoints, consensus_scores = codec.decode(heatmaps.clamp(0, 1).mean(dim=1))
        num_scales = len(trajectory[0]["masks"])
        masks = tuple(
            torch.stack(
                [entry["masks"][scale][sample].detach().float().cpu() for entry in trajectory]
            ).numpy()
            for scale in range(num_scales)
        )
        factor = codec.input_to_heatmap(np.ones(2))
        return cls(
            t=np.asarray([int(entry["t"]) for entry in trajectory], dtype=np.int64),
            t_prev=np.asarray([int(entry["t_prev"]) for entry in trajectory], dtype=np.int64),
            x_t=stack("x_t").numpy(),
            heatmaps=heatmaps.numpy(),
            masks=masks,
            keypoints=stack("keypoints").numpy(),
            scores=stack("scores").numpy(),
            consensus_keypoints=consensus_keypoints.numpy(),
            consensus_scores=consensus_scores.numpy(),
            input_size=codec.input_size,
            input_to_heatmap=(float(factor[0]), float(factor[1])),
        )

    # ------------------------------------------------------------------ measures

    def displacement(self) -> np.ndarray:
        """[S, K] how far each consensus keypoint moved since the previous step, input
        pixels; NaN at the first step (there is no earlier estimate)."""
        moves = np.full(self.consensus_keypoints.shape[:2], np.nan, dtype=np.float64)
        steps = np.diff(self.consensus_keypoints.astype(np.float64), axis=0)
        moves[1:] = np.linalg.norm(steps, axis=-1)
        return moves

    def spread(self) -> np.ndarray:
        """[S, K] RMS distance of the G hypotheses' keypoints to their mean, input pixels
        (0 with one hypothesis)."""
        points = self.keypoints.astype(np.float64)
        centre = points.mean(axis=1, keepdims=True)
        return np.sqrt(((points - centre) ** 2).sum(-1).mean(axis=1))

    def mask_area(self) -> np.ndarray:
        """[S, n_scales, K] effective area of each joint's look-up mask, as a fraction of
        its map: exp(entropy) / (h_s w_s), averaged over the hypotheses.

        1 for a uniform mask (the look-up reads everywhere), 1 / (h_s w_s) for a mask
        on one cell. exp(entropy) is the number of equally weighted cells with the same
        entropy (the perplexity), so the fraction is comparable across scales.
        """
        areas = []
        for mask in self.masks:
            flat = mask.reshape(*mask.shape[:3], -1).astype(np.float64)
            flat = flat / np.maximum(flat.sum(-1, keepdims=True), 1e-12)
            entropy = -(flat * np.log(np.maximum(flat, 1e-30))).sum(-1)  # [S, G, K]
            areas.append((np.exp(entropy) / flat.shape[-1]).mean(axis=1))
        return np.stack(areas, axis=1)

    def target(self, ground_truth: GroundTruth | None = None) -> np.ndarray:
        """[K, 2] where each joint should end up, input pixels: the visible ground-truth
        keypoints (NaN for the others) when given, else the final step's keypoints."""
        if ground_truth is None:
            return self.consensus_keypoints[-1].astype(np.float64)
        visible = np.asarray(ground_truth.visible, dtype=bool)[:, None]
        return np.where(visible, ground_truth.keypoints.astype(np.float64), np.nan)

    @property
    def near_radius(self) -> float:
        """The radius of "near the target" in the mask measures, input pixels: 1/8 of the
        crop height (16 at 128 x 96: one cell of the coarsest 1/16 mask, about a head)."""
        return self.input_size[0] / 8

    def cells_near(self, points: np.ndarray, radius: float) -> tuple[np.ndarray, ...]:
        """Per look-up scale, [K, h_s, w_s] bool: the mask cells whose centre lies within
        ``radius`` input pixels of each joint's point.

        Args:
            points: [K, 2] x, y in input pixels (NaN: no cell is near).
            radius: input pixels.
        """
        points = np.asarray(points, dtype=np.float64)
        heat_h, heat_w = self.heatmap_size
        near = []
        for mask in self.masks:
            rows, cols = mask.shape[-2:]
            # Cell j pools heatmap pixels [j f, (j + 1) f): centre j f + (f - 1) / 2.
            fy, fx = heat_h / rows, heat_w / cols
            centre_y = (np.arange(rows) * fy + (fy - 1) / 2) / self.input_to_heatmap[1]
            centre_x = (np.arange(cols) * fx + (fx - 1) / 2) / self.input_to_heatmap[0]
            dy = centre_y[None, :, None] - points[:, 1, None, None]
            dx = centre_x[None, None, :] - points[:, 0, None, None]
            with np.errstate(invalid="ignore"):
                near.append(dx**2 + dy**2 <= radius**2)
        return tuple(near)

    def mask_mass_near(self, points: np.ndarray, radius: float) -> np.ndarray:
        """[S, n_scales, K] share of each joint's look-up mask within ``radius`` input
        pixels of ``points`` (cell centres), averaged over the hypotheses.

        With ``points`` the target keypoints this asks whether the look-up reads where
        the joint is; a uniform mask scores the share of cells near the point, which
        ``cells_near(points, radius)[s].mean((1, 2))`` gives.

        Args:
            points: [K, 2] x, y in input pixels (ground truth, or the final keypoints).
            radius: input pixels.
        """
        shares = []
        for mask, near in zip(self.masks, self.cells_near(points, radius), strict=True):
            mass = (mask.astype(np.float64) * near[None, None]).sum(axis=(-2, -1))  # [S, G, K]
            shares.append(mass.mean(axis=1))
        return np.stack(shares, axis=1)

    def scale_names(self) -> list[str]:
        """Each look-up scale as a fraction of the input size, coarse to fine ("1/16")."""
        input_height = self.input_size[0]
        return [f"1/{round(input_height / mask.shape[-2])}" for mask in self.masks]


@dataclass(frozen=True)
class GroundTruth:
    """Target keypoints of the crop (drawn as green crosses, and measured against).

    Attributes:
        keypoints: [K, 2] x, y in input pixels.
        visible: [K] bool, joints that are annotated and inside the crop.
    """

    keypoints: np.ndarray
    visible: np.ndarray

    def error(self, keypoints: np.ndarray) -> np.ndarray:
        """[..., K] distance of ``keypoints`` [..., K, 2] (input pixels) to the target;
        NaN for joints that are not visible."""
        distance = np.linalg.norm(
            np.asarray(keypoints, dtype=np.float64) - self.keypoints.astype(np.float64), axis=-1
        )
        return np.where(self.visible, distance, np.nan)


@torch.no_grad()
def sample_search(
    model: torch.nn.Module,
    frames: torch.Tensor,
    codec: HeatmapCodec,
    *,
    steps: int | None = None,
    hypotheses: int | None = None,
    seed: int = 0,
) -> tuple[SearchTrajectory, dict[str, Any]]:
    """Run the sampler once on one clip and keep its trajectory.

    The only model call of the visualisation:
    ``model.predict(frames[None], steps=, hypotheses=, generator=Generator().manual_seed(seed),
    return_trajectory=True)`` (the head decodes every step into input pixels); the same
    call with the same seed returns the same trajectory.

    Args:
        model: a ``PoseEstimator`` with a diffusion head, in eval mode.
        frames: [T, 3, H_in, W_in] normalised crops of one clip.
        codec: the model's codec (keypoints are decoded to input pixels).
        steps: S DDIM steps (None: the model's default).
        hypotheses: G (None: the model's default).
        seed: seed of the generator that draws the starting noise.

    Returns:
        (trajectory, the model's ``HeadPrediction``).
    """
    if not hasattr(model, "head") or not hasattr(model.head, "denoiser"):
        raise ValueError(
            "sample_search: the model has no diffusion head (a plain heatmap head predicts "
            "in one pass: there is no sampling search to show)"
        )
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(int(seed))
    sampling: dict[str, Any] = {"generator": generator, "return_trajectory": True}
    if steps is not None:
        sampling["steps"] = steps
    if hypotheses is not None:
        sampling["hypotheses"] = hypotheses
    prediction = model.predict(frames[None].to(device), **sampling)
    return SearchTrajectory.from_trajectory(prediction.trajectory, codec), prediction


# --------------------------------------------------------------------------- numbers


def _rounded(values: np.ndarray, digits: int = 4) -> Any:
    """Nested lists of floats (None for NaN) for JSON."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 0:
        value = float(array)
        return None if not np.isfinite(value) else round(value, digits)
    return [_rounded(item, digits) for item in array]


def trajectory_record(
    trajectory: SearchTrajectory,
    skeleton: Skeleton,
    *,
    ground_truth: GroundTruth | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The numbers behind the pictures, JSON-ready.

    Keypoints are written exactly (float32 values as JSON doubles) so they can be
    compared with another ``predict`` call; derived measures are rounded.

    Returns:
        {"metadata", "joint_names", "input_size", "mask_scales", "near_radius",
        "near_target", "coordinates", "steps": [per step:
        "step", "t", "t_prev", "keypoints" [G][K][2], "scores" [G][K],
        "consensus_keypoints" [K][2], "consensus_scores" [K], "displacement" [K]
        (null at the first step), "spread" [K], "mask_area" [scales][K], "mask_near"
        [scales][K] (share within ``near_radius`` of ``target``, null without one),
        "error" [K] (with ground truth)], "ground_truth"}.
    """
    displacement = trajectory.displacement()
    spread = trajectory.spread()
    mask_area = trajectory.mask_area()
    target = trajectory.target(ground_truth)
    mask_near = trajectory.mask_mass_near(target, trajectory.near_radius)
    mask_near[:, :, ~np.isfinite(target).all(axis=1)] = np.nan
    steps = []
    for step in range(trajectory.num_steps):
        entry = {
            "step": step,
            "t": int(trajectory.t[step]),
            "t_prev": int(trajectory.t_prev[step]),
            "keypoints": trajectory.keypoints[step].astype(np.float64).tolist(),
            "scores": trajectory.scores[step].astype(np.float64).tolist(),
            "consensus_keypoints": trajectory.consensus_keypoints[step].astype(np.float64).tolist(),
            "consensus_scores": trajectory.consensus_scores[step].astype(np.float64).tolist(),
            "displacement": _rounded(displacement[step]),
            "spread": _rounded(spread[step]),
            "mask_area": _rounded(mask_area[step], 5),
            "mask_near": _rounded(mask_near[step], 5),
        }
        if ground_truth is not None:
            entry["error"] = _rounded(ground_truth.error(trajectory.consensus_keypoints[step]))
        steps.append(entry)
    return {
        "metadata": dict(metadata or {}),
        "joint_names": list(skeleton.joint_names),
        "input_size": list(trajectory.input_size),
        "mask_scales": trajectory.scale_names(),
        "near_radius": trajectory.near_radius,
        "near_target": "final keypoints" if ground_truth is None else "ground truth",
        "coordinates": "x, y in pixels of the model input crop (input_size H, W)",
        "steps": steps,
        "ground_truth": None
        if ground_truth is None
        else {
            "keypoints": ground_truth.keypoints.astype(np.float64).tolist(),
            "visible": ground_truth.visible.astype(bool).tolist(),
        },
    }


def write_json(record: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write ``record`` as indented JSON (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path


# --------------------------------------------------------------------------- everything


def write_search_outputs(
    out_dir: str | os.PathLike,
    trajectory: SearchTrajectory,
    clip: np.ndarray,
    skeleton: Skeleton,
    *,
    key_index: int,
    temporal: TemporalWeights | None = None,
    ground_truth: GroundTruth | None = None,
    joints: Sequence[int] | None = None,
    joint_panels: Sequence[int] | None = None,
    animations: Sequence[str] = ("gif", "mp4"),
    panel_height: int = 128,
    metadata: Mapping[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """Write every view of one trajectory into ``out_dir``.

    Files: ``search_grid.png`` (:func:`render_search_grid`), ``search.gif`` and/or
    ``search.mp4`` (:func:`render_step_frames`, S frames), ``search_curves.png``
    (``vidpose.visualization.search_plot``), ``temporal.png`` (with ``temporal``) and
    ``trajectory.json`` (:func:`trajectory_record`).

    Args:
        out_dir: folder to write into (created).
        trajectory: what the sampler recorded.
        clip: [T, H_in, W_in, 3] uint8 crops of the clip's frames (model order).
        skeleton: joint names and limbs.
        key_index: position of the key frame in ``clip``.
        temporal: the aggregator's weights, for ``temporal.png``.
        ground_truth: target keypoints (input pixels) to draw and measure against.
        joints: the joints drawn and plotted (default: the skeleton's scored joints).
        joint_panels: the joints with a grid panel of their own (default: ``joints``;
            ``[]`` for none).
        animations: any of "gif", "mp4".
        panel_height: pixels per panel of the grid (the animation uses 1.25x).
        metadata: written into ``trajectory.json`` as is.
        progress: called with each file name as it is written.

    Returns:
        name -> path of every file written ("grid", "gif", "mp4", "curves", "temporal",
        "json").
    """
    unknown = set(animations) - {"gif", "mp4"}
    if unknown:
        raise ValueError(f"write_search_outputs: unknown animations {sorted(unknown)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    crop = np.asarray(clip)[key_index]
    written: dict[str, Path] = {}

    def done(name: str, path: Path) -> None:
        written[name] = path
        if progress is not None:
            progress(str(path))

    grid, _ = render_search_grid(
        trajectory,
        crop,
        skeleton,
        joints=joints,
        joint_panels=joint_panels,
        ground_truth=ground_truth,
        panel_height=panel_height,
    )
    grid_path = out / "search_grid.png"
    Image.fromarray(grid).save(grid_path)
    done("grid", grid_path)
    if animations:
        frames = render_step_frames(
            trajectory,
            crop,
            skeleton,
            joints=joints,
            ground_truth=ground_truth,
            panel_height=round(panel_height * 1.25),
        )
        if "gif" in animations:
            done("gif", write_gif(frames, out / "search.gif"))
        if "mp4" in animations:
            done("mp4", write_mp4(frames, out / "search.mp4"))
    done(
        "curves",
        plot_search_curves(
            trajectory,
            skeleton,
            out / "search_curves.png",
            joints=joints,
            ground_truth=ground_truth,
        ),
    )
    if temporal is not None:
        view = render_temporal_view(clip, temporal, panel_height=panel_height)
        temporal_path = out / "temporal.png"
        Image.fromarray(view).save(temporal_path)
        done("temporal", temporal_path)
    record = trajectory_record(trajectory, skeleton, ground_truth=ground_truth, metadata=metadata)
    if temporal is not None:
        record["temporal"] = {
            "weights": temporal.weights.astype(np.float64).tolist(),
            "bias": float(temporal.bias),
            "offsets": list(temporal.offsets),
            "key_index": int(temporal.key_index),
        }
    done("json", write_json(record, out / "trajectory.json"))
    return written
