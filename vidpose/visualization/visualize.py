"""The library side of ``vidpose visualize``: one person's clip run through the model,
the head's search recorded and drawn (:func:`run_visualization`).

The CLI parses the command line and calls :func:`run_visualization`; the demo calls it
the same way. The options are checked before the checkpoint is read, and the output
folder before the model runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vidpose.runtime import InputError, prepare_output_folder, resolve_device, writing

ANIMATIONS = {"both": ("gif", "mp4"), "none": (), "gif": ("gif",), "mp4": ("mp4",)}


@dataclass
class VisualizationResult:
    """What :func:`run_visualization` wrote and measured.

    Attributes:
        out_dir: the output folder.
        written: name -> path of every file written.
        summary: one line: the steps recorded and the mean keypoint move per step.
        note: a remark for the user (e.g. sampler settings a head ignored), or None.
    """

    out_dir: Path
    written: dict[str, Path]
    summary: str
    note: str | None = None


def run_visualization(
    checkpoint: str | os.PathLike,
    *,
    dataset: str | None = None,
    index: int | None = None,
    video: str | None = None,
    frame: int | None = None,
    track: int | None = None,
    boxes: str | None = None,
    overrides: tuple[str, ...] | list[str] = (),
    steps: int | None = None,
    hypotheses: int | None = None,
    seed: int = 0,
    out: str | os.PathLike | None = None,
    joints: str | None = None,
    animation: str = "both",
    panel_height: int = 128,
    device: str | None = None,
) -> VisualizationResult:
    """Draw the search of the head for one clip: item ``index`` of the validation set of
    ``dataset`` (an experiment YAML, with ``overrides``), or the person ``track`` at
    ``frame`` of ``video`` (boxes from ``boxes``; single-person mode without). Every
    option is the command's, by the same name (docs/visualization.md).

    Raises:
        vidpose.runtime.InputError: options that do not fit together, a missing or
            malformed checkpoint, config, video or boxes file, no such item, frame,
            track or joint.
        vidpose.runtime.OutputError: the output folder cannot be written.
    """
    import numpy as np

    from vidpose.codecs.heatmap import build_codec
    from vidpose.data.skeleton import get_skeleton
    from vidpose.inference.extraction import load_model
    from vidpose.inference.predictor import build_predictor
    from vidpose.visualization.search import sample_search
    from vidpose.visualization.search_input import (
        clip_from_dataset,
        clip_from_video,
        write_clip_search,
    )

    _check_options(dataset, index, video, frame, track, boxes, overrides)
    for option, value in (
        ("steps", steps),
        ("hypotheses", hypotheses),
        ("panel-height", panel_height),
    ):
        if value is not None and value < 1:
            raise InputError(f"--{option} {value}: expected a number >= 1")
    if animation not in ANIMATIONS:
        raise InputError(f"--animation {animation!r}: expected one of {', '.join(ANIMATIONS)}")
    device = resolve_device(device)

    model, config = load_model(checkpoint, dataset, overrides)
    model = model.to(device).eval()
    skeleton = get_skeleton(config.data.skeleton)
    codec = build_codec(config.data)
    joint_panels = None if joints is None else []
    if joints not in (None, "none"):
        names = [name.strip() for name in joints.split(",") if name.strip()]
        try:
            joint_panels = [skeleton.index(name) for name in names]
        except KeyError as error:
            raise InputError(f"--joints: {error.args[0]}") from None

    if dataset is not None:
        clip = clip_from_dataset(config, index)
        name = f"{Path(dataset).stem}_val{clip.description['index']}"
    else:
        predictor = build_predictor(model, config, device=device)
        clip = clip_from_video(predictor, video, frame, track=track, boxes=boxes)
        name = f"{Path(video).stem}_frame{frame}_track{track or 0}"
    out_dir = prepare_output_folder(out or Path("outputs/visualize") / name, "the output folder")
    try:
        trajectory, _ = sample_search(
            model,
            clip.frames,
            codec,
            steps=steps if steps is not None else config.test.steps,
            hypotheses=hypotheses if hypotheses is not None else config.test.hypotheses,
            seed=seed,
        )
    except InputError as error:  # a head without steps: the checkpoint is the problem
        raise InputError(f"{checkpoint}: {error}") from None
    metadata = {
        **clip.description,
        "checkpoint": str(checkpoint),
        "seed": seed,
        "steps": trajectory.num_steps,
        "hypotheses": trajectory.num_hypotheses,
        "box": clip.box.tolist(),
        "inverse_affine": clip.inverse_affine.tolist(),
    }
    with writing(out_dir, "the visualisation"):
        written = write_clip_search(
            out_dir,
            trajectory,
            clip,
            model,
            config,
            joint_panels=joint_panels,
            animations=ANIMATIONS[animation],
            panel_height=panel_height,
            metadata=metadata,
        )
    note = None
    if trajectory.t is None and (steps is not None or hypotheses is not None):
        # the head accepted the sampler's settings and ignored them: say so
        note = (
            f"--steps and --hypotheses set a diffusion sampler; {type(model.head).__name__} "
            f"records its own {trajectory.num_steps} steps"
        )
    moves = trajectory.displacement()[:, skeleton.scored_indices]
    if trajectory.t is not None:
        what = f"{trajectory.num_steps} steps, {trajectory.num_hypotheses} hypotheses"
    else:
        what = f"{trajectory.num_steps} steps ({', '.join(trajectory.labels)})"
    summary = f"{what}; mean keypoint move per step (input px): " + ", ".join(
        f"{np.nanmean(row):.2f}" if np.isfinite(row).any() else "-" for row in moves
    )
    return VisualizationResult(out_dir, dict(written), summary, note)


def _check_options(dataset, index, video, frame, track, boxes, overrides) -> None:
    """Refuse options that do not fit together (each names the option)."""
    if (dataset is None) == (video is None):
        raise InputError("give one clip source: --dataset CFG --index N or --video FILE --frame N")
    if dataset is not None and index is None:
        raise InputError("--dataset needs --index (the item of the validation set)")
    if video is not None and frame is None:
        raise InputError("--video needs --frame (the key frame, 0-based)")
    misplaced = [
        flag
        for flag, value, wanted in (
            ("--index", index, dataset),
            ("--set", list(overrides) or None, dataset),
            ("--frame", frame, video),
            ("--track", track, video),
            ("--boxes", boxes, video),
        )
        if value is not None and wanted is None
    ]
    if misplaced:
        other = "--dataset" if misplaced[0] in ("--index", "--set") else "--video"
        raise InputError(f"{misplaced[0]} only applies with {other}")
