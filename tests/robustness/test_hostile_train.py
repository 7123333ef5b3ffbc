"""``vidpose train`` and ``vidpose config`` on hostile input, each in a subprocess: one
error line naming the file, the documented exit status, no traceback, finished work
intact."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "synthetic_tiny.yaml"


def train_file(root: Path) -> Path:
    (path,) = sorted((root / "posetrack_data" / "train").glob("*.json"))
    return path


def test_every_bad_annotation_and_image_is_reported_at_once(world, vidpose):
    """Five malformed annotation files and three bad images: one run lists them all
    before the first step; the checkpoint already in the work dir is left alone."""
    root = world.copy_data("broken")
    good = train_file(root)
    content = json.loads(good.read_text())
    folder = good.parent

    def variant(name: str, change) -> None:
        copy = json.loads(json.dumps(content))
        change(copy)
        (folder / name).write_text(json.dumps(copy))

    def nan(copy):
        copy["annotations"][0]["keypoints"][0] = float("nan")

    def short(copy):
        copy["annotations"][0]["keypoints"] = copy["annotations"][0]["keypoints"][:50]

    def text(copy):
        copy["annotations"][0]["keypoints"][3] = "12.5"

    def duplicate(copy):
        copy["images"][1]["id"] = copy["images"][0]["id"]

    variant("a_nan.json", nan)
    variant("b_count.json", short)
    variant("c_text.json", text)
    variant("d_dupid.json", duplicate)
    (folder / "e_empty.json").write_text("")
    images = root / "images" / "train" / good.stem
    (images / "000001.jpg").unlink()
    truncated = images / "000002.jpg"
    truncated.write_bytes(truncated.read_bytes()[:200])
    (images / "000003.jpg").write_bytes(os.urandom(900))

    work = world.copy_run("broken_run")
    before = world.digest(work / "latest.safetensors")
    ran = vidpose("train", CONFIG, "--work-dir", work, "--device", "cpu",
                  *world.settings(root, **{"data.check_images": "decode"}))  # fmt: skip
    line = ran.refused(2, "problems in the data of")
    assert "a_nan.json" in line  # the first problem is on the error line
    for name in ("a_nan.json", "b_count.json", "c_text.json", "d_dupid.json", "e_empty.json",
                 "000001.jpg", "000002.jpg", "000003.jpg"):  # fmt: skip
        assert name in ran.stderr, f"{name} not reported:\n{ran.stderr}"
    assert "is nan" in ran.stderr and "listed twice" in ran.stderr
    assert world.digest(work / "latest.safetensors") == before  # finished work intact


@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.batch_size=0", "train.batch_size"),
        ("train.epochs=-5", "train.epochs"),
        ("train.lr=nan", "train.lr"),
        ("data.input_size=[0,48]", "data.input_size"),
    ],
)
def test_impossible_numbers_are_refused_before_anything_runs(world, vidpose, override, expected):
    work = world.scratch / f"never_{expected}"
    ran = vidpose(
        "train", CONFIG, "--work-dir", work, *world.settings(world.data), "--set", override
    )
    ran.refused(2, str(CONFIG), expected)
    assert not work.exists()


def test_config_command_refuses_a_broken_yaml_and_unknown_keys(world, vidpose):
    broken = world.scratch / "broken.yaml"
    broken.write_text("data: [unclosed\n")
    vidpose("config", broken).refused(2, str(broken))
    vidpose("config", CONFIG, "--set", "train.nope=1").refused(2, str(CONFIG), "train.nope")
    missing = world.scratch / "missing.yaml"
    vidpose("config", missing).refused(2, str(missing), "not found")


def test_unknown_device_and_output_folders_that_cannot_be(world, vidpose):
    """--device gpu is a user error (2); a work dir that is a file, or lies under one,
    an output error naming that path (3)."""
    common = ("train", CONFIG, *world.settings(world.data))
    ran = vidpose(*common, "--work-dir", world.scratch / "w_gpu", "--device", "gpu")
    ran.refused(2, "--device 'gpu'")
    a_file = world.scratch / "a_file"
    a_file.write_text("not a folder\n")
    vidpose(*common, "--work-dir", a_file, "--device", "cpu").refused(3, str(a_file))
    ran = vidpose(*common, "--work-dir", a_file / "run", "--device", "cpu")
    ran.refused(3, str(a_file), "is a file")
    assert a_file.read_text() == "not a folder\n"


def test_a_read_only_work_dir_is_an_output_error(world, vidpose):
    if os.geteuid() == 0:
        pytest.skip("running as root: a read-only mode does not stop root from writing")
    work = world.scratch / "read_only"
    work.mkdir()
    work.chmod(0o500)
    try:
        ran = vidpose("train", CONFIG, "--work-dir", work, "--device", "cpu",
                      *world.settings(world.data))  # fmt: skip
        ran.refused(3, str(work))
    finally:
        work.chmod(0o700)


def test_resume_from_unreadable_checkpoints(world, vidpose):
    """--resume: a truncated latest with no previous is refused naming the file (2); with
    a readable previous the run goes on from it (a warning says so)."""
    work = world.copy_run("resume_truncated")
    latest = work / "latest.safetensors"
    latest.write_bytes(latest.read_bytes()[:1000])
    common = ("train", CONFIG, "--work-dir", work, "--resume", "--device", "cpu")
    vidpose(*common, *world.settings(world.data)).refused(2, str(latest))

    work = world.copy_run("resume_fallback")
    (work / "latest.safetensors").rename(work / "previous.safetensors")
    (work / "latest.safetensors").write_bytes(os.urandom(4096))
    ran = vidpose("train", CONFIG, "--work-dir", work, "--resume", "--device", "cpu",
                  *world.settings(world.data, **{"train.max_steps": 2}))  # fmt: skip
    ran.succeeded()
    assert "resuming from" in ran.stderr and "previous.safetensors" in ran.stderr
    assert "trained 2 steps" in ran.stdout
    # the previous checkpoint was replaced only by a complete new one
    from vidpose.checkpoint import load_checkpoint

    assert load_checkpoint(work / "latest.safetensors").trainer["step"] == 2
    assert not list(work.glob("*.partial")) and not list(work.glob(".*.tmp"))


def test_an_unreadable_image_mid_training_stops_with_status_4(world, vidpose):
    """An image that exists but does not decode passes the 'exists' check; with
    train.on_bad_image: stop the run stops when a step reads it (status 4), naming it."""
    root = world.copy_data("bad_mid_training")
    images = root / "images" / "train" / train_file(root).stem
    (images / "000001.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    ran = vidpose("train", CONFIG, "--work-dir", world.scratch / "stopped", "--device", "cpu",
                  *world.settings(root, **{"train.on_bad_image": "stop"}))  # fmt: skip
    ran.refused(4, "000001.jpg", "train.on_bad_image: stop")
