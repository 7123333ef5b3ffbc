"""`vidpose <command>`: the command-line interface.

Each command parses its arguments here and calls one library function; no logic
lives only in the CLI. Heavy modules are imported inside the command so that
`vidpose --help` stays instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from vidpose import __version__

Handler = Callable[[argparse.Namespace], int]


class CommandError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


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


def _not_built(command: str, issue: int) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        print(
            f"vidpose {command}: not built yet (tracked in issue #{issue}); nothing was done.",
            file=sys.stderr,
        )
        return 3

    return handler


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
        from vidpose.engine.distributed import context_from_environment, shutdown
        from vidpose.engine.trainer import TrainingDiverged, train

        config = load_config(args.config, args.overrides)
        work_dir = Path(args.work_dir or Path("work_dirs") / Path(args.config).stem)
        context = context_from_environment(args.device)
        try:
            result = train(config, work_dir, resume=args.resume, context=context)
        except (TrainingDiverged, FileNotFoundError) as error:
            raise CommandError(str(error)) from None
        finally:
            shutdown(context)
        if context.is_main:
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
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--boxes", default="gt", help="'gt' or a detections JSON file")
    parser.add_argument("--out", help="folder for the prediction files")
    parser.set_defaults(handler=_not_built("test", 5))


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
        "pred_dir", metavar="PRED", help="folder of per-video prediction JSON (same basenames)"
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
        from vidpose.evaluation import (
            EvaluationInputError,
            evaluate_coco_keypoints,
            evaluate_posetrack,
            write_json_atomically,
        )

        try:
            if args.coco:
                stats = evaluate_coco_keypoints(args.gt_dir, args.pred_dir)
                print(f"COCO keypoint OKS AP (boxes: {args.boxes or 'unknown'})")
                print("  ".join(f"{name} {value:.1f}" for name, value in stats.items()))
                result = {"coco": stats, "boxes": args.boxes}
            else:
                report = evaluate_posetrack(
                    args.gt_dir,
                    args.pred_dir,
                    protocol=args.protocol,
                    tracking=args.tracking,
                    tracking_mode=args.tracking_mode,
                    boxes=args.boxes,
                )
                print(report.format_tables())
                result = report.to_dict()
        except EvaluationInputError as error:
            raise CommandError(str(error)) from error
        if args.json:
            write_json_atomically(args.json, result)
            print(f"Results written to {args.json}")
        return 0

    parser.set_defaults(handler=handler)


def _add_extract(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("extract", help="keypoints with track ids from video files")
    parser.add_argument("inputs", nargs="+", metavar="VIDEO_OR_FOLDER")
    parser.add_argument("--checkpoint", required=True)
    parser.set_defaults(handler=_not_built("extract", 7))


def _add_visualize(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "visualize", help="render the iterative keypoint-region search of the sampler"
    )
    parser.add_argument("--checkpoint", required=True)
    parser.set_defaults(handler=_not_built("visualize", 8))


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

        try:
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
        except (ValueError, FileExistsError) as error:
            raise CommandError(str(error)) from None
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
    parser.add_argument("--out", default="outputs/demo")
    parser.set_defaults(handler=_not_built("demo", 9))


COMMANDS = (
    _add_train,
    _add_test,
    _add_eval,
    _add_extract,
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
    from vidpose.config import ConfigError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except (CommandError, ConfigError) as error:
        print(f"vidpose {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vidpose {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
