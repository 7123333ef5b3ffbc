"""Data-loading benchmark: clips per second of the training clip pipeline.

    python tools/bench_data.py                      # 320 x 240 frames, 0 and 2 workers
    python tools/bench_data.py --size 1280 720      # PoseTrack-sized JPEG frames

Builds a small dataset in a temporary folder (the synthetic PoseTrack generator when
``vidpose.data.synthetic.generate_dataset`` is available, else simple drawn frames),
then times ``ClipDataset`` with the default settings (T = 3, 256 x 192 input, training
augmentation) through a ``DataLoader``, and the stages of one clip in this process.

Reduced decoding (``data.decode_reduced``, issue #23): clips/s per process (no loader
worker) with JPEG frames decoded at full size and at 1/2, 1/4 or 1/8 scale where the
crop allows, the same clips in the same order, and their ratio (target: 3x at
PoseTrack resolution); the scales the crops allowed are counted. Run it with
``OMP_NUM_THREADS=1`` (data loading runs on CPU cores next to the training process).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from vidpose.codecs.geometry import box_to_center_scale
from vidpose.codecs.heatmap import build_codec
from vidpose.config import Config, DataConfig
from vidpose.data.clips import ClipDataset, build_dataset
from vidpose.data.records import FrameRecord, PersonAnnotation, VideoRecord
from vidpose.data.transforms import (
    ClipTransform,
    ColorJitter,
    prepare_frames,
    warp_frames,
)


def synthetic_videos(root: Path, *, videos: int, frames: int, size: tuple[int, int]):
    """The project's synthetic generator, or None when it is not available."""
    try:
        from vidpose.data.posetrack import read_dataset
        from vidpose.data.synthetic import generate_dataset

        generate_dataset(root, videos=videos, frames=frames, persons=2, size=size, progress=False)
        return read_dataset("posetrack21", root, "posetrack_data/train"), "synthetic generator"
    except (ImportError, AttributeError, TypeError) as error:
        print(f"(synthetic generator unavailable: {error}; drawing simple frames)")
        return None


def drawn_videos(root: Path, *, videos: int, frames: int, size: tuple[int, int]):
    """Noise backgrounds with two stick figures per frame, saved as JPEG (quality 90)."""
    rng = np.random.default_rng(0)
    width, height = size
    records = []
    for video_index in range(videos):
        name = f"{video_index + 1:06d}_mpii_train"
        (root / "images" / name).mkdir(parents=True, exist_ok=True)
        base = rng.uniform(0.2, 0.8, size=(2, 17, 2)) * [width, height]
        frame_records = []
        for index in range(frames):
            pixels = rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8)
            image = Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR)
            draw = ImageDraw.Draw(image)
            persons = []
            for track, joints in enumerate(base):
                joints = joints + rng.normal(0, 2, joints.shape)
                spread = min(width, height) * 0.15
                joints = joints.mean(0) + (joints - joints.mean(0)) * spread / width
                for x, y in joints:
                    draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=(255, 255, 255))
                top_left, bottom_right = joints.min(0), joints.max(0)
                keypoints = np.concatenate([joints, np.ones((17, 1))], axis=1)
                persons.append(
                    PersonAnnotation(
                        track_id=track,
                        bbox=np.concatenate([top_left, bottom_right - top_left]),
                        keypoints=keypoints,
                    )
                )
            path = f"images/{name}/{index:06d}.jpg"
            image.save(root / path, quality=90)
            frame_records.append(
                FrameRecord(
                    video=name,
                    frame_index=index,
                    image_id=10**10 + (video_index + 1) * 10**4 + index,
                    image_path=path,
                    is_labeled=True,
                    num_frames=frames,
                    persons=persons,
                )
            )
        records.append(VideoRecord(name=name, frames=frame_records))
    return records, "drawn frames"


def clips_per_second(dataset: ClipDataset, *, workers: int, batch_size: int, batches: int) -> float:
    """Clips/s through a DataLoader, after one warm-up batch (worker start-up excluded)."""
    # Sampling with replacement: any number of batches from a small dataset.
    sampler = torch.utils.data.RandomSampler(
        dataset,
        replacement=True,
        num_samples=(batches + 1) * batch_size,
        generator=torch.Generator().manual_seed(0),
    )
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers
    )
    iterator = iter(loader)
    next(iterator)
    start = time.perf_counter()
    clips = 0
    for _ in range(batches):
        clips += len(next(iterator)["index"])
    return clips / (time.perf_counter() - start)


def reduced_decoding(
    videos, root: Path, *, batch_size: int, batches: int, repeats: int
) -> dict[str, object]:
    """Clips/s per process with ``data.decode_reduced`` off and on (the faster of
    ``repeats`` runs each, alternating), the ratio, and how often each scale was used."""
    datasets = {}
    used: dict[int, int] = {}
    for reduced in (False, True):
        cfg = Config(data=DataConfig(root=str(root), decode_reduced=reduced))
        datasets[reduced] = build_dataset(cfg, "train", videos, codec=build_codec(cfg.data))
    opened = datasets[True]._open_image

    def counted(video, frame, reduction=1):
        image = opened(video, frame, reduction)
        applied = int(image.info.get("decode_reduction", 1))
        used[applied] = used.get(applied, 0) + 1
        return image

    datasets[True]._open_image = counted
    rates: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(repeats):
        for reduced in (False, True):
            rate = clips_per_second(
                datasets[reduced], workers=0, batch_size=batch_size, batches=batches
            )
            rates[reduced].append(rate)
    full, reduced = max(rates[False]), max(rates[True])
    return {"full": full, "reduced": reduced, "ratio": reduced / full, "scales": used}


def stage_times(dataset: ClipDataset, repeats: int) -> dict[str, float]:
    """Milliseconds per clip of each stage, measured in this process."""
    totals = dict.fromkeys(("decode", "warp", "colour+normalise", "encode", "whole clip"), 0.0)
    in_h, in_w = dataset.input_size
    for repeat in range(repeats):
        index = repeat % len(dataset)
        video_position, frame_index, item = (int(v) for v in dataset._samples[index])
        video = dataset.videos[video_position]
        person = video.frames[frame_index].persons[item]
        tick = time.perf_counter()
        images = dataset._load_frames(video, dataset.frame_indices(video, frame_index))
        totals["decode"] += time.perf_counter() - tick
        center, scale = box_to_center_scale(person.bbox, aspect_ratio=in_w / in_h)
        affine = ClipTransform(center=center, scale=scale, rotation=20.0).affine((in_w, in_h))
        tick = time.perf_counter()
        crops = warp_frames(images, affine, (in_w, in_h))
        totals["warp"] += time.perf_counter() - tick
        tick = time.perf_counter()
        prepare_frames(crops, ColorJitter(1.1, 0.9, 1.2))
        totals["colour+normalise"] += time.perf_counter() - tick
        tick = time.perf_counter()
        dataset.codec.encode(np.full((17, 2), 50.0), np.ones(17, bool))
        totals["encode"] += time.perf_counter() - tick
        tick = time.perf_counter()
        dataset[index]
        totals["whole clip"] += time.perf_counter() - tick
    return {stage: 1000 * total / repeats for stage, total in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, nargs=2, default=(320, 240), metavar=("W", "H"))
    parser.add_argument("--videos", type=int, default=2)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=(0, 2))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--simple", action="store_true", help="draw frames, skip the generator")
    parser.add_argument(
        "--repeats", type=int, default=2, help="runs of the reduced-decoding comparison"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)  # data loading runs on CPU cores next to the training process

    size = tuple(args.size)
    with tempfile.TemporaryDirectory(prefix="vidpose-bench-") as folder:
        root = Path(folder)
        built = None
        if not args.simple:
            built = synthetic_videos(root, videos=args.videos, frames=args.frames, size=size)
        if built is None:
            built = drawn_videos(root, videos=args.videos, frames=args.frames, size=size)
        videos, origin = built
        cfg = Config(data=DataConfig(root=str(root)))
        # training clips of a heatmap head (targets encoded by its codec)
        dataset = build_dataset(cfg, "train", videos, codec=build_codec(cfg.data))
        print(
            f"dataset: {origin}, {size[0]} x {size[1]} JPEG frames, {len(dataset)} clips; "
            f"T={len(cfg.data.frame_offsets)}, input {cfg.data.input_size}, training augmentation"
        )
        print()
        print("| workers | clips/s | ms/clip |")
        print("|--------:|--------:|--------:|")
        for workers in args.workers:
            rate = clips_per_second(
                dataset, workers=workers, batch_size=args.batch_size, batches=args.batches
            )
            print(f"| {workers:7d} | {rate:7.1f} | {1000 / rate:7.1f} |")
        print()
        compared = reduced_decoding(
            videos, root, batch_size=args.batch_size, batches=args.batches, repeats=args.repeats
        )
        scales = ", ".join(
            f"1/{scale}: {count}" for scale, count in sorted(compared["scales"].items())
        )
        print("| data.decode_reduced (1 process) | clips/s | ms/clip |")
        print("|--------------------------------|--------:|--------:|")
        for name, key in (("false (full-size decoding)", "full"), ("true", "reduced")):
            rate = compared[key]
            print(f"| {name:30s} | {rate:7.1f} | {1000 / rate:7.1f} |")
        print(f"\nreduced / full: {compared['ratio']:.2f}x (target 3x); frames decoded at {scales}")
        print()
        print("| stage (one process) | ms/clip |")
        print("|---------------------|--------:|")
        for stage, milliseconds in stage_times(dataset, repeats=20).items():
            print(f"| {stage:19s} | {milliseconds:7.2f} |")


if __name__ == "__main__":
    main()
