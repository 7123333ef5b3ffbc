"""GPU throughput in one command (issue #23): training clips/s (bf16 autocast) and peak
memory of the ViT-B and ViT-H PoseTrack configs on synthetic 1280 x 720 data, and
extraction person-frames/s with and without feature reuse (own-box crops + the token
cache against full clips and the single-frame baseline).

    python tools/bench_gpu.py                        # on a CUDA machine
    python tools/bench_gpu.py --json gpu.json        # also write the numbers
    python tools/bench_gpu.py --tiny                 # the tiny config (CPU; the test)

Without CUDA the tiny config is used (``--tiny`` is implied) so the command runs
anywhere; the numbers then say nothing about a GPU.

Training, per config (``configs/posetrack18_vit_b.yaml``, ``..._vit_h.yaml``; tiny:
``configs/synthetic_tiny.yaml``), on a synthetic PoseTrack21-layout dataset of 1280 x
720 JPEG frames (``vidpose.data.synthetic``):

- step only: forward, loss, backward and AdamW step of the config's model at its batch
  size (``--batch-size`` to change it) on one loaded batch, bf16 autocast on CUDA as the
  trainer does: what the GPU sustains when data loading keeps up;
- end to end: ``vidpose.engine.trainer.train`` for ``--steps`` steps with the config's
  ``data.num_workers`` loader processes (median clips/s of the log after warm-up):
  what a run gets, data loading included;
- peak memory: ``torch.cuda.max_memory_allocated`` of each (CPU: the process's peak
  resident memory, ``ru_maxrss``).

Extraction: ``tools/bench_extract_reuse.py``'s rows (the single-frame baseline, the
temporal diffusion model with own-box crops + token cache, the same with every clip
encoded in full) on the ViT-B PoseTrack model at S = 1, G = 1 and S = 3, G = 4.

Output: markdown tables, and with ``--json`` a file with every number.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

import bench_extract_reuse  # noqa: E402

from vidpose.config import load_config  # noqa: E402

CONFIGS = {
    "ViT-B": REPO / "configs" / "posetrack18_vit_b.yaml",
    "ViT-H": REPO / "configs" / "posetrack18_vit_h.yaml",
}
TINY = {"tiny": REPO / "configs" / "synthetic_tiny.yaml"}


def synthetic_data(root: Path, *, size: tuple[int, int], videos: int, frames: int) -> Path:
    from vidpose.data.synthetic import generate_dataset

    return generate_dataset(
        root, videos=videos, frames=frames, persons=3, size=size, progress=False, overwrite=True
    )


def data_overrides(root: Path) -> list[str]:
    """The synthetic dataset in place of PoseTrack18 (same skeleton, layout of 21)."""
    return [
        f"data.root={root}",
        "data.format=posetrack21",
        "data.train_annotations=posetrack_data/train",
        "data.val_annotations=posetrack_data/val",
        "model.backbone.checkpoint=",  # random weights: speed does not depend on them
    ]


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def step_only(config, device: torch.device, steps: int) -> dict:
    """Clips/s and peak memory of training steps on one batch, kept on the device."""
    from vidpose.data.clips import build_dataset_from_config
    from vidpose.engine.optim import build_optimizer
    from vidpose.losses import build_criterion
    from vidpose.models.build import build_model

    torch.manual_seed(0)
    model = build_model(config).to(device).train()
    dataset = build_dataset_from_config(config, "train", codec=model.head.codec)
    loader = torch.utils.data.DataLoader(dataset, batch_size=config.train.batch_size, shuffle=True)
    batch = next(iter(loader))
    size = len(batch["frames"])
    frames = batch["frames"].to(device)
    targets = {key: batch[key].to(device) for key in dataset.target_keys}
    seeds = torch.arange(size, dtype=torch.int64)
    criterion = build_criterion(config, model.head)
    optimizer = build_optimizer(
        model, lr=config.train.lr, weight_decay=config.train.weight_decay, layer_decay=1.0
    )
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step() -> None:
        with autocast:
            outputs = model(frames, targets=targets, sample_seeds=seeds)
        loss = criterion(outputs, targets)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up: allocations, kernel choice
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    result = {
        "batch_size": size,
        "clips_per_s": steps * size / seconds,
        "peak_memory_mib": peak_memory_mib(device),
        "parameters_m": sum(p.numel() for p in model.parameters()) / 1e6,
    }
    return result


def end_to_end(config, device: torch.device, steps: int, work: Path) -> dict:
    """``train`` for ``steps`` steps: median logged clips/s after the first two steps."""
    from dataclasses import replace

    from vidpose.engine.trainer import train

    config = replace(
        config,
        train=replace(
            config.train,
            max_steps=steps,
            val_every=0,
            log_every=1,
            checkpoint_every_minutes=0.0,
            warmup_steps=0,
        ),
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    train(config, work, device=device.type, show_progress=False)
    records = [json.loads(line) for line in (work / "metrics.jsonl").open()]
    speeds = [r["clips_per_second"] for r in records if r.get("kind") == "train"]
    steady = speeds[2:] or speeds
    return {
        "clips_per_s": float(np.median(steady)),
        "peak_memory_mib": peak_memory_mib(device),
        "num_workers": config.data.num_workers,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="the tiny config (default on CPU)")
    parser.add_argument("--device", help="default: cuda when available, else cpu")
    parser.add_argument("--models", default=",".join(CONFIGS), help="training configs to run")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps")
    parser.add_argument("--batch-size", type=int, help="clips per step (default: the config's)")
    parser.add_argument("--size", type=int, nargs=2, default=(1280, 720), metavar=("W", "H"))
    parser.add_argument("--videos", type=int, default=4, help="synthetic training videos")
    parser.add_argument("--frames", type=int, default=16, help="frames per synthetic video")
    parser.add_argument("--extract-frames", type=int, default=48)
    parser.add_argument("--extract-people", type=int, default=6)
    parser.add_argument("--settings", default="1x1,3x4", help="extraction sampler SxG")
    parser.add_argument("--no-end-to-end", action="store_true", help="skip the trainer runs")
    parser.add_argument("--json", help="write every number here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tiny = args.tiny or device.type != "cuda"
    configs = TINY if tiny else {name: CONFIGS[name] for name in args.models.split(",")}
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none"
    results: dict = {
        "device": str(device),
        "gpu": gpu,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "tiny": tiny,
        "frame_size": list(args.size),
        "training": {},
    }
    print(f"device {device} ({gpu}), torch {torch.__version__}, {results['threads']} threads")
    if tiny and device.type != "cuda" and not args.tiny:
        print("no CUDA: the tiny config (numbers say nothing about a GPU)")

    with tempfile.TemporaryDirectory(prefix="vidpose-bench-gpu-") as folder:
        scratch = Path(folder)
        root = synthetic_data(
            scratch / "data", size=tuple(args.size), videos=args.videos, frames=args.frames
        )
        rows = []
        for name, path in configs.items():
            overrides = data_overrides(root)
            if args.batch_size:
                overrides.append(f"train.batch_size={args.batch_size}")
            config = load_config(path, overrides)
            entry = {"config": str(path.relative_to(REPO)), "step_only": {}, "end_to_end": None}
            entry["step_only"] = step_only(config, device, args.steps)
            if device.type == "cuda":
                torch.cuda.empty_cache()  # the step-only model is gone: its cache too
            if not args.no_end_to_end:
                entry["end_to_end"] = end_to_end(config, device, args.steps, scratch / name)
            results["training"][name] = entry
            step = entry["step_only"]
            full = entry["end_to_end"]
            rows.append(
                f"| {name} | {step['parameters_m']:.0f} M | {step['batch_size']} | "
                f"{step['clips_per_s']:.1f} | {step['peak_memory_mib']:.0f} | "
                + (
                    f"{full['clips_per_s']:.1f} ({full['num_workers']} workers) | "
                    f"{full['peak_memory_mib']:.0f} |"
                    if full
                    else "- | - |"
                )
            )
        print()
        print(
            f"training, {'bf16 autocast' if device.type == 'cuda' else 'fp32'}, synthetic "
            f"{args.size[0]}x{args.size[1]} JPEG frames, T=3, 256x192 crops"
            if not tiny
            else f"training (tiny config), synthetic {args.size[0]}x{args.size[1]} JPEG frames"
        )
        print()
        print(
            "| config | parameters | batch | step-only clips/s | peak MiB | "
            "end-to-end clips/s | peak MiB |"
        )
        print("|---|--:|--:|--:|--:|--:|--:|")
        print("\n".join(rows))

    settings = tuple(tuple(int(v) for v in item.split("x")) for item in args.settings.split(","))
    if tiny:
        base, overrides = bench_extract_reuse.model_overrides(tiny=True)
        label = "tiny config"
    else:
        base, overrides = CONFIGS["ViT-B"], ["model.backbone.checkpoint="]
        label = "PoseTrack ViT-B/16 256x192"
    extraction = bench_extract_reuse.compare(
        tiny=tiny,
        base=base,
        overrides=overrides,
        label=label,
        device=str(device),
        frames=args.extract_frames,
        people=args.extract_people,
        settings=settings,
        passes=2,
        batch_size=64,
    )
    results["extraction"] = extraction
    print()
    print(bench_extract_reuse.format_table(extraction))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
        print(f"\nresults: {args.json}")


if __name__ == "__main__":
    main()
