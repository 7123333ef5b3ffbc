"""Typed access to JSON records with errors that name the file, the record and the field.

Every annotation reader (PoseTrack, COCO, detection files) reads raw JSON through
:class:`FieldReader`, so a malformed file fails the same way everywhere::

    posetrack_data/val/000001_mpii_test.json: annotation 10000010000002: 'keypoints'
    has 48 numbers, expected 51

A field that is absent and a field that is ``null`` are treated alike: both take the
default when the field is optional and both fail when it is required.
"""

from __future__ import annotations

import errno
import json
import math
import os
from collections.abc import Container
from pathlib import Path
from typing import Any

import numpy as np

from vidpose.runtime import InputError, writing


class AnnotationError(InputError):
    """An annotation or detections file does not have the layout its reader expects."""


_REQUIRED = object()  # sentinel: no default, the field must be present


def describe(value: Any) -> str:
    """Short description of a JSON value for error messages: type and a clipped repr."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    kind = {dict: "an object", list: "a list", str: "text", bool: "a boolean"}.get(type(value))
    if value is None:
        return "null"
    if kind is None:
        kind = "a number" if isinstance(value, (int, float)) else type(value).__name__
    return f"{kind} {text}"


def shown_path(path: Path, root: Path | None) -> str:
    """``path`` relative to ``root`` when it lies under it (how errors name files)."""
    if root is not None:
        # abspath, not resolve(): a dataset folder reached through a symlink keeps
        # its short name in messages.
        relative = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
        if not relative.startswith(".."):
            return Path(relative).as_posix()
    return str(path)


def load_json(path: Path, shown: str) -> Any:
    """Parse a JSON file; a missing or unparsable file raises with the file's name.

    Raises:
        FileNotFoundError: the file does not exist.
        AnnotationError: the file is not valid JSON (line and column given).
    """
    if not path.is_file():
        raise FileNotFoundError(f"{shown}: file not found ({path})")
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise AnnotationError(
            f"{shown}: not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})"
        ) from None
    except UnicodeDecodeError as error:
        raise AnnotationError(f"{shown}: not UTF-8 text ({error.reason})") from None


class FieldReader:
    """Reads the fields of one JSON object (an image, an annotation, a detection).

    Args:
        record: the JSON value that should be an object.
        file: how the file is named in errors (usually relative to the dataset root).
        what: how the record is named in errors, e.g. ``"annotation 10000010000002"``.
    """

    def __init__(self, record: Any, *, file: str, what: str) -> None:
        if not isinstance(record, dict):
            raise AnnotationError(f"{file}: {what}: expected an object, got {describe(record)}")
        self.record = record
        self.file = file
        self.what = what

    def error(self, key: str, problem: str, expected: str) -> AnnotationError:
        """The error for field ``key``: '<file>: <record>: '<key>' <problem>, expected <...>'."""
        return AnnotationError(f"{self.file}: {self.what}: {key!r} {problem}, expected {expected}")

    def has(self, key: str) -> bool:
        """Whether the field is present and not null."""
        return self.record.get(key) is not None

    def raw(self, key: str, expected: str, default: Any = _REQUIRED) -> Any:
        """The value as stored; a missing/null field returns ``default`` or raises."""
        value = self.record.get(key)
        if value is None:
            if default is _REQUIRED:
                raise self.error(key, "is missing", expected)
            return default
        return value

    def integer(self, key: str, default: Any = _REQUIRED) -> Any:
        """An integer field (a float with an integral value is accepted, as JSON writers
        sometimes store ids as 1.0)."""
        if default is not _REQUIRED and not self.has(key):
            return default
        value = self.raw(key, "an integer")
        return self.as_integer(key, value)

    def as_integer(self, key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(key, f"is {describe(value)}", "an integer")
        if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
            raise self.error(key, f"is {describe(value)}", "an integer")
        return int(value)

    def number(self, key: str, default: Any = _REQUIRED) -> Any:
        """A finite real number."""
        if default is not _REQUIRED and not self.has(key):
            return default
        value = self.raw(key, "a number")
        return self.as_number(key, value)

    def as_number(self, key: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(key, f"is {describe(value)}", "a number")
        if not math.isfinite(value):
            raise self.error(key, f"is {value}", "a finite number")
        return float(value)

    def boolean(self, key: str, default: Any = _REQUIRED) -> Any:
        """true/false, or the integers 0/1 that Matlab-derived files use."""
        if default is not _REQUIRED and not self.has(key):
            return default
        value = self.raw(key, "true or false")
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        raise self.error(key, f"is {describe(value)}", "true or false (or 0/1)")

    def text(self, key: str, default: Any = _REQUIRED) -> Any:
        if default is not _REQUIRED and not self.has(key):
            return default
        value = self.raw(key, "text")
        if not isinstance(value, str):
            raise self.error(key, f"is {describe(value)}", "text")
        return value

    def numbers(self, key: str, length: int | None = None, default: Any = _REQUIRED) -> Any:
        """A flat list of finite numbers as float64 ``[length]``.

        ``length`` None accepts any length.
        """
        expected = f"a list of {length} numbers" if length is not None else "a list of numbers"
        if default is not _REQUIRED and not self.has(key):
            return default
        value = self.raw(key, expected)
        return self.as_numbers(key, value, length)

    def as_numbers(self, key: str, value: Any, length: int | None) -> np.ndarray:
        expected = f"a list of {length} numbers" if length is not None else "a list of numbers"
        if not isinstance(value, list):
            raise self.error(key, f"is {describe(value)}", expected)
        if length is not None and len(value) != length:
            raise self.error(key, f"has {len(value)} numbers", str(length))
        for position, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                raise self.error(key, f"item {position} is {describe(item)}", expected)
        array = np.asarray(value, dtype=np.float64)
        if not np.all(np.isfinite(array)):
            position = int(np.flatnonzero(~np.isfinite(array))[0])
            raise self.error(key, f"item {position} is {value[position]}", "finite numbers")
        return array

    def objects(self, key: str, default: Any = _REQUIRED) -> Any:
        """A list of JSON objects (their validation is left to the caller)."""
        if default is not _REQUIRED and not self.has(key):
            return default
        value = self.raw(key, "a list")
        if not isinstance(value, list):
            raise self.error(key, f"is {describe(value)}", "a list")
        return value


def write_json_atomic(path: Path, content: Any) -> Path:
    """Write ``content`` as JSON to ``path`` through a temporary file and a rename, so a
    crash never leaves a half-written file under the final name.

    NaN and infinite numbers are written as ``null``: JSON has no such numbers, and a
    bare ``NaN`` makes the file unreadable to strict parsers.

    Raises:
        vidpose.runtime.OutputError: the file cannot be written (read-only or full
            folder, a folder or a file in the way); the message names ``path``.
    """
    path = Path(path)
    try:
        text = json.dumps(content, separators=(",", ":"), allow_nan=False)
    except ValueError:  # a NaN or infinity somewhere: the slower walk that nulls them
        text = json.dumps(finite_or_null(content), separators=(",", ":"), allow_nan=False)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with writing(path, "a JSON file"):
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "is a folder, expected a file name", str(path))
        if path.exists() and not path.is_file():
            # a device or a pipe (/dev/stdout): written into, never renamed over
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text)
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(temporary, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(temporary, path)
        finally:
            if temporary.exists():
                temporary.unlink()
    return path


def finite_or_null(content: Any) -> Any:
    """``content`` with every NaN or infinite float (also numpy's) replaced by None."""
    if isinstance(content, dict):
        return {key: finite_or_null(value) for key, value in content.items()}
    if isinstance(content, (list, tuple)):
        return [finite_or_null(value) for value in content]
    if isinstance(content, (float, np.floating)):
        return float(content) if math.isfinite(content) else None
    if isinstance(content, np.integer):
        return int(content)
    return content


def annotation_reader(
    annotation: Any, position: int, file: str, image_ids: Container[int]
) -> tuple[FieldReader, int]:
    """A reader for one entry of a COCO-style ``annotations`` list, and its image id.

    The entry is named by its ``id`` when it has one (else by its position), and its
    ``image_id`` must be one of ``image_ids`` (the file's listed images).
    """
    what = f"annotation #{position}"
    if isinstance(annotation, dict) and isinstance(annotation.get("id"), int):
        what = f"annotation {annotation['id']}"
    reader = FieldReader(annotation, file=file, what=what)
    image_id = reader.integer("image_id")
    if image_id not in image_ids:
        raise reader.error(
            "image_id",
            f"is {image_id}, which no image in 'images' has",
            "the id of a listed image",
        )
    return reader, image_id
