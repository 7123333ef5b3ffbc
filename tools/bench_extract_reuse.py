"""Extraction throughput with feature reuse (issue #23): person-frames/s of the temporal
diffusion model (T = 3) cropped around each frame's own box with the token cache,
against the single-frame heatmap baseline on the same backbone.

    python tools/bench_extract_reuse.py              # ViT-S/16 at 256 x 192 (section a's)
    python tools/bench_extract_reuse.py --tiny       # the tiny CPU config (a smoke run)
    python tools/bench_extract_reuse.py --device cuda --frames 64 --people 6

Every number is the library's extraction (``vidpose.inference.extract.extract_video``)
end to end on the same synthetic 1280 x 720 video, given as decoded frames (no video
decoding), with a detections table as the boxes (known ahead, so future neighbours
are cropped around their own boxes too): boxes, crops, model, tracking, JSON and CSV
written. Models have random weights (speed does not depend on them). Rows:

- single-frame heatmap baseline (T = 1): one crop and one backbone pass per person-frame;
- temporal diffusion, key-box crops (``data.neighbour_boxes: key``, DiffPose's): T
  crops and T backbone passes per person and key frame;
- temporal diffusion, own-box crops, every clip encoded in full (``reuse_tokens``
  off): the same cost as key boxes, for the comparison;
- temporal diffusion, own-box crops + token cache: each person-frame cropped and
  encoded once, each clip fuses cached tokens.

The temporal rows run at each sampler setting (``--settings``, default S = 1, G = 1 and
S = 3, G = 4); the ratio is person-frames/s over the baseline's (targets of #23: 0.8x at
S = 1, G = 1 and 0.5x at S = 3, G = 4 with the cache). Each number is the faster of
``--passes`` passes after a warm-up (on a shared machine the slower pass measures the
neighbours).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vidpose.config import load_config  # noqa: E402
from vidpose.inference.extract import ExtractOptions, extract_video  # noqa: E402
from vidpose.inference.person_boxes import DetectionTable  # noqa: E402
from vidpose.inference.predictor import build_predictor  # noqa: E402
from vidpose.models.build import build_model  # noqa: E402

TINY_CONFIG = REPO / "configs" / "synthetic_tiny.yaml"
# Section a's extraction-scale model (tools/benchmark.py VIT_S): ViT-S/16 at 256 x 192.
VIT_S = [
    "model.backbone.name=vit_small_patch16_224",
    "model.backbone.embed_dim=384",
    "model.backbone.depth=12",
    "model.backbone.num_heads=6",
    "data.input_size=[256,192]",
    "model.decoder_dim=128",
]
SETTINGS = ((1, 1), (3, 4))


def walking_people(
    frames: int, people: int, size: tuple[int, int] = (1280, 720), seed: int = 0
) -> tuple[list[np.ndarray], DetectionTable]:
    """``frames`` RGB frames of ``people`` stick figures walking across a noisy
    background, and their boxes as a detections table."""
    rng = np.random.default_rng(seed)
    width, height = size
    box_w, box_h = width * 0.09, height * 0.45
    starts = rng.uniform([0, 0.05 * height], [width - box_w, height - box_h - 1], (people, 2))
    speeds = rng.uniform(-6, 6, (people, 2)) * [1.0, 0.3]
    background = rng.integers(0, 255, (height // 16, width // 16, 3), dtype=np.uint8)
    base = Image.fromarray(background).resize(size, Image.Resampling.BILINEAR)
    images, table = [], {}
    for index in range(frames):
        corners = starts + speeds * index
        corners = np.clip(corners, 0, [width - box_w, height - box_h])
        boxes = np.column_stack([corners, np.full(people, box_w), np.full(people, box_h)])
        image = base.copy()
        canvas = ImageDraw.Draw(image)
        for x, y, w, h in boxes:
            cx = x + w / 2
            canvas.ellipse((cx - w * 0.15, y, cx + w * 0.15, y + h * 0.2), fill=(230, 200, 180))
            canvas.line((cx, y + h * 0.2, cx, y + h * 0.6), fill=(40, 60, 200), width=9)
            canvas.line((x, y + h * 0.35, x + w, y + h * 0.35), fill=(40, 60, 200), width=7)
            canvas.line((cx, y + h * 0.6, x + w * 0.1, y + h), fill=(60, 40, 30), width=8)
            canvas.line((cx, y + h * 0.6, x + w * 0.9, y + h), fill=(60, 40, 30), width=8)
        images.append(np.asarray(image))
        table[index] = (boxes, np.ones(people))
    return images, DetectionTable(table)


def model_overrides(tiny: bool) -> tuple[Path, list[str]]:
    """The base config and overrides of the benchmark's backbone: the tiny config as it
    is, or section a's ViT-S/16 at 256 x 192."""
    return TINY_CONFIG, [] if tiny else list(VIT_S)


def build_models(base: Path, overrides: list[str]) -> dict[str, tuple[torch.nn.Module, object]]:
    """The temporal diffusion model (own-box crops) and the single-frame baseline, on
    one backbone (``base`` with ``overrides``), random weights, eval mode."""
    torch.manual_seed(0)
    temporal = load_config(
        base,
        [*overrides, "model.head=diffusion", "data.frame_offsets=[-1,0,1]",
         "data.neighbour_boxes=own"],
    )  # fmt: skip
    baseline = load_config(base, [*overrides, "data.frame_offsets=[0]", "model.head=heatmap"])
    return {
        "temporal": (build_model(temporal).eval(), temporal),
        "baseline": (build_model(baseline).eval(), baseline),
    }


def person_frames_per_second(
    predictor, frames: list[np.ndarray], boxes: DetectionTable, out: Path, passes: int
) -> float:
    """The faster of ``passes`` extractions of ``frames`` (after a short warm-up)."""
    options = ExtractOptions(progress=False, overwrite=True, track=True)
    extract_video(out / "warmup.mp4", predictor, boxes, out, options=options, frames=frames[:4])
    rates = []
    for _ in range(passes):
        if predictor.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        summary = extract_video(
            out / "video.mp4", predictor, boxes, out, options=options, frames=frames
        )
        if predictor.device.type == "cuda":
            torch.cuda.synchronize()
        rates.append(summary.persons / (time.perf_counter() - start))
    return max(rates)


def compare(
    *,
    tiny: bool,
    base: Path | None = None,
    overrides: list[str] | None = None,
    label: str | None = None,
    device: str = "cpu",
    frames: int = 24,
    people: int = 2,
    settings: tuple[tuple[int, int], ...] = SETTINGS,
    passes: int = 2,
    batch_size: int = 32,
    full_clips: bool = True,
) -> dict:
    """Person-frames/s of each row (module docstring) and the ratios to the baseline.

    ``base`` and ``overrides`` choose another backbone (``tools/bench_gpu.py``: the
    PoseTrack ViT-B config), named ``label`` in the table.
    """
    if base is None:
        base, overrides = model_overrides(tiny)
        label = "tiny config (128x96, 4 blocks of 128)" if tiny else "ViT-S/16 256x192"
    models = build_models(base, list(overrides or []))
    images, boxes = walking_people(frames, people)
    results: dict = {
        "model": label or str(base),
        "device": device,
        "threads": torch.get_num_threads(),
        "frames": frames,
        "people": people,
        "rows": [],
    }
    with tempfile.TemporaryDirectory(prefix="vidpose-reuse-") as folder:
        out = Path(folder)
        model, config = models["baseline"]
        predictor = build_predictor(
            model.to(device), config, device=device, flip_test=False, batch_size=batch_size
        )
        base = person_frames_per_second(predictor, images, boxes, out / "baseline", passes)
        results["baseline_person_frames_per_s"] = base
        results["rows"].append(
            {"name": "single-frame heatmap baseline (T=1)", "S": None, "G": None,
             "person_frames_per_s": base, "ratio": 1.0}
        )  # fmt: skip
        model, config = models["temporal"]
        model.to(device)
        variants = [("own-box crops + token cache", "own", True)]
        if full_clips:
            variants += [("own-box crops, full clips", "own", False),
                         ("key-box crops (DiffPose)", "key", False)]  # fmt: skip
        for steps, hypotheses in settings:
            for name, neighbour_boxes, reuse in variants:
                predictor = build_predictor(
                    model,
                    config,
                    device=device,
                    steps=steps,
                    hypotheses=hypotheses,
                    flip_test=False,
                    batch_size=batch_size,
                )
                predictor.neighbour_boxes = neighbour_boxes
                predictor.reuse_tokens = reuse
                rate = person_frames_per_second(
                    predictor, images, boxes, out / f"{neighbour_boxes}{reuse}", passes
                )
                results["rows"].append(
                    {"name": f"temporal diffusion (T=3), {name}", "S": steps, "G": hypotheses,
                     "person_frames_per_s": rate, "ratio": rate / base}
                )  # fmt: skip
    return results


@torch.no_grad()
def model_only(
    *,
    tiny: bool,
    batch: int = 8,
    settings: tuple[tuple[int, int], ...] = SETTINGS,
    repeat: int = 5,
) -> dict:
    """Section a's measure (``tools/benchmark.py --only a``): the models alone on
    random crops, ``batch`` persons per call, no cropping, tracking or writing. The
    cached temporal model in steady state encodes the key frame's ``batch`` new crops
    (``encode_frames``) and fuses clips of cached tokens (``predict_from_tokens``)."""
    import numpy as np

    base, overrides = model_overrides(tiny)
    models = build_models(base, overrides)
    temporal, config = models["temporal"]
    baseline, _ = models["baseline"]
    height, width = config.data.input_size
    clips = torch.randn(batch, 3, 3, height, width)
    single = clips[:, 1:2].contiguous()
    tokens = temporal.encode_frames(clips.flatten(0, 1)).unflatten(0, (batch, 3))

    def timed(function) -> float:
        function()
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            function()
            times.append(time.perf_counter() - start)
        return float(np.median(times))

    base_rate = batch / timed(lambda: baseline.predict(single))
    rows = [{"name": "single-frame heatmap baseline (T=1)", "S": None, "G": None,
             "person_frames_per_s": base_rate, "ratio": 1.0}]  # fmt: skip
    for steps, hypotheses in settings:
        sampling = {"steps": steps, "hypotheses": hypotheses}

        def cached(sampling=sampling) -> None:
            temporal.encode_frames(clips[:, 2])  # the frame ahead: one new crop per person
            temporal.predict_from_tokens(tokens, **sampling)

        for name, function in (
            ("token cache, steady state", cached),
            ("full clips", lambda sampling=sampling: temporal.predict(clips, **sampling)),
        ):
            rate = batch / timed(function)
            rows.append(
                {"name": f"temporal diffusion (T=3), {name}", "S": steps, "G": hypotheses,
                 "person_frames_per_s": rate, "ratio": rate / base_rate}
            )  # fmt: skip
    label = "tiny config" if tiny else "ViT-S/16 256x192"
    return {"model": f"{label}, models alone, {batch} persons per call", "device": "cpu",
            "threads": torch.get_num_threads(), "rows": rows}  # fmt: skip


def format_table(results: dict) -> str:
    scene = (
        f", {results['frames']} frames x {results['people']} people of 1280x720, "
        "detections as boxes"
        if "frames" in results
        else ""
    )
    lines = [
        f"person-frames/s, {results['model']}, {results['device']}, "
        f"{results['threads']} threads{scene}",
        "",
        "| model | S | G | person-frames/s | vs baseline |",
        "|-------|--:|--:|----------------:|------------:|",
    ]
    for row in results["rows"]:
        s = "-" if row["S"] is None else row["S"]
        g = "-" if row["G"] is None else row["G"]
        lines.append(
            f"| {row['name']} | {s} | {g} | {row['person_frames_per_s']:.2f} | "
            f"{row['ratio']:.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="the tiny config, not ViT-S")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--people", type=int, default=2)
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32, help="clips per model call")
    parser.add_argument(
        "--settings", default="1x1,3x4", help="sampler settings SxG, comma-separated"
    )
    parser.add_argument("--no-full-clips", action="store_true", help="skip the rows without reuse")
    parser.add_argument(
        "--model-only", action="store_true", help="also time the models alone (section a's way)"
    )
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    settings = tuple(
        tuple(int(value) for value in item.split("x")) for item in args.settings.split(",")
    )
    results = compare(
        tiny=args.tiny,
        device=args.device,
        frames=args.frames,
        people=args.people,
        settings=settings,
        passes=args.passes,
        batch_size=args.batch_size,
        full_clips=not args.no_full_clips,
    )
    print(format_table(results))
    if args.model_only:
        results["model_only"] = model_only(tiny=args.tiny, settings=settings)
        print()
        print(format_table(results["model_only"]))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
