"""Fixtures of the hostile-input suite (issue #21): a tiny synthetic dataset, a micro
checkpoint trained on it, and a runner of ``python -m vidpose`` in a subprocess.

Every test here runs the command as a user would, in its own process, and checks what
the user sees: the exit status, exactly one ``error:`` line on stderr naming the file
that was wrong, no traceback, and that finished work is still there.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "synthetic_tiny.yaml"

# A micro version of configs/synthetic_tiny.yaml: one step takes a few milliseconds.
MICRO = {
    "data.input_size": "[64,48]",
    "data.num_workers": 0,
    "model.backbone.embed_dim": 32,
    "model.backbone.depth": 1,
    "model.backbone.num_heads": 2,
    "model.decoder_dim": 16,
    "model.diffusion.hypotheses": 1,
    "train.batch_size": 2,
    "train.epochs": 1,
    "train.warmup_steps": 1,
    "train.val_every": 0,
    "train.log_every": 1,
    "test.batch_size": 8,
}


@dataclass
class Ran:
    """A finished ``vidpose`` subprocess."""

    args: list[str]
    status: int
    stdout: str
    stderr: str

    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if ": error: " in line]

    def refused(self, status: int, *names: str) -> str:
        """Assert the command failed as every command must: ``status``, no traceback,
        exactly one ``vidpose COMMAND: error:`` line, naming each of ``names``.
        Returns the error line."""
        shown = f"vidpose {' '.join(self.args)}\nstatus {self.status}\nstderr:\n{self.stderr}"
        assert "Traceback" not in self.stderr, shown
        lines = self.error_lines()
        assert len(lines) == 1, shown
        assert lines[0].startswith(f"vidpose {self.args[0]}: error: "), shown
        for name in names:
            assert name in lines[0], f"{name!r} not in the error line\n{shown}"
        assert self.status == status, shown
        return lines[0]

    def succeeded(self) -> None:
        shown = f"vidpose {' '.join(self.args)}\nstatus {self.status}\nstderr:\n{self.stderr}"
        assert self.status == 0, shown
        assert "Traceback" not in self.stderr and not self.error_lines(), shown


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        MPLBACKEND="Agg",
        HF_HUB_OFFLINE="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
    )
    return env


@pytest.fixture(scope="session")
def vidpose(tmp_path_factory) -> Callable[..., Ran]:
    """Run ``python -m vidpose ARGS`` (in a scratch folder) and return what it did."""
    cwd = tmp_path_factory.mktemp("cwd")

    def run(*args: object, timeout: float = 120) -> Ran:
        words = [str(arg) for arg in args]
        done = subprocess.run(
            [sys.executable, "-m", "vidpose", *words],
            capture_output=True,
            text=True,
            cwd=cwd,
            env=subprocess_env(),
            timeout=timeout,
        )
        return Ran(words, done.returncode, done.stdout, done.stderr)

    return run


@pytest.fixture(scope="session")
def start_vidpose(tmp_path_factory) -> Callable[..., subprocess.Popen]:
    """Start ``python -m vidpose ARGS`` in the background (output to files in a scratch
    folder); the caller waits for or kills it."""
    cwd = tmp_path_factory.mktemp("cwd_background")

    def start(*args: object) -> subprocess.Popen:
        words = [str(arg) for arg in args]
        return subprocess.Popen(
            [sys.executable, "-m", "vidpose", *words],
            stdout=open(cwd / "stdout.txt", "w"),  # noqa: SIM115 (closed with the process)
            stderr=open(cwd / "stderr.txt", "w"),  # noqa: SIM115
            cwd=cwd,
            env=subprocess_env(),
        )

    return start


@dataclass
class World:
    """The shared inputs: ``data`` a synthetic dataset (one 4-frame video per split),
    ``checkpoint`` a micro model trained one step on it, ``scratch`` a folder for
    corrupted copies."""

    data: Path
    checkpoint: Path
    scratch: Path
    config: Path = CONFIG

    @staticmethod
    def settings(root: Path, **extra: object) -> list[str]:
        """``--set KEY=VALUE`` arguments: the micro model on the dataset at ``root``."""
        values = {"data.root": str(root), **MICRO, **extra}
        return [word for key, value in values.items() for word in ("--set", f"{key}={value}")]

    @staticmethod
    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    def copy_data(self, name: str) -> Path:
        """A copy of the dataset to corrupt."""
        target = self.scratch / name
        shutil.copytree(self.data, target)
        return target

    def copy_run(self, name: str) -> Path:
        """A copy of the trained run's work dir."""
        target = self.scratch / name
        shutil.copytree(self.checkpoint.parent, target)
        return target


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> World:
    from vidpose.config import load_config
    from vidpose.data.synthetic import generate_dataset
    from vidpose.engine.trainer import train

    base = tmp_path_factory.mktemp("hostile")
    data = generate_dataset(
        base / "data", videos=1, frames=4, persons=1, size=(96, 72), seed=5, progress=False
    )
    overrides = [f"{key}={value}" for key, value in MICRO.items()]
    config = load_config(CONFIG, [f"data.root={data}", *overrides, "train.max_steps=1"])
    result = train(config, base / "run", device="cpu", show_progress=False)
    scratch = base / "scratch"
    scratch.mkdir()
    return World(Path(data), result.checkpoint, scratch)
