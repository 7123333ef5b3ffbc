"""Checkpoints: one safetensors file per checkpoint, loadable without executing code.

A checkpoint holds tensors under prefixes (``model/``, ``ema/``, ``optimizer/<param
index>/<key>``, ``rng/torch``) and everything else (optimizer hyper-parameters,
scheduler state, epoch, step, best metric, numpy and Python RNG states, the
resolved config) as JSON in the safetensors metadata. Nothing is unpickled, so a
checkpoint from an untrusted source cannot run code.

Writes are atomic: the file is written under a temporary name in the same folder
and renamed over the target, so a crash mid-write leaves the previous checkpoint.

The format sits on the ground floor, beside ``vidpose.config``: the trainer
(``vidpose.engine``) writes it and ``vidpose.inference.predictor.load_estimator``
reads it, so neither reaches into the other.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

FORMAT = "vidpose-checkpoint-1"


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


def save_checkpoint(checkpoint: Checkpoint, path: str | os.PathLike) -> Path:
    """Write ``checkpoint`` to ``path`` atomically (temporary file + rename)."""
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
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        save_file(tensors, temporary, metadata={"vidpose": json.dumps(metadata)})
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (no code is executed).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a vidpose checkpoint (the message says why).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw_metadata = (handle.metadata() or {}).get("vidpose")
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as error:  # safetensors raises its own error types
        raise ValueError(f"{path}: not a safetensors checkpoint ({error})") from None
    if raw_metadata is None:
        raise ValueError(
            f"{path}: safetensors file without vidpose metadata; for plain backbone weights "
            "use the config option model.backbone.checkpoint (ViTBackbone.load_checkpoint())"
        )
    metadata = json.loads(raw_metadata)
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path}: format {metadata.get('format')!r}, expected {FORMAT!r}")

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
