"""`vidpose <command>`: the command-line interface.

Each command parses its arguments here and calls one library function; no logic lives
only in the CLI. Heavy modules are imported inside the command so that `vidpose --help`
stays instant.

Every command fails the same way (:func:`report_failure`): one line on stderr,
``vidpose COMMAND: error: FILE: what was expected``, and the exit status of the error's
class (``vidpose.runtime``, docs/getting_started.md "Exit statuses"). Only an error of
no known class, a bug, prints its traceback.

Over 600 lines on purpose: the parser is one thing, the command line; one module keeps
every option and its help text side by side.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from vidpose import __version__
from vidpose.runtime import EXIT_PARTIAL


def _add_config_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument(
        "config", nargs=None if required else "?", help="experiment YAML file (see configs/)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.lr=1e-3 (repeatable)",
    )


# --------------------------------------------------------------------------- commands


def _add_config_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "config", help="print the resolved config (base file and --set overrides applied)"
    )
    _add_config_arguments(parser, required=False)

    def handler(args: argparse.Namespace) -> int:
        from vidpose.config import dump_config, load_config

        print(dump_config(load_config(args.config, args.overrides)), end="")
        return 0

    parser.set_defaults(handler=handler)


def _add_train(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train a model on PoseTrack, COCO or synthetic data"
    )
    _add_config_arguments(parser)
    parser.add_argument("--work-dir", help="output folder (default: work_dirs/<config name>)")
    parser.add_argument(
        "--resume", action="store_true", help="continue exactly from WORK_DIR/latest.safetensors"
    )
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")

    def handler(args: argparse.Namespace) -> int:
        from pathlib import Path

        from vidpose.config import load_config
        from vidpose.engine.commands import run_training

        config = load_config(args.config, args.overrides)
        work_dir = Path(args.work_dir or Path("work_dirs") / Path(args.config).stem)
        result, main_process = run_training(
            config, work_dir, resume=args.resume, device=args.device
        )
        if main_process:
            best = (
                f", best validation metric {result.best_metric:.2f}" if result.best_metric else ""
            )
            print(
                f"trained {result.steps} steps, final loss {result.final_loss:.4g}{best}; "
                f"checkpoint: {result.checkpoint}"
            )
        return 0

    parser.set_defaults(handler=handler)


def _add_test(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("test", help="predict on the validation split and evaluate")
    _add_config_arguments(parser)
    parser.add_argument("--checkpoint", required=True, help="a .safetensors checkpoint")
    parser.add_argument(
        "--boxes", help="'gt' or a detections JSON file (COCO results); default: data.val_boxes"
    )
    parser.add_argument("--out", help="folder for the prediction files (default: beside CKPT)")
    parser.add_argument("--steps", type=int, help="DDIM steps (default: test.steps)")
    parser.add_argument(
        "--hypotheses", type=int, help="hypotheses averaged (default: test.hypotheses)"
    )
    parser.add_argument(
        "--flip-test", action=argparse.BooleanOptionalAction, help="default: test.flip_test"
    )
    parser.add_argument("--json", help="also write the metrics to this JSON file")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")

    def handler(args: argparse.Namespace) -> int:
        from vidpose.engine.commands import evaluate_checkpoint

        result = evaluate_checkpoint(
            args.checkpoint,
            args.config,
            args.overrides,
            out=args.out,
            boxes=args.boxes,
            steps=args.steps,
            hypotheses=args.hypotheses,
            flip_test=args.flip_test,
            json_path=args.json,
            device=args.device,
        )
        print(result.table)
        print(f"predictions: {result.prediction_dir} (boxes: {result.boxes})")
        return 0

    parser.set_defaults(handler=handler)


def _add_eval(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="PoseTrack mAP / MOTA / HOTA of prediction files (or COCO AP with --coco)",
        description="Evaluate prediction files with the rules of the official PoseTrack tools "
        "(see docs/evaluation.md).",
    )
    parser.add_argument(
        "gt_dir", metavar="GT", help="folder of per-video ground-truth JSON, or one merged file"
    )
    parser.add_argument(
        "pred_dir",
        metavar="PRED",
        help="folder of per-video prediction JSON (same basenames), or one merged file",
    )
    parser.add_argument(
        "--protocol",
        choices=("posetrack18", "posetrack21"),
        default="posetrack18",
        help="mAP rules: poseval (posetrack18) or the PoseTrack21 kit (default: posetrack18)",
    )
    parser.add_argument(
        "--tracking", action="store_true", help="also MOTA/MOTP/Prec/Rec and keypoint HOTA"
    )
    parser.add_argument(
        "--tracking-mode",
        choices=("official", "corrected"),
        default="official",
        help="reproduce the official tools' quirks (default) or fix them",
    )
    parser.add_argument(
        "--boxes", help="which person boxes made the predictions (default: what the files say)"
    )
    parser.add_argument("--coco", action="store_true", help="GT/PRED are COCO files: OKS AP")
    parser.add_argument("--json", metavar="OUT", help="also write the results to this JSON file")

    def handler(args: argparse.Namespace) -> int:
        from vidpose.evaluation.scoring import score_files

        scored = score_files(
            args.gt_dir,
            args.pred_dir,
            coco=args.coco,
            protocol=args.protocol,
            tracking=args.tracking,
            tracking_mode=args.tracking_mode,
            boxes=args.boxes,
            json_path=args.json,
        )
        print(scored.text)
        if args.json:
            print(f"Results written to {args.json}")
        return 0

    parser.set_defaults(handler=handler)


def _add_extract(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "extract",
        help="keypoints with track ids from video files",
        description="Per-video pose extraction: PoseTrack JSON, a CSV table and optionally an "
        "overlay video per input, written as frames finish; finished videos are skipped on "
        "re-runs. See docs/extraction.md.",
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="VIDEO_OR_FOLDER",
        help="video files, folders of videos, or folders of frame images",
    )
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="vidpose .safetensors checkpoint, or a public ViTPose name (vitpose-s, vitpose-b, "
        "vitpose-l, vitpose-h: fetched and imported on first use)",
    )
    parser.add_argument("--config", help="experiment YAML replacing the checkpoint's own config")
    people = parser.add_mutually_exclusive_group()
    people.add_argument(
        "--boxes",
        metavar="FILE_OR_FOLDER",
        help="person boxes: COCO results JSON (image ids = frame indices or PoseTrack ids), "
        "a PoseTrack annotation JSON, or MOT text (frame,id,x,y,w,h,score; 1-based frames); "
        "a folder holds one <video name>.json/.txt per video",
    )
    people.add_argument(
        "--detector",
        metavar="NAME_OR_PATH",
        help="person detector: yolox-nano, yolox-tiny, yolox-s, yolox-m, rtmdet-nano, "
        "yolox-tiny-humanart, yolox-m-humanart (fetched on first use), a .onnx file "
        "(YOLOX, mmdeploy end2end or ultralytics layout), or ultralytics:MODEL",
    )
    parser.add_argument(
        "--single-person",
        action="store_true",
        help="one person per video, followed from frame to frame; with --detector the "
        "detector decides whether the person is there",
    )
    parser.add_argument(
        "--det-thr", type=float, default=0.5, help="detector score threshold (default 0.5)"
    )
    parser.add_argument(
        "--det-every",
        type=int,
        default=1,
        metavar="N",
        help="run the detector every N frames; in between, boxes follow the tracked poses",
    )
    parser.add_argument(
        "--pose-thr",
        type=float,
        help="drop people whose mean joint score is below this (default: 0.2 with "
        "--single-person and no detector, else 0)",
    )
    parser.add_argument(
        "--smooth",
        choices=("none", "oneeuro"),
        default="none",
        help="temporal smoothing of each track's keypoints (oneeuro: the One Euro filter)",
    )
    parser.add_argument(
        "--smooth-min-cutoff",
        type=float,
        default=1.0,
        help="One Euro min cut-off, Hz (lower: smoother at rest; default 1.0)",
    )
    parser.add_argument(
        "--smooth-beta",
        type=float,
        default=0.01,
        help="One Euro speed coefficient, 1/pixel (higher: less lag in fast motion; default 0.01)",
    )
    parser.add_argument(
        "--smooth-d-cutoff", type=float, default=1.0, help="One Euro speed cut-off, Hz"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="base of the per-video, per-frame sampling seeds"
    )
    parser.add_argument(
        "--score-threshold",
        type=float,
        help="drop boxes of --boxes scoring below this (default: the config's "
        "data.det_score_threshold)",
    )
    parser.add_argument("--out", default="outputs/extract", help="output folder")
    parser.add_argument("--render", action="store_true", help="also write an overlay .mp4")
    parser.add_argument("--steps", type=int, help="diffusion sampling steps (default: config)")
    parser.add_argument("--hypotheses", type=int, help="diffusion hypotheses (default: config)")
    parser.add_argument(
        "--flip", action=argparse.BooleanOptionalAction, help="flip test (default: config)"
    )
    parser.add_argument(
        "--device", help="cpu, cuda or cuda:N (default: cuda when available; torchrun: LOCAL_RANK)"
    )
    parser.add_argument(
        "--shard",
        metavar="I/N",
        help="process every N-th video of the sorted list, starting at I (0-based)",
    )
    parser.add_argument("--batch-size", type=int, help="persons per forward pass")
    parser.add_argument("--max-frames", type=int, help="stop each video after this many frames")
    parser.add_argument(
        "--decoder",
        choices=("pyav", "decord", "auto"),
        default="pyav",
        help="video decoder (default pyav: memory flat with video length; auto: decord, "
        "PyAV for files decord cannot open)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="redo videos that are already done"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")

    def handler(args: argparse.Namespace) -> int:
        from vidpose.inference.extract import format_report
        from vidpose.inference.extraction import run_extraction

        def report_failure(summary) -> None:
            print(f"vidpose extract: {summary.error}", file=sys.stderr)

        report = run_extraction(
            args.inputs,
            checkpoint=args.checkpoint,
            out=args.out,
            config=args.config,
            boxes=args.boxes,
            detector=args.detector,
            single_person=args.single_person,
            det_thr=args.det_thr,
            det_every=args.det_every,
            pose_thr=args.pose_thr,
            smooth=args.smooth,
            smooth_min_cutoff=args.smooth_min_cutoff,
            smooth_beta=args.smooth_beta,
            smooth_d_cutoff=args.smooth_d_cutoff,
            seed=args.seed,
            score_threshold=args.score_threshold,
            render=args.render,
            steps=args.steps,
            hypotheses=args.hypotheses,
            flip=args.flip,
            device=args.device,
            shard=args.shard,
            batch_size=args.batch_size,
            max_frames=args.max_frames,
            decoder=args.decoder,
            overwrite=args.overwrite,
            progress=not args.no_progress,
            on_failure=report_failure,
        )
        print(format_report(report))
        return EXIT_PARTIAL if report.failures else 0

    parser.set_defaults(handler=handler)


def _add_import_weights(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import-weights",
        help="turn a public ViTPose checkpoint into a vidpose checkpoint",
        description="Convert a ViTPose checkpoint (mmpose 0.x or 1.x layout, classic "
        "decoder, COCO-17) into a vidpose checkpoint of the single-frame heatmap model, "
        "ready for extract and test and as the backbone initialisation of temporal models. "
        "SRC is a .pth file or a name (vitpose-s, vitpose-b, vitpose-l, vitpose-h: "
        "mmpose's public checkpoints, fetched on first use). See docs/extraction.md.",
    )
    parser.add_argument("source", metavar="SRC", help="ViTPose .pth file or name")
    parser.add_argument("--out", required=True, help="the vidpose .safetensors to write")
    parser.add_argument(
        "--num-heads",
        type=int,
        help="attention heads, for a ViT width that is none of ViTPose-S/B/L/H",
    )

    def handler(args: argparse.Namespace) -> int:
        from vidpose.inference.pretrained import import_weights

        out, report = import_weights(args.source, args.out, num_heads=args.num_heads)
        backbone = report.config["model"]["backbone"]
        print(
            f"vidpose import-weights: {args.source} ({report.layout} layout, ViT "
            f"{backbone['embed_dim']} wide x {backbone['depth']} blocks, input "
            f"{report.config['data']['input_size']}) -> {out}"
        )
        for note in report.notes:
            print(f"  {note}")
        return 0

    parser.set_defaults(handler=handler)


def _add_visualize(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "visualize",
        help="render the iterative keypoint search of the head (diffusion steps, TFPose layers)",
        description="Run the model once on one person's clip and draw what its head "
        "recorded at every step of its search: for a diffusion head each DDIM step's "
        "heatmaps, look-up masks at three scales, keypoints and their moves, the spread of "
        "the hypotheses; for a TFPose head each decoder layer's keypoints, the moves from "
        "its reference points and where its deformable attention sampled; plus per-step "
        "curves and the temporal aggregator's frame weights. A one-pass head (heatmap "
        "baseline) has nothing to show. See docs/visualization.md.",
    )
    parser.add_argument("--checkpoint", required=True, help="vidpose .safetensors checkpoint")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--dataset",
        metavar="CFG",
        help="experiment YAML whose validation set holds the clip (replaces the checkpoint's "
        "config; use with --index)",
    )
    source.add_argument("--video", metavar="FILE", help="a video file or a folder of frames")
    parser.add_argument("--index", type=int, help="with --dataset: item of the validation set")
    parser.add_argument("--frame", type=int, help="with --video: the key frame (0-based)")
    parser.add_argument(
        "--track",
        type=int,
        help="with --video --boxes: the person's track_id (PoseTrack JSON) or, for files "
        "without track ids, its rank by score in the frame (0 = best)",
    )
    parser.add_argument(
        "--boxes",
        help="with --video: person boxes (PoseTrack JSON such as ground truth or vidpose "
        "extract output, COCO results JSON, MOT text); default: single-person mode",
    )
    parser.add_argument(
        "--steps", type=int, help="diffusion: DDIM steps S (default: test.steps, then model)"
    )
    parser.add_argument(
        "--hypotheses", type=int, help="diffusion: hypotheses G (default: as --steps)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the starting noise")
    parser.add_argument("--out", help="output folder (default: outputs/visualize/<clip name>)")
    parser.add_argument(
        "--joints",
        help="comma-separated joint names that get a panel of their own (default: every "
        "scored joint; 'none': no joint panels)",
    )
    parser.add_argument(
        "--animation",
        choices=("gif", "mp4", "both", "none"),
        default="both",
        help="the per-step animation's format (default: both)",
    )
    parser.add_argument("--panel-height", type=int, default=128, help="pixels per grid panel")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --dataset: override a value of CFG, e.g. --set data.root=data/synthetic",
    )
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")

    def handler(args: argparse.Namespace) -> int:
        from vidpose.visualization.visualize import run_visualization

        result = run_visualization(
            args.checkpoint,
            dataset=args.dataset,
            index=args.index,
            video=args.video,
            frame=args.frame,
            track=args.track,
            boxes=args.boxes,
            overrides=args.overrides,
            steps=args.steps,
            hypotheses=args.hypotheses,
            seed=args.seed,
            out=args.out,
            joints=args.joints,
            animation=args.animation,
            panel_height=args.panel_height,
            device=args.device,
        )
        if result.note:
            print(f"vidpose visualize: note: {result.note}", file=sys.stderr)
        print(result.summary)
        for path in result.written.values():
            print(f"wrote {path}")
        return 0

    parser.set_defaults(handler=handler)


def _add_synth(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth", help="generate a synthetic PoseTrack21-format dataset with exact ground truth"
    )
    from vidpose.config import SynthConfig

    defaults = SynthConfig()

    def frame_size(text: str) -> tuple[int, int]:
        width, separator, height = text.lower().partition("x")
        if not separator or not width.isdigit() or not height.isdigit():
            raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 320x240, got {text!r}")
        return int(width), int(height)

    parser.add_argument("out_dir", help="dataset root to create (must be empty or new)")
    parser.add_argument("--videos", type=int, default=defaults.videos, help="videos per split")
    parser.add_argument("--frames", type=int, default=defaults.frames, help="frames per video")
    parser.add_argument("--persons", type=int, default=defaults.persons, help="people per video")
    parser.add_argument(
        "--size",
        type=frame_size,
        default=defaults.size,
        metavar="WxH",
        help=f"frame size (default {defaults.size[0]}x{defaults.size[1]})",
    )
    parser.add_argument(
        "--occlusion",
        type=float,
        default=defaults.occlusion,
        help="chance that an occluder crosses a person",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the dataset folders of a non-empty OUT_DIR",
    )

    def handler(args: argparse.Namespace) -> int:
        from vidpose.data.synthetic import generate_dataset

        root = generate_dataset(
            args.out_dir,
            videos=args.videos,
            frames=args.frames,
            persons=args.persons,
            size=args.size,
            occlusion=args.occlusion,
            seed=args.seed,
            overwrite=args.overwrite,
        )
        print(
            f"wrote {2 * args.videos} videos ({args.videos} train + {args.videos} val) of "
            f"{args.frames} frames to {root}\n"
            f"use: --set data.format=posetrack21 --set data.root={root}"
        )
        return 0

    parser.set_defaults(handler=handler)


def _add_demo(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="synthetic data -> tiny model trained on CPU -> evaluation -> extraction"
    )
    parser.add_argument("--out", default="outputs/demo", help="output folder")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run of every stage in about a minute"
    )
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")

    def handler(args: argparse.Namespace) -> int:
        from vidpose.demo import run_demo

        run_demo(args.out, quick=args.quick, device=args.device)
        return 0

    parser.set_defaults(handler=handler)


COMMANDS = (
    _add_train,
    _add_test,
    _add_eval,
    _add_extract,
    _add_import_weights,
    _add_visualize,
    _add_synth,
    _add_demo,
    _add_config_command,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vidpose",
        description="Video human pose estimation with a spatio-temporal diffusion core.",
    )
    parser.add_argument("--version", action="version", version=f"vidpose {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add_command in COMMANDS:
        add_command(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``vidpose COMMAND ...``; returns the exit status (docs/getting_started.md,
    "Exit statuses"). Every failure goes through :func:`report_failure`."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except (Exception, KeyboardInterrupt) as error:
        return report_failure(args.command, error)


def report_failure(command: str, error: BaseException) -> int:
    """Tell the user how ``vidpose COMMAND`` failed and return its exit status.

    One line on stderr, ``vidpose COMMAND: error: FILE: what was expected``, with the
    further lines of the message (an :class:`~vidpose.runtime.InputError`'s
    ``details``, every problem a data check found) indented under it. The status comes
    from the error's class (:func:`vidpose.runtime.exit_status`). An error of no known
    class is a bug: its traceback is printed first and the line says so (status 70);
    Ctrl-C prints one line (status 130).
    """
    from vidpose.runtime import EXIT_INTERNAL, EXIT_INTERRUPTED, error_message, exit_status

    status = exit_status(error)
    prefix = f"vidpose {command}"
    if status == EXIT_INTERRUPTED:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return status
    text = error_message(error)
    if status == EXIT_INTERNAL:
        import traceback

        traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
        text = (
            f"internal error (a bug in vidpose, please report it): {type(error).__name__}: {text}"
        )
    first, *rest = text.splitlines() or [""]
    rest += [str(line) for line in getattr(error, "details", ())]
    print(f"{prefix}: error: {first}", file=sys.stderr)
    for line in rest:
        print(f"  {line.strip()}", file=sys.stderr)
    sys.stderr.flush()
    return status


if __name__ == "__main__":
    sys.exit(main())
