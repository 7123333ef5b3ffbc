"""vidpose benchmarks: speed, memory and accuracy tables (docs/benchmarks.md).

    python tools/benchmark.py                      # every section
    python tools/benchmark.py --only a,b           # some sections
    python tools/benchmark.py --only e --train-steps 2000

Sections
  a  extraction throughput: temporal diffusion (T=3, default S and G) vs the
     single-frame heatmap baseline with the same backbone; cost of each extra step
     and hypothesis; time split backbone / aggregator / pyramid / head.
  b  the backbone's achieved GFLOP/s against the measured fp32 matmul peak.
  c  peak memory of extraction, short video vs 10x longer (tools/bench_extract_memory.py).
  d  training throughput vs data-loading throughput (the tiny demo config).
  e  accuracy on a heavily occluded synthetic set, same backbone and budget:
     temporal diffusion vs single-frame baseline vs temporal heatmap baseline;
     PCKh on occluded joints; mAP against the number of steps S and hypotheses G.
  f  every head on e's data and budget: mAP, PCKh on visible / occluded / hidden
     joints against the single-frame baseline, parameters, training clips/s,
     extraction person-frames/s; TFPose's error per decoder layer.
  g  low resolution, on e's data and budget, at 64x48, 128x96 and 256x192: heatmaps
     decoded by integer argmax and by DARK, UDP, heatmap + offset, CAL; mAP and mean
     pixel error (not in the default --only: 12 trainings)

Every number is printed with the machine's thread count; results also go to
--json (default benchmark_results.json).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vidpose.config import load_config  # noqa: E402
from vidpose.models.build import build_model  # noqa: E402

# Extraction-scale model: ViT-S/16 at 256 x 192, T = 3 (the paper's input), S = 3, G = 4.
VIT_S = [
    "model.backbone.name=vit_small_patch16_224",
    "model.backbone.embed_dim=384",
    "model.backbone.depth=12",
    "model.backbone.num_heads=6",
    "data.input_size=[256,192]",
    "model.decoder_dim=128",
    # the library's sampler defaults (vidpose.config.DiffusionConfig), not the tiny
    # config's one step: sampling cost at the paper's setting
    "model.diffusion.sampling_steps=3",
    "model.diffusion.hypotheses=4",
]


def timed(function: Callable[[], object], *, repeat: int = 5, warmup: int = 1) -> float:
    """Median seconds of ``function()`` over ``repeat`` runs."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def table(title: str, header: list[str], rows: list[list[object]]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=True)]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)))
    text = "\n".join(lines)
    print("\n" + text, flush=True)
    return text


def vit_s_models() -> tuple[torch.nn.Module, torch.nn.Module]:
    """The temporal diffusion model (T = 3) and the single-frame heatmap baseline (T = 1),
    both on ViT-S/16 at 256 x 192 with random weights (speed does not depend on them)."""
    tiny = REPO / "configs/synthetic_tiny.yaml"
    diffusion = load_config(tiny, [*VIT_S, "data.frame_offsets=[-1,0,1]"])
    baseline = load_config(tiny, [*VIT_S, "data.frame_offsets=[0]", "model.head=heatmap"])
    return build_model(diffusion).eval(), build_model(baseline).eval()


@torch.no_grad()
def section_a(batch: int) -> dict:
    diffusion, baseline = vit_s_models()
    clip = torch.randn(batch, 3, 3, 256, 192)
    single = clip[:, 1:2].contiguous()
    t_diffusion = timed(lambda: diffusion.predict(clip), repeat=3)
    t_baseline = timed(lambda: baseline.predict(single), repeat=3)
    results = {
        "batch": batch,
        "diffusion_person_frames_per_s": batch / t_diffusion,
        "baseline_person_frames_per_s": batch / t_baseline,
    }
    rows = [
        ["temporal diffusion (T=3, default S, G)", f"{batch / t_diffusion:.2f}", "1.00"],
        [
            "single-frame heatmap baseline (T=1)",
            f"{batch / t_baseline:.2f}",
            f"{t_diffusion / t_baseline:.2f}x faster",
        ],  # fmt: skip
    ]
    results["table_throughput"] = table(
        f"a. extraction model throughput, ViT-S/16 256x192, {batch} persons per batch",
        ["model", "person-frames/s", "ratio"],
        rows,
    )

    # time split: backbone / temporal aggregator / pyramid / head (default sampling)
    tokens = diffusion.backbone(clip)
    fused = diffusion.temporal(tokens)
    features = diffusion.pyramid(fused)
    parts = {
        "backbone (3 frames)": timed(lambda: diffusion.backbone(clip), repeat=3),
        "temporal aggregator": timed(lambda: diffusion.temporal(tokens), repeat=5),
        "feature pyramid": timed(lambda: diffusion.pyramid(fused), repeat=5),
        "diffusion head (sampling)": timed(
            lambda: diffusion.predict_from_features(features), repeat=3
        ),
    }
    total = sum(parts.values())
    results["split_seconds"] = parts
    results["table_split"] = table(
        "a. time split of one batch",
        ["stage", "ms per batch", "share"],
        [[name, f"{1e3 * s:.1f}", f"{100 * s / total:.1f}%"] for name, s in parts.items()],
    )

    # cost of each extra step and hypothesis
    step_rows, hyp_rows = [], []
    for s in (1, 2, 3, 5, 8):
        seconds = timed(lambda s=s: diffusion.predict_from_features(features, steps=s), repeat=3)
        step_rows.append([s, f"{1e3 * seconds:.1f}"])
    for g in (1, 2, 4, 8):
        seconds = timed(
            lambda g=g: diffusion.predict_from_features(features, hypotheses=g), repeat=3
        )
        hyp_rows.append([g, f"{1e3 * seconds:.1f}"])
    step_cost = np.polyfit([r[0] for r in step_rows], [float(r[1]) for r in step_rows], 1)[0]
    hyp_cost = np.polyfit([r[0] for r in hyp_rows], [float(r[1]) for r in hyp_rows], 1)[0]
    results["ms_per_extra_step"] = step_cost
    results["ms_per_extra_hypothesis"] = hyp_cost
    results["backbone_ms"] = 1e3 * parts["backbone (3 frames)"]
    table(f"a. head time vs steps S (default G), slope {step_cost:.1f} ms per step",
          ["S", "ms per batch"], step_rows)  # fmt: skip
    table(f"a. head time vs hypotheses G (default S), slope {hyp_cost:.1f} ms per hypothesis",
          ["G", "ms per batch"], hyp_rows)  # fmt: skip
    return results


def matmul_peak(size: int = 2048) -> float:
    """Measured fp32 matmul throughput (GFLOP/s): the machine's practical limit."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    seconds = timed(lambda: a @ b, repeat=10, warmup=2)
    return 2 * size**3 / seconds / 1e9


@torch.no_grad()
def section_b(batches: list[int]) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    diffusion, _ = vit_s_models()
    backbone = diffusion.backbone
    peak = matmul_peak()
    rows, results = [], {"matmul_peak_gflops": peak, "rows": []}
    for batch in batches:
        frames = torch.randn(batch, 1, 3, 256, 192)
        counter = FlopCounterMode(display=False)
        with counter:
            backbone(frames)
        flops = counter.get_total_flops()
        seconds = timed(lambda frames=frames: backbone(frames), repeat=3)
        achieved = flops / seconds / 1e9
        rows.append([batch, f"{flops / batch / 1e9:.2f}", f"{batch / seconds:.2f}",
                     f"{achieved:.1f}", f"{100 * achieved / peak:.0f}%"])  # fmt: skip
        results["rows"].append({"batch": batch, "gflops": achieved, "fraction": achieved / peak})
    results["table"] = table(
        f"b. ViT-S/16 backbone at 256x192 vs fp32 matmul peak {peak:.1f} GFLOP/s "
        f"({torch.get_num_threads()} threads)",
        ["images/batch", "GFLOP/img", "img/s", "GFLOP/s", "of peak"],
        rows,
    )
    return results


def section_c() -> dict:
    script = REPO / "tools" / "bench_extract_memory.py"
    output = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=REPO, check=False
    )
    print("\nc. extraction memory (tools/bench_extract_memory.py)\n" + output.stdout[-3000:])
    if output.returncode:
        print(output.stderr[-2000:])
    return {"output": output.stdout[-3000:]}


def section_d(work: Path, steps: int) -> dict:
    from vidpose.codecs.heatmap import build_codec
    from vidpose.data.clips import build_dataset_from_config
    from vidpose.data.synthetic import generate_dataset
    from vidpose.engine.trainer import train

    root = work / "data_d"
    if not root.exists():
        generate_dataset(root, progress=False)
    config = load_config(
        REPO / "configs/synthetic_tiny.yaml",
        [
            f"data.root={root}",
            f"train.max_steps={steps}",
            "train.val_every=0",
            "train.batch_size=16",
            "train.log_every=1",
        ],  # fmt: skip
    )
    dataset = build_dataset_from_config(config, "train", codec=build_codec(config.data))
    dataset.set_epoch(0)
    count = min(len(dataset), 160)
    start = time.perf_counter()
    for index in range(count):
        dataset[index]
    loading = count / (time.perf_counter() - start)
    start = time.perf_counter()
    train(config, work / "train_d", show_progress=False)
    training = steps * 16 / (time.perf_counter() - start)
    records = [json.loads(line) for line in (work / "train_d" / "metrics.jsonl").open()]
    steady = float(np.median([r["clips_per_second"] for r in records[2:]]))
    rows = [
        ["data loading alone (1 process)", f"{loading:.1f}"],
        ["training, end to end (loading in the loop)", f"{training:.1f}"],
        ["training, median step after warm-up", f"{steady:.1f}"],
    ]
    return {
        "loading_clips_per_s": loading,
        "training_clips_per_s": training,
        "table": table("d. tiny demo config, batch 16, T=3, 128x96", ["what", "clips/s"], rows),
    }


def joint_hits(predictions, videos, causes) -> list[tuple[str, int, bool, bool]]:
    """(video, ``HIDDEN_BY`` code, seen in a neighbouring frame, PCKh@0.5 hit) of every
    annotated ground-truth joint that has a prediction, matching predictions to ground
    truth by track id (GT boxes), in a fixed order (by image id, track id, joint) so two
    models' lists pair up. "Seen in a neighbouring frame": the same person's joint has
    v = 1 in frame t - 1 or t + 1, what a T = 3 clip can show of a joint hidden at t."""
    truth, seen = {}, {}
    for video in videos:
        for frame in video.frames:
            for person in frame.persons:
                truth[(frame.image_id, person.track_id)] = (video.name, frame.frame_index, person)
                seen[(video.name, frame.frame_index, person.track_id)] = person.keypoints[:, 2] > 0
    hits = []
    for prediction in sorted(predictions, key=lambda p: (p.image_id, p.track_id)):
        key = (prediction.image_id, prediction.track_id)
        if key not in truth or truth[key][2].head_box is None:
            continue
        video, index, person = truth[key]
        neighbours = [seen.get((video, index + step, person.track_id)) for step in (-1, 1)]
        nearby = np.any([n for n in neighbours if n is not None], axis=0)
        head = 0.6 * np.linalg.norm(person.head_box[2:])
        distance = np.linalg.norm(prediction.keypoints - person.keypoints[:, :2], axis=1) / head
        for joint in np.flatnonzero(person.annotated):
            hits.append((video, int(causes[key][joint]), bool(nearby[joint]),
                         bool(distance[joint] <= 0.5)))  # fmt: skip
    return hits


def _groups() -> dict[str, Callable[[int, bool], bool]]:
    from vidpose.data.synthetic import HIDDEN_BY

    groups = {name: (lambda code, _, c=code: code == c) for code, name in enumerate(HIDDEN_BY)}
    groups["hidden (all)"] = lambda code, _: code > 0
    occluder = HIDDEN_BY.index("occluder")
    groups["occluder, seen at t-1 or t+1"] = lambda code, nearby: code == occluder and nearby
    return groups


def pckh_by_cause(predictions, videos, causes) -> dict[str, tuple[float, int]]:
    """PCKh@0.5 (%, joints) of the ground-truth joints grouped by what hides them
    (``vidpose.data.synthetic.HIDDEN_BY``: seen, occluder, another person, own body) and
    over all hidden ones."""
    hits = joint_hits(predictions, videos, causes)
    result = {}
    for name, member in _groups().items():
        values = [hit for _, code, nearby, hit in hits if member(code, nearby)]
        result[name] = (100 * float(np.mean(values)) if values else float("nan"), len(values))
    return result


def paired_difference(
    hits_a, hits_b, group: str, *, samples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """PCKh of model a minus model b on the joints of ``group`` (same joints, paired),
    with a 95% bootstrap interval over videos (joints of a video are not independent)."""
    member = _groups()[group]
    if [hit[:3] for hit in hits_a] != [hit[:3] for hit in hits_b]:
        raise ValueError("paired_difference: the two models were scored on different joints")
    per_video: dict[str, list[int]] = {}
    for (video, code, nearby, a), (*_, b) in zip(hits_a, hits_b, strict=True):
        if member(code, nearby):
            per_video.setdefault(video, []).append(int(a) - int(b))
    names = sorted(per_video)
    sums = np.array([sum(per_video[name]) for name in names], dtype=float)
    counts = np.array([len(per_video[name]) for name in names], dtype=float)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(names), size=(samples, len(names)))
    boot = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
    low, high = np.percentile(boot, [2.5, 97.5])
    return 100 * sums.sum() / counts.sum(), 100 * float(low), 100 * float(high)


E_VIDEOS = 64  # per split: with 16 the models overfit (PCKh fell from 400 to 2000 steps)
# The comparison tables are scored on fresh videos (another seed) that no choice was
# made on: the validation split served to choose the sampler settings, the frame
# offsets and the training budget; 192 videos narrow the intervals by about sqrt(3).
E_TEST_VIDEOS = 192
E_TEST_SEED = 8
E_MODELS = {
    "diffusion": (
        "temporal diffusion (T=3)",
        ["data.frame_offsets=[-1,0,1]", "model.diffusion.mask_gain=constant"],
    ),
    "single": (
        "single-frame heatmap baseline (T=1)",
        ["data.frame_offsets=[0]", "model.head=heatmap"],
    ),
    "temporal": (
        "temporal heatmap baseline (T=3)",
        ["data.frame_offsets=[-1,0,1]", "model.head=heatmap"],
    ),
    # Neighbours two frames away: the occluders cross a person in 6-14 frames, so
    # t +- 2 shows more of what they hide at t than t +- 1 (48% vs 29%).
    "diffusion_wide": (
        "temporal diffusion (T=3, t-2, t, t+2)",
        ["data.frame_offsets=[-2,0,2]", "model.diffusion.mask_gain=constant"],
    ),
    "temporal_wide": (
        "temporal heatmap baseline (T=3, t-2, t, t+2)",
        ["data.frame_offsets=[-2,0,2]", "model.head=heatmap"],
    ),
    # the look-up masks' gain scaled by the evidence x_t carries (mask_gain: snr)
    "diffusion_snr": (
        "temporal diffusion, SNR masks (T=3)",
        ["data.frame_offsets=[-1,0,1]", "model.diffusion.mask_gain=snr"],
    ),
    "diffusion_wide_snr": (
        "temporal diffusion, SNR masks (T=3, t-2, t, t+2)",
        ["data.frame_offsets=[-2,0,2]", "model.diffusion.mask_gain=snr"],
    ),
    # half of the training inputs made from the model's own one-step estimate
    "diffusion_snr_est": (
        "temporal diffusion, SNR masks, estimate inputs (T=3)",
        [
            "data.frame_offsets=[-1,0,1]",
            "model.diffusion.mask_gain=snr",
            "model.diffusion.estimate_inputs=0.5",
        ],
    ),
    "diffusion_wide_snr_est": (
        "temporal diffusion, SNR masks, estimate inputs (T=3, t-2, t, t+2)",
        [
            "data.frame_offsets=[-2,0,2]",
            "model.diffusion.mask_gain=snr",
            "model.diffusion.estimate_inputs=0.5",
        ],
    ),
}


def _e_split(root: Path, videos: int, seed: int) -> dict:
    """An occluded synthetic set (made once), its validation videos and hidden-by codes."""
    from vidpose.data.posetrack import read_dataset
    from vidpose.data.synthetic import generate_dataset, read_hidden_by

    if not (root / "hidden_by" / "val.json").exists():
        generate_dataset(root, videos=videos, frames=24, persons=2, occlusion=1.0, seed=seed,
                         overwrite=True, progress=False)  # fmt: skip
    return {
        "root": root,
        "videos": read_dataset("posetrack21", root, "posetrack_data/val"),
        "causes": read_hidden_by(root, "val"),
    }


def _e_score(config, model, split: dict, out_dir: Path, **sampling) -> tuple:
    """Evaluate ``model`` on ``split``'s validation videos: (evaluation, PCKh by cause,
    joint hits)."""
    from vidpose.engine.evaluate import evaluate_model

    config = replace(config, data=replace(config.data, root=str(split["root"])))
    evaluation = evaluate_model(
        config, model, out_dir=out_dir, flip_test=False, show_progress=False, **sampling
    )
    predictions = evaluation.predictions  # the evaluated predictions, not a second pass
    return (
        evaluation,
        pckh_by_cause(predictions, split["videos"], split["causes"]),
        joint_hits(predictions, split["videos"], split["causes"]),
    )


def _paired_cells(hits, baseline, groups) -> list[str]:
    cells = []
    for group in groups:
        delta, low, high = paired_difference(hits, baseline, group)
        cells.append(f"{delta:+.1f} [{low:+.1f}, {high:+.1f}]")
    return cells


def _training_label(config) -> str:
    diffusion = config.model.diffusion
    estimates = (
        f", {diffusion.estimate_inputs:g} estimate inputs" if diffusion.estimate_inputs else ""
    )
    return diffusion.mask_gain + estimates


def _e_common(root: Path, steps: int) -> tuple[list[str], int, int]:
    """The overrides every model of sections e and f trains and is scored with, the
    epochs and the steps per epoch of the budget ``steps``."""
    # Whole epochs closest to the step budget, so that every model's learning rate
    # anneals to the end of its cosine schedule.
    steps_per_epoch = E_VIDEOS * 24 * 2 // 16
    epochs = max(1, round(steps / steps_per_epoch))
    # every diffusion model samples with S = 1, G = 4 (with SNR masks the G one-step
    # estimates coincide: they all start from uniform masks)
    common = [f"data.root={root}", f"train.epochs={epochs}",
              "train.val_every=0", "train.batch_size=16", "test.flip_test=false",
              "test.batch_size=64", "model.diffusion.sampling_steps=1",
              "model.diffusion.hypotheses=4"]  # fmt: skip
    return common, epochs, steps_per_epoch


def _train_on_e(work: Path, key: str, base: str, overrides: list[str]):
    """Train (or resume, or reuse when finished) one model of sections e / f in
    ``work/e_<key>``: (config, trained model, median training clips/s of its log)."""
    from vidpose.engine.trainer import train
    from vidpose.inference.predictor import load_estimator

    config = load_config(REPO / "configs" / base, overrides)
    work_dir = work / f"e_{key}"
    train(config, work_dir, show_progress=False, resume=(work_dir / "latest.safetensors").exists())
    # training speed from the run's log (a resumed run may have been split up)
    log = [json.loads(line) for line in (work_dir / "metrics.jsonl").open()]
    speed = float(np.median([r["clips_per_second"] for r in log if r["kind"] == "train"]))
    model, _ = load_estimator(work_dir / "latest.safetensors")
    return config, model, speed


def _sampler_settings(config) -> dict:
    """The sampler settings of a run's config (a checkpoint carries those of its
    training run, which may predate a change of the defaults): its head's section."""
    sampling = (
        config.model.diffusionpose
        if config.model.head == "diffusionpose"
        else config.model.diffusion
    )
    return {"steps": sampling.sampling_steps, "hypotheses": sampling.hypotheses}


def section_e(work: Path, steps: int, models: list[str], with_sweep: bool = True) -> dict:
    """Train (or resume) the chosen models on the occluded set, then evaluate them. The
    models are independent: train them in parallel processes with ``--e-models`` and
    run once more with all of them for the table (finished runs are not retrained).

    The comparison tables are scored on a test set of fresh videos; the choices (the
    S x G sweep, the coarse start) on the validation split of the training set."""
    val = _e_split(work / "data_e", E_VIDEOS, seed=7)
    test = _e_split(work / "data_e_test", E_TEST_VIDEOS, seed=E_TEST_SEED)
    common, epochs, steps_per_epoch = _e_common(val["root"], steps)
    rows, results, trained, hits = [], {}, {}, {}
    for key in models:
        name, overrides = E_MODELS[key]
        config, model, speed = _train_on_e(work, key, "synthetic_tiny.yaml", common + overrides)
        sampling = config.model.diffusion
        settings = _sampler_settings(config)
        evaluation, pckh, hits[key] = _e_score(
            config, model, test, work / f"e_{key}" / "pred_test", **settings
        )
        trained[key] = (config, model)
        if key.startswith("diffusion"):
            name = name.replace(")", f", S={sampling.sampling_steps}, G={sampling.hypotheses})")
        results[name] = {"mAP": evaluation.main_metric, "pckh": pckh, "train_clips_per_s": speed}
        scores = [f"{value:.1f}" for value, _ in pckh.values()]
        rows.append([name, f"{evaluation.main_metric:.1f}", *scores, f"{speed:.1f}"])
    counts = ", ".join(f"{name} {count}" for name, (_, count) in pckh.items())
    results["table"] = table(
        f"e. heavy occlusion (occlusion=1.0), trained on {E_VIDEOS} videos, "
        f"{epochs * steps_per_epoch} steps of 16 clips; scored on {E_TEST_VIDEOS} fresh "
        f"test videos; PCKh@0.5 by what hides the joint (joints: {counts})",
        ["model", "mAP", *(f"PCKh {name}" for name in pckh), "train clips/s"],
        rows,
    )
    if "single" not in hits:
        return results
    groups = ("occluder, seen at t-1 or t+1", "occluder", "hidden (all)", "seen")
    results["table_paired"] = table(
        "e. PCKh minus the single-frame baseline's on the same joints of the test videos, "
        "95% bootstrap interval over the videos",
        ["model", *groups],
        [
            [E_MODELS[key][0], *_paired_cells(hits[key], hits["single"], groups)]
            for key in hits
            if key != "single"
        ],
    )
    # the choices below are made on the validation split
    _, _, single_val = _e_score(*trained["single"], val, work / "e_single" / "pred_val")
    diffusion = [key for key in trained if key.startswith("diffusion")]
    init_rows = []
    for key in diffusion:
        config, model = trained[key]
        saved, model.head.init = model.head.init, "coarse"  # the head's default start
        try:
            evaluation, pckh, sampled = _e_score(
                config, model, val, work / "init_coarse", steps=1, hypotheses=4
            )
        finally:
            model.head.init = saved
        cells = _paired_cells(sampled, single_val, ("occluder", "hidden (all)", "seen"))
        init_rows.append(
            [E_MODELS[key][0], f"{evaluation.main_metric:.1f}", f"{pckh['occluder'][0]:.1f}"]
            + cells
        )
    results["table_init"] = table(
        "e. validation split: temporal diffusion started from its coarse branch (init "
        "coarse: the coarse heatmap noised to t = 500), S = 1, G = 4; PCKh minus the "
        "single-frame baseline's",
        ["model", "mAP", "PCKh occluder", "occluder", "hidden (all)", "seen"],
        init_rows,
    )
    swept = [key for key in ("diffusion", "diffusion_snr", "diffusion_snr_est") if key in trained]
    if not swept or not with_sweep:
        return results
    sweep = []
    for key in swept:
        config, model = trained[key]
        # a cross through the default (S = 3, G = 4): steps at G = 4, hypotheses at S = 3
        for s, g in [(1, 4), (2, 4), (3, 4), (5, 4), (3, 1), (3, 2), (3, 8), (1, 1), (1, 8)]:
            evaluation, pckh, sampled = _e_score(
                config, model, val, work / "sweep", steps=s, hypotheses=g
            )
            row = [_training_label(config), s, g, f"{evaluation.main_metric:.1f}",
                   f"{pckh['occluder'][0]:.1f}", f"{pckh['hidden (all)'][0]:.1f}"]  # fmt: skip
            groups = ("occluder", "occluder, seen at t-1 or t+1")
            sweep.append(row + _paired_cells(sampled, single_val, groups))
    results["sweep"] = sweep
    results["table_sweep"] = table(
        "e. validation split: temporal diffusion (t-1, t, t+1) vs steps S and hypotheses G "
        "(no retraining)",
        ["masks, training", "S", "G", "mAP", "PCKh occluder", "PCKh hidden (all)"]
        + ["occluder vs single-frame", "occluder seen at t-1/t+1 vs single-frame"],
        sweep,
    )
    return results


# Section f: every head on benchmark e's data and budget. The first three share e's
# work folders (e_single, e_temporal, e_diffusion_snr): a model e trained is reused.
F_MODELS = {
    "single": ("single-frame heatmap baseline (T=1)", "synthetic_tiny.yaml", E_MODELS["single"][1]),
    "temporal": ("temporal heatmap baseline (T=3)", "synthetic_tiny.yaml", E_MODELS["temporal"][1]),
    "diffusion_snr": (
        "temporal diffusion, SNR masks (T=3, S=1, G=4)",
        "synthetic_tiny.yaml",
        E_MODELS["diffusion_snr"][1],
    ),
    # own-box neighbour crops (data.neighbour_boxes: own, issue #23): each frame cropped
    # around the person's own box, so extraction encodes a person-frame once; paired
    # against their key-box twins above (same data, budget and seed)
    "temporal_own": (
        "temporal heatmap baseline (T=3), own-box crops",
        "synthetic_tiny.yaml",
        [*E_MODELS["temporal"][1], "data.neighbour_boxes=own"],
    ),
    "diffusion_snr_own": (
        "temporal diffusion, SNR masks (T=3, S=1, G=4), own-box crops",
        "synthetic_tiny.yaml",
        [*E_MODELS["diffusion_snr"][1], "data.neighbour_boxes=own"],
    ),
    "tfpose": ("TFPose (T=3)", "synthetic_tiny_tfpose.yaml", ["data.frame_offsets=[-1,0,1]"]),
    # the same at twice the budget (20 epochs): does the regression head catch up?
    "tfpose_2x": (
        "TFPose (T=3), twice the steps",
        "synthetic_tiny_tfpose.yaml",
        ["data.frame_offsets=[-1,0,1]", "train.epochs=20"],
    ),
    # CAL is a single-image method: its tiny config is T = 1, like the baseline it refines
    "cal": ("CAL, heatmaps + offsets (T=1)", "synthetic_tiny_cal.yaml", ["data.frame_offsets=[0]"]),
    "diffusionpose": (
        "DiffusionPose (T=3, S=1, G=1)",
        "synthetic_tiny_diffusionpose.yaml",
        ["data.frame_offsets=[-1,0,1]"],
    ),
    # stage II; its tokenizer (stage I, keypoints only) trains first into e_pct_tokenizer
    "pct": (
        "PCT, pose tokens (T=3)",
        "synthetic_tiny_pct.yaml",
        [
            "data.frame_offsets=[-1,0,1]",
            "model.pct.tokenizer={work}/e_pct_tokenizer/latest.safetensors",
        ],
    ),
    # DiffPose as published (issue #19), against ours with the same mask gain (e's
    # "diffusion": constant gain, the paper's interaction has no SNR form)
    "diffusion": (
        "temporal diffusion, constant masks (T=3, S=1, G=4)",
        "synthetic_tiny.yaml",
        E_MODELS["diffusion"][1],
    ),
    "diffpose_interaction": (
        "DiffPose's LMSFI interaction (T=3, S=1, G=4)",
        "synthetic_tiny.yaml",
        [
            "data.frame_offsets=[-1,0,1]",
            "model.interaction=diffpose",
            "model.diffusion.mask_gain=constant",
        ],
    ),  # fmt: skip
    "diffpose_temporal": (
        "temporal diffusion + DiffPose's Transformer temporal learner (T=3, S=1, G=4)",
        "synthetic_tiny.yaml",
        [
            "data.frame_offsets=[-1,0,1]",
            "model.temporal=transformer",
            "model.diffusion.mask_gain=constant",
        ],
    ),  # fmt: skip
    "diffpose_paper": (
        "DiffPose as published: LMSFI + Transformer temporal learner (T=3, S=1, G=4)",
        "synthetic_tiny_diffpose_paper.yaml",
        ["data.frame_offsets=[-1,0,1]"],
    ),
}
# the PCT tokenizer: trained on e's keypoints before the PCT row (no images)
F_TOKENIZER = ("synthetic_tiny_pct_tokenizer.yaml", [])


@torch.no_grad()
def trajectory_errors(config, model, split: dict) -> np.ndarray:
    """[S] mean distance (input-crop pixels) of each trajectory step's keypoints (the
    hypothesis mean) to the ground truth over the annotated joints inside the crop of
    ``split``'s videos: how the iterative search converges, step by step or layer by
    layer."""
    from vidpose.data.clips import build_dataset

    config = replace(config, data=replace(config.data, root=str(split["root"])))
    dataset = build_dataset(config, "val", split["videos"])
    loader = torch.utils.data.DataLoader(dataset, batch_size=64)
    generator = torch.Generator().manual_seed(config.train.seed)
    totals, count = None, 0.0
    model.eval()
    for batch in loader:
        answer = model.predict(
            batch["frames"],
            generator=generator,
            return_trajectory=True,
            **_sampler_settings(config),
        )
        weights = batch["target_weight"]  # [B, K]
        errors = torch.stack([
            ((step["keypoints"].float().mean(1) - batch["keypoints"]).norm(dim=-1) * weights).sum()
            for step in answer.trajectory
        ])  # fmt: skip
        totals = errors if totals is None else totals + errors
        count += float(weights.sum())
    return (totals / max(count, 1.0)).numpy()


def extraction_speed(checkpoint: Path, split: dict, out: Path, videos: int) -> float:
    """Person-frames per second of ``vidpose extract`` (the library call behind it) on
    the first ``videos`` videos of ``split`` with their ground-truth boxes as the
    detections, on this machine's CPU threads, outputs written, no overlay."""
    from vidpose.inference.extract import ExtractOptions, extract_video
    from vidpose.inference.person_boxes import read_detections
    from vidpose.inference.predictor import build_predictor, load_estimator

    model, config = load_estimator(checkpoint)
    predictor = build_predictor(model, config, device="cpu")
    options = ExtractOptions(progress=False, overwrite=True)
    files = sorted((Path(split["root"]) / "videos" / "val").glob("*.mp4"))[:videos]

    def run(chosen: list[Path]) -> tuple[int, float]:
        persons, seconds = 0, 0.0
        for video in chosen:
            truth = Path(split["root"]) / "posetrack_data" / "val" / f"{video.stem}.json"
            summary = extract_video(video, predictor, read_detections(truth), out, options=options)
            persons += summary.persons
            seconds += summary.seconds
        return persons, seconds

    run(files[:1])  # warm-up: first calls allocate and pick kernels
    # the faster of two passes: on a shared machine the slower one measures the neighbours
    passes = [run(files) for _ in range(2)]
    return max(persons / seconds for persons, seconds in passes)


def section_f(work: Path, steps: int, models: list[str], extract_videos: int = 8) -> dict:
    """Every head on the same work: benchmark e's occluded data and budget, scored on
    its 192 test videos; paired PCKh differences against the single-frame baseline (as
    in e), parameters, training clips/s (from the run's log) and extraction
    person-frames/s (``extraction_speed``). Heads with an iterative search also get
    their error per step / layer on the test videos."""
    val = _e_split(work / "data_e", E_VIDEOS, seed=7)
    test = _e_split(work / "data_e_test", E_TEST_VIDEOS, seed=E_TEST_SEED)
    common, epochs, steps_per_epoch = _e_common(val["root"], steps)
    rows, results, hits, layer_rows = [], {}, {}, []
    for key in models:
        name, base, overrides = F_MODELS[key]
        if key == "pct":  # stage I first: the tokenizer, from e's keypoints alone
            _train_on_e(work, "pct_tokenizer", F_TOKENIZER[0], common + F_TOKENIZER[1])
        overrides = [value.format(work=work) for value in overrides]
        config, model, speed = _train_on_e(work, key, base, common + overrides)
        evaluation, pckh, hits[key] = _e_score(
            config, model, test, work / f"e_{key}" / "pred_test", **_sampler_settings(config)
        )
        parameters = sum(p.numel() for p in model.parameters())
        extraction = extraction_speed(
            work / f"e_{key}" / "latest.safetensors", test, work / "f_extract" / key, extract_videos
        )
        results[key] = {
            "name": name,
            "mAP": evaluation.main_metric,
            "pckh": pckh,
            "parameters": parameters,
            "train_clips_per_s": speed,
            "extract_person_frames_per_s": extraction,
        }
        if config.model.head in ("tfpose", "diffusionpose"):
            errors = trajectory_errors(config, model, test)
            results[key]["layer_errors_px"] = errors.tolist()
            layer_rows.append([name, *(f"{value:.2f}" for value in errors)])
        rows.append([name, f"{evaluation.main_metric:.1f}", f"{pckh['seen'][0]:.1f}",
                     f"{pckh['occluder'][0]:.1f}", f"{pckh['hidden (all)'][0]:.1f}"])  # fmt: skip
    groups = ("seen", "occluder", "hidden (all)")
    for row, key in zip(rows, models, strict=True):
        paired = (
            _paired_cells(hits[key], hits["single"], groups)
            if "single" in hits and key != "single"
            else ["-"] * len(groups)
        )
        entry = results[key]
        row += [*paired, f"{entry['parameters'] / 1e6:.2f} M", f"{entry['train_clips_per_s']:.1f}",
                f"{entry['extract_person_frames_per_s']:.1f}"]  # fmt: skip
    counts = ", ".join(f"{name} {count}" for name, (_, count) in pckh.items())
    results["table"] = table(
        f"f. every head on benchmark e's work: trained on {E_VIDEOS} occluded videos, "
        f"{epochs * steps_per_epoch} steps of 16 clips; scored on {E_TEST_VIDEOS} fresh test "
        f"videos (joints: {counts}); PCKh@0.5, and minus the single-frame baseline's on the "
        "same joints with a 95% bootstrap interval over videos",
        ["model", "mAP", "PCKh visible", "PCKh occluder", "PCKh hidden (all)",
         "visible vs single", "occluder vs single", "hidden (all) vs single", "parameters",
         "train clips/s", "extract person-frames/s"],
        rows,
    )  # fmt: skip
    if layer_rows:
        width = max(len(row) for row in layer_rows) - 1
        results["table_layers"] = table(
            "f. iterative heads: mean keypoint error per decoder layer (TFPose) or sampling "
            "step (DiffusionPose) on the test videos (input-crop pixels, annotated joints "
            "inside the crop)",
            ["model", *(f"step {index + 1}" for index in range(width))],
            [row + [""] * (width + 1 - len(row)) for row in layer_rows],
        )
    return results


# Section g: heatmap decodings and the CAL head at low input resolution, on benchmark
# e's data and budget (single-frame models, T = 1: CAL is a single-image method). Each
# model trains once per input size; the decodings of a heatmap model need no retraining.
G_SIZES = {"64x48": (64, 48), "128x96": (128, 96), "256x192": (256, 192)}
# Target sigma (heatmap pixels) per input size: the heatmap baselines keep a sigma DARK's
# log-Taylor step can read (synthetic_tiny's 1.5 at 128x96, 2 at 256x192 as ViTPose,
# 1 at 64x48); CAL uses the paper's (0.3 at 64x48 for the small HRNet-W32, 1, 2).
G_SIGMAS = {"64x48": {"heatmap": 1.0, "cal": 0.3},
            "128x96": {"heatmap": 1.5, "cal": 1.0},
            "256x192": {"heatmap": 2.0, "cal": 2.0}}  # fmt: skip
# key: (base config, overrides, which sigma, {row name: data.refine of the decoding})
G_MODELS = {
    "heatmap": ("synthetic_tiny_baseline.yaml", ["data.encoding=gaussian"], "heatmap",
                {"plain heatmaps (integer argmax)": "none", "DARK": "dark"}),
    "udp": ("synthetic_tiny_baseline.yaml", ["data.encoding=udp"], "heatmap",
            {"UDP (+ DARK decoding)": "dark"}),
    "offset": ("synthetic_tiny_cal.yaml", ["model.cal.confidence=false"], "cal",
               {"heatmap + offset (no confidence weight)": None}),
    "cal": ("synthetic_tiny_cal.yaml", ["model.cal.confidence=true"], "cal", {"CAL": None}),
}  # fmt: skip


def pixel_errors(predictions, videos) -> np.ndarray:
    """Distances in image pixels (of the video frames) between the predicted and the
    true joints, for every annotated joint of every ground-truth person with a
    prediction (matched by image and track id: ground-truth boxes)."""
    truth = {
        (frame.image_id, person.track_id): person
        for video in videos
        for frame in video.frames
        for person in frame.persons
    }
    distances = []
    for prediction in predictions:
        person = truth.get((prediction.image_id, prediction.track_id))
        if person is None:
            continue
        annotated = person.annotated
        difference = prediction.keypoints[annotated] - person.keypoints[annotated, :2]
        distances.append(np.linalg.norm(difference, axis=1))
    return np.concatenate(distances) if distances else np.zeros(0)


def _g_config_overrides(size: str, sigma_kind: str) -> list[str]:
    height, width = G_SIZES[size]
    return [f"data.input_size=[{height},{width}]", f"data.sigma={G_SIGMAS[size][sigma_kind]}"]


def section_g(
    work: Path,
    steps: int,
    models: list[str],
    sizes: list[str],
    *,
    videos: int = E_VIDEOS,
    test_videos: int = E_TEST_VIDEOS,
) -> dict:
    """At each input size, on benchmark e's occluded data and budget (single-frame,
    patch 16, heatmap stride 4): the heatmap baseline decoded with the integer argmax
    and with DARK, the UDP-encoded baseline (DARK decoding), heatmap + offset without
    the confidence weight, and CAL; mAP and the mean pixel error (image pixels of the
    frames, annotated joints) on the test videos. Models train into ``work/e_g_<model>_
    <size>`` (finished runs are reused, as in e). ``videos`` / ``test_videos`` size the
    data sets (e's by default; smaller only for a smoke run, in a fresh ``work``)."""
    from vidpose.codecs.heatmap import build_codec

    val = _e_split(work / "data_e", videos, seed=7)
    test = _e_split(work / "data_e_test", test_videos, seed=E_TEST_SEED)
    common, epochs, _ = _e_common(val["root"], steps)
    trained_steps = epochs * (videos * 24 * 2 // 16)  # e's videos: 24 frames, 2 persons
    results: dict = {}
    for size in sizes:
        for key in models:
            base, overrides, sigma_kind, decodings = G_MODELS[key]
            run = f"g_{key}_{size}"
            config, model, speed = _train_on_e(
                work, run, base, common + overrides + _g_config_overrides(size, sigma_kind)
            )
            for name, refine in decodings.items():
                scored = config
                if refine is not None:  # a decoding of the heatmap model: no retraining
                    scored = replace(config, data=replace(config.data, refine=refine))
                    model.head.codec = build_codec(scored.data)
                evaluation, _, _ = _e_score(
                    scored, model, test, work / f"e_{run}" / f"pred_test_{refine or key}"
                )
                errors = pixel_errors(evaluation.predictions, test["videos"])
                results.setdefault(name, {})[size] = {
                    "mAP": evaluation.main_metric,
                    "pixel_error": float(errors.mean()) if errors.size else float("nan"),
                    "joints": int(errors.size),
                    "sigma": config.data.sigma,
                    "train_clips_per_s": speed,
                }
    rows = []
    for name, by_size in results.items():
        cells = []
        for size in sizes:
            entry = by_size.get(size)
            cells += ["-", "-"] if entry is None else [
                f"{entry['mAP']:.1f}", f"{entry['pixel_error']:.2f}"
            ]  # fmt: skip
        rows.append([name, *cells])
    results["table"] = table(
        f"g. low resolution: heatmap decodings and CAL at each input size, single-frame, "
        f"patch 16 / heatmap stride 4, trained on {videos} occluded videos for "
        f"{trained_steps} steps of 16 clips; scored on {test_videos} test videos; "
        "mean pixel error in image pixels (320 x 240 frames) over the annotated joints",
        ["method", *(f"{size} {what}" for size in sizes for what in ("mAP", "px error"))],
        rows,
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--only", default="a,b,c,d,e,f", help="comma-separated sections")
    parser.add_argument("--batch", type=int, default=8, help="persons per batch (a)")
    parser.add_argument("--train-steps", type=int, default=2000, help="training steps (e)")
    parser.add_argument(
        "--e-models",
        default=",".join(E_MODELS),
        help="models of section e to run",
    )
    parser.add_argument(
        "--e-sweep",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the S x G sweep of section e (9 evaluations)",
    )
    parser.add_argument("--f-models", default=",".join(F_MODELS), help="models of section f to run")
    parser.add_argument("--g-steps", type=int, default=2000, help="training steps (g)")
    parser.add_argument("--g-models", default=",".join(G_MODELS), help="models of section g to run")
    parser.add_argument("--g-sizes", default=",".join(G_SIZES), help="input sizes of section g")
    parser.add_argument("--work", help="scratch folder (default: a temporary one)")
    parser.add_argument("--json", default="benchmark_results.json")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sections = args.only.split(",")
    work = Path(args.work or tempfile.mkdtemp(prefix="vidpose_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, scratch {work}")
    results = {}
    if "a" in sections:
        results["a"] = section_a(args.batch)
    if "b" in sections:
        results["b"] = section_b([1, 8, 24])
    if "c" in sections:
        results["c"] = section_c()
    if "d" in sections:
        results["d"] = section_d(work, steps=40)
    if "e" in sections:
        results["e"] = section_e(work, args.train_steps, args.e_models.split(","), args.e_sweep)
    if "f" in sections:
        results["f"] = section_f(work, args.train_steps, args.f_models.split(","))
    if "g" in sections:
        results["g"] = section_g(
            work, args.g_steps, args.g_models.split(","), args.g_sizes.split(",")
        )
    Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    print(f"\nresults: {args.json}")


if __name__ == "__main__":
    main()
