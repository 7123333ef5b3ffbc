"""The synthetic dataset on disk: :func:`generate_dataset` writes both splits in the
PoseTrack21 layout, with their H.264 videos, COCO files and the causes of hidden joints;
:func:`read_hidden_by` reads the causes back.

Video names follow PoseTrack's pattern (:func:`video_name`), so image ids are
PoseTrack's too, and validation videos are labeled in PoseTrack's pattern
(:func:`validation_labeled`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from vidpose.config import SynthConfig
from vidpose.data.json_fields import write_json_atomic
from vidpose.data.posetrack import posetrack_category, posetrack_image_id, write_posetrack_json
from vidpose.data.records import FrameRecord, PersonAnnotation, VideoRecord
from vidpose.data.synthetic.body import HIDDEN_BY
from vidpose.data.synthetic.render import Scene, SyntheticFrame
from vidpose.data.synthetic.scene import make_scene
from vidpose.runtime import InputError, OutputError, prepare_output_folder

FPS = 25

SPLITS = ("train", "val")
_SPLIT_CODE = {"train": 0, "val": 1}


def validation_labeled(num_frames: int) -> np.ndarray:
    """[F] bool: PoseTrack's validation pattern, the central 30 frames plus every 4th
    frame outside them (counted from the central block). Videos of 30 frames or fewer
    are fully labeled."""
    labeled = np.zeros(num_frames, dtype=bool)
    start = max(0, (num_frames - 30) // 2)
    stop = min(num_frames, start + 30)
    labeled[start:stop] = True
    labeled[start::-4] = True
    labeled[stop - 1 :: 4] = True
    return labeled


def video_name(split: str, index: int, videos: int) -> str:
    """Name of video ``index`` (0-based) of ``split``: ``000001_mpii_test`` for
    validation; training videos are numbered after the validation ones
    (``000009_mpii_train`` when there are 8 per split) so that image ids are unique
    across splits."""
    number = index + 1 if split == "val" else videos + index + 1
    return f"{number:06d}_mpii_{'test' if split == 'val' else 'train'}"


def generate_dataset(
    out_dir: str | os.PathLike,
    *,
    videos: int = SynthConfig.videos,
    frames: int = SynthConfig.frames,
    persons: int = SynthConfig.persons,
    size: tuple[int, int] = SynthConfig.size,
    occlusion: float = SynthConfig.occlusion,
    seed: int = SynthConfig.seed,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write a synthetic PoseTrack21-layout dataset (see the module docstring).

    Args:
        out_dir: dataset root to create.
        videos: videos per split (train and val each get this many).
        frames: frames per video.
        persons: annotated people per video (1..99).
        size: (width, height) of the frames, each at least 32.
        occlusion: probability in [0, 1] that an occluder crosses a person.
        seed: the same seed gives byte-identical JSON and images.
        overwrite: replace the dataset folders (images, posetrack_data, videos, coco)
            of a non-empty ``out_dir``; without it a non-empty ``out_dir`` is an error.
        progress: show a tqdm progress bar (one step per video).

    Returns:
        ``out_dir`` as a Path. Use it with ``data.format: posetrack21``, ``data.root:
        <out_dir>``, ``data.{train,val}_annotations: posetrack_data/{train,val}``.
    """
    from tqdm import tqdm

    from vidpose.data.video_writer import VideoWriter

    _check_options(videos, frames, persons, size, occlusion)
    out = Path(out_dir)
    _prepare_output(out, overwrite)
    width, height = size
    with tqdm(total=2 * videos, desc="vidpose synth", unit="video", disable=not progress) as bar:
        for split in SPLITS:
            coco_images, coco_annotations, hidden = [], [], []
            for index in range(videos):
                name = video_name(split, index, videos)
                rng = np.random.default_rng([seed, _SPLIT_CODE[split], index])
                scene = make_scene(
                    rng, frames=frames, persons=persons, size=(width, height), occlusion=occlusion
                )
                labeled = (
                    validation_labeled(frames) if split == "val" else np.ones(frames, dtype=bool)
                )
                records = []
                video_path = out / "videos" / split / f"{name}.mp4"
                with VideoWriter(video_path, fps=FPS, crf=18, preset="ultrafast") as writer:
                    for t in range(frames):
                        rendered = scene.render(t)
                        image_path = f"images/{split}/{name}/{t:06d}.jpg"
                        (out / image_path).parent.mkdir(parents=True, exist_ok=True)
                        Image.fromarray(rendered.image).save(out / image_path, quality=92)
                        writer.write(rendered.image)
                        record = _frame_record(
                            scene, rendered, name, t, image_path, bool(labeled[t])
                        )
                        records.append(record)
                        if record.is_labeled:
                            hidden += [
                                [record.image_id, person.track_id, causes.tolist()]
                                for person, causes in zip(
                                    record.persons, rendered.hidden_by, strict=True
                                )
                            ]
                            coco_images.append(_coco_image(record, width, height))
                            coco_annotations += [
                                _coco_annotation(person, record.image_id, area)
                                for person, area in zip(record.persons, rendered.areas, strict=True)
                            ]
                video = VideoRecord(name=name, frames=records)
                write_posetrack_json(
                    video, out / "posetrack_data" / split / f"{name}.json", posetrack21=True
                )
                bar.update(1)
            coco = {
                "images": coco_images,
                "annotations": coco_annotations,
                "categories": [posetrack_category()],
            }
            write_json_atomic(out / "coco" / f"{split}.json", coco)
            write_json_atomic(
                out / "hidden_by" / f"{split}.json",
                {"codes": list(HIDDEN_BY), "image_id, track_id, codes": hidden},
            )
    return out


def _frame_record(
    scene: Scene, rendered: SyntheticFrame, name: str, t: int, image_path: str, labeled: bool
) -> FrameRecord:
    image_id = posetrack_image_id(name, t)
    video_number = int(name[:6])
    persons = []
    if labeled:
        for index, keypoints in enumerate(rendered.keypoints):
            persons.append(
                PersonAnnotation(
                    track_id=index,
                    bbox=rendered.boxes[index],
                    keypoints=keypoints,
                    head_box=rendered.head_boxes[index],
                    annotation_id=image_id * 100 + index,
                    # PoseTrack21's identity across videos: every synthetic person is new.
                    person_id=video_number * 100 + index,
                )
            )
    return FrameRecord(
        video=name,
        frame_index=t,
        image_id=image_id,
        image_path=image_path,
        is_labeled=labeled,
        num_frames=scene.num_frames,
        ignore_regions=scene.ignore_regions(t),
        persons=persons,
    )


def _coco_image(record: FrameRecord, width: int, height: int) -> dict:
    return {"id": record.image_id, "file_name": record.image_path, "width": width, "height": height}


def _coco_annotation(person: PersonAnnotation, image_id: int, area: float) -> dict:
    """COCO visibility: 2 seen, 1 annotated but hidden, 0 not annotated."""
    keypoints = []
    annotated = person.annotated
    for (x, y, seen), present in zip(person.keypoints, annotated, strict=True):
        flag = (2 if seen else 1) if present else 0
        keypoints += [round(float(x), 2), round(float(y), 2), flag]
    return {
        "id": person.annotation_id,
        "image_id": image_id,
        "category_id": 1,
        "bbox": [round(float(v), 2) for v in person.bbox],
        "keypoints": keypoints,
        "num_keypoints": int(annotated.sum()),
        "area": float(area),
        "iscrowd": 0,
    }


def _check_options(
    videos: int, frames: int, persons: int, size: tuple[int, int], occlusion: float
) -> None:
    problems = []
    if videos < 1:
        problems.append(f"videos must be at least 1, got {videos}")
    if frames < 1:
        problems.append(f"frames must be at least 1, got {frames}")
    if not 1 <= persons <= 99:
        problems.append(f"persons must be in 1..99 (annotation ids keep two digits), got {persons}")
    if len(size) != 2 or min(size) < 32:
        problems.append(f"size must be (width, height), each at least 32, got {tuple(size)}")
    if not 0.0 <= occlusion <= 1.0:
        problems.append(f"occlusion must be a probability in [0, 1], got {occlusion}")
    if problems:
        raise InputError("synthetic dataset: " + "; ".join(problems))


_OUTPUTS = ("images", "posetrack_data", "videos", "coco", "hidden_by")


def _prepare_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: the dataset folder is a file, expected a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{out}: folder is not empty; choose a new folder or pass overwrite=True "
                "(vidpose synth --overwrite) to replace its images, posetrack_data, videos "
                "and coco folders"
            )
        for name in _OUTPUTS:
            if (out / name).is_dir():
                shutil.rmtree(out / name)
    prepare_output_folder(out, "the dataset folder")


def read_hidden_by(root: str | os.PathLike, split: str) -> dict[tuple[int, int], np.ndarray]:
    """The ``HIDDEN_BY`` codes of a generated split: (image id, track id) -> [17] int.

    Raises:
        FileNotFoundError: the dataset has no ``hidden_by/<split>.json`` (it was
            generated before the file existed, or is not synthetic).
    """
    path = Path(root) / "hidden_by" / f"{split}.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no hidden-joint causes (only datasets written by vidpose synth have them)"
        )
    content = json.loads(path.read_text())
    if content.get("codes") != list(HIDDEN_BY):
        raise ValueError(
            f"{path}: field 'codes' is {content.get('codes')}, expected {list(HIDDEN_BY)}"
        )
    return {
        (int(image_id), int(track_id)): np.asarray(codes, dtype=np.int64)
        for image_id, track_id, codes in content["image_id, track_id, codes"]
    }
