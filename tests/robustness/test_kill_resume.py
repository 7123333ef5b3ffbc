"""kill -9 during ``vidpose train``, then ``--resume``: the run finishes, loses at most the
configured checkpoint interval, and leaves no temporary file behind (issue #21)."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

from vidpose.checkpoint import CheckpointError, load_checkpoint

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "synthetic_tiny.yaml"
EVERY = 3  # train.checkpoint_every_steps
EPOCHS = 10  # batch size 1: 4 steps per epoch on the world's data
STEPS = 4 * EPOCHS


def logged_steps(work: Path) -> list[int]:
    """The steps the metrics log recorded (a line cut by the kill is ignored)."""
    steps = []
    path = work / "metrics.jsonl"
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("kind") == "train":
            steps.append(int(record["step"]))
    return steps


def saved_step(work: Path) -> int:
    """The step ``--resume`` continues from: latest's, or previous's when latest does not
    read (the kill may have cut nothing but a .partial file; latest is then whole)."""
    for name in ("latest.safetensors", "previous.safetensors"):
        try:
            return int(load_checkpoint(work / name).trainer["step"])
        except (CheckpointError, FileNotFoundError):
            continue
    raise AssertionError(f"no readable checkpoint in {work}")


def test_kill_9_then_resume_loses_at_most_the_interval(world, vidpose, start_vidpose):
    work = world.scratch / "killed"
    settings = world.settings(
        world.data,
        **{
            "train.epochs": EPOCHS,
            "train.batch_size": 1,
            "train.checkpoint_every_steps": EVERY,
            "train.log_every": 1,
        },
    )
    process = start_vidpose("train", CONFIG, "--work-dir", work, "--device", "cpu", *settings)
    try:
        deadline = time.monotonic() + 90
        while not (work / "latest.safetensors").exists():
            assert process.poll() is None, "training ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 90 s"
            time.sleep(0.01)
        time.sleep(random.uniform(0.0, 1.0))  # a random step after the first checkpoint
        process.kill()  # SIGKILL: no handler runs
    finally:
        process.kill()
        process.wait()
    reached = max(logged_steps(work), default=0)
    resumed_from = saved_step(work)
    assert resumed_from >= reached - EVERY, (resumed_from, reached)
    assert resumed_from < STEPS, "the run finished before the kill: nothing was tested"
    print(f"killed at step {reached}, resuming from step {resumed_from}")

    ran = vidpose("train", CONFIG, "--work-dir", work, "--resume", "--device", "cpu", *settings)
    ran.succeeded()
    total = STEPS
    assert f"trained {total} steps" in ran.stdout
    assert load_checkpoint(work / "latest.safetensors").trainer["step"] == total
    leftovers = [*work.glob("*.partial"), *work.glob(".*.tmp"), *work.glob(".*partial*")]
    assert not leftovers, leftovers
    # the log goes on from the checkpoint: every step once after the resume point
    steps = logged_steps(work)
    assert steps[-1] == total and sorted(set(steps)) == list(range(1, total + 1))
