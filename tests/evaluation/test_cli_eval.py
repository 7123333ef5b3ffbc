"""`vidpose eval` end to end on files the test writes."""

import json

import numpy as np
import pytest

from vidpose.cli import main


def test_eval_prints_tables_and_writes_json(pt, tmp_path, capsys):
    documents = pt.random_ground_truth(np.random.default_rng(4), num_videos=2, num_frames=4)
    pt.save_all(tmp_path / "gt", documents)
    pt.save_all(tmp_path / "pred", {n: pt.gt_as_predictions(d) for n, d in documents.items()})
    out = tmp_path / "results" / "eval.json"
    status = main(
        ["eval", str(tmp_path / "gt"), str(tmp_path / "pred"), "--protocol", "posetrack21",
         "--tracking", "--boxes", "ground truth", "--json", str(out)]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert status == 0
    assert "protocol posetrack21" in printed and "Person boxes: ground truth" in printed
    for row in ("AP ", "MOTA", "MOTP", "Prec", "Rec", "HOTA", "DetA", "AssA", "LocA"):
        assert f"\n{row}" in printed
    assert "Head   Shou    Elb    Wri    Hip   Knee   Ankl  Total" in printed
    result = json.loads(out.read_text())
    assert result["protocol"] == "posetrack21" and result["tracking_mode"] == "official"
    assert result["metrics"]["AP"]["groups"]["Total"] == 100.0
    assert result["metrics"]["HOTA"]["per_joint"]["left_ankle"] == 100.0


def test_eval_reports_missing_prediction_files(pt, tmp_path, capsys):
    documents = pt.random_ground_truth(np.random.default_rng(4), num_videos=2, num_frames=2)
    pt.save_all(tmp_path / "gt", documents)
    first = sorted(documents)[0]
    pt.save(tmp_path / "pred", first, pt.gt_as_predictions(documents[first]))
    status = main(["eval", str(tmp_path / "gt"), str(tmp_path / "pred")])
    error = capsys.readouterr().err
    assert status == 2
    assert "vidpose eval: error: 1 of 2 ground-truth videos have no prediction" in error
    assert sorted(documents)[1] in error


def test_eval_coco(tmp_path, capsys):
    names = ["nose", *[f"joint{i}" for i in range(16)]]
    keypoints = np.column_stack(
        [np.linspace(60, 300, 17), np.linspace(80, 380, 17), 2 * np.ones(17)]
    )
    gt = {
        "images": [{"id": 1, "file_name": "1.jpg"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [50, 50, 300, 350],
                         "keypoints": keypoints.reshape(-1).tolist()}],
        "categories": [{"id": 1, "name": "person", "keypoints": names}],
    }  # fmt: skip
    results = [{"image_id": 1, "category_id": 1, "keypoints": keypoints.reshape(-1).tolist(),
                "score": 1.0}]  # fmt: skip
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "results.json").write_text(json.dumps(results))
    # Unknown joint names: no skeleton to take the OKS sigmas from -> a clear error.
    status = main(["eval", "--coco", str(tmp_path / "gt.json"), str(tmp_path / "results.json")])
    assert status == 2
    assert "match no known skeleton" in capsys.readouterr().err
    gt["categories"][0]["keypoints"] = [
        "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
        "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
        "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    ]  # fmt: skip
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    out = tmp_path / "coco.json"
    status = main(
        ["eval", "--coco", str(tmp_path / "gt.json"), str(tmp_path / "results.json"),
         "--json", str(out)]
    )  # fmt: skip
    assert status == 0
    assert "AP 100.0" in capsys.readouterr().out
    written = json.loads(out.read_text())["coco"]
    # One large person (area 300 x 350): AP 100; no medium person: APm undefined -> null.
    assert written["AP"] == pytest.approx(100.0) and written["APm"] is None
