"""Peak memory of `vidpose extract` on a short and a longer synthetic video.

Extraction streams frames through a ring buffer, so its peak memory should not grow
with the video's length. This renders two synthetic videos (the second ``--factor``
times longer), writes their ground-truth boxes as MOT text, and extracts each in a
fresh subprocess with the tiny model (random weights), printing the subprocess's
peak resident memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) and throughput.

    .venv/bin/python tools/bench_extract_memory.py                 # 40 and 400 frames
    .venv/bin/python tools/bench_extract_memory.py --frames 20 --factor 5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def render_video(folder: Path, frames: int, size: tuple[int, int], persons: int) -> Path:
    """A synthetic video (``vidpose.data.synthetic``) and its boxes as ``<video>.txt``."""
    import numpy as np

    from vidpose.data.synthetic import make_scene
    from vidpose.visualization.video import VideoWriter

    scene = make_scene(
        np.random.default_rng(0), frames=frames, persons=persons, size=size, occlusion=0.3
    )
    video = folder / f"synthetic_{frames}.mp4"
    lines = []
    with VideoWriter(video, fps=25, preset="veryfast") as writer:
        for t in range(frames):
            rendered = scene.render(t)
            writer.write(rendered.image)
            for person, (x, y, w, h) in enumerate(rendered.boxes):
                if w > 1 and h > 1:
                    lines.append(f"{t + 1},{person},{x:.2f},{y:.2f},{w:.2f},{h:.2f},1")
    video.with_suffix(".txt").write_text("\n".join(lines) + "\n")
    return video


def run_child(args: argparse.Namespace) -> None:
    """Extract one video and print a JSON line with peak RSS and throughput."""
    import torch

    from vidpose.config import load_config
    from vidpose.inference.extract import ExtractOptions, extract_video
    from vidpose.inference.person_boxes import read_detections
    from vidpose.inference.predictor import build_predictor
    from vidpose.models.build import build_model

    torch.manual_seed(0)
    config = load_config(args.config)
    predictor = build_predictor(
        build_model(config), config, steps=args.steps, hypotheses=args.hypotheses
    )
    video = Path(args.child)
    start = time.monotonic()
    summary = extract_video(
        video,
        predictor,
        read_detections(video.with_suffix(".txt")),
        Path(args.out),
        options=ExtractOptions(progress=False, overwrite=True),
    )
    seconds = time.monotonic() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    result = {
        "frames": summary.frames,
        "persons": summary.persons,
        "peak_rss_mib": peak_kib / 1024,
        "frames_per_s": summary.frames / seconds,
        "persons_per_s": summary.persons / seconds,
        "max_buffered_frames": summary.max_buffered_frames,
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40, help="frames of the short video")
    parser.add_argument("--factor", type=int, default=10, help="the long video is this x longer")
    parser.add_argument("--size", default="320x240", help="WIDTHxHEIGHT of the videos")
    parser.add_argument("--persons", type=int, default=2)
    parser.add_argument("--config", default=str(REPO / "configs" / "synthetic_tiny.yaml"))
    parser.add_argument("--steps", type=int, default=1, help="sampling steps (speed only)")
    parser.add_argument("--hypotheses", type=int, default=1, help="hypotheses (speed only)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args)
        return

    width, height = (int(value) for value in args.size.split("x"))
    with tempfile.TemporaryDirectory(prefix="bench_extract_") as folder:
        rows = []
        for frames in (args.frames, args.frames * args.factor):
            video = render_video(Path(folder), frames, (width, height), args.persons)
            command = [
                sys.executable,
                __file__,
                "--child",
                str(video),
                "--out",
                str(Path(folder) / "out"),
                "--config",
                args.config,
                "--steps",
                str(args.steps),
                "--hypotheses",
                str(args.hypotheses),
            ]
            environment = {**os.environ, "HF_HUB_OFFLINE": "1"}
            completed = subprocess.run(
                command, capture_output=True, text=True, env=environment, check=False
            )
            if completed.returncode != 0:
                sys.exit(f"extraction of {video.name} failed:\n{completed.stderr}")
            rows.append(json.loads(completed.stdout.strip().splitlines()[-1]))
    print(
        f"videos {width}x{height}, {args.persons} people, {Path(args.config).name} (random "
        f"weights), steps {args.steps}, hypotheses {args.hypotheses}, "
        f"{rows[0]['threads']} torch threads, CPU"
    )
    header = ("frames", "persons", "peak RSS MiB", "frames/s", "persons/s", "ring max")
    print(" ".join(f"{name:>12}" for name in header))
    for row in rows:
        values = (
            row["frames"],
            row["persons"],
            f"{row['peak_rss_mib']:.1f}",
            f"{row['frames_per_s']:.2f}",
            f"{row['persons_per_s']:.2f}",
            row["max_buffered_frames"],
        )
        print(" ".join(f"{value:>12}" for value in values))
    growth = rows[1]["peak_rss_mib"] - rows[0]["peak_rss_mib"]
    print(f"peak RSS growth for {args.factor}x the frames: {growth:+.1f} MiB")


if __name__ == "__main__":
    main()
