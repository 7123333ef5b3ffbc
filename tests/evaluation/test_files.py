"""Loading, pairing and writing PoseTrack files: error messages and round trips."""

import json

import numpy as np
import pytest

from vidpose.evaluation import (
    EvaluationInputError,
    PredictedPerson,
    evaluate_posetrack,
    load_posetrack_videos,
    posetrack_images,
    write_posetrack_predictions,
)

NAME = "000001_mpii_test"


@pytest.fixture
def one_video(pt, tmp_path):
    """A two-frame ground-truth file and a matching prediction file; returns the folders."""
    gt = pt.video_document(
        NAME,
        [
            [pt.gt_person(0, {0: (100, 100)}), pt.gt_person(1, {0: (300, 100)})],
            [pt.gt_person(0, {0: (102, 100)})],
        ],
    )
    pt.save(tmp_path / "gt", NAME, gt)
    pt.save(tmp_path / "pred", NAME, pt.gt_as_predictions(gt))
    return gt, tmp_path / "gt", tmp_path / "pred"


def rewrite(folder, change):
    path = folder / f"{NAME}.json"
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


def error_of(gt_folder, pred_folder):
    with pytest.raises(EvaluationInputError) as caught:
        evaluate_posetrack(gt_folder, pred_folder)
    return str(caught.value)


def test_unpaired_files_are_listed(pt, one_video, tmp_path):
    gt, gt_folder, pred_folder = one_video
    pt.save(gt_folder, "000002_bonn_test", pt.video_document("000002_bonn_test", [[]]))
    pt.save(gt_folder, "000003_mpii_test", pt.video_document("000003_mpii_test", [[]]))
    message = error_of(gt_folder, pred_folder)
    assert "2 of 3 ground-truth videos have no prediction" in message
    assert "000002_bonn_test, 000003_mpii_test" in message


def test_frame_count_mismatch(one_video):
    _, gt_folder, pred_folder = one_video

    def drop_last_frame(document):
        last = document["images"].pop()
        document["annotations"] = [
            a for a in document["annotations"] if a["image_id"] != last["id"]
        ]

    rewrite(pred_folder, drop_last_frame)
    message = error_of(gt_folder, pred_folder)
    assert f"{NAME}.json" in message and "has 1 images" in message and "has 2" in message


def test_image_id_mismatch(one_video):
    _, gt_folder, pred_folder = one_video

    def renumber(document):
        document["images"][1]["id"] += 5
        for annotation in document["annotations"]:
            if annotation["image_id"] == document["images"][1]["id"] - 5:
                annotation["image_id"] += 5

    rewrite(pred_folder, renumber)
    message = error_of(gt_folder, pred_folder)
    assert "image ids differ" in message and "images[1]" in message


def test_missing_categories(one_video):
    _, gt_folder, pred_folder = one_video
    rewrite(pred_folder, lambda document: document.pop("categories"))
    message = error_of(gt_folder, pred_folder)
    assert str(pred_folder / f"{NAME}.json") in message and "'categories' is missing" in message


def test_repeated_track_id_in_a_frame(one_video):
    _, gt_folder, pred_folder = one_video

    def duplicate(document):
        document["annotations"][1]["track_id"] = document["annotations"][0]["track_id"]

    rewrite(pred_folder, duplicate)
    message = error_of(gt_folder, pred_folder)
    assert "track id 0 appears more than once" in message and "000000.jpg" in message


def test_wrong_keypoint_length(one_video):
    _, gt_folder, pred_folder = one_video
    rewrite(pred_folder, lambda document: document["annotations"][2]["keypoints"].pop())
    message = error_of(gt_folder, pred_folder)
    assert "annotations[2]" in message and "'keypoints' has 50 numbers, expected 51" in message


def test_annotation_of_an_unknown_image(one_video):
    _, gt_folder, pred_folder = one_video
    rewrite(pred_folder, lambda document: document["annotations"][0].update(image_id=7))
    assert "image_id 7 is not in 'images'" in error_of(gt_folder, pred_folder)


def test_real_file_oddities_are_accepted(pt, tmp_path):
    # Negative coordinates, a person with no joint, visibility 0 on an annotated point.
    odd = pt.gt_person(2, {})
    negative = pt.gt_person(0, {0: (100, 100), 2: (105, -8)})
    negative["keypoints"][2] = 0.0  # annotated nose with visibility 0
    gt = pt.video_document(NAME, [[negative, odd]])
    pred = pt.predictions_document(gt, [[pt.pred_person(0, {0: (100, 100), 2: (105, -8)})]])
    old = pt.evaluate_documents(tmp_path, {NAME: gt}, {NAME: pred}, protocol="posetrack18")
    new = pt.evaluate_documents(tmp_path, {NAME: gt}, {NAME: pred}, protocol="posetrack21")
    # poseval keeps (x, y, v) unless all three are 0: the nose (v = 0) and the head top at
    # y = -8 both count. The kit keeps x > 0 and y > 0 only: no head top at all.
    assert old.ap.per_joint["nose"] == new.ap.per_joint["nose"] == 100.0
    assert old.ap.per_joint["head_top"] == 100.0
    assert new.ap.per_joint["head_top"] == 0.0


def test_person_without_head_box_counts_but_cannot_be_matched(pt, tmp_path):
    gt = pt.video_document(
        NAME, [[pt.gt_person(0, {0: (100, 100)}), pt.gt_person(1, {0: (300, 100)}, None)]]
    )
    pred = pt.predictions_document(
        gt, [[pt.pred_person(0, {0: (100, 100)}, 1.0), pt.pred_person(1, {0: (300, 100)}, 0.5)]]
    )
    report = pt.evaluate_documents(tmp_path, {NAME: gt}, {NAME: pred})
    # 2 positives; ranked 1.0 TP, 0.5 FP (no head size, no match) -> recall stops at 1/2
    # with precision 1 -> AP = 1/2.
    assert report.ap.per_joint["nose"] == pytest.approx(50.0)


def test_merged_file_is_split_by_image_folder(pt, tmp_path):
    documents = pt.random_ground_truth(np.random.default_rng(5), num_videos=2, num_frames=3)
    merged = {"images": [], "annotations": [], "categories": None}
    for document in documents.values():
        merged["images"] += document["images"]
        merged["annotations"] += document["annotations"]
        merged["categories"] = document["categories"]
    (tmp_path / "merged.json").write_text(json.dumps(merged))
    videos = load_posetrack_videos(tmp_path / "merged.json", role="ground truth")
    assert list(videos) == sorted(documents)
    assert [video.num_frames for video in videos.values()] == [3, 3]

    predictions = {name: pt.gt_as_predictions(d) for name, d in documents.items()}
    pt.save_all(tmp_path / "pred", predictions)
    report = evaluate_posetrack(tmp_path / "merged.json", tmp_path / "pred")
    assert report.num_videos == 2 and report.ap.total == pytest.approx(100.0)


def predicted_people(gt_document):
    """PredictedPerson per ground-truth annotation: exact joints, score 1 (NaN = absent)."""
    by_image = {}
    for annotation in gt_document["annotations"]:
        keypoints = np.asarray(annotation["keypoints"], dtype=float).reshape(17, 3)
        xy = np.where(keypoints[:, 2:] > 0, keypoints[:, :2], np.nan)
        by_image.setdefault(annotation["image_id"], []).append(
            PredictedPerson(keypoints=xy, scores=np.ones(17), track_id=annotation["track_id"])
        )
    return by_image


def test_written_predictions_score_100_against_the_same_ground_truth(pt, tmp_path):
    documents = pt.random_ground_truth(np.random.default_rng(2), num_videos=2, num_frames=4)
    pt.save_all(tmp_path / "gt", documents)
    for name, document in documents.items():
        write_posetrack_predictions(
            tmp_path / "pred" / f"{name}.json",
            document["images"],
            predicted_people(document),
            boxes="ground truth",
        )
    assert not list((tmp_path / "pred").glob(".*"))  # no temporary file left behind
    written = json.loads((tmp_path / "pred" / f"{NAME}.json").read_text())
    numbers = [v for a in written["annotations"] for v in a["keypoints"] + a["scores"]]
    assert all(isinstance(value, float) for value in numbers)  # never an all-int frame
    assert [i["id"] for i in written["images"]] == [i["id"] for i in documents[NAME]["images"]]
    for protocol in ("posetrack18", "posetrack21"):
        report = evaluate_posetrack(
            tmp_path / "gt", tmp_path / "pred", protocol=protocol, tracking=True
        )
        assert report.boxes == "ground truth"
        for metric in ("AP", "MOTA", "HOTA"):
            assert report.metrics[metric].total == pytest.approx(100.0)


def test_writer_refuses_bad_predictions_and_keeps_the_old_file(tmp_path):
    images = posetrack_images(NAME, 2)
    path = tmp_path / f"{NAME}.json"
    good = PredictedPerson(np.full((17, 2), 50.0), np.ones(17), track_id=3)
    write_posetrack_predictions(path, images, {images[0]["id"]: [good]})
    before = path.read_text()
    twice = {images[1]["id"]: [good, good]}
    with pytest.raises(EvaluationInputError, match="track id 3 twice"):
        write_posetrack_predictions(path, images, twice)
    short = PredictedPerson(np.zeros((15, 2)), np.ones(15), track_id=0)
    with pytest.raises(EvaluationInputError, match=r"keypoints must be \[17, 2\]"):
        write_posetrack_predictions(path, images, {images[0]["id"]: [short]})
    with pytest.raises(EvaluationInputError, match="not among the images"):
        write_posetrack_predictions(path, images, {123: [good]})
    assert path.read_text() == before


def test_images_from_scratch_follow_the_posetrack_id_scheme():
    images = posetrack_images("012834_mpii_test", 3)
    assert [image["id"] for image in images] == [10128340000, 10128340001, 10128340002]
    assert images[2]["file_name"] == "images/val/012834_mpii_test/000002.jpg"
    assert images[0]["vid_id"] == "012834" and images[0]["nframes"] == 3
    assert posetrack_images("000342_bonn_train", 1, split="train")[0]["id"] == 20003420000
    with pytest.raises(ValueError, match="video_number= and source="):
        posetrack_images("my_holiday", 2)
    custom = posetrack_images("my_holiday", 2, video_number=7, source="mpiinew")
    assert custom[1]["id"] == 30000070001
    assert custom[1]["file_name"] == "images/val/my_holiday/000001.jpg"
