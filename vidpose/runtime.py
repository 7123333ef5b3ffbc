"""How a command meets its surroundings: the errors it fails with, the device it runs
on, and the folders it writes.

Every ``vidpose`` command fails the same way (``vidpose.cli.main``): one line,
``vidpose COMMAND: error: FILE: what was expected``, no traceback, and an exit status
that says which kind of failure it was (docs/getting_started.md, "Exit statuses"):

====  ==============================================================================
0     done
1     done, but some items failed (``extract``: a video could not be read); the
      others are finished
2     bad input: an option, a config value, an annotation, image, boxes or
      checkpoint file (:class:`InputError` and the readers' own errors)
3     an output could not be written: a read-only or full folder, a file where a
      folder belongs (:class:`OutputError`, naming the path that failed)
4     a long run stopped early with its finished work saved (:class:`RunStopped`:
      the training loss diverged, or an unreadable image with
      ``train.on_bad_image: stop``)
70    an internal error, a bug: the traceback is printed above the error line
130   interrupted (Ctrl-C); training writes a checkpoint first
====  ==============================================================================

The classes live on the ground floor so that every layer can raise them; the readers
keep their own (``AnnotationError``, ``EvaluationInputError``, ``ConfigError``,
``CheckpointError``, ...), which derive from :class:`InputError`. :func:`exit_status`
maps an exception to its status; an exception it does not know is a bug (70), never
dressed up as a user error.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_INPUT = 2
EXIT_OUTPUT = 3
EXIT_STOPPED = 4
EXIT_INTERNAL = 70  # EX_SOFTWARE of sysexits.h
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


class InputError(ValueError):
    """What the user gave is wrong: a file, an option or a value (exit status 2).

    Args:
        message: one line, ``FILE: what was wrong, expected what``.
        details: further lines (e.g. every problem a dataset check found), printed
            under the error line.
    """

    def __init__(self, message: str, details: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.details = list(details)


class OutputError(OSError):
    """An output could not be written: the message names the path that failed, not the
    input (exit status 3)."""


class RunStopped(RuntimeError):
    """A long run stopped before its end with its finished work saved; the message says
    why and where the work is (exit status 4)."""


# Errors of the operating system that say the output side is full or read-only.
_OUTPUT_ERRNOS = frozenset(
    code for code in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EROFS) if code is not None
)


def exit_status(error: BaseException) -> int:
    """The exit status a command ends with when ``error`` stops it (the table above).

    :class:`InputError` (and the readers' errors derived from it) is 2,
    :class:`OutputError` 3, :class:`RunStopped` 4, ``KeyboardInterrupt`` 130. An
    ``OSError`` raised outside :func:`writing` is about a path the user named (a missing
    file, a folder where a file belongs, an unreadable image): 2, or 3 when the system
    says the disk is full or read-only. Anything else is an internal error: 70.
    """
    if isinstance(error, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(error, InputError):
        return EXIT_INPUT
    if isinstance(error, OutputError):
        return EXIT_OUTPUT
    if isinstance(error, RunStopped):
        return EXIT_STOPPED
    if isinstance(error, OSError):
        return EXIT_OUTPUT if error.errno in _OUTPUT_ERRNOS else EXIT_INPUT
    return EXIT_INTERNAL


def error_message(error: BaseException) -> str:
    """The text of a user-facing error: ``FILE: what was wrong`` for an ``OSError`` that
    carries a file name (``[Errno 2] No such file ...: 'x'`` becomes ``x: No such file
    ...``), else ``str(error)``; never raises (an object whose ``str`` fails is shown by
    its type)."""
    try:
        if isinstance(error, OSError) and error.filename is not None and error.strerror:
            return f"{error.filename}: {error.strerror}"
        text = str(error)
    except Exception:  # a broken __str__ must not hide the error being reported
        text = ""
    return text or type(error).__name__


# --------------------------------------------------------------------------- output folders


def output_error(error: OSError, path: str | os.PathLike, what: str = "output") -> OutputError:
    """``error`` (raised while writing ``path``) as an :class:`OutputError` naming the
    path the system refused (``error.filename`` when it has one) and why."""
    if isinstance(error, OutputError):
        return error
    failed = error.filename if error.filename is not None else path
    reason = error.strerror or str(error) or type(error).__name__
    if error.errno == errno.ENOTDIR or isinstance(error, NotADirectoryError):
        blocking = _file_in_the_way(Path(failed))
        if blocking is not None:
            return OutputError(f"{blocking}: is a file, so {what} {failed} cannot be created there")
    return OutputError(f"{failed}: cannot write {what}: {reason}")


@contextlib.contextmanager
def writing(path: str | os.PathLike, what: str = "output") -> Iterator[None]:
    """Turn an ``OSError`` raised inside the block into an :class:`OutputError` that
    names the path (for blocks that only write: a missing input read in here would be
    reported as an output failure)."""
    try:
        yield
    except OutputError:
        raise
    except OSError as error:
        raise output_error(error, path, what) from error


def prepare_output_folder(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Create ``path`` (and its parents) and make sure a file can be written in it, before
    any long work starts.

    Raises:
        OutputError: ``path`` is a file, lies under a file, cannot be created, is
            read-only, or its device has no space left; the message names the path.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path}: {what} is a file, expected a folder")
    with writing(path, what):
        path.mkdir(parents=True, exist_ok=True)
    # A test write: a read-only folder (or file system) fails here, not after the work.
    probe = path / f".vidpose-write-test-{os.getpid()}"
    try:
        with open(probe, "wb") as handle:
            handle.write(b"\0")
    except OSError as error:
        raise output_error(error, path, what) from error
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    if shutil.disk_usage(path).free == 0:
        raise OutputError(f"{path}: cannot write {what}: no space left on the device")
    return path


def _file_in_the_way(path: Path) -> Path | None:
    """The nearest ancestor of ``path`` (or ``path`` itself) that exists and is not a
    folder: what stops a folder from being created there."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return None if candidate.is_dir() else candidate
    return None


# --------------------------------------------------------------------------- device


def resolve_device(requested: str | None, option: str = "--device") -> str:
    """The torch device a command runs on: ``requested`` checked, or CUDA where torch has
    it, else the CPU.

    Raises:
        InputError: a name torch does not know (``gpu``), a device type vidpose does
            not run on, CUDA without a CUDA device, or a CUDA index past the last device.
    """
    import torch

    if requested is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(requested)
    except (RuntimeError, ValueError, TypeError):
        raise InputError(
            f"{option} {requested!r}: not a device torch knows, expected cpu, cuda or cuda:N"
        ) from None
    if device.type == "cpu":
        return str(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "has no CUDA support" if torch.version.cuda is None else "finds no CUDA device"
            raise InputError(
                f"{option} {requested}: CUDA is not available (this torch build {why}); "
                f"use {option} cpu"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise InputError(
                f"{option} {requested}: there are {count} CUDA devices, expected "
                f"cuda:0..cuda:{count - 1}"
            )
        return str(device)
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise InputError(f"{option} {requested}: MPS is not available on this machine")
        return str(device)
    raise InputError(f"{option} {requested}: vidpose runs on cpu or cuda, got {device.type!r}")
