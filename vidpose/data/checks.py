"""Before the long work: every annotation file and every image a split reads, checked
at once.

Without these checks ``vidpose train`` stops at the first malformed annotation file
(the next bad one shows only on the next try), and at a missing image only when a step
reads it, possibly hours in. Here every file of the split is read (a malformed one does
not hide the next, :func:`vidpose.data.posetrack.read_dataset_files`), every frame a
sample decodes is looked up (``data.check_images: exists``) or decoded (``decode``),
and every problem found is reported in one error (:class:`DatasetProblems`)::

    videos, problems = read_split(config, "train")
    dataset = build_dataset(config, "train", videos, codec=codec)
    problems += image_problems(dataset, config.data.check_images)
    raise_problems(problems, "the training split")
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from PIL import Image

from vidpose.data.posetrack import read_dataset_files
from vidpose.data.records import VideoRecord
from vidpose.runtime import InputError

if TYPE_CHECKING:
    from vidpose.config import Config
    from vidpose.data.clips import ClipDataset


class DatasetProblems(InputError):
    """What a check of a split found: the message gives the count and the first problem,
    ``details`` lists every one (``FILE: what was wrong, expected what``)."""


def split_annotations(config: Config, split: Literal["train", "val"]) -> str:
    """``data.train_annotations`` or ``data.val_annotations``."""
    data = config.data
    return data.train_annotations if split == "train" else data.val_annotations


def read_split(
    config: Config, split: Literal["train", "val"]
) -> tuple[list[VideoRecord], list[str]]:
    """The videos of every annotation file of ``split`` that reads, and one problem per
    file that does not.

    Raises:
        FileNotFoundError: the annotations path does not exist.
    """
    data = config.data
    return read_dataset_files(data.format, data.root, split_annotations(config, split))


def image_problems(
    dataset: ClipDataset, mode: Literal["exists", "decode", "off"] = "exists"
) -> list[str]:
    """One problem per image the dataset's samples would read that is missing, empty or
    (``mode="decode"``: every image opened and decoded once) unreadable.

    When not one of the images exists the answer is that one problem, with the root it
    looked under (a wrong ``data.root`` is likelier than thousands of lost files).
    """
    if mode == "off":
        return []
    problems = []
    frames = dataset.frames_read()
    missing = 0
    for video, frame in frames:
        path = dataset.root / frame.image_path
        where = (
            f"frame {frame.frame_index} of video {video.name!r} in {video.source or 'the records'}"
        )
        if not path.is_file():
            missing += 1
            problems.append(f"{path}: image not found ({where})")
        elif path.stat().st_size == 0:
            problems.append(f"{path}: empty image file ({where})")
        elif mode == "decode":
            problem = _decode_problem(path)
            if problem is not None:
                problems.append(f"{path}: cannot be decoded: {problem} ({where})")
    if frames and missing == len(frames) and len(frames) > 1:
        return [
            f"{dataset.root}: none of the {len(frames)} images the annotations list exists "
            f"under this data.root (e.g. {frames[0][1].image_path}); expected the images "
            "beside the annotations, as docs/data.md lays them out"
        ]
    return problems


def _decode_problem(path: Path) -> str | None:
    try:
        with Image.open(path) as image:
            image.load()
    except (OSError, ValueError, SyntaxError) as error:
        return " ".join(str(error).split()) or type(error).__name__
    return None


def raise_problems(problems: Sequence[str], what: str) -> None:
    """Raise :class:`DatasetProblems` listing ``problems`` (nothing when there is none).

    Args:
        what: the data checked, for the message, e.g. "the training split".
    """
    if not problems:
        return
    if len(problems) == 1:
        raise DatasetProblems(problems[0])
    raise DatasetProblems(
        f"{len(problems)} problems in {what} (every one listed below); the first: {problems[0]}",
        details=problems,
    )
