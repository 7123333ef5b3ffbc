"""``vidpose test``, ``eval``, ``extract``, ``visualize``, ``synth`` and ``demo`` on hostile
input, each in a subprocess: one error line naming the file, the documented exit status,
no traceback; wrong-but-readable input gives a warning with counts, not a silent result.
An internal error (a bug) is never dressed up as a user error."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "synthetic_tiny.yaml"


def val_file(root: Path) -> Path:
    (path,) = sorted((root / "posetrack_data" / "val").glob("*.json"))
    return path


def strict_json(path: Path):
    """The file parsed as JSON proper: a bare NaN or Infinity fails."""

    def refuse(token: str):
        raise ValueError(f"{path}: bare {token} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


# --------------------------------------------------------------------------- vidpose test


def test_test_refuses_bad_ground_truth_before_predicting(world, vidpose):
    """A repeated track id in a frame and a missing image: both reported, nothing
    predicted."""
    root = world.copy_data("bad_val")
    path = val_file(root)
    content = json.loads(path.read_text())
    first = content["annotations"][0]
    twin = dict(first, id=first["id"] + 1)
    content["annotations"].insert(1, twin)  # same frame, same track id
    path.write_text(json.dumps(content))
    (root / "images" / "val" / path.stem / "000002.jpg").unlink()
    out = world.scratch / "bad_val_predictions"
    ran = vidpose("test", CONFIG, "--checkpoint", world.checkpoint, "--out", out,
                  "--device", "cpu", *world.settings(root))  # fmt: skip
    ran.refused(2, "problems in the validation split")
    assert "track_id" in ran.stderr and "000002.jpg" in ran.stderr
    assert not list(out.glob("*.json"))


def test_test_refuses_missing_and_malformed_boxes_files(world, vidpose):
    common = ("test", CONFIG, "--checkpoint", world.checkpoint, "--device", "cpu")
    missing = world.scratch / "no_boxes.json"
    vidpose(*common, "--boxes", missing, *world.settings(world.data)).refused(2, str(missing))
    malformed = world.scratch / "malformed_boxes.json"
    malformed.write_text('[{"image_id": 1, "category_id": 1, "bbox": [1, 2], "score": 1}]')
    ran = vidpose(*common, "--boxes", malformed, *world.settings(world.data))
    ran.refused(2, str(malformed), "'bbox'")


def test_test_warns_about_boxes_that_can_find_no_one_and_writes_strict_json(world, vidpose):
    """Zero-size boxes and boxes outside the image: warnings with counts (not a silent
    table of zeros); the --json metrics hold no bare NaN."""
    content = json.loads(val_file(world.data).read_text())
    detections = []
    for annotation in content["annotations"]:
        x, y, w, h = annotation["bbox"]
        image = annotation["image_id"]
        detections.append({"image_id": image, "category_id": 1, "bbox": [x, y, w, h], "score": 1})
        detections.append({"image_id": image, "category_id": 1, "bbox": [x, y, 0, h], "score": 1})
        detections.append({"image_id": image, "category_id": 1, "bbox": [5000, 10, 20, 40],
                           "score": 0.9})  # fmt: skip
    boxes = world.scratch / "odd_boxes.json"
    boxes.write_text(json.dumps(detections))
    metrics = world.scratch / "metrics" / "test.json"
    n = len(content["annotations"])
    ran = vidpose("test", CONFIG, "--checkpoint", world.checkpoint, "--boxes", boxes,
                  "--json", metrics, "--out", world.scratch / "odd_predictions",
                  "--device", "cpu", *world.settings(world.data))  # fmt: skip
    ran.succeeded()
    assert f"{boxes}: {n} of {3 * n} detections have zero width or height" in ran.stderr
    assert f"{boxes}: {n} of {2 * n} detections lie wholly outside their image" in ran.stderr
    summary = strict_json(metrics)
    assert "mAP" in summary


def test_test_refuses_bad_checkpoints_devices_and_output_folders(world, vidpose):
    common = ("test", CONFIG, *world.settings(world.data))
    garbage = world.scratch / "garbage.safetensors"
    garbage.write_bytes(os.urandom(2048))
    vidpose(*common, "--checkpoint", garbage, "--device", "cpu").refused(2, str(garbage))
    missing = world.scratch / "missing.safetensors"
    vidpose(*common, "--checkpoint", missing, "--device", "cpu").refused(2, str(missing))
    ran = vidpose(*common, "--checkpoint", world.checkpoint, "--device", "gpu")
    ran.refused(2, "--device 'gpu'")
    a_file = world.scratch / "predictions_file"
    a_file.write_text("x")
    ran = vidpose(*common, "--checkpoint", world.checkpoint, "--device", "cpu", "--out", a_file)
    ran.refused(3, str(a_file))


# --------------------------------------------------------------------------- vidpose eval


def test_coco_eval_refuses_non_finite_and_short_keypoints(world, vidpose):
    ground_truth = world.data / "coco" / "val.json"
    people = json.loads(ground_truth.read_text())["annotations"]

    def results(name: str, keypoints) -> Path:
        path = world.scratch / name
        rows = [{"image_id": p["image_id"], "category_id": 1, "keypoints": keypoints,
                 "score": 1.0} for p in people]  # fmt: skip
        path.write_text(json.dumps(rows))  # NaN written as the bare token, as numpy users do
        return path

    all_nan = results("nan_results.json", [math.nan] * 51)
    vidpose("eval", ground_truth, all_nan, "--coco").refused(2, str(all_nan))
    short = results("short_results.json", [10.0, 20.0, 1.0])
    vidpose("eval", ground_truth, short, "--coco").refused(2, str(short), "keypoints")
    missing = world.scratch / "no_predictions"
    ran = vidpose("eval", world.data / "posetrack_data" / "val", missing)
    ran.refused(2, str(missing))


# --------------------------------------------------------------------------- vidpose extract


def test_extract_warns_about_box_files_that_find_no_one(world, vidpose):
    """A PoseTrack file without 'bbox' and a file of boxes outside the frames: each video
    is extracted and a warning counts the boxes that could not be used."""
    videos = world.scratch / "extract_videos"
    videos.mkdir()
    boxes = world.scratch / "extract_boxes"
    boxes.mkdir()
    train_video = next((world.data / "videos" / "train").glob("*.mp4"))
    val_video = next((world.data / "videos" / "val").glob("*.mp4"))
    for video in (train_video, val_video):
        (videos / video.name).symlink_to(video)
    ground_truth = json.loads(val_file(world.data).read_text())
    for annotation in ground_truth["annotations"]:
        del annotation["bbox"]
    (boxes / f"{val_video.stem}.json").write_text(json.dumps(ground_truth))
    outside = [{"image_id": frame, "bbox": [900, 900, 30, 60], "score": 1.0} for frame in range(4)]
    (boxes / f"{train_video.stem}.json").write_text(json.dumps(outside))
    finished = world.scratch / "extract_out"
    ran = vidpose("extract", videos, "--checkpoint", world.checkpoint, "--boxes", boxes,
                  "--out", finished, "--device", "cpu", "--no-progress")  # fmt: skip
    ran.succeeded()
    n = len(ground_truth["annotations"])
    assert f"{n} of {n} annotations have no 'bbox'" in ran.stderr
    assert "4 of 4 boxes lie wholly outside the 96 x 72 frames" in ran.stderr
    assert (finished / f"{val_video.stem}.done").is_file()

    # finished work survives a run refused for its output folder
    done = (finished / f"{val_video.stem}.json").read_bytes()
    a_file = world.scratch / "extract_file"
    a_file.write_text("x")
    ran = vidpose("extract", val_video, "--checkpoint", world.checkpoint, "--single-person",
                  "--out", a_file, "--device", "cpu")  # fmt: skip
    ran.refused(3, str(a_file))
    assert (finished / f"{val_video.stem}.json").read_bytes() == done


# --------------------------------------------------------------------------- visualize, synth, demo


def test_visualize_refuses_bad_checkpoints_and_output_folders(world, vidpose):
    garbage = world.scratch / "vis_garbage.safetensors"
    garbage.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    ran = vidpose("visualize", "--checkpoint", garbage, "--dataset", CONFIG, "--index", "0",
                  *world.settings(world.data))  # fmt: skip
    ran.refused(2, str(garbage))
    a_file = world.scratch / "vis_file"
    a_file.write_text("x")
    ran = vidpose("visualize", "--checkpoint", world.checkpoint, "--dataset", CONFIG,
                  "--index", "0", "--out", a_file / "search", "--device", "cpu",
                  *world.settings(world.data))  # fmt: skip
    ran.refused(3, str(a_file))


def test_synth_refuses_impossible_numbers_and_a_file_as_folder(world, vidpose):
    vidpose("synth", world.scratch / "s0", "--videos", "0").refused(2, "videos must be at least 1")
    a_file = world.scratch / "synth_file"
    a_file.write_text("x")
    vidpose("synth", a_file).refused(3, str(a_file))
    vidpose("synth", world.data).refused(2, str(world.data), "not empty")


def test_demo_refuses_unknown_devices_and_a_file_as_folder(world, vidpose):
    vidpose("demo", "--quick", "--device", "gpu", "--out", world.scratch / "d").refused(
        2, "--device 'gpu'"
    )
    a_file = world.scratch / "demo_file"
    a_file.write_text("x")
    vidpose("demo", "--quick", "--device", "cpu", "--out", a_file).refused(3, str(a_file))


# --------------------------------------------------------------------------- bugs stay bugs


def test_an_internal_error_keeps_its_traceback_and_status_70(monkeypatch, capsys, tmp_path):
    """A RecursionError in the demo (a bug) is not turned into a user-facing message:
    the traceback is printed, the line says it is internal, the status is 70."""
    import vidpose.demo
    from vidpose.cli import main

    def recurse(*args, **kwargs):
        raise RecursionError("maximum recursion depth exceeded while getting the str of an object")

    monkeypatch.setattr(vidpose.demo, "run_demo", recurse)
    assert main(["demo", "--quick", "--out", str(tmp_path / "demo")]) == 70
    err = capsys.readouterr().err
    assert "Traceback" in err and "in recurse" in err
    (line,) = [line for line in err.splitlines() if ": error: " in line]
    assert line.startswith("vidpose demo: error: internal error")
    assert "RecursionError: maximum recursion depth" in line


@pytest.mark.parametrize(
    "error, status",
    [
        ("InputError", 2),
        ("OutputError", 3),
        ("RunStopped", 4),
        ("FileNotFoundError", 2),
        ("KeyboardInterrupt", 130),
        ("TypeError", 70),
    ],
)
def test_every_exception_class_has_its_status(monkeypatch, capsys, error, status):
    import builtins

    import vidpose.runtime
    from vidpose.cli import main

    kind = getattr(vidpose.runtime, error, None) or getattr(builtins, error)

    def fail(*args, **kwargs):
        raise kind("some.file: what was wrong, expected what")

    monkeypatch.setattr("vidpose.config.load_config", fail)
    assert main(["config", "x.yaml"]) == status
    err = capsys.readouterr().err
    assert ("Traceback" in err) == (status == 70)
    if status != 130:
        (line,) = [line for line in err.splitlines() if ": error: " in line]
        assert "some.file: what was wrong" in line
