"""The docs pictures of the search visualisation (docs/visualization.md).

    python tools/make_search_figures.py --checkpoint work_dirs/synthetic/latest.safetensors \\
        --config configs/synthetic_tiny.yaml --set data.root=data/synthetic --summary-items 200

Runs ``vidpose visualize``'s library path (``clip_from_dataset`` -> ``sample_search`` ->
``write_clip_search``) into a temporary folder, then copies the grid, the GIF, the
curves and the temporal view to ``--out`` as ``search_*`` files, the PNGs reduced to a
256-colour palette so the docs stay small.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from vidpose.codecs.heatmap import build_codec
from vidpose.data.skeleton import get_skeleton
from vidpose.inference.predictor import load_estimator
from vidpose.visualization.search import (
    GroundTruth,
    SearchTrajectory,
    sample_search,
)
from vidpose.visualization.search_input import clip_from_dataset, write_clip_search

FIGURES = {
    "search_grid.png": "search_grid.png",
    "search.gif": "search.gif",
    "search_curves.png": "search_curves.png",
    "temporal.png": "search_temporal.png",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--config", required=True, help="experiment YAML (its validation set)")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--hypotheses", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--joints",
        default="head_top,left_wrist,right_knee,left_ankle",
        help="comma-separated joints with grid panels of their own",
    )
    parser.add_argument("--panel-height", type=int, default=96)
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    parser.add_argument(
        "--summary-items", type=int, default=0, help="also average the measures over N items"
    )
    args = parser.parse_args()

    model, config = load_estimator(args.checkpoint, config=args.config, overrides=args.overrides)
    skeleton = get_skeleton(config.data.skeleton)
    codec = build_codec(config.data)
    clip = clip_from_dataset(config, args.index)
    trajectory, _ = sample_search(
        model, clip.frames, codec, steps=args.steps, hypotheses=args.hypotheses, seed=args.seed
    )
    with tempfile.TemporaryDirectory() as folder:
        written = write_clip_search(
            folder,
            trajectory,
            clip,
            model,
            config,
            joint_panels=[skeleton.index(name) for name in args.joints.split(",")],
            animations=("gif",),
            panel_height=args.panel_height,
            metadata=clip.description,
        )
        args.out.mkdir(parents=True, exist_ok=True)
        for source in written.values():
            if source.name not in FIGURES:
                continue
            target = args.out / FIGURES[source.name]
            if source.suffix == ".png":
                with Image.open(source) as image:
                    image.convert("RGB").quantize(256).save(target, optimize=True)
            else:
                shutil.copyfile(source, target)
            print(f"{target}: {target.stat().st_size / 1024:.0f} KiB")
    scored = list(skeleton.scored_indices)
    print(f"item {args.index}:")
    print_table(trajectory, step_measures(trajectory, clip.ground_truth, scored), 1)
    if args.summary_items:
        # The same sampling on the first N items: is the picture typical?
        measures = []
        for index in range(args.summary_items):
            item = clip_from_dataset(config, index)
            sampled, _ = sample_search(
                model, item.frames, codec, steps=args.steps, hypotheses=args.hypotheses,
                seed=args.seed,
            )  # fmt: skip
            measures.append(step_measures(sampled, item.ground_truth, scored))
        with warnings.catch_warnings():  # step 1 has no move: an all-NaN column
            warnings.simplefilter("ignore", RuntimeWarning)
            means = np.nanmean(measures, axis=0)
        print_table(trajectory, means, args.summary_items)


def step_measures(
    trajectory: SearchTrajectory, ground_truth: GroundTruth | None, scored: list[int]
) -> np.ndarray:
    """[S, 4 + 2 * scales] per step, means over the ``scored`` joints: moved px, spread
    px, score, error px, then per scale the mask share near the target and a uniform
    mask's share there (percent)."""
    target = trajectory.target(ground_truth)
    valid = [joint for joint in scored if np.isfinite(target[joint]).all()]
    near = trajectory.mask_mass_near(target, trajectory.near_radius)[:, :, valid].mean(-1)
    chance = [
        cells[valid].mean() for cells in trajectory.cells_near(target, trajectory.near_radius)
    ]
    error = (
        ground_truth.error(trajectory.consensus_keypoints)
        if ground_truth is not None
        else np.full(trajectory.consensus_scores.shape, np.nan)
    )
    rows = []
    for step in range(trajectory.num_steps):
        moved = trajectory.displacement()[step, scored]
        rows.append(
            [
                np.nanmean(moved) if step else np.nan,
                trajectory.spread()[step, scored].mean(),
                trajectory.consensus_scores[step, scored].mean(),
                np.nanmean(error[step, valid]) if valid else np.nan,
                *(100 * near[step]),
                *(100 * np.asarray(chance)),
            ]
        )
    return np.asarray(rows, dtype=np.float64)


def print_table(trajectory: SearchTrajectory, measures: np.ndarray, items: int) -> None:
    scales = trajectory.scale_names()
    print(
        f"means over {items} validation clips and the scored joints; near: mask share within "
        f"{trajectory.near_radius:g} px of the ground truth (uniform mask in brackets)"
    )
    header = "step  t->t_prev  moved_px  spread_px  score  error_px  " + "  ".join(
        f"near {name:>5}" for name in scales
    )
    print(header)
    count = len(scales)
    for step, row in enumerate(measures):
        near = "  ".join(f"{row[4 + s]:4.1f} ({row[4 + count + s]:4.1f})" for s in range(count))
        print(
            f"{step + 1:4d}  {trajectory.t[step]:4d}->{trajectory.t_prev[step]:<4d}  "
            f"{row[0]:8.2f}  {row[1]:9.2f}  {row[2]:5.2f}  {row[3]:8.2f}  {near}"
        )


if __name__ == "__main__":
    main()
