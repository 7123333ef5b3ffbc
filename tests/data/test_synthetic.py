"""The synthetic generator: PoseTrack21 files that round-trip, exact and consistent
ground truth, determinism, the mp4 and COCO outputs, and the `vidpose synth` command."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from vidpose.cli import main
from vidpose.data.posetrack import posetrack_image_id, read_dataset
from vidpose.data.skeleton import POSETRACK
from vidpose.data.synthetic import (
    HIDDEN_BY,
    NUM_PARTS,
    OCCLUDER_LABEL,
    generate_dataset,
    make_scene,
    read_hidden_by,
    validation_labeled,
    video_name,
)

FRAMES = 34  # more than 30: the validation videos get unlabeled frames
SIZE = (96, 72)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    return generate_dataset(
        root, videos=1, frames=FRAMES, persons=2, size=SIZE, occlusion=0.5, seed=1, progress=False
    )


def test_validation_labeled_pattern():
    labeled = validation_labeled(50)
    central = np.arange(10, 40)
    assert labeled[central].all()
    outside = np.flatnonzero(labeled[:10]).tolist() + np.flatnonzero(labeled[40:]).tolist()
    assert outside == [2, 6, 3, 7]  # every 4th frame counted from the central block
    assert labeled.sum() == 34
    assert validation_labeled(24).all()  # short videos: everything is central


def test_layout_and_round_trip(dataset):
    assert (dataset / "posetrack_data/val/000001_mpii_test.json").is_file()
    assert (dataset / "posetrack_data/train/000002_mpii_train.json").is_file()
    for split in ("train", "val"):
        (video,) = read_dataset("posetrack21", dataset, f"posetrack_data/{split}")
        assert video.name == video_name(split, 0, 1)
        assert len(video.frames) == FRAMES
        expected = validation_labeled(FRAMES) if split == "val" else np.ones(FRAMES, bool)
        assert [f.is_labeled for f in video.frames] == expected.tolist()
        for index, frame in enumerate(video.frames):
            assert frame.image_id == posetrack_image_id(video.name, index)
            assert frame.image_path == f"images/{split}/{video.name}/{index:06d}.jpg"
            assert Image.open(dataset / frame.image_path).size == SIZE
            assert len(frame.persons) == (2 if frame.is_labeled else 0)
            for person_index, person in enumerate(frame.persons):
                assert person.annotation_id == frame.image_id * 100 + person_index
                assert person.track_id == person_index
                assert person.person_id is not None
                np.testing.assert_array_equal(person.keypoints[3:5], 0)  # ear slots
                points = person.keypoints[person.annotated]
                assert np.all((points[:, 0] >= 0) & (points[:, 0] < SIZE[0]))
                assert np.all((points[:, 1] >= 0) & (points[:, 1] < SIZE[1]))
                assert set(np.unique(person.keypoints[:, 2])) <= {0.0, 1.0}
                assert person.bbox[2] > 0 and person.head_box[3] > 0


def test_every_posetrack21_field_is_written(dataset):
    content = json.loads((dataset / "posetrack_data/val/000001_mpii_test.json").read_text())
    image = content["images"][0]
    assert set(image) >= {
        "id", "frame_id", "vid_id", "file_name", "nframes", "is_labeled",
        "has_labeled_person", "ignore_regions_x", "ignore_regions_y",
    }  # fmt: skip
    assert image["vid_id"] == "000001" and image["nframes"] == FRAMES
    annotation = content["annotations"][0]
    assert set(annotation) >= {
        "id", "image_id", "track_id", "person_id", "category_id", "bbox", "bbox_head", "keypoints"
    }  # fmt: skip
    (category,) = content["categories"]
    assert category["keypoints"] == list(POSETRACK.joint_names) and category["skeleton"]
    unlabeled = [i for i in content["images"] if not i["is_labeled"]]
    assert unlabeled and not any(i["has_labeled_person"] for i in unlabeled)


def test_coco_file_and_video(dataset):
    coco = json.loads((dataset / "coco/val.json").read_text())
    assert len(coco["images"]) == validation_labeled(FRAMES).sum()
    annotation = coco["annotations"][0]
    assert annotation["iscrowd"] == 0 and annotation["area"] > 0
    flags = np.array(annotation["keypoints"]).reshape(17, 3)[:, 2]
    assert annotation["num_keypoints"] == np.count_nonzero(flags) == 15
    assert set(flags) <= {0, 1, 2}
    videos = read_dataset("coco", dataset, "coco/val.json")
    assert len(videos) == len(coco["images"])
    assert all(len(v.frames[0].persons) == 2 for v in videos)

    with av.open(str(dataset / "videos/val/000001_mpii_test.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    assert len(frames) == FRAMES
    assert frames[0].shape == (SIZE[1], SIZE[0], 3)
    jpeg = np.asarray(Image.open(dataset / "images/val/000001_mpii_test/000005.jpg"), dtype=float)
    assert np.abs(frames[5] - jpeg).mean() < 8  # the same picture, two lossy codecs


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    options = dict(videos=1, frames=3, persons=2, size=(64, 48), occlusion=0.5, progress=False)
    first = generate_dataset(tmp_path / "a", seed=5, **options)
    second = generate_dataset(tmp_path / "b", seed=5, **options)
    other = generate_dataset(tmp_path / "c", seed=6, **options)
    name = "posetrack_data/val/000001_mpii_test.json"
    assert (first / name).read_bytes() == (second / name).read_bytes()
    assert (first / name).read_bytes() != (other / name).read_bytes()
    assert (first / "coco/train.json").read_bytes() == (second / "coco/train.json").read_bytes()
    image = "images/train/000002_mpii_train/000001.jpg"
    assert (first / image).read_bytes() == (second / image).read_bytes()


def scene(seed: int, occlusion: float = 0.5, persons: int = 2):
    return make_scene(
        np.random.default_rng(seed),
        frames=12,
        persons=persons,
        size=(160, 120),
        occlusion=occlusion,
    )


def test_visible_joints_lie_on_their_own_drawn_body():
    checked = 0
    for seed in range(3):
        planned = scene(seed)
        empty = dataclasses.replace(planned, persons=[], occluders=[])
        for t in (0, 5, 11):
            frame, background = planned.render(t), empty.render(t)
            difference = np.abs(frame.image.astype(float) - background.image).sum(axis=2)
            for person, keypoints in enumerate(frame.keypoints):
                seen = keypoints[:, 2] == 1
                checked += seen.sum()
                columns = np.round(keypoints[seen, 0]).astype(int)
                rows = np.round(keypoints[seen, 1]).astype(int)
                labels = frame.labels[rows, columns]
                assert np.all((labels - 1) // NUM_PARTS == person)
                # the picture changed there: a body is drawn, not the background
                assert np.median(difference[rows, columns]) > 20
                x, y, w, h = frame.boxes[person]
                assert np.all((columns >= x) & (columns < x + w) & (rows >= y) & (rows < y + h))
    assert checked > 3 * 3 * 2 * 8  # most joints of most people are seen


def test_occluded_joints_are_seen_in_neighbouring_frames():
    """With certain occlusion some joints hidden by an occluder in one frame are
    visible in the previous or next frame: one frame does not always suffice."""
    recovered = hidden = 0
    for seed in range(4):
        planned = scene(seed, occlusion=1.0)
        frames = [planned.render(t) for t in range(planned.num_frames)]
        for t in range(1, len(frames) - 1):
            keypoints = frames[t].keypoints
            for person in range(len(keypoints)):
                for slot in np.flatnonzero(POSETRACK.scored):
                    x, y, seen = keypoints[person, slot]
                    if seen or frames[t].labels[int(round(y)), int(round(x))] != OCCLUDER_LABEL:
                        continue
                    hidden += 1
                    neighbours = frames[t - 1].keypoints, frames[t + 1].keypoints
                    recovered += any(n[person, slot, 2] == 1 for n in neighbours)
    assert hidden > 0 and recovered > 0
    assert recovered < hidden or hidden < 3  # some stay hidden for several frames


def test_hidden_joints_name_what_covers_them():
    counts = dict.fromkeys(HIDDEN_BY, 0)
    for seed in range(4):
        planned = scene(seed, occlusion=1.0)
        for t in range(0, planned.num_frames, 3):
            frame = planned.render(t)
            for person, (keypoints, causes) in enumerate(
                zip(frame.keypoints, frame.hidden_by, strict=True)
            ):
                hidden = (keypoints[:, 2] == 0) & (keypoints[:, :2] != 0).any(axis=1)
                # seen and unannotated joints carry 0; every hidden one a cause
                assert np.all(causes[~hidden] == 0) and np.all(causes[hidden] > 0)
                for slot in np.flatnonzero(hidden):
                    x, y = np.round(keypoints[slot, :2]).astype(int)
                    height, width = frame.labels.shape
                    label = frame.labels[min(y, height - 1), min(x, width - 1)]
                    cause = HIDDEN_BY[causes[slot]]
                    counts[cause] += 1
                    if cause == "occluder":
                        assert label == OCCLUDER_LABEL
                    elif cause == "another person":
                        assert label >= 1 and (label - 1) // NUM_PARTS != person
                    else:
                        assert label != OCCLUDER_LABEL
    assert counts["occluder"] > 0 and counts["own body"] > 0


def test_hidden_by_file_matches_the_annotations(dataset):
    (video,) = read_dataset("posetrack21", dataset, "posetrack_data/val")
    causes = read_hidden_by(dataset, "val")
    labeled = [(f.image_id, p) for f in video.frames for p in f.persons]
    assert set(causes) == {(image_id, person.track_id) for image_id, person in labeled}
    for image_id, person in labeled:
        codes = causes[(image_id, person.track_id)]
        hidden = person.annotated & (person.keypoints[:, 2] == 0)
        np.testing.assert_array_equal(codes > 0, hidden)
    with pytest.raises(FileNotFoundError, match="hidden_by"):
        read_hidden_by(dataset / "nowhere", "val")


def test_rendering_is_deterministic_and_people_move():
    a, b = scene(9).render(4), scene(9).render(4)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.keypoints, b.keypoints)
    later = scene(9).render(8)
    assert np.abs(later.keypoints[:, :, :2] - a.keypoints[:, :, :2]).max() > 1


def test_option_errors(tmp_path):
    with pytest.raises(
        ValueError, match="persons must be in 1..99.*occlusion must be a probability"
    ):
        generate_dataset(tmp_path / "x", persons=0, occlusion=2.0, progress=False)
    (tmp_path / "full").mkdir()
    (tmp_path / "full/notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="full: folder is not empty"):
        generate_dataset(tmp_path / "full", videos=1, frames=1, size=(32, 32), progress=False)


def test_cli(tmp_path, capsys):
    out = tmp_path / "synth"
    arguments = [
        "synth",
        str(out),
        "--videos",
        "1",
        "--frames",
        "2",
        "--size",
        "64x48",
        "--seed",
        "3",
    ]
    assert main(arguments) == 0
    assert "wrote 2 videos" in capsys.readouterr().out
    (video,) = read_dataset("posetrack21", out, "posetrack_data/val")
    assert len(video.frames) == 2 and Image.open(out / video.frames[0].image_path).size == (64, 48)
    assert main(arguments) == 2  # not empty any more
    assert "--overwrite" in capsys.readouterr().err
    assert main([*arguments, "--overwrite", "--frames", "3"]) == 0
    (video,) = read_dataset("posetrack21", out, "posetrack_data/val")
    assert len(video.frames) == 3
    with pytest.raises(SystemExit):
        main(["synth", str(out), "--size", "64"])
    assert "expected WIDTHxHEIGHT" in capsys.readouterr().err


def test_unannotated_people_lie_inside_the_ignore_regions():
    from matplotlib.path import Path as Polygon

    from vidpose.data.synthetic.render import _project

    checked = 0
    for seed in range(12):
        planned = make_scene(
            np.random.default_rng(seed), frames=4, persons=1, size=(160, 120), occlusion=0.0
        )
        assert bool(planned.extras) == bool(planned.ignore_polygons)
        for t in (0, 3):
            regions = [Polygon(polygon) for polygon in planned.ignore_regions(t)]
            for extra in planned.extras:
                body = _project(extra, t, planned.pan[t])
                joints = np.array(
                    [body.uv[name] for name in POSETRACK.joint_names if name in body.uv]
                )
                assert any(region.contains_points(joints).all() for region in regions)
                checked += 1
    assert checked > 0
