"""The iterative keypoint search of a head, recorded and written out.

DiffPose's claim is that the look-up interaction searches: at every DDIM step the
current heatmaps x_t become masks that decide where each joint's features are read
(``vidpose.models.interaction``), the denoiser's x0 estimate moves the peaks, and the
next step reads the features there. A TFPose head refines its joints' points layer by
layer the same way: each decoder layer samples the features around the point it
starts from (deformable attention) and moves the point. A one-pass head (the heatmap
baseline) has no search.

:class:`~vidpose.visualization.trajectory.SearchTrajectory` holds exactly what the
head recorded (the ``trajectory`` that ``PoseEstimator.predict(...,
return_trajectory=True)`` returns) and measures it; nothing here runs the model except
:func:`sample_search`, which makes that one call. :func:`write_search_outputs` writes
every view: the grid and animation (``search_panels``), the curves (``search_plot``),
the temporal view (``temporal_view``) and the numbers (``trajectory.json``).

Modules: the data types live in ``trajectory``, which imports no drawing; the drawing
modules import it; this module imports both and re-exports the data types, so
``from vidpose.visualization.search import SearchTrajectory, GroundTruth`` keeps working.

Keypoints are in *input pixels*: pixels of the model input crop, H_in x W_in, pixel
centres at integers (``vidpose.codecs.geometry``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from vidpose.codecs.heatmap import HeatmapCodec
from vidpose.data.skeleton import Skeleton
from vidpose.runtime import InputError
from vidpose.visualization.search_grid import (
    render_search_grid,
    render_step_frames,
    write_gif,
    write_mp4,
)
from vidpose.visualization.search_plot import plot_search_curves
from vidpose.visualization.temporal_view import TemporalWeights, render_temporal_view
from vidpose.visualization.trajectory import GroundTruth, SearchTrajectory

if TYPE_CHECKING:
    from vidpose.models.heads.contract import HeadPrediction

__all__ = [
    "GroundTruth",
    "SearchTrajectory",
    "sample_search",
    "trajectory_record",
    "write_json",
    "write_search_outputs",
]


@torch.no_grad()
def sample_search(
    model: torch.nn.Module,
    frames: torch.Tensor,
    codec: HeatmapCodec,
    *,
    steps: int | None = None,
    hypotheses: int | None = None,
    seed: int = 0,
) -> tuple[SearchTrajectory, HeadPrediction]:
    """Run the model once on one clip and keep the trajectory its head records.

    The only model call of the visualisation:
    ``model.predict(frames[None], steps=, hypotheses=, generator=Generator().manual_seed(seed),
    return_trajectory=True)`` (the head decodes every step into input pixels); the same
    call with the same seed returns the same trajectory. Every head accepts the
    sampler's keywords; a head that does not sample (TFPose) ignores them.

    Args:
        model: a ``PoseEstimator`` whose head searches iteratively (diffusion steps,
            TFPose decoder layers), in eval mode.
        frames: [T, 3, H_in, W_in] normalised crops of one clip.
        codec: the data config's codec (the crop size; decodes the consensus of
            heatmap steps).
        steps: S DDIM steps (None: the model's default; diffusion only).
        hypotheses: G (None: the model's default; diffusion only).
        seed: seed of the generator that draws the starting noise.

    Returns:
        (trajectory, the model's ``HeadPrediction``).

    Raises:
        vidpose.runtime.InputError: the head predicts in one pass (its trajectory is
            empty).
    """
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(int(seed))
    sampling: dict[str, Any] = {"generator": generator, "return_trajectory": True}
    if steps is not None:
        sampling["steps"] = steps
    if hypotheses is not None:
        sampling["hypotheses"] = hypotheses
    prediction = model.predict(frames[None].to(device), **sampling)
    if not prediction.trajectory:
        head = type(getattr(model, "head", model)).__name__
        raise InputError(
            f"the model's {head} predicts in one pass (it records no steps): there is no "
            "iterative search to show; expected a diffusion or TFPose model"
        )
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
    """The numbers behind the pictures, JSON-ready, with what the trajectory recorded.

    Keypoints are written exactly (float32 values as JSON doubles) so they can be
    compared with another ``predict`` call; derived measures are rounded.

    Returns:
        {"metadata", "joint_names", "input_size", "mask_scales", "near_radius",
        "near_target" (these three with masks), "coordinates", "steps": [per step:
        "step", "label", "t" and "t_prev" (diffusion), "keypoints" [G][K][2],
        "scores" [G][K], "reference" [G][K][2] (steps that started from one),
        "consensus_keypoints" [K][2], "consensus_scores" [K], "displacement" [K]
        (null at a first step without a reference), "spread" [K], with masks
        "mask_area" [scales][K] and "mask_near" [scales][K] (share within
        ``near_radius`` of ``target``, null without one; null at steps without
        masks), "error" [K] (with ground truth)], "ground_truth"}.
    """
    displacement = trajectory.displacement()
    spread = trajectory.spread()
    has_masks = bool(trajectory.masks)
    if has_masks:
        mask_area = trajectory.mask_area()
        target = trajectory.target(ground_truth)
        mask_near = trajectory.mask_mass_near(target, trajectory.near_radius)
        mask_near[:, :, ~np.isfinite(target).all(axis=1)] = np.nan
    steps = []
    for step in range(trajectory.num_steps):
        entry: dict[str, Any] = {"step": step, "label": trajectory.labels[step]}
        if trajectory.t is not None:
            entry["t"] = int(trajectory.t[step])
            entry["t_prev"] = int(trajectory.t_prev[step])
        entry["keypoints"] = trajectory.keypoints[step].astype(np.float64).tolist()
        entry["scores"] = trajectory.scores[step].astype(np.float64).tolist()
        if trajectory.reference is not None and np.isfinite(trajectory.reference[step]).all():
            entry["reference"] = trajectory.reference[step].astype(np.float64).tolist()
        entry.update(
            {
                "consensus_keypoints": trajectory.consensus_keypoints[step]
                .astype(np.float64)
                .tolist(),
                "consensus_scores": trajectory.consensus_scores[step].astype(np.float64).tolist(),
                "displacement": _rounded(displacement[step]),
                "spread": _rounded(spread[step]),
            }
        )
        if has_masks:
            entry["mask_area"] = _rounded(mask_area[step], 5)
            entry["mask_near"] = _rounded(mask_near[step], 5)
        if ground_truth is not None:
            entry["error"] = _rounded(ground_truth.error(trajectory.consensus_keypoints[step]))
        steps.append(entry)
    record: dict[str, Any] = {
        "metadata": dict(metadata or {}),
        "joint_names": list(skeleton.joint_names),
        "input_size": list(trajectory.input_size),
    }
    if has_masks:
        record["mask_scales"] = trajectory.scale_names()
        record["near_radius"] = trajectory.near_radius
        record["near_target"] = "final keypoints" if ground_truth is None else "ground truth"
    record["coordinates"] = "x, y in pixels of the model input crop (input_size H, W)"
    record["steps"] = steps
    record["ground_truth"] = (
        None
        if ground_truth is None
        else {
            "keypoints": ground_truth.keypoints.astype(np.float64).tolist(),
            "visible": ground_truth.visible.astype(bool).tolist(),
        }
    )
    return record


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
    ``search.mp4`` (:func:`render_step_frames`, one frame per step), ``search_curves.png``
    (``vidpose.visualization.search_plot``), ``temporal.png`` (with ``temporal``) and
    ``trajectory.json`` (:func:`trajectory_record`).

    Args:
        out_dir: folder to write into (created).
        trajectory: what the head recorded.
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
