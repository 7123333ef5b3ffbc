"""Extraction that gives the same answer every time: per-video seeds, rotated videos,
two runs on one folder, stale outputs, nobody-here frames, smoothing."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import threading

import av
import numpy as np
import pytest
import torch

from vidpose.data.frames import open_frames
from vidpose.data.skeleton import POSETRACK
from vidpose.inference.extract import (
    ExtractOptions,
    extract_video,
    extract_videos,
    frame_seed,
)
from vidpose.inference.outputs import VideoLock, output_paths
from vidpose.inference.person_boxes import SinglePersonBoxes, boxes_from_mapping
from vidpose.inference.predictor import build_predictor, load_estimator
from vidpose.inference.smoothing import KeypointSmoother, OneEuroSettings

QUIET = ExtractOptions(progress=False)


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def scene(count: int, shift: int = 0, size=(64, 80)) -> list[np.ndarray]:
    """A bright block moving right on a dark background."""
    frames = []
    for index in range(count):
        image = np.full((*size, 3), 30, np.uint8)
        left = 10 + 3 * index + shift
        image[12:56, left : left + 20] = 210
        frames.append(image)
    return frames


# --------------------------------------------------------------------------- determinism


def test_a_videos_keypoints_do_not_depend_on_the_videos_before_it(
    tiny_checkpoint, tmp_path, write_mp4
):
    """The diffusion sampler draws noise: with one generator for the whole run, video
    A's keypoints changed when video B ran first (a re-run after a crash, --shard)."""
    model, config = load_estimator(tiny_checkpoint)
    videos = tmp_path / "videos"
    videos.mkdir()
    a = write_mp4(videos / "a.mp4", scene(5))
    b = write_mp4(videos / "b.mp4", scene(5, shift=7))
    boxes = {i: ([[8, 8, 40, 52]], [0.9]) for i in range(5)}

    def run(order, out):
        predictor = build_predictor(model, config, steps=2, hypotheses=3, flip_test=False)
        extract_videos(
            order, predictor, lambda video: boxes_from_mapping(boxes), out, options=QUIET
        )
        return [(row["x"], row["y"], row["score"]) for row in read_csv(out / "a.csv")]

    alone = run([a], tmp_path / "alone")
    after_b = run([b, a], tmp_path / "after")
    assert alone == after_b
    assert frame_seed("a", 0) != frame_seed("a", 1) != frame_seed("b", 1)

    # and the seeds matter: a shared generator would have given other keypoints
    predictor = build_predictor(model, config, steps=2, hypotheses=3, flip_test=False)
    frames = open_frames(a, backend="pyav")
    clip = [frames[0]] * len(predictor.frame_offsets)
    first = predictor.predict(clip, [[8, 8, 40, 52]], seed=1).keypoints
    again = predictor.predict(clip, [[8, 8, 40, 52]], seed=1).keypoints
    other = predictor.predict(clip, [[8, 8, 40, 52]], seed=2).keypoints
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


# --------------------------------------------------------------------------- rotation


def rotated_video(path, frames, degrees: int):
    """An mp4 stored as given, with a display matrix turning it ``degrees``
    counter-clockwise (what a phone writes for a video filmed sideways)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "12", "preset": "ultrafast"}
        stream.set_display_rotation(degrees)
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.mark.parametrize("degrees", [90, -90, 180])
def test_rotated_videos_are_read_upright_by_both_decoders(tmp_path, degrees):
    stored = np.full((48, 64, 3), 20, np.uint8)
    stored[:12, :12] = 230  # a bright corner, top-left as stored
    path = rotated_video(tmp_path / "phone.mp4", [stored] * 3, degrees)
    expected = np.rot90(stored, k=(degrees // 90) % 4)
    for backend in ("pyav", "decord"):
        source = open_frames(path, backend=backend)
        # decord mislays rotated videos' pixels: they are read with PyAV, with a warning
        with (
            pytest.warns(UserWarning, match="display rotation")
            if backend == "decord"
            else (_no_warning())
        ):
            frames = (source[1], next(iter(source)))
        assert source.backend_in_use == "pyav"
        for frame in frames:
            assert frame.shape == expected.shape, backend
            assert np.abs(frame.astype(int) - expected).mean() < 4, backend


class _no_warning:  # noqa: N801
    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False


def test_keypoints_and_overlay_of_a_rotated_video_are_upright(make_predictor, tmp_path):
    stored = np.full((48, 64, 3), 20, np.uint8)
    stored[4:10, 50:58] = 250  # the brightest spot: near the stored top-right
    path = rotated_video(tmp_path / "phone.mp4", [stored] * 3, 90)
    upright = np.rot90(stored)  # 64 x 48: the spot near the top-left
    spot = np.argwhere(upright[..., 0] == upright[..., 0].max()).mean(0)[::-1]  # x, y
    boxes = boxes_from_mapping({i: ([[-0.5, -0.5, 48, 64]], [1.0]) for i in range(3)})
    extract_video(
        path, make_predictor("dot"), boxes, tmp_path / "out",
        options=ExtractOptions(progress=False, render=True),
    )  # fmt: skip
    rows = [row for row in read_csv(tmp_path / "out" / "phone.csv") if row["x"]]
    points = np.array([[float(row["x"]), float(row["y"])] for row in rows])
    assert np.abs(points - spot).max() < 3
    with av.open(str(tmp_path / "out" / "phone.mp4")) as container:
        decoded = next(container.decode(video=0))
        assert (decoded.height, decoded.width) == (64, 48) and not decoded.rotation


# --------------------------------------------------------------------------- two runs


def test_two_runs_on_one_folder_never_write_the_same_video(make_predictor, tmp_path):
    """A second run finds the video held and leaves it alone; the first finishes a CSV
    without holes (the bug: NUL bytes and missing frames under a .done marker)."""
    count = 8
    frames = [np.full((48, 64, 3), 10 + 8 * i, np.uint8) for i in range(count)]
    boxes = {i: ([[5, 5, 30, 30]], [0.9]) for i in range(count)}
    halfway, release = threading.Event(), threading.Event()

    def slow_frames():
        for index, frame in enumerate(frames):
            if index == 4:
                halfway.set()
                assert release.wait(30)
            yield frame

    first: dict = {}

    def run_first():
        first["summary"] = extract_video(
            tmp_path / "clip.mp4", make_predictor(), boxes_from_mapping(boxes), tmp_path,
            options=QUIET, frames=slow_frames(),
        )  # fmt: skip

    thread = threading.Thread(target=run_first)
    thread.start()
    assert halfway.wait(30)
    second = extract_video(
        tmp_path / "clip.mp4", make_predictor(), boxes_from_mapping(boxes), tmp_path,
        options=QUIET, frames=frames,
    )  # fmt: skip
    report = extract_videos(
        [tmp_path / "clip.mp4"], make_predictor(), lambda v: boxes_from_mapping(boxes),
        tmp_path, options=QUIET,
    )  # fmt: skip
    release.set()
    thread.join(30)
    assert second.status == "locked" and report.videos[0].status == "locked"
    assert first["summary"].status == "done" and first["summary"].frames == count
    data = (tmp_path / "clip.csv").read_bytes()
    assert b"\x00" not in data
    rows = read_csv(tmp_path / "clip.csv")
    assert sorted({int(row["frame"]) for row in rows}) == list(range(count))
    assert len(rows) == 17 * count


def test_another_process_holding_a_video_is_left_alone_until_it_dies(make_predictor, tmp_path):
    """The same with a second process (the CLI run in another terminal): while it holds
    the video's lock this run leaves the video alone; once it is killed, the video is
    extracted (the operating system dropped the lock)."""
    frames = [np.full((48, 64, 3), 10 + 8 * i, np.uint8) for i in range(3)]
    boxes = {i: ([[5, 5, 30, 30]], [0.9]) for i in range(3)}
    lock = output_paths(tmp_path, "clip")["lock"]
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(lock)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"

        def run():
            return extract_video(
                tmp_path / "clip.mp4", make_predictor(), boxes_from_mapping(boxes), tmp_path,
                options=QUIET, frames=frames,
            )  # fmt: skip

        assert run().status == "locked"
        assert not (tmp_path / "clip.csv").exists()
    finally:
        holder.kill()  # SIGKILL: no clean-up runs in the holder
        holder.wait(10)
    assert run().status == "done"


HOLD_LOCK = """
import sys, time
from pathlib import Path
from vidpose.inference.outputs import VideoLock
with VideoLock(Path(sys.argv[1])) as lock:
    print("held" if lock.acquired else "not held", flush=True)
    time.sleep(60)
"""


def test_a_lock_is_released_when_its_holder_is_gone(tmp_path):
    path = output_paths(tmp_path, "v")["lock"]
    with VideoLock(path) as held:
        assert held.acquired
        with VideoLock(path) as other:
            assert not other.acquired
    with VideoLock(path) as later:
        assert later.acquired


# --------------------------------------------------------------------------- stale outputs


def test_outputs_of_another_model_or_another_video_are_redone(make_predictor, tmp_path, write_mp4):
    video = write_mp4(tmp_path / "walk.mp4", scene(4))
    boxes = {i: ([[8, 8, 40, 52]], [0.9]) for i in range(4)}
    out = tmp_path / "out"

    def run(predictor):
        return extract_video(video, predictor, boxes_from_mapping(boxes), out, options=QUIET)

    assert run(make_predictor()).status == "done"
    assert run(make_predictor()).status == "skipped"  # same model, same video
    marker = json.loads((out / "walk.done").read_text())
    assert set(marker["produced_by"]) >= {"video", "model", "boxes", "seed"}

    other = make_predictor()
    with torch.no_grad():
        other.model.weight.fill_(1.0)  # other weights: another checkpoint
    redone = run(other)
    assert redone.status == "done" and "model" in redone.note
    assert run(other).status == "skipped"

    write_mp4(video, scene(4, shift=5))  # the video changed
    redone = run(other)
    assert redone.status == "done" and "video" in redone.note

    flipped = make_predictor(flip_test=True)
    with torch.no_grad():
        flipped.model.weight.fill_(1.0)
    assert "model" in run(flipped).note  # sampling settings count as the model's


# --------------------------------------------------------------------------- nobody here


class BrightnessScores:
    """A stand-in predictor: a standing pose in each box, every joint scoring the key
    frame's mean brightness / 255 (dark frames: nobody there)."""

    frame_offsets = (0,)
    skeleton = POSETRACK

    def __init__(self) -> None:
        from vidpose.inference.predictor import PosePrediction

        self.prediction_type = PosePrediction

    def fingerprint(self) -> str:
        return "brightness"

    def predict(self, frames, boxes, *, seed=None):
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        score = np.asarray(frames[0]).mean() / 255
        template = np.linspace(0.2, 0.8, 17)[:, None] * [1, 1]
        keypoints = boxes[:, None, :2] + template[None] * boxes[:, None, 2:]
        scores = np.full((len(boxes), 17), score)
        return self.prediction_type(keypoints, scores, boxes, None)


def test_single_person_without_a_detector_writes_nobody_on_empty_frames(tmp_path):
    levels = [200, 200, 15, 15, 200]  # frames 2 and 3: nobody (dark)
    frames = [np.full((60, 80, 3), level, np.uint8) for level in levels]
    options = ExtractOptions(progress=False, track=False, min_pose_score=0.2)
    summary = extract_video(
        tmp_path / "solo.mp4", BrightnessScores(), SinglePersonBoxes(), tmp_path,
        options=options, frames=frames,
    )  # fmt: skip
    assert summary.persons == 3
    content = json.loads((tmp_path / "solo.json").read_text())
    assert sorted(person["image_id"] for person in content["annotations"]) == [0, 1, 4]
    # the box score written is the pose's (a box over the whole frame is no detection)
    assert {round(person["score"], 3) for person in content["annotations"]} == {0.784}


# --------------------------------------------------------------------------- smoothing


def test_one_euro_filter_removes_jitter_and_follows_motion():
    rng = np.random.default_rng(0)
    smoother = KeypointSmoother(fps=25, settings=OneEuroSettings(min_cutoff=1.0, beta=0.0))
    still = np.full((1, 17, 2), 100.0)
    raw, smoothed = [], []
    for frame in range(100):
        noisy = still + rng.normal(0, 2.0, still.shape)
        raw.append(noisy)
        smoothed.append(smoother(frame, np.array([7]), noisy))
    jitter = lambda series: np.abs(np.diff(np.concatenate(series), axis=0)).mean()  # noqa: E731
    assert jitter(smoothed) < 0.3 * jitter(raw)

    moving = KeypointSmoother(fps=25, settings=OneEuroSettings(min_cutoff=1.0, beta=0.05))
    for frame in range(40):  # 10 pixels per frame: the filter must keep up
        out = moving(frame, np.array([0]), np.full((1, 17, 2), 10.0 * frame))
    assert abs(out[0, 0, 0] - 390) < 15

    gaps = KeypointSmoother(fps=25)
    points = np.full((1, 17, 2), 5.0)
    points[0, 3] = np.nan  # an absent joint stays absent
    assert np.isnan(gaps(0, np.array([1]), points)[0, 3]).all()
    assert np.isnan(gaps(1, np.array([1]), points)[0, 3]).all()
    with pytest.raises(ValueError, match="min_cutoff"):
        OneEuroSettings(min_cutoff=0)
