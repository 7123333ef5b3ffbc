"""Checkpoints: one safetensors file per checkpoint, loadable without executing code.

A checkpoint holds tensors under prefixes (``model/``, ``ema/``, ``optimizer/<param
index>/<key>``, ``rng/torch``) and everything else (optimizer hyper-parameters,
scheduler state, epoch, step, best metric, numpy and Python RNG states, the
resolved config) as JSON in the safetensors metadata. Nothing is unpickled, so a
checkpoint from an untrusted source cannot run code.

Writes are atomic: the file is written under a visible temporary name in the same
folder (``<name>.<pid>.partial``, created with the user's umask like any file), flushed
to the disk and renamed over the target, so a crash mid-write leaves the previous
checkpoint; a kill can leave the ``.partial`` file behind, which the trainer removes when
it next starts (:func:`remove_partial_files`). With ``previous=`` the file being
replaced is kept under that name until the new one is complete, for a reader to fall
back to.

The format sits on the ground floor, beside ``vidpose.config``: the trainer
(``vidpose.engine``) writes it and ``vidpose.inference.predictor.load_estimator``
reads it, so neither reaches into the other.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open

from vidpose.runtime import InputError

FORMAT = "vidpose-checkpoint-1"
PARTIAL_SUFFIX = ".partial"


class CheckpointError(InputError):
    """A file that is not a readable vidpose checkpoint (truncated, not safetensors, no
    vidpose metadata, non-finite weights); the message names the file and says why."""


@dataclass
class Checkpoint:
    """What a checkpoint file holds, split by owner."""

    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor] | None = None
    optimizer: dict[str, Any] | None = None  # an optimizer.state_dict()
    scheduler: dict[str, Any] | None = None  # a scheduler.state_dict() (JSON-able)
    trainer: dict[str, Any] = field(default_factory=dict)  # epoch, step, best metric, ...
    rng: dict[str, Any] | None = None  # from capture_rng_state()
    config: dict[str, Any] | None = None  # the resolved config as a plain dict


def capture_rng_state() -> dict[str, Any]:
    """RNG states of torch (CPU), numpy's global generator and Python's random."""
    numpy_state = np.random.get_state()  # noqa: NPY002 (the legacy global state is what we save)
    python_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
        "python": [python_state[0], list(python_state[1]), python_state[2]],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))  # noqa: NPY002
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def save_checkpoint(
    checkpoint: Checkpoint,
    path: str | os.PathLike,
    *,
    previous: str | os.PathLike | None = None,
) -> Path:
    """Write ``checkpoint`` to ``path`` atomically (temporary file, fsync, rename).

    Args:
        previous: where the file now at ``path`` is kept once the new one is complete
            (e.g. ``previous.safetensors`` beside ``latest.safetensors``); None: replaced.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for name, tensor in checkpoint.model.items():
        tensors[f"model/{name}"] = tensor
    for name, tensor in (checkpoint.ema or {}).items():
        tensors[f"ema/{name}"] = tensor
    metadata: dict[str, Any] = {
        "format": FORMAT,
        "trainer": checkpoint.trainer,
        "scheduler": checkpoint.scheduler,
        "config": checkpoint.config,
        "has_ema": checkpoint.ema is not None,
    }
    if checkpoint.optimizer is not None:
        scalars: dict[str, dict[str, Any]] = {}
        for index, state in checkpoint.optimizer["state"].items():
            for key, value in state.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optimizer/{index}/{key}"] = value
                else:
                    scalars.setdefault(str(index), {})[key] = value
        metadata["optimizer"] = {
            "param_groups": checkpoint.optimizer["param_groups"],
            "scalars": scalars,
            "indices": [str(index) for index in checkpoint.optimizer["state"]],
        }
    if checkpoint.rng is not None:
        tensors["rng/torch"] = checkpoint.rng["torch"]
        metadata["rng"] = {key: value for key, value in checkpoint.rng.items() if key != "torch"}
    # safetensors refuses shared or non-contiguous storage: store independent copies.
    tensors = {name: tensor.detach().cpu().contiguous().clone() for name, tensor in tensors.items()}
    if path.exists() and not path.is_file():
        raise IsADirectoryError(errno.EISDIR, "is not a regular file", str(path))
    temporary = path.with_name(f"{path.name}.{os.getpid()}{PARTIAL_SUFFIX}")
    try:
        write_safetensors(tensors, temporary, {"vidpose": json.dumps(metadata)})
        if previous is not None and path.is_file():
            _keep_as(path, Path(previous))
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    return path


# torch dtype -> safetensors dtype name (the dtypes a vidpose checkpoint holds)
_SAFETENSORS_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}  # fmt: skip


def write_safetensors(
    tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]
) -> None:
    """Write ``tensors`` in the safetensors format to ``path`` itself, tensor by tensor,
    and fsync it.

    ``safetensors.torch.save_file`` writes to a hidden temporary file of its own (mode
    0600, whatever the umask) and renames it: a kill mid-write leaves a full-size hidden
    file no one cleans up, and every checkpoint is unreadable to the user's group. The
    format is simple enough to write here (an 8-byte little-endian header length, the
    JSON header padded with spaces to 8 bytes, the tensors' bytes back to back), into a
    file created like any other; ``safe_open`` reads it back.
    """
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for name, tensor in tensors.items():
        if tensor.dtype not in _SAFETENSORS_DTYPES:
            raise TypeError(f"{name}: dtype {tensor.dtype} cannot be stored in a checkpoint")
        size = tensor.numel() * tensor.element_size()
        header[name] = {
            "dtype": _SAFETENSORS_DTYPES[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as handle:
        handle.write(len(encoded).to_bytes(8, "little"))
        handle.write(encoded)
        for tensor in tensors.values():
            if tensor.numel():
                # raw bytes in memory order (little-endian on every platform torch ships)
                handle.write(tensor.reshape(-1).view(torch.uint8).numpy().data)
        handle.flush()
        # the rename that follows must not publish a file whose bytes are still only in
        # the page cache: a power loss would leave an empty checkpoint under the name
        os.fsync(handle.fileno())


def _keep_as(path: Path, previous: Path) -> None:
    """Make ``previous`` the file now at ``path``, leaving ``path`` in place: a hard link
    (no copy, and ``path`` never disappears), or a rename where the file system has no
    hard links (``path`` is then missing until the caller renames the new file over it,
    and a reader falls back to ``previous``)."""
    staged = previous.with_name(f"{previous.name}.{os.getpid()}{PARTIAL_SUFFIX}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(staged)
    try:
        os.link(path, staged)
        os.replace(staged, previous)
    except OSError:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staged)
        os.replace(path, previous)


def remove_partial_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the ``*.partial`` files a killed writer left in ``folder``; returns them.

    Only for a folder one process writes checkpoints to (a training run's work dir):
    a ``.partial`` file of a writer still running would go too.
    """
    removed = []
    for leftover in sorted(Path(folder).glob(f"*{PARTIAL_SUFFIX}")):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
            removed.append(leftover)
    return removed


def non_finite_tensors(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding a NaN or an infinity."""
    return [
        name
        for name, tensor in tensors.items()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]


def check_finite(checkpoint: Checkpoint, path: str | os.PathLike) -> None:
    """Refuse a checkpoint whose weights (model, EMA) or optimizer state hold NaN or
    infinite values: a model loaded from it would predict NaN everywhere.

    Raises:
        CheckpointError: naming the file, how many tensors and the first of them.
    """
    sections = {"model": checkpoint.model, "ema": checkpoint.ema or {}}
    for index, state in ((checkpoint.optimizer or {}).get("state") or {}).items():
        sections[f"optimizer/{index}"] = {
            key: value for key, value in state.items() if isinstance(value, torch.Tensor)
        }
    bad = [
        f"{section}/{name}" for section, tensors in sections.items()
        for name in non_finite_tensors(tensors)
    ]  # fmt: skip
    if bad:
        raise CheckpointError(
            f"{path}: {len(bad)} tensors hold NaN or infinite values (first: {bad[0]}); the "
            "run that wrote it had diverged or the file is damaged, expected finite weights"
        )


def load_checkpoint(path: str | os.PathLike, *, finite: bool = True) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (no code is executed).

    Args:
        finite: refuse weights or optimizer state with NaN or infinite values
            (:func:`check_finite`); False reads them as they are (to inspect a
            damaged file).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: the file is not a vidpose checkpoint, is truncated, or holds
            non-finite values (the message says why); a ``ValueError``.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, expected a .safetensors checkpoint file")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw_metadata = (handle.metadata() or {}).get("vidpose")
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as error:  # safetensors raises its own error types
        reason = " ".join(str(error).split()) or type(error).__name__
        raise CheckpointError(
            f"{path}: not a readable safetensors checkpoint ({reason}); truncated or not a "
            "checkpoint, expected a file written by vidpose train or import-weights"
        ) from None
    if raw_metadata is None:
        raise CheckpointError(
            f"{path}: safetensors file without vidpose metadata; for plain backbone weights "
            "use the config option model.backbone.checkpoint (ViTBackbone.load_checkpoint())"
        )
    try:
        metadata = json.loads(raw_metadata)
    except ValueError:
        raise CheckpointError(f"{path}: its vidpose metadata is not valid JSON") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        shown = metadata.get("format") if isinstance(metadata, dict) else None
        raise CheckpointError(f"{path}: format {shown!r}, expected {FORMAT!r}")
    try:
        checkpoint = _checkpoint_from(metadata, tensors)
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"{path}: its vidpose metadata is incomplete ({type(error).__name__}: {error})"
        ) from None
    if finite:
        check_finite(checkpoint, path)
    return checkpoint


def _checkpoint_from(metadata: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Checkpoint:
    """The :class:`Checkpoint` of a file's parsed metadata and tensors."""

    def section(prefix: str) -> dict[str, torch.Tensor]:
        return {
            name[len(prefix) :]: tensor
            for name, tensor in tensors.items()
            if name.startswith(prefix)
        }

    optimizer = None
    if "optimizer" in metadata:
        saved = metadata["optimizer"]
        state: dict[int, dict[str, Any]] = {}
        for index in saved["indices"]:
            entry = dict(saved["scalars"].get(index, {}))
            entry.update(section(f"optimizer/{index}/"))
            state[int(index)] = entry
        optimizer = {"state": state, "param_groups": saved["param_groups"]}
    rng = None
    if "rng" in metadata:
        rng = {"torch": tensors["rng/torch"], **metadata["rng"]}
    return Checkpoint(
        model=section("model/"),
        ema=section("ema/") if metadata.get("has_ema") else None,
        optimizer=optimizer,
        scheduler=metadata.get("scheduler"),
        trainer=metadata.get("trainer") or {},
        rng=rng,
        config=metadata.get("config"),
    )
