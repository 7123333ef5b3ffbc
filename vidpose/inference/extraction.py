"""The library side of ``vidpose extract``: options checked, model and boxes set up, every
video extracted (:func:`run_extraction`); and :func:`load_model`, a checkpoint loaded for
a command with its problems reported as the user's.

The CLI parses the command line and calls :func:`run_extraction` with what it parsed;
scripts and the demo call it the same way. Everything that can be checked before the
first frame is: the options, the output folder (writable, not a file), the inputs, the
boxes path, the checkpoint, the detector. A video that fails later is reported and the
others go on (``vidpose.inference.extract.extract_videos``).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from vidpose.runtime import InputError, prepare_output_folder, resolve_device

if TYPE_CHECKING:
    from vidpose.inference.extract import ExtractionReport, VideoSummary


def load_model(checkpoint: str | os.PathLike, config: str | None = None, overrides=()):
    """``vidpose.inference.predictor.load_estimator`` for a command: the model (in eval
    mode) and its config.

    Raises:
        vidpose.runtime.InputError: the checkpoint or config file is missing, is not a
            vidpose checkpoint, holds no config, or its weights do not fit the model;
            the message names the file. (An error that is not about the files passes
            through unchanged: it is a bug, not the user's.)
    """
    from vidpose.inference.predictor import load_estimator

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        what = "is a folder" if checkpoint.is_dir() else "checkpoint not found"
        raise InputError(f"{checkpoint}: {what}, expected a .safetensors file")
    try:
        return load_estimator(checkpoint, config=config, overrides=overrides)
    except InputError:
        raise
    except ValueError as error:
        # load_estimator's own refusals name the checkpoint first
        if str(error).startswith(f"{checkpoint}:"):
            raise InputError(str(error)) from None
        raise


def _at_least_one(**values: int | None) -> None:
    for option, value in values.items():
        if value is not None and value < 1:
            raise InputError(f"--{option.replace('_', '-')} {value}: expected a number >= 1")


def run_extraction(
    inputs: Sequence[str | os.PathLike],
    *,
    checkpoint: str,
    out: str | os.PathLike = "outputs/extract",
    config: str | None = None,
    boxes: str | None = None,
    detector: str | None = None,
    single_person: bool = False,
    det_thr: float = 0.5,
    det_every: int = 1,
    pose_thr: float | None = None,
    smooth: str = "none",
    smooth_min_cutoff: float = 1.0,
    smooth_beta: float = 0.01,
    smooth_d_cutoff: float = 1.0,
    seed: int = 0,
    score_threshold: float | None = None,
    render: bool = False,
    steps: int | None = None,
    hypotheses: int | None = None,
    flip: bool | None = None,
    device: str | None = None,
    shard: str | None = None,
    batch_size: int | None = None,
    max_frames: int | None = None,
    decoder: str = "pyav",
    overwrite: bool = False,
    progress: bool = True,
    say: Callable[[str], None] = print,
    on_failure: Callable[[VideoSummary], None] | None = None,
) -> ExtractionReport:
    """Extract poses with track ids from every video of ``inputs`` into ``out``: the
    whole of ``vidpose extract`` (docs/extraction.md; every option is the command's,
    by the same name).

    Args:
        say: where the run's one-line announcement goes (``print``).
        on_failure: called with the summary of each video that fails, as it fails.

    Returns:
        The report of every video (``report.failures``: the videos that failed; the
        others are finished).

    Raises:
        vidpose.runtime.InputError: an option, input, boxes path, checkpoint or detector
            that cannot be used (before any video is read).
        vidpose.runtime.OutputError: ``out`` cannot be written.
    """
    from vidpose.inference.detectors import build_detector
    from vidpose.inference.extract import ExtractOptions, extract_videos
    from vidpose.inference.inputs import collect_videos, parse_shard, select_shard, video_name
    from vidpose.inference.person_boxes import (
        DetectorBoxes,
        SinglePersonBoxes,
        detection_file_for,
        read_detections,
    )
    from vidpose.inference.predictor import build_predictor
    from vidpose.inference.pretrained import resolve_checkpoint
    from vidpose.inference.smoothing import OneEuroSettings

    # 1. the options, before anything is read
    _at_least_one(
        steps=steps,
        hypotheses=hypotheses,
        batch_size=batch_size,
        max_frames=max_frames,
        det_every=det_every,
    )
    if boxes is None and detector is None and not single_person:
        raise InputError(
            "say where the people are: --detector NAME_OR_PATH, --boxes FILE_OR_FOLDER "
            "or --single-person"
        )
    if boxes is not None and detector is not None:
        raise InputError("--boxes and --detector exclude each other")
    if boxes is not None and single_person:
        raise InputError("--boxes and --single-person exclude each other")
    smoothing = None
    if smooth == "oneeuro":
        try:
            smoothing = OneEuroSettings(
                min_cutoff=smooth_min_cutoff, beta=smooth_beta, d_cutoff=smooth_d_cutoff
            )
        except ValueError as error:
            raise InputError(str(error)) from None
    elif smooth != "none":
        raise InputError(f"--smooth {smooth!r}: expected none or oneeuro")

    # 2. the inputs and the output folder
    videos = collect_videos(inputs)
    try:
        shard_index, shard_count = parse_shard(shard) if shard else (0, 1)
    except ValueError as error:
        raise InputError(str(error)) from None
    repeated = [name for name, n in Counter(map(video_name, videos)).items() if n > 1]
    if repeated:
        raise InputError(
            f"several inputs would write outputs named {repeated[0]!r} in {out}; "
            "extract them into different --out folders"
        )
    if boxes is not None and not Path(boxes).exists():
        raise InputError(f"{boxes}: boxes file or folder not found (--boxes)")
    prepare_output_folder(out, "the extraction's output folder")
    # --shard splits between machines, torchrun between the processes of one run
    rank, world_size = torchrun_process()
    videos = select_shard(videos, shard_index * world_size + rank, shard_count * world_size)

    # 3. the device, the model, the detector
    device = resolve_device(device)
    if device == "cuda" and world_size > 1:
        device = f"cuda:{os.environ.get('LOCAL_RANK', 0)}"  # one device per process
    model, resolved = load_model(str(resolve_checkpoint(checkpoint)), config)
    person_detector = None
    if detector is not None:
        try:
            person_detector = build_detector(detector, device=device)
        except InputError:
            raise
        except (ValueError, ImportError) as error:  # an unknown name, a missing runtime
            raise InputError(f"--detector {detector}: {error}") from None
    try:
        predictor = build_predictor(
            model,
            resolved,
            device=device,
            steps=steps,
            hypotheses=hypotheses,
            flip_test=flip,
            batch_size=batch_size,
        )
    except InputError:
        raise
    except ValueError as error:  # the sampler settings the model refuses
        raise InputError(str(error)) from None

    threshold = resolved.data.det_score_threshold if score_threshold is None else score_threshold

    def boxes_for(video: Path):
        if single_person:
            return SinglePersonBoxes(
                detector=person_detector, score_threshold=det_thr, every=det_every
            )
        if person_detector is not None:
            return DetectorBoxes(person_detector, score_threshold=det_thr, every=det_every)
        name = video_name(video)
        return read_detections(
            detection_file_for(boxes, name), video=name, score_threshold=threshold
        )

    if person_detector is not None:
        note = f"detector {person_detector.description}, threshold {det_thr}"
        note += f", every {det_every} frames" if det_every > 1 else ""
        note = f"single person, {note}" if single_person else note
    else:
        note = "single person" if single_person else f"detections: {boxes}"
    if pose_thr is None:
        pose_thr = 0.2 if single_person and person_detector is None else 0.0
    options = ExtractOptions(
        render=render,
        track=not single_person,
        max_frames=max_frames,
        overwrite=overwrite,
        progress=progress,
        boxes_note=note,
        decoder=decoder,
        seed=seed,
        min_pose_score=pose_thr,
        smoothing=smoothing,
    )
    say(f"vidpose extract: {len(videos)} videos -> {out} (device {device})")
    return extract_videos(videos, predictor, boxes_for, out, options=options, on_failure=on_failure)


def torchrun_process() -> tuple[int, int]:
    """(rank, world size) of this process among torchrun's; (0, 1) without torchrun."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
