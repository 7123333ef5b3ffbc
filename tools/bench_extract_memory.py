"""Peak memory of `vidpose extract` on a short and a longer synthetic video.

Extraction streams frames through a ring buffer, so its peak memory should not grow
with the video's length (only the results, about 230 bytes per person, and the JSON
document while it is written, grow). This renders a synthetic clip and a ``--factor``
times longer video of the same clip played back and forth, writes their ground-truth
boxes as MOT text, and extracts each in a fresh subprocess with the tiny model (random
weights), printing the subprocess's peak resident memory
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) and throughput.

    .venv/bin/python tools/bench_extract_memory.py                 # 30 and 300 frames
    .venv/bin/python tools/bench_extract_memory.py --frames 20 --factor 5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def render_videos(
    folder: Path, frames: int, factor: int, size: tuple[int, int], persons: int
) -> list[Path]:
    """A synthetic clip (``vidpose.data.synthetic``) and a ``factor`` times longer video of
    the same clip played forwards and backwards in turn (same content, so the two runs
    differ only in length), each with its boxes as MOT text next to it."""
    import numpy as np

    from vidpose.data.synthetic import make_scene
    from vidpose.data.video_writer import VideoWriter

    scene = make_scene(
        np.random.default_rng(0), frames=frames, persons=persons, size=size, occlusion=0.3
    )
    rendered = [scene.render(t) for t in range(frames)]
    videos = []
    for length in (frames, frames * factor):
        # Ping-pong order: 0 .. F-1, F-1 .. 0, 0 .. F-1, ... keeps the motion smooth.
        order = [
            t if (position // frames) % 2 == 0 else frames - 1 - t
            for position, t in ((p, p % frames) for p in range(length))
        ]
        video = folder / f"synthetic_{length}.mp4"
        lines = []
        with VideoWriter(video, fps=25, preset="veryfast") as writer:
            for index, t in enumerate(order):
                writer.write(rendered[t].image)
                for person, (x, y, w, h) in enumerate(rendered[t].boxes):
                    if w > 1 and h > 1:
                        lines.append(f"{index + 1},{person},{x:.2f},{y:.2f},{w:.2f},{h:.2f},1")
        video.with_suffix(".txt").write_text("\n".join(lines) + "\n")
        videos.append(video)
    return videos


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
        options=ExtractOptions(progress=False, overwrite=True, decoder=args.decoder),
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
    parser.add_argument("--frames", type=int, default=30, help="frames of the short video")
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs per video (peak RSS varies from run to run)"
    )
    parser.add_argument("--factor", type=int, default=10, help="the long video is this x longer")
    parser.add_argument("--size", default="320x240", help="WIDTHxHEIGHT of the videos")
    parser.add_argument("--persons", type=int, default=2)
    parser.add_argument("--config", default=str(REPO / "configs" / "synthetic_tiny.yaml"))
    parser.add_argument("--steps", type=int, default=1, help="sampling steps (speed only)")
    parser.add_argument("--hypotheses", type=int, default=1, help="hypotheses (speed only)")
    parser.add_argument(
        "--decoder", default="pyav", choices=("pyav", "decord", "auto"), help="video decoder"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args)
        return

    width, height = (int(value) for value in args.size.split("x"))
    with tempfile.TemporaryDirectory(prefix="bench_extract_") as folder:
        videos = render_videos(
            Path(folder), args.frames, args.factor, (width, height), args.persons
        )
        runs: dict[Path, list[dict]] = {video: [] for video in videos}
        # Alternate short and long runs so that load from other processes hits both alike.
        for _ in range(args.repeats):
            for video in videos:
                runs[video].append(extract_in_subprocess(video, Path(folder) / "out", args))
    first = runs[videos[0]][0]
    print(
        f"videos {width}x{height}, {args.persons} people, {Path(args.config).name} (random "
        f"weights), steps {args.steps}, hypotheses {args.hypotheses}, "
        f"{first['threads']} torch threads, CPU, decoder {args.decoder}; {args.repeats} runs "
        "each, median [min, max]"
    )
    header = ("frames", "persons", "peak RSS MiB", "frames/s", "persons/s", "ring max")
    widths = (7, 8, 24, 9, 10, 9)
    print(" ".join(f"{name:>{width}}" for name, width in zip(header, widths, strict=True)))
    medians = []
    for video in videos:
        rows = runs[video]
        peaks = sorted(row["peak_rss_mib"] for row in rows)
        medians.append(statistics.median(peaks))
        print(
            f"{rows[0]['frames']:>7} {rows[0]['persons']:>8} "
            f"{f'{medians[-1]:.1f} [{peaks[0]:.1f}, {peaks[-1]:.1f}]':>24} "
            f"{statistics.median(row['frames_per_s'] for row in rows):>9.2f} "
            f"{statistics.median(row['persons_per_s'] for row in rows):>10.2f} "
            f"{max(row['max_buffered_frames'] for row in rows):>9}"
        )
    print(
        f"median peak RSS growth for {args.factor}x the frames: {medians[1] - medians[0]:+.1f} MiB"
    )


def extract_in_subprocess(video: Path, out: Path, args: argparse.Namespace) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        str(video),
        "--out",
        str(out),
        "--config",
        args.config,
        "--steps",
        str(args.steps),
        "--hypotheses",
        str(args.hypotheses),
        "--decoder",
        args.decoder,
    ]
    environment = {**os.environ, "HF_HUB_OFFLINE": "1"}
    completed = subprocess.run(
        command, capture_output=True, text=True, env=environment, check=False
    )
    if completed.returncode != 0:
        sys.exit(f"extraction of {video.name} failed:\n{completed.stderr}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
