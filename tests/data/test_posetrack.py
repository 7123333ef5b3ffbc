"""PoseTrack17/18/21 readers on small files written in each real layout."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from vidpose.data.json_fields import AnnotationError
from vidpose.data.posetrack import (
    POSETRACK17_JOINT_NAMES,
    convert_posetrack17,
    posetrack_image_id,
    posetrack_json,
    read_dataset,
    read_posetrack,
    read_posetrack17,
    read_posetrack_file,
)
from vidpose.data.skeleton import POSETRACK

NAMES = list(POSETRACK.joint_names)


def keypoints_for(seed: int) -> list[float]:
    """51 numbers: 15 annotated joints with distinct coordinates, ear slots 0, 0, 0."""
    values = []
    for slot in range(17):
        if slot in (3, 4):
            values += [0, 0, 0]
        else:
            values += [100 + 10 * slot + seed, 50 + 5 * slot + seed, slot % 2]
    return values


def image_entry(video: str, split: str, frame: int, labeled: bool, **extra) -> dict:
    image_id = posetrack_image_id(video, frame)
    entry = {
        "id": image_id,
        "frame_id": image_id,
        "vid_id": video[:6],
        "file_name": f"images/{split}/{video}/{frame:06d}.jpg",
        "nframes": 4,
        "is_labeled": labeled,
        "ignore_regions_x": [],
        "ignore_regions_y": [],
    }
    entry.update(extra)
    return entry


def annotation_entry(image_id: int, person: int, **extra) -> dict:
    entry = {
        "id": image_id * 100 + person,
        "image_id": image_id,
        "track_id": person,
        "category_id": 1,
        "bbox": [90.0 + person, 40.0, 200.0, 120.0],
        "bbox_head": [180.0, 40.0, 20.0, 25.0],
        "keypoints": keypoints_for(person),
    }
    entry.update(extra)
    return entry


CATEGORY = {"supercategory": "person", "id": 1, "name": "person", "keypoints": NAMES}


def write_json(path: Path, content) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))
    return path


def posetrack18_video(video: str, split: str = "val", labeled=(False, True, True, False)) -> dict:
    images = [image_entry(video, split, frame, flag) for frame, flag in enumerate(labeled)]
    annotations = [
        annotation_entry(image["id"], person)
        for image in images
        if image["is_labeled"]
        for person in range(2)
    ]
    return {"images": images, "annotations": annotations, "categories": [CATEGORY]}


# --------------------------------------------------------------------------- 18 / 21


def test_posetrack18_per_video_folder(tmp_path):
    for video in ("000342_mpii_test", "012834_bonn_test"):
        write_json(tmp_path / "annotations/val" / f"{video}.json", posetrack18_video(video))
    videos = read_dataset("posetrack18", tmp_path, "annotations/val")

    assert [v.name for v in videos] == ["000342_mpii_test", "012834_bonn_test"]
    video = videos[0]
    assert video.source == tmp_path / "annotations/val/000342_mpii_test.json"
    assert [f.frame_index for f in video.frames] == [0, 1, 2, 3]
    assert [f.is_labeled for f in video.frames] == [False, True, True, False]
    assert all(f.num_frames == 4 for f in video.frames)
    assert video.frames[1].image_id == 10003420001
    assert videos[1].frames[0].image_id == 20128340000
    assert video.frames[2].image_path == "images/val/000342_mpii_test/000002.jpg"
    assert video.frames[0].persons == []
    person = video.frames[1].persons[1]
    assert person.track_id == 1 and person.annotation_id == 10003420001 * 100 + 1
    np.testing.assert_array_equal(person.keypoints.ravel(), keypoints_for(1))
    np.testing.assert_array_equal(person.bbox, [91, 40, 200, 120])
    np.testing.assert_array_equal(person.head_box, [180, 40, 20, 25])
    assert person.person_id is None
    assert not person.annotated[3] and not person.annotated[4] and person.annotated[0]


def test_posetrack21_per_video_with_oddities(tmp_path):
    video = "000001_mpii_test"
    content = posetrack18_video(video, labeled=(True, True, True))
    for image in content["images"]:
        image["has_labeled_person"] = True
    polygons_x = [[float(i), i + 10.0, i + 5.0] for i in range(12)]
    polygons_y = [[0.0, 0.0, 8.0 + i] for i in range(12)]
    content["images"][0]["ignore_regions_x"] = polygons_x
    content["images"][0]["ignore_regions_y"] = polygons_y
    del content["images"][1]["ignore_regions_x"], content["images"][1]["ignore_regions_y"]
    first, second = content["annotations"][0], content["annotations"][1]
    first["person_id"] = 1024
    first["keypoints"][6:9] = [-12.5, -3.0, 1]  # head_top above and left of the image
    del second["bbox_head"], second["track_id"]
    second["keypoints"] = [0] * 51  # a person with no annotated joint
    write_json(tmp_path / "posetrack_data/val" / f"{video}.json", content)

    (record,) = read_dataset("posetrack21", tmp_path, "posetrack_data/val")
    frame = record.frames[0]
    assert len(frame.ignore_regions) == 12
    np.testing.assert_array_equal(frame.ignore_regions[3], [[3, 0], [13, 0], [8, 11]])
    assert record.frames[1].ignore_regions == []
    with_id, without_joints = frame.persons
    assert with_id.person_id == 1024
    np.testing.assert_array_equal(with_id.keypoints[2], [-12.5, -3.0, 1])
    assert without_joints.track_id == -1 and without_joints.head_box is None
    assert not without_joints.annotated.any()
    np.testing.assert_array_equal(without_joints.bbox, [91, 40, 200, 120])


def test_columns_are_matched_by_name(tmp_path):
    """A file whose categories list the joints in another order lands in the same slots."""
    video = "000001_mpii_test"
    content = posetrack18_video(video, labeled=(True,))
    order = NAMES[::-1]
    content["categories"][0]["keypoints"] = order
    for annotation in content["annotations"]:
        triples = np.array(annotation["keypoints"]).reshape(17, 3)
        annotation["keypoints"] = triples[[NAMES.index(n) for n in order]].ravel().tolist()
    write_json(tmp_path / "a" / f"{video}.json", content)
    person = read_posetrack(tmp_path, "a")[0].frames[0].persons[0]
    np.testing.assert_array_equal(person.keypoints.ravel(), keypoints_for(0))


def test_merged_file_groups_videos_by_folder(tmp_path):
    first = posetrack18_video("000001_mpii_test")
    second = posetrack18_video("000002_bonn_test", labeled=(True, False))
    images = []
    for a, b in zip(first["images"][::-1], second["images"] + [None, None], strict=True):
        images += [a] + ([b] if b else [])  # interleaved, first video reversed
    merged = {
        "images": images,
        "annotations": second["annotations"] + first["annotations"],
        "categories": [CATEGORY],
    }
    write_json(tmp_path / "val.json", merged)
    videos = read_dataset("posetrack18", tmp_path, "val.json")
    assert [v.name for v in videos] == ["000001_mpii_test", "000002_bonn_test"]
    assert [f.image_path[-10:] for f in videos[0].frames] == [
        "000000.jpg", "000001.jpg", "000002.jpg", "000003.jpg"
    ]  # fmt: skip
    assert [f.is_labeled for f in videos[0].frames] == [False, True, True, False]
    assert [len(f.persons) for f in videos[1].frames] == [2, 0]
    assert all(f.video == "000002_bonn_test" for f in videos[1].frames)


def test_merged_file_without_folders_uses_vid_id(tmp_path):
    content = posetrack18_video("000001_mpii_test", labeled=(True, True))
    for image in content["images"]:
        image["file_name"] = image["file_name"].rsplit("/", 1)[1]
    write_json(tmp_path / "x.json", content)
    (video,) = read_posetrack_file(tmp_path / "x.json")
    assert video.name == "x" and len(video.frames) == 2


def test_single_file_is_named_after_its_stem(tmp_path):
    path = write_json(tmp_path / "000005_mpii_test.json", posetrack18_video("000005_mpii_test"))
    (video,) = read_posetrack_file(path)
    assert video.name == "000005_mpii_test" and video.source == path


def test_skipped_frames_are_added_unlabeled(tmp_path, caplog):
    content = posetrack18_video("000001_mpii_test", labeled=(True, True, True, True))
    content["images"] = [content["images"][0], content["images"][3]]
    kept = {image["id"] for image in content["images"]}
    content["annotations"] = [a for a in content["annotations"] if a["image_id"] in kept]
    write_json(tmp_path / "v.json", content)
    with caplog.at_level(logging.WARNING, logger="vidpose.data.posetrack"):
        (video,) = read_posetrack(tmp_path, "v.json")
    assert "skips 2 frame numbers" in caplog.text
    assert [f.is_labeled for f in video.frames] == [True, False, False, True]
    assert video.frames[2].image_path == "images/val/000001_mpii_test/000002.jpg"
    assert video.frames[2].image_id == 10000010002
    assert [f.frame_index for f in video.frames] == [0, 1, 2, 3]
    assert all(f.num_frames == 4 for f in video.frames)


def test_missing_is_labeled_and_missing_annotations(tmp_path):
    content = posetrack18_video("000001_mpii_test", labeled=(True, False))
    for image in content["images"]:
        del image["is_labeled"]
    write_json(tmp_path / "a/v.json", content)
    (video,) = read_posetrack(tmp_path, "a")
    assert [f.is_labeled for f in video.frames] == [True, False]

    del content["annotations"]  # test-split files carry no annotations
    write_json(tmp_path / "b/v.json", content)
    (video,) = read_posetrack(tmp_path, "b")
    assert [f.persons for f in video.frames] == [[], []]


def test_missing_bbox_is_derived_from_joints(tmp_path):
    content = posetrack18_video("000001_mpii_test", labeled=(True,))
    for annotation in content["annotations"]:
        del annotation["bbox"]
    write_json(tmp_path / "v.json", content)
    person = read_posetrack(tmp_path, "v.json")[0].frames[0].persons[0]
    points = person.keypoints[person.annotated, :2]
    extent = points.max(axis=0) - points.min(axis=0)
    np.testing.assert_allclose(person.bbox[2:], extent * 1.3)
    np.testing.assert_allclose(person.bbox[:2] + person.bbox[2:] / 2, points.min(0) + extent / 2)


def test_posetrack_json_round_trip(tmp_path):
    write_json(tmp_path / "a/000001_mpii_test.json", posetrack18_video("000001_mpii_test"))
    (video,) = read_posetrack(tmp_path, "a")
    video.frames[1].persons[0].person_id = 77
    content = posetrack_json(video, posetrack21=True)
    assert [image["has_labeled_person"] for image in content["images"]] == [
        False, True, True, False
    ]  # fmt: skip
    assert content["categories"][0]["keypoints"] == NAMES
    write_json(tmp_path / "b/000001_mpii_test.json", content)
    (again,) = read_posetrack(tmp_path, "b")
    for before, after in zip(video.frames, again.frames, strict=True):
        assert (before.image_id, before.image_path, before.is_labeled) == (
            after.image_id, after.image_path, after.is_labeled
        )  # fmt: skip
        for a, b in zip(before.persons, after.persons, strict=True):
            np.testing.assert_array_equal(a.keypoints, b.keypoints)
            assert (a.track_id, a.annotation_id, a.person_id) == (
                b.track_id,
                b.annotation_id,
                b.person_id,
            )


def test_image_id_scheme():
    assert posetrack_image_id("012834_mpii_test", 0) == 10128340000
    assert posetrack_image_id("000001_bonn_train", 7) == 20000010007
    assert posetrack_image_id("000003_mpiinew_test", 12) == 30000030012
    assert posetrack_image_id("holiday", 0) is None


# --------------------------------------------------------------------------- errors


def test_error_names_file_annotation_and_field(tmp_path):
    content = posetrack18_video("000001_mpii_test", labeled=(True,))
    content["annotations"][0]["id"] = 10000010000002
    content["annotations"][0]["keypoints"] = content["annotations"][0]["keypoints"][:48]
    write_json(tmp_path / "posetrack_data/val/000001_mpii_test.json", content)
    with pytest.raises(AnnotationError) as error:
        read_dataset("posetrack21", tmp_path, "posetrack_data/val")
    assert str(error.value) == (
        "posetrack_data/val/000001_mpii_test.json: annotation 10000010000002: "
        "'keypoints' has 48 numbers, expected 51"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda c: c["annotations"][0].update(image_id=5),
            "annotation 1000001000000: 'image_id' is 5, which no image in 'images' has",
        ),
        (
            lambda c: c["annotations"][0].update(bbox="wide"),
            "annotation 1000001000000: 'bbox' is text 'wide', expected a list of 4 numbers",
        ),
        (
            lambda c: c["annotations"][0]["keypoints"].__setitem__(4, "7"),
            "'keypoints' item 4 is text '7', expected a list of 51 numbers",
        ),
        (
            lambda c: c["images"][0].pop("file_name"),
            "image 10000010000: 'file_name' is missing, expected text",
        ),
        (
            lambda c: c["images"][0].update(ignore_regions_y=[[1.0]]),
            "'ignore_regions_y' has 1 polygons but 'ignore_regions_x' has 0",
        ),
        (
            lambda c: c["images"].append(dict(c["images"][0])),
            "image 10000010000: 'id' is listed twice",
        ),
        (
            lambda c: c["categories"][0]["keypoints"].__setitem__(1, "left_eye"),
            "categories[0]: 'keypoints' item 1 is text 'left_eye', expected PoseTrack joint names",
        ),
        (lambda c: c.pop("images"), "top level: 'images' is missing, expected a list"),
    ],
)
def test_malformed_posetrack18(tmp_path, change, message):
    content = posetrack18_video("000001_mpii_test", labeled=(True,))
    change(content)
    write_json(tmp_path / "annotations/val/000001_mpii_test.json", content)
    with pytest.raises(AnnotationError) as error:
        read_dataset("posetrack18", tmp_path, "annotations/val")
    assert str(error.value).startswith("annotations/val/000001_mpii_test.json: ")
    assert message in str(error.value)


def test_file_level_errors(tmp_path):
    (tmp_path / "bad.json").write_text('{"images": [\n  {"id": 1,}\n]}')
    with pytest.raises(AnnotationError, match=r"bad.json: not valid JSON \(line 2, column"):
        read_dataset("posetrack18", tmp_path, "bad.json")
    with pytest.raises(FileNotFoundError, match="annotations not found: .*missing"):
        read_dataset("posetrack18", tmp_path, "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty: no .json files"):
        read_dataset("posetrack21", tmp_path, "empty")
    with pytest.raises(ValueError, match="unknown dataset format 'posetrack19'"):
        read_dataset("posetrack19", tmp_path, "bad.json")
    write_json(tmp_path / "old.json", {"annolist": []})
    with pytest.raises(AnnotationError, match="old.json: this is a PoseTrack17 file"):
        read_dataset("posetrack18", tmp_path, "old.json")
    write_json(tmp_path / "new.json", posetrack18_video("000001_mpii_test"))
    with pytest.raises(AnnotationError, match="new.json: this is a PoseTrack18/21 file"):
        read_dataset("posetrack17", tmp_path, "new.json")


# --------------------------------------------------------------------------- PoseTrack17


def wrapped_point(joint_id: int, x: float, y: float, visible: int) -> dict:
    return {"id": [joint_id], "x": [x], "y": [y], "is_visible": [visible]}


def posetrack17_file(folder: str = "images/bonn/000001_bonn") -> dict:
    """Three frames: unlabeled, labeled with two people (one without joints), labeled
    with an ignore region; Matlab-style one-element lists everywhere."""
    points = [wrapped_point(j, 10.0 * j + 5, 100.0 - j, j % 2) for j in range(15)]
    person = {
        "x1": [40.0], "y1": [20.0], "x2": [60.0], "y2": [48.0],
        "track_id": [3], "score": [0.9],
        "annopoints": [{"point": points}],
    }  # fmt: skip
    empty = {
        "x1": [1.0],
        "y1": [2.0],
        "x2": [11.0],
        "y2": [22.0],
        "track_id": [4],
        "annopoints": [],
    }
    region = {
        "point": [{"x": [0.0], "y": [0.0]}, {"x": [30.0], "y": [0.0]}, {"x": [30.0], "y": [9.0]}]
    }
    return {
        "annolist": [
            {
                "image": [{"name": f"{folder}/00001.jpg"}],
                "imgnum": [1],
                "is_labeled": [0],
                "annorect": [],
            },
            {
                "image": [{"name": f"{folder}/00002.jpg"}],
                "imgnum": [2],
                "is_labeled": [1],
                "annorect": [person, empty],
            },
            {
                "image": [{"name": f"{folder}/00003.jpg"}],
                "imgnum": [3],
                "is_labeled": [1],
                "annorect": [{**person, "track_id": 5, "x1": 41.0}],  # bare scalars also read
                "ignore_regions": [region],
            },
        ]
    }


def test_posetrack17_layout(tmp_path):
    write_json(tmp_path / "annotations/val/000001_bonn.json", posetrack17_file())
    (video,) = read_dataset("posetrack17", tmp_path, "annotations/val")
    assert video.name == "000001_bonn"
    assert [f.is_labeled for f in video.frames] == [False, True, True]
    assert [f.image_id for f in video.frames] == [20000010000, 20000010001, 20000010002]
    assert video.frames[1].image_path == "images/bonn/000001_bonn/00002.jpg"
    person, empty = video.frames[1].persons
    assert person.track_id == 3 and person.score == pytest.approx(0.9)
    np.testing.assert_array_equal(person.head_box, [40, 20, 20, 28])
    for joint_id, name in enumerate(POSETRACK17_JOINT_NAMES):
        slot = POSETRACK.index(name)
        np.testing.assert_array_equal(
            person.keypoints[slot], [10.0 * joint_id + 5, 100.0 - joint_id, joint_id % 2]
        )
    assert POSETRACK.index("nose") == 0 and person.keypoints[0, 0] == 135  # PT17 id 13
    assert POSETRACK.index("right_ankle") == 16 and person.keypoints[16, 0] == 5  # PT17 id 0
    np.testing.assert_array_equal(person.keypoints[3:5], 0)
    assert not empty.annotated.any()
    np.testing.assert_array_equal(empty.bbox, [1, 2, 10, 20])  # no joints: the head box
    third = video.frames[2]
    assert third.persons[0].track_id == 5 and third.persons[0].head_box[0] == 41
    np.testing.assert_array_equal(third.ignore_regions[0], [[0, 0], [30, 0], [30, 9]])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda f: f["annolist"][1]["annorect"][0].update(x1=[1.0, 2.0]),
            "annolist[1] (images/bonn/000001_bonn/00002.jpg) annorect[0]: 'x1' has 2 values, "
            "expected one value (PoseTrack17 wraps each scalar in a one-element list)",
        ),
        (
            lambda f: f["annolist"][1]["annorect"][0]["annopoints"][0]["point"][2].update(id=[15]),
            "annorect[0] point[2]: 'id' is 15, expected a PoseTrack17 joint id 0..14",
        ),
        (
            lambda f: f["annolist"][1]["annorect"][0]["annopoints"][0]["point"][2].pop("x"),
            "annorect[0] point[2]: 'x' is missing, expected a one-element list holding a number",
        ),
        (
            lambda f: f["annolist"][1]["annorect"][0].pop("y2"),
            "annorect[0]: 'y2' is missing, expected all of x1, y1, x2, y2 for the head box",
        ),
        (
            lambda f: f["annolist"][0].update(image=[]),
            "annolist[0]: 'image' has 0 entries, expected one {'name': ...} entry",
        ),
    ],
)
def test_malformed_posetrack17(tmp_path, change, message):
    content = posetrack17_file()
    change(content)
    write_json(tmp_path / "v.json", content)
    with pytest.raises(AnnotationError) as error:
        read_posetrack17(tmp_path, "v.json")
    assert str(error.value).startswith("v.json: ")
    assert message in str(error.value)


def test_posetrack17_folder_must_give_an_id(tmp_path):
    write_json(tmp_path / "v.json", posetrack17_file("images/misc/holiday"))
    with pytest.raises(AnnotationError, match="image folder 'holiday' does not follow"):
        read_posetrack17(tmp_path, "v.json")


def test_posetrack17_merged_file_and_conversion(tmp_path):
    first = posetrack17_file("images/mpii/000342_mpii")
    second = posetrack17_file("images/bonn/000007_bonn")
    write_json(tmp_path / "all.json", {"annolist": first["annolist"] + second["annolist"]})
    videos = read_posetrack17(tmp_path, "all.json")
    assert [v.name for v in videos] == ["000342_mpii", "000007_bonn"]
    assert videos[0].frames[0].image_id == 10003420000

    written = convert_posetrack17(tmp_path, "all.json", tmp_path / "converted")
    assert [p.name for p in written] == ["000342_mpii.json", "000007_bonn.json"]
    content = json.loads(written[0].read_text())
    assert content["categories"][0]["keypoints"] == NAMES
    assert content["images"][0]["vid_id"] == "000342"
    assert content["annotations"][0]["bbox_head"] == [40.0, 20.0, 20.0, 28.0]
    converted = {video.name: video for video in read_posetrack(tmp_path, "converted")}
    assert converted.keys() == {"000342_mpii", "000007_bonn"}
    for original in videos:
        again = converted[original.name]
        for a, b in zip(original.frames, again.frames, strict=True):
            assert (a.image_id, a.image_path, a.is_labeled) == (
                b.image_id,
                b.image_path,
                b.is_labeled,
            )
            assert len(a.ignore_regions) == len(b.ignore_regions)
            for p, q in zip(a.persons, b.persons, strict=True):
                np.testing.assert_allclose(p.keypoints, q.keypoints)
                np.testing.assert_allclose(p.bbox, q.bbox, atol=0.01)
                np.testing.assert_allclose(p.head_box, q.head_box)
                assert p.track_id == q.track_id
