"""The token cache of own-box crops (``data.neighbour_boxes: own``, issue #23): each
(person, frame) crop goes through the backbone once, the answers are those of encoding
every clip in full (``reuse_tokens=False``), and the cache holds only the frames a
later clip still needs, whatever the video's length."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vidpose.config import load_config
from vidpose.data.clips import ClipDataset
from vidpose.data.records import FrameRecord, PersonAnnotation, VideoRecord
from vidpose.data.skeleton import POSETRACK
from vidpose.engine.evaluate import predict_dataset
from vidpose.inference.extract import ExtractOptions, extract_video
from vidpose.inference.person_boxes import DetectionTable
from vidpose.inference.predictor import VideoPosePredictor, build_predictor
from vidpose.inference.token_cache import TokenCache, cache_key, predict_with_cache
from vidpose.models.build import build_model

from .conftest import TINY_CONFIG, crossing_scene

# The tiny config shrunk further (one block of width 32, 64 x 48 crops): the cache's
# bookkeeping is what is tested, not the model.
TINY_OWN = [
    "data.neighbour_boxes=own",
    "data.input_size=[64,48]",
    "model.backbone.embed_dim=32",
    "model.backbone.depth=1",
    "model.backbone.num_heads=2",
    "model.decoder_dim=32",
    "model.decoder_heads=2",
]


class BackboneCounter:
    """Counts the crops the model's backbone encodes while in a ``with`` block (every
    path goes through it: ``encode`` for whole clips, ``encode_frames`` for the cache)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.images = 0
        self.frame_calls = 0

    def __enter__(self) -> BackboneCounter:
        model = self.model
        backbone_forward = model.backbone.forward
        encode_frames = model.encode_frames

        def counted_backbone(frames: torch.Tensor) -> torch.Tensor:
            self.images += frames.shape[0] * frames.shape[1]
            return backbone_forward(frames)

        def counted_encode_frames(frames: torch.Tensor) -> torch.Tensor:
            self.frame_calls += 1
            return encode_frames(frames)

        model.backbone.forward = counted_backbone
        model.encode_frames = counted_encode_frames
        return self

    def __exit__(self, *error: object) -> None:
        del self.model.backbone.forward  # the instance attributes: back to the methods
        del self.model.encode_frames


@pytest.fixture(scope="module")
def tiny_own() -> tuple[torch.nn.Module, object]:
    """A temporal diffusion model (T = 3, random weights) trained, say, with own boxes."""
    config = load_config(TINY_CONFIG, TINY_OWN)
    torch.manual_seed(0)
    return build_model(config).eval(), config


def recording(predictor: VideoPosePredictor) -> list:
    """Wrap ``predictor.predict`` to keep every answer (frame pixels, full precision)."""
    answers = []
    predict = predictor.predict

    def recorded(*args, **kwargs):
        answer = predict(*args, **kwargs)
        answers.append(answer)
        return answer

    predictor.predict = recorded
    return answers


def run_extraction(model, config, tmp_path: Path, *, reuse: bool, flip: bool, frames=16):
    images, boxes = crossing_scene(frames=frames)
    table = DetectionTable({i: (boxes[i], np.ones(len(boxes[i]))) for i in range(frames)})
    # two steps and two hypotheses: the sampler's noise must be drawn the same way too
    predictor = build_predictor(model, config, flip_test=flip, steps=2, hypotheses=2)
    predictor.reuse_tokens = reuse
    caches: list[TokenCache | None] = []
    make_cache = predictor.token_cache
    predictor.token_cache = lambda: caches.append(make_cache()) or caches[-1]
    answers = recording(predictor)
    out = tmp_path / f"reuse{reuse}_flip{flip}"
    with BackboneCounter(model) as counter:
        extract_video(
            out / "crossing.mp4",
            predictor,
            table,
            out,
            options=ExtractOptions(progress=False),
            frames=images,
        )
    return answers, counter, caches[0], boxes


@pytest.mark.parametrize("flip", [False, True])
def test_extraction_encodes_each_person_frame_once_with_the_answers_of_full_clips(
    tiny_own, tmp_path, flip
) -> None:
    model, config = tiny_own
    frames, people, length = 16, 2, 3
    mirrors = 2 if flip else 1
    cached, counted, cache, boxes = run_extraction(
        model, config, tmp_path, reuse=True, flip=flip, frames=frames
    )
    full, full_counted, no_cache, _ = run_extraction(
        model, config, tmp_path, reuse=False, flip=flip, frames=frames
    )
    # every (person, frame) once (its mirror image once more with the flip test); the
    # whole clips encode T crops per person and key frame
    assert counted.images == frames * people * mirrors
    assert cache.encoded == frames * people
    # the rest were hits (but for the first clip, which repeats its clamped frame 0)
    assert cache.hits == frames * people * (length - 1) - people
    assert full_counted.images == frames * people * length * mirrors
    assert full_counted.frame_calls == 0 and no_cache is None
    # batched: one backbone call per key frame at most (the new frame's people)
    assert counted.frame_calls <= frames * mirrors
    # the same answers, up to float rounding
    assert len(cached) == len(full) == frames
    for with_cache, without in zip(cached, full, strict=True):
        np.testing.assert_allclose(with_cache.keypoints, without.keypoints, atol=1e-3)
        np.testing.assert_allclose(with_cache.scores, without.scores, atol=1e-5)
        np.testing.assert_array_equal(with_cache.boxes, without.boxes)
    # and every frame's people were found: the key boxes are the detections
    for index, answer in enumerate(cached):
        np.testing.assert_array_equal(answer.boxes, boxes[index])


def test_the_cache_holds_only_the_frames_a_later_clip_needs(tiny_own, tmp_path) -> None:
    """Memory stays flat: after 300 frames the cache and the kept boxes hold what a
    12-frame video needs, and every person-frame was still encoded exactly once."""
    model, config = tiny_own
    marks = {}
    for frames in (12, 300):
        _, counted, cache, _ = run_extraction(
            model, config, tmp_path / str(frames), reuse=True, flip=False, frames=frames
        )
        assert counted.images == cache.encoded == 2 * frames
        marks[frames] = cache.high_water
    span = 3  # frames t - 1, t, t + 1
    # the key frame's clip before it is predicted: its own span, plus the frame ahead of
    # it encoded last time, for two people
    assert marks[300] == marks[12] <= 2 * span


def test_the_cache_evicts_and_recomputes_what_it_dropped() -> None:
    cache = TokenCache()
    encoded: list[int] = []

    def encode(images: torch.Tensor) -> torch.Tensor:
        encoded.append(len(images))
        return images.flatten(1)[:, None]

    keys = [cache_key(frame, [frame, 0, 10, 20]) for frame in range(4)]
    crops = torch.arange(4.0).reshape(4, 1, 1, 1).expand(4, 3, 2, 2)

    def fill(wanted):
        cache.encode_missing(
            wanted,
            lambda positions: crops[[keys.index(wanted[p]) for p in positions]],
            encode,
            mirrored=False,
            batch_size=2,
            device=torch.device("cpu"),
        )

    fill(keys[:3] + keys[:3])  # repeats are encoded once, two per call
    assert encoded == [2, 1] and len(cache) == 3 and cache.hits == 0
    cache.evict(lambda frame: frame >= 2)
    assert len(cache) == 1 and keys[2] in cache
    fill(keys[1:4])
    assert encoded == [2, 1, 2] and cache.hits == 1 and cache.high_water == 3
    tokens, mirrored = cache.gather([keys[1:4]])
    assert mirrored is None
    assert tokens[0, :, 0, 0].tolist() == [1.0, 2.0, 3.0]


def walking_records(root: Path, frames: int = 8) -> list[VideoRecord]:
    """Two people crossing (``crossing_scene``), every frame labeled, as PNG files."""
    images, boxes = crossing_scene(frames=frames)
    folder = root / "images" / "000001_mpii_test"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    records = []
    for index, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{index:06d}.png")
        persons = []
        for track, box in enumerate(boxes[index]):
            points = np.ones((17, 3))
            points[:, :2] = box[:2] + rng.uniform(0.1, 0.9, (17, 2)) * box[2:]
            persons.append(PersonAnnotation(track_id=track, bbox=box, keypoints=points))
        records.append(
            FrameRecord(
                video="000001_mpii_test",
                frame_index=index,
                image_id=10000010000 + index,
                image_path=f"images/000001_mpii_test/{index:06d}.png",
                is_labeled=True,
                num_frames=frames,
                persons=persons,
            )
        )
    return [VideoRecord(name="000001_mpii_test", frames=records)]


@pytest.mark.parametrize("flip", [False, True])
def test_evaluation_reuses_the_tokens_of_own_box_crops(tiny_own, tmp_path, flip) -> None:
    """``vidpose test`` on video: clips of ground-truth persons cropped around their own
    boxes share their crops; each is encoded once, with the answers of full clips."""
    model, config = tiny_own
    frames = 8
    dataset = ClipDataset(
        walking_records(tmp_path, frames),
        tmp_path,
        frame_offsets=(-1, 0, 1),
        input_size=(64, 48),
        codec=None,
        skeleton=POSETRACK,
        train=False,
        neighbour_boxes="own",
    )
    answers, counts = {}, {}
    for reuse in (True, False):
        with BackboneCounter(model) as counter:
            answers[reuse] = predict_dataset(
                model,
                dataset,
                batch_size=5,  # batches cut across key frames: the cache carries over
                device=torch.device("cpu"),
                steps=2,
                hypotheses=2,
                flip_test=flip,
                reuse_tokens=reuse,
                show_progress=False,
            )
        counts[reuse] = counter.images
    mirrors = 2 if flip else 1
    assert counts[True] == frames * 2 * mirrors
    assert counts[False] == frames * 2 * 3 * mirrors
    for cached, full in zip(answers[True], answers[False], strict=True):
        assert (cached.frame_index, cached.track_id) == (full.frame_index, full.track_id)
        np.testing.assert_allclose(cached.keypoints, full.keypoints, atol=1e-3)
        np.testing.assert_allclose(cached.scores, full.scores, atol=1e-5)


def test_predict_with_cache_is_predict_on_the_same_crops(tiny_own) -> None:
    model, _ = tiny_own
    torch.manual_seed(1)
    clips = torch.randn(3, 3, 3, 64, 48)
    keys = [[cache_key(("v", clip * 3 + t), [0, 0, 1, 1]) for t in range(3)] for clip in range(3)]
    for flip in (False, True):
        generator = torch.Generator().manual_seed(5)
        expected = model.predict(clips, flip_test=flip, steps=2, generator=generator)
        generator = torch.Generator().manual_seed(5)
        answer = predict_with_cache(
            model, clips, keys, TokenCache(), flip_test=flip, steps=2, generator=generator
        )
        torch.testing.assert_close(answer.keypoints, expected.keypoints, atol=1e-3, rtol=0)
        torch.testing.assert_close(answer.scores, expected.scores, atol=1e-5, rtol=0)
