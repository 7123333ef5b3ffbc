"""COCO person keypoints reader on a small file in the official layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vidpose.data.coco import read_coco
from vidpose.data.json_fields import AnnotationError
from vidpose.data.posetrack import read_dataset
from vidpose.data.skeleton import COCO


def keypoints(offset: float, annotated: int = 17) -> list[float]:
    values = []
    for joint in range(17):
        values += [offset + joint, offset + 2 * joint, 2] if joint < annotated else [0, 0, 0]
    return values


def coco_file() -> dict:
    return {
        "images": [
            {"id": 391895, "file_name": "000000391895.jpg", "width": 640, "height": 360},
            {"id": 522418, "file_name": "000000522418.jpg", "width": 640, "height": 480},
            {"id": 184613, "file_name": "000000184613.jpg", "width": 500, "height": 336},
        ],
        "annotations": [
            {
                "id": 1, "image_id": 391895, "category_id": 1, "iscrowd": 0,
                "bbox": [10.0, 20.0, 100.0, 200.0], "keypoints": keypoints(10), "num_keypoints": 17,
            },
            {
                "id": 2, "image_id": 391895, "category_id": 1, "iscrowd": 1,
                "bbox": [300.0, 40.0, 50.0, 60.0],
                "segmentation": {"counts": "abc", "size": [360, 640]},
                "keypoints": [0] * 51, "num_keypoints": 0,
            },
            {
                "id": 3, "image_id": 391895, "category_id": 1, "iscrowd": 0,
                "bbox": [200.0, 20.0, 30.0, 90.0], "keypoints": [0] * 51, "num_keypoints": 0,
            },
            {
                "id": 4, "image_id": 522418, "category_id": 1, "iscrowd": 0,
                "bbox": [1.0, 2.0, 3.0, 4.0], "keypoints": keypoints(50, 5), "num_keypoints": 5,
            },
        ],
        "categories": [
            {"id": 1, "name": "person", "supercategory": "person",
             "keypoints": list(COCO.joint_names), "skeleton": [[16, 14]]}
        ],
    }  # fmt: skip


def write(
    root: Path, content: dict, name: str = "annotations/person_keypoints_val2017.json"
) -> str:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))
    return name


def test_images_become_one_frame_videos(tmp_path):
    videos = read_dataset("coco", tmp_path, write(tmp_path, coco_file()))
    assert [v.name for v in videos] == ["000000391895", "000000522418", "000000184613"]
    frame = videos[0].frames[0]
    assert (frame.frame_index, frame.num_frames, frame.is_labeled) == (0, 1, True)
    assert frame.image_path == "val2017/000000391895.jpg"  # the split from the file name
    assert (frame.width, frame.height, frame.image_id) == (640, 360, 391895)
    # the crowd is not a person; its box is an ignore region
    assert [p.annotation_id for p in frame.persons] == [1, 3]
    assert [p.track_id for p in frame.persons] == [0, 1]
    np.testing.assert_array_equal(
        frame.ignore_regions[0], [[300, 40], [350, 40], [350, 100], [300, 100]]
    )
    np.testing.assert_array_equal(frame.persons[0].keypoints.ravel(), keypoints(10))
    assert frame.persons[0].head_box is None
    assert not frame.persons[1].annotated.any()  # zero-keypoint people are kept
    assert videos[1].frames[0].persons[0].annotated.sum() == 5
    assert videos[2].frames[0].persons == [] and videos[2].frames[0].is_labeled


def test_image_dir(tmp_path):
    name = write(tmp_path, coco_file(), "coco/val.json")
    assert read_coco(tmp_path, name)[0].frames[0].image_path == "000000391895.jpg"
    assert read_coco(tmp_path, name, image_dir="pics")[0].frames[0].image_path == (
        "pics/000000391895.jpg"
    )


def test_file_names_with_folders_give_unique_names(tmp_path):
    content = coco_file()
    content["images"][0]["file_name"] = "images/val/000001_mpii_test/000004.jpg"
    content["images"][1]["file_name"] = "images/val/000002_mpii_test/000004.jpg"
    videos = read_coco(tmp_path, write(tmp_path, content, "coco/val.json"))
    assert videos[0].name == "images_val_000001_mpii_test_000004"
    assert videos[0].frames[0].image_path == "images/val/000001_mpii_test/000004.jpg"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda c: c["annotations"][3].update(keypoints=[1.0] * 48),
            "annotation 4: 'keypoints' has 48 numbers, expected 51",
        ),
        (
            lambda c: c["annotations"][0].update(category_id=3),
            "annotation 1: 'category_id' is 3, not a category with keypoints, expected one of [1]",
        ),
        (
            lambda c: c["annotations"][0].update(image_id=42),
            "annotation 1: 'image_id' is 42, which no image in 'images' has",
        ),
        (
            lambda c: c["annotations"][0].pop("bbox"),
            "annotation 1: 'bbox' is missing, expected a list of 4 numbers",
        ),
        (
            lambda c: c["images"][1].update(file_name="000000391895.png"),
            "image 522418: 'file_name' gives the video name '000000391895' that image 391895",
        ),
        (
            lambda c: c["categories"][0]["keypoints"].pop(),
            "categories[0]: 'keypoints' has 16 names, expected 17",
        ),
    ],
)
def test_malformed_coco(tmp_path, change, message):
    content = coco_file()
    change(content)
    name = write(tmp_path, content)
    with pytest.raises(AnnotationError) as error:
        read_coco(tmp_path, name)
    assert str(error.value).startswith("annotations/person_keypoints_val2017.json: ")
    assert message in str(error.value)


def test_folder_instead_of_file(tmp_path):
    (tmp_path / "annotations").mkdir()
    with pytest.raises(AnnotationError, match="annotations: is a folder, expected one COCO"):
        read_coco(tmp_path, "annotations")
