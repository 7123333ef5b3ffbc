"""Person detectors: every ONNX layout on tiny models built here with onnx's helper API,
the download cache on file URLs, the ultralytics adapter on a stand-in package, and
detection every N frames."""

from __future__ import annotations

import json
import sys
import types
import zipfile

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from vidpose.inference.detectors import (  # noqa: E402
    DETECTORS,
    RTMDET_MEAN,
    RTMDET_STD,
    OnnxDetector,
    UltralyticsDetector,
    build_detector,
    nms,
)
from vidpose.inference.downloads import DownloadError, RemoteFile, fetch, sha256_of  # noqa: E402
from vidpose.inference.extract import ExtractOptions, extract_video  # noqa: E402
from vidpose.inference.person_boxes import DetectorBoxes, SinglePersonBoxes  # noqa: E402

INPUT = 64  # the tiny models' square input
FRAME = (96, 128)  # H, W of the test frames: letterbox scale 0.5
PERSON = np.array([20.0, 10.0, 40.0, 60.0])  # x, y, w, h in frame pixels
QUIET = ExtractOptions(progress=False)


def constant_model(path, outputs: dict[str, np.ndarray], *, input_shape=(1, 3, INPUT, INPUT)):
    """An ONNX model with one image input whose outputs are the given arrays (each
    float output plus 0 x the input's mean, so the input is really read)."""
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
    ]
    initializers = [numpy_helper.from_array(np.zeros(1, np.float32), "zero")]
    graph_outputs = []
    for name, value in outputs.items():
        initializers.append(numpy_helper.from_array(value, f"{name}_value"))
        if value.dtype == np.float32:
            nodes.append(helper.make_node("Add", [f"{name}_value", "nothing"], [name]))
            kind = TensorProto.FLOAT
        else:
            nodes.append(helper.make_node("Identity", [f"{name}_value"], [name]))
            kind = TensorProto.INT64
        graph_outputs.append(helper.make_tensor_value_info(name, kind, list(value.shape)))
    graph = helper.make_graph(
        nodes,
        "tiny_detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, list(input_shape))],
        graph_outputs,
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def yolox_raw(boxes_in_input: list[tuple[np.ndarray, float, int]]) -> np.ndarray:
    """[1, N, 5 + 2] raw YOLOX output for a 64 x 64 input: each (x1 y1 x2 y2 box in
    input pixels, score, class) written into a cell of stride 8 that holds its centre,
    the other cells empty."""
    cells = [(s, INPUT // s) for s in (8, 16, 32)]
    rows = sum(side * side for _, side in cells)
    raw = np.zeros((rows, 7), np.float32)
    raw[:, 2:4] = np.log(1.0)
    used = set()
    for corners, score, label in boxes_in_input:
        centre, size = (corners[:2] + corners[2:]) / 2, corners[2:] - corners[:2]
        gx, gy = int(centre[0] // 8), int(centre[1] // 8)
        row = gy * (INPUT // 8) + gx
        while row in used:  # a second box near the first: the next cell of stride 16
            row = 64 + (int(centre[1] // 16) * 4 + int(centre[0] // 16))
            gx, gy, stride = row - 64 - (row - 64) // 4 * 4, (row - 64) // 4, 16
            break
        else:
            stride = 8
        used.add(row)
        raw[row, :2] = centre / stride - (gx, gy)
        raw[row, 2:4] = np.log(size / stride)
        raw[row, 4] = score
        raw[row, 5 + label] = 1.0
    return raw[None]


def person_in_input(offset=(0.0, 0.0)) -> np.ndarray:
    """PERSON's corners in the 64 x 64 letterboxed input (scale 0.5)."""
    x, y, w, h = PERSON * 0.5
    return np.array([x, y, x + w, y + h]) + np.tile(offset, 2)


def frame() -> np.ndarray:
    image = np.zeros((*FRAME, 3), np.uint8)
    image[..., 0] = 200  # red: tells RGB from BGR
    image[..., 2] = 10
    return image


# --------------------------------------------------------------------------- layouts


def test_yolox_raw_layout_decodes_grid_cells_and_keeps_persons(tmp_path):
    box = person_in_input()
    raw = yolox_raw([(box, 0.9, 0), (box + 1, 0.6, 0), (box + [30, 0, 30, 0], 0.95, 1)])
    detector = OnnxDetector(constant_model(tmp_path / "yolox.onnx", {"output": raw}))
    assert detector.layout == "yolox"
    boxes, scores = detector(frame())
    # the duplicate is suppressed (NMS), the other class ignored, the letterbox undone
    np.testing.assert_allclose(scores, [0.9], rtol=1e-5)
    np.testing.assert_allclose(boxes[0], PERSON, atol=1e-3)


def test_end2end_layout_reads_dets_and_labels(tmp_path):
    box = person_in_input()
    dets = np.array([[[*box, 0.8], [*(box + 5), 0.95], [*(box / 2), 0.3]]], np.float32)
    labels = np.array([[0, 1, 0]], np.int64)
    path = constant_model(tmp_path / "end2end.onnx", {"dets": dets, "labels": labels})
    detector = OnnxDetector(path)
    assert detector.layout == "end2end"
    assert detector.normalize == (RTMDET_MEAN, RTMDET_STD)  # no pipeline.json: RTMDet's
    boxes, scores = detector(frame())
    np.testing.assert_allclose(scores, [0.8, 0.3], rtol=1e-5)
    np.testing.assert_allclose(boxes[0], PERSON, atol=1e-3)
    np.testing.assert_allclose(boxes[1], [10, 5, 20, 30], atol=1e-3)


def test_yolov8_layout_is_centred_rgb_and_transposed(tmp_path):
    top = (INPUT - FRAME[0] * 0.5) / 2  # 8 rows of padding above the frame
    corners = person_in_input((0.0, top))
    columns = np.zeros((6, 84), np.float32)
    columns[:2, 5] = (corners[:2] + corners[2:]) / 2
    columns[2:4, 5] = corners[2:] - corners[:2]
    columns[4, 5] = 0.7  # person
    columns[:4, 9] = columns[:4, 5]
    columns[5, 9] = 0.99  # another class
    detector = OnnxDetector(constant_model(tmp_path / "v8.onnx", {"output0": columns[None]}))
    assert detector.layout == "yolov8"
    boxes, scores = detector(frame())
    np.testing.assert_allclose(scores, [0.7], rtol=1e-5)
    np.testing.assert_allclose(boxes[0], PERSON, atol=1e-3)


def test_preprocessing_of_each_layout(tmp_path):
    raw = yolox_raw([])
    yolox = OnnxDetector(constant_model(tmp_path / "y.onnx", {"output": raw}))
    tensor, scale, offset = yolox.preprocess(frame())
    assert scale == 0.5 and offset.tolist() == [0, 0]
    np.testing.assert_allclose(tensor[0, :, 0, 0], [10, 0, 200])  # BGR 0..255
    np.testing.assert_allclose(tensor[0, :, -1, -1], [114, 114, 114])  # padded bottom

    dets = np.zeros((1, 1, 5), np.float32)
    path = constant_model(tmp_path / "e.onnx", {"dets": dets, "labels": np.zeros((1, 1), np.int64)})
    (tmp_path / "pipeline.json").write_text(
        json.dumps({"pipeline": {"tasks": [{"transforms": [{"type": "Resize"}]}]}})
    )
    plain = OnnxDetector(path)  # mmdeploy's pipeline.json without Normalize: none
    assert plain.preprocess(frame())[0][0, 2, 0, 0] == 200
    rtmdet = OnnxDetector(path, normalize=(RTMDET_MEAN, RTMDET_STD))
    expected = (np.array([10, 0, 200]) - RTMDET_MEAN) / RTMDET_STD
    np.testing.assert_allclose(rtmdet.preprocess(frame())[0][0, :, 0, 0], expected, rtol=1e-5)

    columns = np.zeros((1, 6, 84), np.float32)
    v8 = OnnxDetector(constant_model(tmp_path / "v.onnx", {"output0": columns}))
    tensor, _, offset = v8.preprocess(frame())
    assert offset.tolist() == [0, 8]
    np.testing.assert_allclose(tensor[0, :, 8, 0], [200 / 255, 0, 10 / 255], rtol=1e-6)
    np.testing.assert_allclose(tensor[0, :, 0, 0], [114 / 255] * 3, rtol=1e-6)


def test_unknown_layout_is_refused_with_the_supported_ones(tmp_path):
    path = constant_model(tmp_path / "odd.onnx", {"a": np.zeros((1, 3), np.float32)})
    with pytest.raises(ValueError, match="no supported detector layout"):
        OnnxDetector(path)
    with pytest.raises(ValueError, match="not a file and not a known detector"):
        build_detector(str(tmp_path / "missing"))


def test_nms_keeps_the_best_of_overlapping_boxes():
    corners = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], float)
    assert nms(corners, np.array([0.5, 0.9, 0.4]), 0.45).tolist() == [1, 2]


# --------------------------------------------------------------------------- ultralytics


def test_ultralytics_adapter_asks_for_persons_in_bgr(monkeypatch):
    calls = {}

    class Boxes:
        xyxy = np.array([[10.0, 20.0, 50.0, 100.0]])
        conf = np.array([0.8])

    class YOLO:
        def __init__(self, model):
            calls["model"] = model

        def predict(self, image, **options):
            calls["image"], calls["options"] = image, options
            return [types.SimpleNamespace(boxes=Boxes())]

    monkeypatch.setitem(sys.modules, "ultralytics", types.SimpleNamespace(YOLO=YOLO))
    detector = build_detector("ultralytics:yolo11n.pt")
    assert isinstance(detector, UltralyticsDetector) and calls["model"] == "yolo11n.pt"
    boxes, scores = detector(frame())
    assert calls["options"]["classes"] == [0]
    assert calls["image"][0, 0].tolist() == [10, 0, 200]  # BGR, as ultralytics reads arrays
    np.testing.assert_allclose(boxes, [[10, 20, 40, 80]])
    np.testing.assert_allclose(scores, [0.8])


def test_ultralytics_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ultralytics", None)
    with pytest.raises(ImportError, match="pip install ultralytics"):
        build_detector("yolov8n.pt")


# --------------------------------------------------------------------------- downloads


def test_named_detector_is_fetched_from_a_zip_and_checked_afterwards(tmp_path, monkeypatch):
    """The download path on a local file URL: the archive's ONNX is extracted into the
    cache, its SHA-256 recorded, and a changed file refused on the next use."""
    model = constant_model(tmp_path / "end2end.onnx", {
        "dets": np.array([[[*person_in_input(), 0.8]]], np.float32),
        "labels": np.zeros((1, 1), np.int64),
    })  # fmt: skip
    archive = tmp_path / "rtmdet.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.write(model, "20230831/rtmdet_nano/end2end.onnx")
        bundle.writestr("20230831/rtmdet_nano/deploy.json", "{}")
    entry = DETECTORS["rtmdet-nano"]
    local = type(entry)(
        remote=RemoteFile(entry.remote.name, archive.as_uri(), member_suffix=".onnx"),
        layout=entry.layout,
        normalize=entry.normalize,
    )
    monkeypatch.setitem(DETECTORS, "rtmdet-nano", local)
    cache = tmp_path / "cache"
    monkeypatch.setenv("VIDPOSE_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # file URLs still work
    detector = build_detector("rtmdet-nano")
    boxes, scores = detector(frame())
    np.testing.assert_allclose(boxes, [PERSON], atol=1e-3)
    cached = cache / "rtmdet_nano_person.onnx"
    record = (cache / "rtmdet_nano_person.onnx.sha256").read_text().split()[0]
    assert record == sha256_of(cached) == sha256_of(model)
    assert not list(cache.glob(".*"))  # no temporary files left

    cached.write_bytes(cached.read_bytes() + b"x")
    with pytest.raises(DownloadError, match="differs from the expected"):
        build_detector("rtmdet-nano")


def test_checksums_and_the_offline_message(tmp_path, monkeypatch):
    source = tmp_path / "weights-216eae50_20230314.pth"
    source.write_bytes(b"not really weights")
    digest = sha256_of(source)
    good = RemoteFile("w.pth", source.as_uri(), sha256=digest)
    assert fetch(good, cache=tmp_path / "a").read_bytes() == b"not really weights"
    bad = RemoteFile("w.pth", source.as_uri(), sha256="0" * 64)
    with pytest.raises(DownloadError, match="expected 0000"):
        fetch(bad, cache=tmp_path / "b")
    assert not (tmp_path / "b" / "w.pth").exists()
    wrong_prefix = RemoteFile("w.pth", source.as_uri(), sha256_prefix="216eae50")
    if not digest.startswith("216eae50"):
        with pytest.raises(DownloadError, match="does not start with 216eae50"):
            fetch(wrong_prefix, cache=tmp_path / "c")
    right_prefix = RemoteFile("w.pth", source.as_uri(), sha256_prefix=digest[:8])
    fetch(right_prefix, cache=tmp_path / "d")

    monkeypatch.setenv("VIDPOSE_OFFLINE", "1")
    remote = RemoteFile("yolox_nano.onnx", "https://example.invalid/yolox_nano.onnx")
    with pytest.raises(DownloadError) as error:
        fetch(remote, cache=tmp_path / "offline")
    message = str(error.value)
    assert "https://example.invalid/yolox_nano.onnx" in message
    assert str(tmp_path / "offline" / "yolox_nano.onnx") in message
    # a file put there by hand is used (and its checksum recorded from then on)
    (tmp_path / "offline").mkdir()
    (tmp_path / "offline" / "yolox_nano.onnx").write_bytes(b"by hand")
    assert fetch(remote, cache=tmp_path / "offline").read_bytes() == b"by hand"
    assert (tmp_path / "offline" / "yolox_nano.onnx.sha256").is_file()


# --------------------------------------------------------------------------- in extraction


class CountingDetector:
    """A detector answering ``boxes[frame]`` for the frame whose mean grey level says
    its number (grey_frames), counting its calls."""

    def __init__(self, boxes: dict[int, list]) -> None:
        self.boxes = boxes
        self.frames: list[int] = []

    def __call__(self, image):
        index = int(round((float(image.mean()) - 10) / 8))
        self.frames.append(index)
        found = self.boxes.get(index, [])
        return np.reshape(found, (-1, 4)), np.full(len(found), 0.9)


def grey_frames(count, size=(64, 96)):
    return [np.full((*size, 3), 10 + 8 * index, np.uint8) for index in range(count)]


def test_detection_every_n_frames_carries_boxes_from_the_poses(make_predictor, tmp_path):
    people = [[4, 4, 30, 50], [50, 6, 30, 50]]
    detector = CountingDetector({index: people for index in range(9)})
    boxes = DetectorBoxes(detector, score_threshold=0.5, every=4)
    summary = extract_video(
        tmp_path / "walk.mp4", make_predictor(), boxes, tmp_path,
        options=QUIET, frames=grey_frames(9),
    )  # fmt: skip
    assert detector.frames == [0, 4, 8]
    assert summary.persons == 2 * 9  # both people carried between detections
    content = json.loads((tmp_path / "walk.json").read_text())
    assert {person["track_id"] for person in content["annotations"]} == {0, 1}
    scores = {round(person["score"], 6) for person in content["annotations"]}
    assert scores == {0.9}  # a carried box keeps its detection's score


def test_single_person_with_a_detector_has_nobody_where_it_finds_nobody(make_predictor, tmp_path):
    detector = CountingDetector({0: [[4, 4, 30, 50]], 1: [[6, 4, 30, 50]], 4: [[8, 4, 30, 50]]})
    boxes = SinglePersonBoxes(detector=detector, score_threshold=0.5)
    options = ExtractOptions(progress=False, track=False)
    summary = extract_video(
        tmp_path / "one.mp4", make_predictor(), boxes, tmp_path, options=options,
        frames=grey_frames(5),
    )  # fmt: skip
    assert summary.persons == 3
    content = json.loads((tmp_path / "one.json").read_text())
    assert sorted(person["image_id"] for person in content["annotations"]) == [0, 1, 4]


def test_cli_extracts_people_with_an_onnx_detector(tiny_checkpoint, tmp_path, write_mp4):
    from vidpose.cli import main

    images = [np.full((96, 128, 3), 40, np.uint8) for _ in range(4)]
    for image in images:
        image[10:70, 20:60] = 220
    video = write_mp4(tmp_path / "walk.mp4", images)
    box = person_in_input()
    path = constant_model(tmp_path / "det.onnx", {"output": yolox_raw([(box, 0.9, 0)])})
    out = tmp_path / "out"
    code = main([
        "extract", str(video), "--checkpoint", str(tiny_checkpoint), "--detector", str(path),
        "--out", str(out), "--no-progress", "--render",
        "--smooth", "oneeuro",
    ])  # fmt: skip
    assert code == 0
    content = json.loads((out / "walk.json").read_text())
    assert len(content["annotations"]) == 4
    np.testing.assert_allclose(content["annotations"][0]["bbox"], PERSON, atol=1e-3)
    assert "det.onnx" in content["vidpose"]["boxes"]
    marker = json.loads((out / "walk.done").read_text())
    assert "det.onnx" in marker["produced_by"]["boxes"]
    assert (out / "walk.mp4").is_file()
