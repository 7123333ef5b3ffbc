"""The library side of ``vidpose train`` and ``vidpose test``: each command's whole run in
one function, so that the CLI only parses (:func:`run_training`,
:func:`evaluate_checkpoint`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from vidpose.runtime import InputError, prepare_output_folder, resolve_device, writing

if TYPE_CHECKING:
    from vidpose.config import Config
    from vidpose.engine.evaluate import EvaluationResult
    from vidpose.engine.trainer import TrainResult


def run_training(
    config: Config,
    work_dir: str | os.PathLike,
    *,
    resume: bool = False,
    device: str | None = None,
) -> tuple[TrainResult, bool]:
    """Train ``config`` into ``work_dir`` in this process (one of torchrun's, or alone):
    ``vidpose train``. Returns the result and whether this process is the main one (the
    one that reports).

    Raises: as :func:`vidpose.engine.trainer.train`; a ``device`` torch does not know
    is an :class:`~vidpose.runtime.InputError`.
    """
    from vidpose.engine.distributed import context_from_environment, shutdown
    from vidpose.engine.trainer import train

    context = context_from_environment(device)
    try:
        return train(config, Path(work_dir), resume=resume, context=context), context.is_main
    finally:
        shutdown(context)


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    config: str | None,
    overrides: Sequence[str] = (),
    *,
    out: str | os.PathLike | None = None,
    boxes: str | None = None,
    steps: int | None = None,
    hypotheses: int | None = None,
    flip_test: bool | None = None,
    json_path: str | os.PathLike | None = None,
    device: str | None = None,
) -> EvaluationResult:
    """Predict the validation split of ``config`` (with ``overrides``) with the model of
    ``checkpoint`` and score it: ``vidpose test``.

    Args:
        out: folder of the prediction files (default: beside the checkpoint,
            ``<checkpoint>_predictions``).
        boxes: "gt" or a detections file (default ``data.val_boxes``).
        json_path: also write the metrics there (NaN as null).

    Raises:
        vidpose.runtime.InputError: a bad option, device, checkpoint, config, boxes file
            or dataset (every problem of the split listed at once), before predicting.
        vidpose.runtime.OutputError: ``out`` or ``json_path`` cannot be written.
    """
    for option, value in (("steps", steps), ("hypotheses", hypotheses)):
        if value is not None and value < 1:
            raise InputError(f"--{option} {value}: expected a number >= 1")
    if boxes is not None and boxes != "gt" and not Path(boxes).is_file():
        what = "is a folder" if Path(boxes).is_dir() else "boxes file not found"
        raise InputError(f"{boxes}: {what}, expected 'gt' or a detections JSON file (--boxes)")
    device = resolve_device(device)
    if json_path is not None:
        prepare_output_folder(Path(json_path).parent, "the folder of the metrics file")
        if Path(json_path).is_dir():
            raise InputError(
                f"{json_path}: is a folder, expected a file name for the metrics (--json)"
            )
    from vidpose.data.json_fields import write_json_atomic
    from vidpose.engine.evaluate import evaluate_model
    from vidpose.inference.extraction import load_model

    model, resolved = load_model(checkpoint, config, overrides)
    out = Path(out or Path(checkpoint).with_suffix("").as_posix() + "_predictions")
    result = evaluate_model(
        resolved,
        model.to(device),
        out_dir=out,
        device=device,
        boxes=boxes,
        steps=steps,
        hypotheses=hypotheses,
        flip_test=flip_test,
    )
    if json_path is not None:
        with writing(json_path, "the metrics file"):
            write_json_atomic(json_path, result.summary)
    return result
