import csv
import json

import numpy as np
import pytest

from vidpose.codecs.geometry import invert_affine
from vidpose.data.frames import FrameReadError
from vidpose.data.skeleton import POSETRACK
from vidpose.evaluation.posetrack_json import read_evaluation_file
from vidpose.inference.extract import (
    BufferedFrame,
    ExtractOptions,
    FrameRing,
    clip_frame_indices,
    collect_videos,
    extract_video,
    extract_videos,
    select_shard,
)
from vidpose.inference.person_boxes import boxes_from_mapping, read_detections

QUIET = ExtractOptions(progress=False)


def grey_frames(count: int, size=(40, 60)) -> list[np.ndarray]:
    """Frame i is uniformly grey with value 10 + 8 i (mod 256), so a crop names its frame."""
    return [np.full((*size, 3), (10 + 8 * index) % 256, np.uint8) for index in range(count)]


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_clip_indices_are_clamped_at_both_ends():
    assert clip_frame_indices(0, (-2, -1, 0, 1), last=9) == [0, 0, 0, 1]
    assert clip_frame_indices(5, (-2, -1, 0, 1), last=9) == [3, 4, 5, 6]
    assert clip_frame_indices(9, (-2, -1, 0, 1), last=9) == [7, 8, 9, 9]


def test_ring_buffer_drops_the_oldest_frame():
    ring = FrameRing(3)
    for index, frame in enumerate(grey_frames(5)):
        ring.push(BufferedFrame(index, frame, None))
    assert len(ring) == 3 and ring.high_water == 3
    assert ring[4].index == 4 and ring[2].index == 2
    with pytest.raises(KeyError, match="frame 1 is not held"):
        ring[1]


@pytest.mark.parametrize("offsets", [(-1, 0, 1), (-2, -1, 0, 1, 2), (-2, -1, 0)])
def test_each_clip_holds_its_neighbours_and_the_stream_is_never_read_ahead(
    make_predictor, tmp_path, offsets
):
    count = 12
    span = max(offsets) - min(offsets) + 1
    frames = grey_frames(count)
    finished_rows = []
    csv_path = tmp_path / "grey.csv"

    def stream():
        for index, frame in enumerate(frames):
            # Memory stays flat: reading frame i needs at most the frames up to
            # i - 1 - max(offset) finished, so no more than span frames are pending.
            if index > max(offsets):
                finished_rows.append(len(read_csv(csv_path)))
                assert len(read_csv(csv_path)) >= (index - max(offsets)) * 17
            yield frame

    predictor = make_predictor("template", offsets=offsets)
    boxes = boxes_from_mapping({i: ([[5, 5, 30, 20]], [1.0]) for i in range(count)})
    summary = extract_video(
        tmp_path / "grey.mp4", predictor, boxes, tmp_path, options=QUIET, frames=stream()
    )
    assert summary.status == "done" and summary.frames == count
    assert summary.max_buffered_frames == span  # never more than the ring's size
    assert finished_rows  # the check inside the stream ran
    intensities = np.concatenate(predictor.model.intensities)  # [frames, T]
    seen = np.rint((intensities - 10) / 8).astype(int)
    expected = [clip_frame_indices(key, offsets, count - 1) for key in range(count)]
    np.testing.assert_array_equal(seen, expected)


def test_writes_posetrack_json_and_csv_for_a_video_with_detections(
    make_predictor, tmp_path, crossing
):
    images, boxes, video = crossing
    detections = []
    for frame, people in enumerate(boxes):
        if frame == 3:
            continue  # a frame without people
        for box in people:
            detections.append(
                {"image_id": frame, "category_id": 1, "bbox": box.tolist(), "score": 0.9}
            )
    detections.append({"image_id": 5, "category_id": 1, "bbox": [-30, -20, 50, 60], "score": 0.8})
    detections_file = tmp_path / "dets.json"
    detections_file.write_text(json.dumps(detections))
    out = tmp_path / "out"
    summary = extract_video(
        video, make_predictor(), read_detections(detections_file), out, options=QUIET
    )
    assert summary.frames == len(images)
    assert summary.persons == len(detections)
    assert summary.decoder == "pyav"  # the default: sequential reads, flat memory

    (parsed,) = read_evaluation_file(out / "crossing.json", role="predictions", split_videos=False)
    assert parsed.num_frames == len(images)
    assert parsed.num_persons == len(detections)
    assert not np.any(parsed.person_frame == 3)
    content = json.loads((out / "crossing.json").read_text())
    assert [image["id"] for image in content["images"]] == list(range(len(images)))

    rows = read_csv(out / "crossing.csv")
    assert len(rows) == 17 * len(detections)
    assert list(rows[0]) == ["video", "frame", "track", "joint", "x", "y", "score", "uncertainty"]
    assert {row["uncertainty"] for row in rows} == {""}  # this model has no uncertainty
    assert all("keypoint_uncertainty" not in person for person in content["annotations"])
    first = [
        row for row in rows if row["frame"] == "0" and row["track"] == str(parsed.track_ids[0])
    ]
    written = np.array([[float(row["x"] or "nan"), float(row["y"] or "nan")] for row in first])
    # PoseTrack never annotates the ear slots: absent in the CSV, (0, 0, 0) in the JSON
    ears = [POSETRACK.index("left_ear"), POSETRACK.index("right_ear")]
    np.testing.assert_allclose(
        np.delete(written, ears, 0), np.delete(parsed.keypoints[0, :, :2], ears, 0), atol=0.01
    )
    assert np.isnan(written[ears]).all() and np.isfinite(np.delete(written, ears, 0)).all()
    assert all(person["keypoints"][9:15] == [0, 0, 0] * 2 for person in content["annotations"])
    marker = json.loads((out / "crossing.done").read_text())
    assert marker["frames"] == len(images)

    options = ExtractOptions(progress=False, overwrite=True, decoder="decord")
    again = extract_video(
        video, make_predictor(), read_detections(detections_file), out, options=options
    )
    assert (again.decoder, again.frames) == ("decord", len(images))


def test_the_models_uncertainty_is_written_in_frame_pixels(make_predictor, tmp_path):
    """A head's per-joint uncertainty (input-crop pixels) reaches the JSON
    (``keypoint_uncertainty``) and the CSV, scaled by the crop's size in the frame."""
    predictor = make_predictor(uncertainty=2.0)
    box = [4, 6, 30, 40]
    boxes = boxes_from_mapping({i: ([box], [0.9]) for i in range(3)})
    extract_video(
        tmp_path / "grey.mp4", predictor, boxes, tmp_path,
        options=QUIET, frames=grey_frames(3, size=(48, 64)),
    )  # fmt: skip
    crop_to_frame = np.sqrt(
        abs(np.linalg.det(invert_affine(predictor.crop_affines([box])[0])[:, :2]))
    )
    assert abs(crop_to_frame - 1.0) > 0.1  # a 40-pixel-high box padded 1.25x: 50 of 64 pixels
    content = json.loads((tmp_path / "grey.json").read_text())
    scored = np.asarray(POSETRACK.scored)
    for person in content["annotations"]:
        uncertainty = np.array(person["keypoint_uncertainty"], dtype=float)  # null: NaN
        np.testing.assert_allclose(uncertainty[scored], 2.0 * crop_to_frame)
        assert np.isnan(uncertainty[~scored]).all()  # the ears: never annotated, not written
    rows = read_csv(tmp_path / "grey.csv")
    assert len(rows) == 3 * 17
    np.testing.assert_allclose(
        [float(row["uncertainty"]) for row in rows if row["uncertainty"]],
        2.0 * crop_to_frame,
        atol=0.01,
    )


def test_json_and_csv_agree_on_every_person_of_a_longer_video(make_predictor, tmp_path):
    # 45 frames x 2 people: more rows than the first allocation of the result store.
    count = 45
    boxes = boxes_from_mapping(
        {i: ([[2 + i % 7, 3, 20, 30], [30, 4 + i % 5, 20, 30]], [0.9, 0.8]) for i in range(count)}
    )
    extract_video(
        tmp_path / "long.mp4", make_predictor(), boxes, tmp_path,
        options=QUIET, frames=grey_frames(count, size=(48, 64)),
    )  # fmt: skip
    (parsed,) = read_evaluation_file(tmp_path / "long.json", role="predictions", split_videos=False)
    assert parsed.num_frames == count and parsed.num_persons == 2 * count
    rows = read_csv(tmp_path / "long.csv")
    from_csv = {
        (int(row["frame"]), int(row["track"]), row["joint"]): (float(row["x"]), float(row["y"]))
        for row in rows
        if row["x"]  # the ears are never written (PoseTrack does not annotate them)
    }
    scored = np.asarray(POSETRACK.scored)
    names = [name for name, kept in zip(POSETRACK.joint_names, scored, strict=True) if kept]
    for frame, track, points in zip(
        parsed.person_frame, parsed.track_ids, parsed.keypoints, strict=True
    ):
        expected = [from_csv[(int(frame), int(track), name)] for name in names]
        np.testing.assert_allclose(points[scored, :2], expected, atol=0.006)


def test_track_ids_stay_stable_when_people_cross(make_predictor, tmp_path, crossing):
    images, boxes, video = crossing
    # Detections in a shuffled order each frame, as a detector gives them (MOT text).
    rng = np.random.default_rng(0)
    lines = []
    for frame, people in enumerate(boxes):
        for person in rng.permutation(len(people)):
            x, y, w, h = people[person]
            lines.append(f"{frame + 1},-1,{x:.2f},{y:.2f},{w},{h},0.95")
    (tmp_path / "crossing.txt").write_text("\n".join(lines))
    out = tmp_path / "out"
    extract_video(
        video, make_predictor(), read_detections(tmp_path / "crossing.txt"), out, options=QUIET
    )
    (parsed,) = read_evaluation_file(out / "crossing.json", role="predictions", split_videos=False)
    # Person 0 walks right: the track that starts on the left must stay the one whose
    # box centre is the smaller x in the first half and the larger in the second.
    identity = {}
    for frame, people in enumerate(boxes):
        mine = parsed.person_frame == frame
        for track, points in zip(parsed.track_ids[mine], parsed.keypoints[mine], strict=True):
            centre_x = points[np.asarray(POSETRACK.scored), 0].mean()
            walker = int(np.argmin(np.abs(people[:, 0] + people[:, 2] / 2 - centre_x)))
            assert identity.setdefault(walker, track) == track, f"id switch at frame {frame}"
    assert sorted(identity.values()) == [0, 1]


def test_rerun_skips_finished_videos_and_redoes_unfinished_ones(make_predictor, tmp_path):
    boxes = boxes_from_mapping({i: ([[5, 5, 30, 20]], [1.0]) for i in range(4)})
    first = extract_video(
        tmp_path / "a.mp4", make_predictor(), boxes, tmp_path, options=QUIET, frames=grey_frames(4)
    )
    assert first.status == "done"
    again = extract_video(
        tmp_path / "a.mp4", make_predictor(), boxes, tmp_path, options=QUIET, frames=grey_frames(4)
    )
    assert again.status == "skipped"
    (tmp_path / "a.done").unlink()  # as after a crash: outputs without the marker
    redone = extract_video(
        tmp_path / "a.mp4", make_predictor(), boxes, tmp_path, options=QUIET, frames=grey_frames(4)
    )
    assert redone.status == "done" and redone.frames == 4
    assert len(read_csv(tmp_path / "a.csv")) == 4 * 17  # rewritten, not appended


def test_a_read_error_keeps_the_finished_frames(make_predictor, tmp_path):
    def breaking():
        yield from grey_frames(7)
        raise FrameReadError("broken.mp4: cannot decode frame 7 of 20 (corrupt?)")

    boxes = boxes_from_mapping({i: ([[5, 5, 30, 20]], [1.0]) for i in range(20)})
    options = ExtractOptions(progress=False, save_every=2)
    with pytest.raises(FrameReadError, match="broken.mp4: cannot decode frame 7"):
        extract_video(
            tmp_path / "broken.mp4",
            make_predictor(),
            boxes,
            tmp_path,
            options=options,
            frames=breaking(),
        )
    content = json.loads((tmp_path / "broken.json").read_text())
    # Every frame read before the error is finished (its future neighbour clamps).
    assert len(content["images"]) == 7
    assert len(read_csv(tmp_path / "broken.csv")) == 7 * 17
    assert not (tmp_path / "broken.done").exists()


def test_the_json_is_saved_periodically_so_a_hard_kill_keeps_finished_frames(
    make_predictor, tmp_path
):
    saved_counts = []

    def stream():
        for frame in grey_frames(12):
            path = tmp_path / "long.json"
            # What a SIGKILL now would leave: the file as last saved, never half-written.
            saved_counts.append(len(json.loads(path.read_text())["images"]) if path.exists() else 0)
            yield frame

    boxes = boxes_from_mapping({i: ([[5, 5, 30, 20]], [1.0]) for i in range(12)})
    options = ExtractOptions(progress=False, save_every=3, save_time_share=None)
    extract_video(
        tmp_path / "long.mp4", make_predictor(), boxes, tmp_path, options=options, frames=stream()
    )
    # Frame i is read after frames 0..i-2 are finished (offset +1); saves every 3 frames.
    assert saved_counts == [0, 0, 0, 0, 3, 3, 3, 6, 6, 6, 9, 9]


def test_a_failing_video_does_not_stop_the_others(make_predictor, tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    for index, frame in enumerate(grey_frames(3)):
        from PIL import Image

        Image.fromarray(frame).save(good / f"{index:06d}.png")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 50)
    report = extract_videos(
        [bad, good],
        make_predictor(),
        lambda video: boxes_from_mapping({i: ([[5, 5, 30, 20]], [1.0]) for i in range(3)}),
        tmp_path / "out",
        options=QUIET,
    )
    assert [video.status for video in report.videos] == ["failed", "done"]
    assert str(bad) in report.failures[0].error and "frame 0" in report.failures[0].error
    content = json.loads((tmp_path / "out" / "good.json").read_text())
    assert [image["file_name"] for image in content["images"]][0] == "good/000000.png"


def test_collect_and_shard_are_deterministic(tmp_path):
    for name in ["c.mp4", "a.mp4", "b.avi", "notes.txt", "d.MKV"]:
        (tmp_path / name).write_bytes(b"")
    videos = collect_videos([tmp_path, tmp_path / "a.mp4"])  # named twice, listed once
    assert [video.name for video in videos] == ["a.mp4", "b.avi", "c.mp4", "d.MKV"]
    shards = [select_shard(videos[::-1], index, 3) for index in range(3)]
    assert [[video.name for video in shard] for shard in shards] == [
        ["a.mp4", "d.MKV"],
        ["b.avi"],
        ["c.mp4"],
    ]
    with pytest.raises(FileNotFoundError, match="no such video file or folder"):
        collect_videos([tmp_path / "missing.mp4"])
