"""Person detectors for extraction: ONNX models through onnxruntime, and ultralytics.

Every detector here is a callable ``frame [H, W, 3] uint8 RGB -> (boxes [P, 4] x, y,
w, h in frame pixels, scores [P])``, the ``Detector`` that
``vidpose.inference.person_boxes.DetectorBoxes`` takes, and has a ``description``
(recorded in the outputs' ``.done`` marker and JSON).

:func:`build_detector` turns ``vidpose extract --detector SPEC`` into one:

- a name from :data:`DETECTORS` (YOLOX from its authors' releases, RTMDet and YOLOX
  person models from OpenMMLab's mmdeploy exports; all Apache-2.0), fetched on first
  use into the cache (``vidpose.inference.downloads``);
- a path to an ``.onnx`` file of one of the layouts below (found from its outputs);
- ``ultralytics:MODEL`` or a ``.pt`` path: an ultralytics YOLO model through the
  ``ultralytics`` package, when installed (AGPL-3.0: never a vidpose dependency).

ONNX layouts (input ``[1, 3, H, W]`` float32; the frame is resized keeping its aspect
ratio and padded with grey 114, "letterbox"):

======== ======================================= =========================================
layout   outputs                                 input
======== ======================================= =========================================
yolox    one ``[1, N, 5 + C]``: raw YOLOX head,  BGR 0..255, padded right/bottom (YOLOX's
         (x, y, log w, log h) per grid cell of   ``preproc``); boxes decoded here
         strides 8, 16, 32, objectness, C class  (``(xy + grid) * stride``,
         scores (already sigmoid)                ``exp(wh) * stride``), score = obj * cls,
                                                 then NMS
end2end  ``dets [1, N, 5]`` (x1, y1, x2, y2,     BGR, normalised with mean (103.53, 116.28,
         score, after NMS) and ``labels [1, N]`` 123.675) / std (57.375, 57.12, 58.395)
         (mmdeploy's end-to-end export of mmdet  (RTMDet) unless the entry or a
         RTMDet / YOLOX)                         ``pipeline.json`` beside the file says
                                                 otherwise; padded right/bottom
yolov8   one ``[1, 4 + C, N]``: (cx, cy, w, h)   RGB 0..1, padded on both sides (centred),
         and C class scores per anchor           as ultralytics exports; then NMS
         (ultralytics' ONNX export)
======== ======================================= =========================================

Boxes are mapped back to frame pixels (undoing the letterbox) and only the person
class (``person_class``, 0 in COCO and in the person-only models) is kept.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vidpose.inference.downloads import RemoteFile, fetch, sha256_of

# mmdet's RTMDet normalisation, BGR order (configs' data_preprocessor).
RTMDET_MEAN = (103.53, 116.28, 123.675)
RTMDET_STD = (57.375, 57.12, 58.395)
PAD_VALUE = 114
YOLOX_STRIDES = (8, 16, 32)


@dataclass(frozen=True)
class DetectorEntry:
    """A named public detector: its file and how to feed it.

    Attributes:
        remote: the file (``vidpose.inference.downloads.RemoteFile``).
        layout: "yolox", "end2end" or "yolov8" (module docstring).
        normalize: (mean, std) applied to the BGR input, or None (0..255 as is).
        person_class: the class index of "person".
    """

    remote: RemoteFile
    layout: str
    normalize: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    person_class: int = 0


_YOLOX = "https://github.com/Megvii-BaseDetection/YOLOX/releases/download/0.1.1rc0"
_MMDEPLOY = "https://download.openmmlab.com/mmpose/v1/projects/rtmposev1/onnx_sdk"

# No SHA-256 is listed: none could be verified when this was written (no network), so
# each file's is recorded on its first download and checked from then on
# (vidpose.inference.downloads). The hex digits in OpenMMLab's archive names hash the
# original .pth, not the archive, so they cannot check it either.
DETECTORS: dict[str, DetectorEntry] = {
    "yolox-nano": DetectorEntry(
        RemoteFile(
            "yolox_nano.onnx",
            f"{_YOLOX}/yolox_nano.onnx",
            license="Apache-2.0",
            note="YOLOX-Nano, COCO 80 classes, 416x416, 0.9 M parameters",
        ),
        "yolox",
    ),
    "yolox-tiny": DetectorEntry(
        RemoteFile(
            "yolox_tiny.onnx",
            f"{_YOLOX}/yolox_tiny.onnx",
            license="Apache-2.0",
            note="YOLOX-Tiny, COCO 80 classes, 416x416",
        ),
        "yolox",
    ),
    "yolox-s": DetectorEntry(
        RemoteFile(
            "yolox_s.onnx",
            f"{_YOLOX}/yolox_s.onnx",
            license="Apache-2.0",
            note="YOLOX-S, COCO 80 classes, 640x640",
        ),
        "yolox",
    ),
    "yolox-m": DetectorEntry(
        RemoteFile(
            "yolox_m.onnx",
            f"{_YOLOX}/yolox_m.onnx",
            license="Apache-2.0",
            note="YOLOX-M, COCO 80 classes, 640x640",
        ),
        "yolox",
    ),
    "rtmdet-nano": DetectorEntry(
        RemoteFile(
            "rtmdet_nano_person.onnx",
            f"{_MMDEPLOY}/rtmdet_nano_8xb32-100e_coco-obj365-person-05d8511e.zip",
            member_suffix=".onnx",
            license="Apache-2.0",
            note="RTMDet-nano person (COCO + Objects365), 320x320, mmdeploy export",
        ),
        "end2end",
        normalize=(RTMDET_MEAN, RTMDET_STD),
    ),
    "yolox-tiny-humanart": DetectorEntry(
        RemoteFile(
            "yolox_tiny_humanart.onnx",
            f"{_MMDEPLOY}/yolox_tiny_8xb8-300e_humanart-6f3252f9.zip",
            member_suffix=".onnx",
            license="Apache-2.0",
            note="YOLOX-Tiny person (COCO + Human-Art), 416x416, mmdeploy export",
        ),
        "end2end",
    ),
    "yolox-m-humanart": DetectorEntry(
        RemoteFile(
            "yolox_m_humanart.onnx",
            f"{_MMDEPLOY}/yolox_m_8xb8-300e_humanart-c2c7a14a.zip",
            member_suffix=".onnx",
            license="Apache-2.0",
            note="YOLOX-M person (COCO + Human-Art), 640x640, mmdeploy export",
        ),
        "end2end",
    ),
}


# --------------------------------------------------------------------------- ONNX


class OnnxDetector:
    """A person detector from an ONNX file, run by onnxruntime.

    Args:
        path: the ``.onnx`` file.
        layout: "yolox", "end2end", "yolov8" or None (found from the outputs).
        normalize: (mean, std) for the BGR input of an end2end model; None: from a
            ``pipeline.json`` beside the file (mmdeploy's), else RTMDet's.
            Ignored by the other layouts (their input is fixed, module docstring).
        person_class: the class index of "person".
        device: "cpu" or "cuda[:N]" (CUDA needs onnxruntime-gpu; without it the CPU is
            used, with a warning).
        input_size: (H, W) for a model whose input size is not fixed in the file.
        nms_iou: IoU above which the raw layouts' overlapping boxes are suppressed.
        min_score: boxes scoring below this are not returned (the raw layouts score
            every anchor; ``DetectorBoxes`` applies the user's threshold after).
        threads: onnxruntime's intra-op threads (0: its default, all cores).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        layout: str | None = None,
        normalize: tuple[Sequence[float], Sequence[float]] | None = None,
        person_class: int = 0,
        device: str = "cpu",
        input_size: tuple[int, int] | None = None,
        nms_iou: float = 0.45,
        min_score: float = 0.05,
        threads: int = 0,
    ) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such ONNX detector file")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(
            str(self.path), sess_options=options, providers=_providers(ort, device)
        )
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ValueError(
                f"{self.path}: expected one image input [1, 3, H, W], got "
                f"{[(i.name, i.shape) for i in inputs]}"
            )
        self.input_name = inputs[0].name
        height, width = inputs[0].shape[2:]
        if isinstance(height, int) and isinstance(width, int):
            self.input_size = (height, width)
        elif input_size is not None:
            self.input_size = (int(input_size[0]), int(input_size[1]))
        else:
            self.input_size = (640, 640)  # YOLOX / RTMDet / ultralytics' default
        outputs = self.session.get_outputs()
        self.layout = layout or _layout_of(outputs, self.path)
        if self.layout not in ("yolox", "end2end", "yolov8"):
            raise ValueError(f"{self.path}: unknown layout {self.layout!r}")
        self.normalize = None
        if self.layout == "end2end":
            self.normalize = _pipeline_normalize(self.path) if normalize is None else normalize
            if self.normalize is None:
                self.normalize = (RTMDET_MEAN, RTMDET_STD)
        self.person_class = person_class
        self.nms_iou = nms_iou
        self.min_score = min_score
        digest = sha256_of(self.path)[:12]  # names the very file in the .done marker
        size = f"{self.input_size[0]}x{self.input_size[1]}"
        self.description = f"onnx:{self.path.name} sha256:{digest} ({self.layout}, {size})"

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """frame [H, W, 3] uint8 RGB -> boxes [P, 4] x, y, w, h (frame pixels), scores [P]."""
        tensor, scale, offset = self.preprocess(frame)
        outputs = self.session.run(None, {self.input_name: tensor})
        corners, scores = self.decode(outputs)
        corners = (corners - np.tile(offset, 2)) / scale  # undo the letterbox
        height, width = frame.shape[:2]
        corners[:, 0::2] = corners[:, 0::2].clip(-0.5, width - 0.5)
        corners[:, 1::2] = corners[:, 1::2].clip(-0.5, height - 0.5)
        boxes = np.concatenate([corners[:, :2], corners[:, 2:] - corners[:, :2]], axis=1)
        return boxes, scores

    def preprocess(self, frame: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
        """The letterboxed input [1, 3, H_in, W_in] float32, the scale and the (x, y)
        offset of the frame inside it (input = frame * scale + offset)."""
        in_h, in_w = self.input_size
        height, width = frame.shape[:2]
        scale = min(in_h / height, in_w / width)
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        resized = np.asarray(Image.fromarray(frame).resize((new_w, new_h), Image.BILINEAR))
        canvas = np.full((in_h, in_w, 3), PAD_VALUE, np.uint8)
        if self.layout == "yolov8":
            left, top = (in_w - new_w) // 2, (in_h - new_h) // 2
        else:
            left, top = 0, 0
        canvas[top : top + new_h, left : left + new_w] = resized
        image = canvas.astype(np.float32)
        if self.layout == "yolov8":
            image /= 255.0  # RGB 0..1
        else:
            image = image[..., ::-1]  # BGR, as the mmdet / YOLOX models were trained
            if self.normalize is not None:
                mean, std = (np.asarray(values, np.float32) for values in self.normalize)
                image = (image - mean) / std
        tensor = np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)
        return tensor, scale, np.array([left, top], np.float64)

    def decode(self, outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The model's outputs -> person boxes [P, 4] x1 y1 x2 y2 (input pixels), scores."""
        if self.layout == "end2end":
            dets, labels = _end2end_outputs(outputs)
            keep = (labels == self.person_class) & (dets[:, 4] >= self.min_score)
            return dets[keep, :4].astype(np.float64), dets[keep, 4].astype(np.float64)
        raw = np.asarray(outputs[0], dtype=np.float64)[0]
        if self.layout == "yolox":
            centres, sizes, scores = _decode_yolox(raw, self.input_size, self.person_class)
        else:  # yolov8: [4 + C, N]
            raw = raw.T
            centres, sizes = raw[:, :2], raw[:, 2:4]
            scores = raw[:, 4 + self.person_class]
        corners = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1)
        keep = scores >= self.min_score
        corners, scores = corners[keep], scores[keep]
        order = nms(corners, scores, self.nms_iou)
        return corners[order], scores[order]


def _providers(ort: Any, device: str) -> list[str]:
    available = ort.get_available_providers()
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" in available:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        import warnings

        warnings.warn(
            "onnxruntime has no CUDA provider here (install onnxruntime-gpu); the detector "
            "runs on the CPU",
            stacklevel=3,
        )
    return ["CPUExecutionProvider"]


def _layout_of(outputs: Sequence[Any], path: Path) -> str:
    """The layout from the outputs' count and shapes (module docstring)."""
    shapes = [list(output.shape) for output in outputs]
    if len(outputs) == 2 and any(len(shape) == 3 and shape[-1] == 5 for shape in shapes):
        return "end2end"
    if len(outputs) == 1 and len(shapes[0]) == 3:
        rows, columns = shapes[0][1:]
        if isinstance(rows, int) and isinstance(columns, int):
            return "yolox" if columns < rows else "yolov8"
        if isinstance(columns, int):
            return "yolox"  # [1, N, 5 + C] with N dynamic
        return "yolov8"
    raise ValueError(
        f"{path}: outputs {[(o.name, s) for o, s in zip(outputs, shapes, strict=True)]} fit "
        "no supported detector layout: YOLOX's raw [1, N, 5 + C], mmdeploy's end-to-end "
        "dets [1, N, 5] + labels [1, N], or ultralytics' [1, 4 + C, N]"
    )


def _end2end_outputs(outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    first, second = (np.asarray(output) for output in outputs)
    dets, labels = (first, second) if first.ndim == 3 else (second, first)
    return dets[0].reshape(-1, 5), labels[0].reshape(-1)


def _decode_yolox(
    raw: np.ndarray, input_size: tuple[int, int], person_class: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """YOLOX's raw head output [N, 5 + C] -> centres [N, 2], sizes [N, 2] (input pixels),
    person scores [N] (YOLOX's ``demo_postprocess``: cells row-major per stride)."""
    height, width = input_size
    grids, strides = [], []
    for stride in YOLOX_STRIDES:
        rows, columns = height // stride, width // stride
        ys, xs = np.meshgrid(np.arange(rows), np.arange(columns), indexing="ij")
        grids.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        strides.append(np.full((rows * columns, 1), stride))
    grid, stride = np.concatenate(grids), np.concatenate(strides)
    if len(grid) != len(raw):
        raise ValueError(
            f"YOLOX output has {len(raw)} rows; a {height}x{width} input has {len(grid)} "
            f"cells at strides {YOLOX_STRIDES}"
        )
    centres = (raw[:, :2] + grid) * stride
    sizes = np.exp(raw[:, 2:4]) * stride
    return centres, sizes, raw[:, 4] * raw[:, 5 + person_class]


def nms(corners: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy non-maximum suppression: indices kept, best first.

    Args:
        corners: [N, 4] x1, y1, x2, y2.
        scores: [N].
        iou: a box overlapping a kept one by more than this is dropped.
    """
    order = np.argsort(-scores, kind="stable")
    area = np.prod(np.clip(corners[:, 2:] - corners[:, :2], 0, None), axis=1)
    kept = []
    while order.size:
        best, rest = order[0], order[1:]
        kept.append(best)
        low = np.maximum(corners[best, :2], corners[rest, :2])
        high = np.minimum(corners[best, 2:], corners[rest, 2:])
        overlap = np.prod(np.clip(high - low, 0, None), axis=1)
        union = area[best] + area[rest] - overlap
        order = rest[overlap <= iou * np.maximum(union, 1e-12)]
    return np.asarray(kept, dtype=np.int64)


def _pipeline_normalize(path: Path) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The Normalize step of mmdeploy's ``pipeline.json`` beside the model, if any
    (mean/std in the model's channel order; ``to_rgb`` must be false: we feed BGR)."""
    pipeline = path.with_name("pipeline.json")
    if not pipeline.is_file():
        return None
    found: list[dict] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "Normalize":
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(pipeline.read_text()))
    if not found:
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)  # the pipeline does not normalise
    step = found[0]
    mean, std = [float(v) for v in step["mean"]], [float(v) for v in step["std"]]
    if step.get("to_rgb"):
        mean, std = mean[::-1], std[::-1]  # given for RGB: reorder for our BGR input
    return tuple(mean), tuple(std)


# --------------------------------------------------------------------------- ultralytics


class UltralyticsDetector:
    """An ultralytics YOLO model (``yolov8n.pt``, ``yolo11n.pt``, ...) through the
    ``ultralytics`` package, which the user installs (AGPL-3.0; vidpose does not depend
    on it). Persons only (class 0 of COCO).

    Args:
        model: what ``ultralytics.YOLO`` accepts (a ``.pt`` file, a model name).
        device: "cpu", "cuda", "cuda:1" (passed to ultralytics).
        min_score: its confidence threshold (``DetectorBoxes`` applies the user's after).
    """

    def __init__(self, model: str, *, device: str = "cpu", min_score: float = 0.05) -> None:
        try:
            from ultralytics import YOLO
        except ImportError:
            raise ImportError(
                f"--detector {model}: ultralytics models need the ultralytics package "
                "(pip install ultralytics; AGPL-3.0, not a vidpose dependency)"
            ) from None
        self.model = YOLO(model)
        self.device = device
        self.min_score = min_score
        self.description = f"ultralytics:{model}"

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # ultralytics reads numpy images as BGR (OpenCV's order)
        results = self.model.predict(
            np.ascontiguousarray(frame[..., ::-1]),
            classes=[0],
            conf=self.min_score,
            device=self.device,
            verbose=False,
        )
        found = results[0].boxes
        corners = np.asarray(_numpy(found.xyxy), dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(_numpy(found.conf), dtype=np.float64).reshape(-1)
        boxes = np.concatenate([corners[:, :2], corners[:, 2:] - corners[:, :2]], axis=1)
        return boxes, scores


def _numpy(value: Any) -> Any:
    return value.cpu().numpy() if hasattr(value, "cpu") else value


# --------------------------------------------------------------------------- by name


def build_detector(spec: str, *, device: str = "cpu", threads: int = 0) -> Any:
    """The detector ``vidpose extract --detector SPEC`` names (module docstring).

    Raises:
        FileNotFoundError: a path that does not exist.
        ValueError: an unknown name (the message lists the known ones) or layout.
        vidpose.inference.downloads.DownloadError: a named file cannot be fetched (the
            message names the URL and where to put the file).
        ImportError: ultralytics asked for and not installed.
    """
    if spec.startswith("ultralytics:"):
        return UltralyticsDetector(spec.split(":", 1)[1], device=device)
    if spec in DETECTORS:
        entry = DETECTORS[spec]
        detector = OnnxDetector(
            fetch(entry.remote),
            layout=entry.layout,
            normalize=entry.normalize,
            person_class=entry.person_class,
            device=device,
            threads=threads,
        )
        detector.description = f"{spec} ({entry.remote.url})"
        return detector
    path = Path(spec)
    if path.suffix == ".pt":
        return UltralyticsDetector(spec, device=device)
    if path.suffix == ".onnx" or path.exists():
        return OnnxDetector(path, device=device, threads=threads)
    raise ValueError(
        f"--detector {spec}: not a file and not a known detector; known: "
        f"{', '.join(DETECTORS)}, a path to an .onnx file, or ultralytics:MODEL"
    )
