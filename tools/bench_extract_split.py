"""Where extraction's time goes: the backbone against everything else.

Runs `extract_video` (the code behind `vidpose extract`) on a synthetic video with the
extraction-scale model (ViT-S/16 at 256 x 192, T = 3 frames, the default S and G;
random weights: speed does not depend on them), boxes from the video's ground truth
(MOT text), tracking on, writing the JSON, the CSV and the overlay video. Forward hooks
time the model's stages; everything the hooks do not cover (video decoding, cropping,
heatmap decoding, tracking, writing) is the wall time minus the model's time.

    .venv/bin/python tools/bench_extract_split.py                  # 640x360, 3 people
    .venv/bin/python tools/bench_extract_split.py --steps 1 --hypotheses 1
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

from vidpose.timm_import import import_timm  # noqa: E402

import_timm()

from bench_extract_memory import render_videos  # noqa: E402
from benchmark import VIT_S  # noqa: E402  (ViT-S/16, 256 x 192, T = 3, S = 3, G = 4)

from vidpose.config import load_config  # noqa: E402
from vidpose.inference.extract import ExtractOptions, extract_video  # noqa: E402
from vidpose.inference.person_boxes import read_detections  # noqa: E402
from vidpose.inference.predictor import build_predictor  # noqa: E402
from vidpose.models.build import build_model  # noqa: E402


class StageTimer:
    """Sums the wall time spent inside chosen modules (forward hooks) and methods."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._started: dict[str, float] = {}

    def module(self, name: str, module: torch.nn.Module) -> None:
        def start(*_: object) -> None:
            self._started[name] = time.perf_counter()

        def stop(*_: object) -> None:
            self.seconds[name] += time.perf_counter() - self._started.pop(name)

        module.register_forward_pre_hook(start)
        module.register_forward_hook(stop)

    def method(self, name: str, owner: object, attribute: str) -> None:
        original = getattr(owner, attribute)

        def timed(*args: object, **kwargs: object) -> object:
            begin = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - begin

        setattr(owner, attribute, timed)


def measure(
    video: Path, out: Path, overrides: list[str], *, render: bool, decoder: str
) -> dict[str, float]:
    """Extract ``video`` once; seconds per stage, "total" the wall time."""
    torch.manual_seed(0)
    config = load_config(REPO / "configs" / "synthetic_tiny.yaml", overrides)
    model = build_model(config)
    predictor = build_predictor(model, config)
    timer = StageTimer()
    timer.module("backbone", model.backbone)
    timer.module("temporal aggregator", model.temporal)
    timer.module("feature pyramid", model.pyramid)
    timer.method("head (sampling + averaging)", model.head, "predict")
    start = time.perf_counter()
    summary = extract_video(
        video,
        predictor,
        read_detections(video.with_suffix(".txt")),
        out,
        options=ExtractOptions(progress=False, overwrite=True, render=render, decoder=decoder),
    )
    stages = dict(timer.seconds)
    stages["total"] = time.perf_counter() - start
    stages["frames"] = summary.frames
    stages["persons"] = summary.persons
    return stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=24, help="frames of the video")
    parser.add_argument("--size", default="640x360", help="WIDTHxHEIGHT of the video")
    parser.add_argument("--persons", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None, help="S (default: the config's)")
    parser.add_argument("--hypotheses", type=int, default=None, help="G (default: the config's)")
    parser.add_argument("--no-render", action="store_true", help="skip the overlay video")
    parser.add_argument("--decoder", default="pyav", choices=("pyav", "decord", "auto"))
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    overrides = list(VIT_S)
    if args.steps is not None:
        overrides.append(f"model.diffusion.sampling_steps={args.steps}")
    if args.hypotheses is not None:
        overrides.append(f"model.diffusion.hypotheses={args.hypotheses}")
    width, height = (int(value) for value in args.size.split("x"))
    with tempfile.TemporaryDirectory(prefix="bench_split_") as folder:
        video = render_videos(Path(folder), args.frames, 1, (width, height), args.persons)[0]
        run = dict(video=video, out=Path(folder) / "out", overrides=overrides)
        options = dict(render=not args.no_render, decoder=args.decoder)
        measure(**run, **options)  # warm-up: first-call allocations, lazy imports
        stages = measure(**run, **options)
    total = stages.pop("total")
    frames, persons = int(stages.pop("frames")), int(stages.pop("persons"))
    backbone = stages["backbone"]
    model_seconds = sum(stages.values())
    stages["rest: decoding video, crops, heatmap decoding, tracking, writing"] = (
        total - model_seconds
    )
    config = dict(item.split("=", 1) for item in overrides)
    print(
        f"extraction of a {width}x{height} synthetic video, {frames} frames, {persons} "
        f"person-frames, ViT-S/16 256x192, T = 3, S = "
        f"{config['model.diffusion.sampling_steps']}, G = {config['model.diffusion.hypotheses']}, "
        f"{torch.get_num_threads()} threads, overlay {'on' if not args.no_render else 'off'}, "
        f"decoder {args.decoder}"
    )
    print(f"{'stage':<68} {'s':>7} {'% of backbone':>14}")
    for name, seconds in stages.items():
        print(f"{name:<68} {seconds:>7.2f} {100 * seconds / backbone:>13.1f}%")
    other = total - backbone
    print(f"{'everything but the backbone':<68} {other:>7.2f} {100 * other / backbone:>13.1f}%")
    print(f"{'total':<68} {total:>7.2f}   {persons / total:.2f} person-frames/s")


if __name__ == "__main__":
    main()
