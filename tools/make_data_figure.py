"""The docs picture of a synthetic clip: three consecutive frames with their ground truth.

    python tools/make_data_figure.py                          # docs/images/synthetic_clip.png
    python tools/make_data_figure.py --seed 5 --start 10 --out /tmp/clip.png

Generates one synthetic video (the first training video `vidpose synth` writes with
the same seed) in a temporary folder (``generate_dataset``), reads
it back with the PoseTrack21 reader (so the picture shows what a training run sees),
and draws every person of frames start, start+1, start+2 (``draw_people``): joints seen
are filled discs, joints hidden by an occluder or another person are rings.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from vidpose.config import SynthConfig
from vidpose.data.draw import draw_people
from vidpose.data.posetrack import read_dataset
from vidpose.data.skeleton import POSETRACK
from vidpose.data.synthetic import generate_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images/synthetic_clip.png"))
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--split", choices=("train", "val"), default="train")
    parser.add_argument("--start", type=int, default=8, help="first of the three frames")
    parser.add_argument("--frames", type=int, default=SynthConfig.frames, help="video length")
    parser.add_argument("--persons", type=int, default=SynthConfig.persons)
    parser.add_argument("--occlusion", type=float, default=SynthConfig.occlusion)
    parser.add_argument("--scale", type=float, default=1.5, help="drawing scale of the frames")
    parser.add_argument(
        "--colours", type=int, default=256, help="PNG palette size (0: full colour)"
    )
    args = parser.parse_args()
    if not 0 <= args.start <= args.frames - 3:
        parser.error(f"--start must be in 0..{args.frames - 3} for {args.frames}-frame videos")

    with tempfile.TemporaryDirectory() as folder:
        root = generate_dataset(
            folder,
            videos=1,
            frames=args.frames,
            persons=args.persons,
            occlusion=args.occlusion,
            seed=args.seed,
            progress=False,
        )
        (video,) = read_dataset("posetrack21", root, f"posetrack_data/{args.split}")
        tiles = []
        for frame in video.frames[args.start : args.start + 3]:
            image = Image.open(root / frame.image_path).convert("RGB")
            size = (round(image.width * args.scale), round(image.height * args.scale))
            image = np.asarray(image.resize(size, Image.Resampling.LANCZOS))
            tiles.append(draw_people(image, frame.persons, POSETRACK, scale=args.scale))
    gap = np.full((tiles[0].shape[0], 6, 3), 255, dtype=np.uint8)
    picture = Image.fromarray(np.concatenate([tiles[0], gap, tiles[1], gap, tiles[2]], axis=1))
    if args.colours:
        picture = picture.quantize(args.colours, method=Image.Quantize.MEDIANCUT, dither=0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    picture.save(args.out, optimize=True)
    print(
        f"wrote {args.out} ({args.out.stat().st_size // 1024} KB, {picture.width}x{picture.height})"
    )


if __name__ == "__main__":
    main()
