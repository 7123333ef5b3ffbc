from pathlib import Path

import numpy as np
import pytest
import torch

from vidpose.config import load_config
from vidpose.inference.predictor import build_predictor
from vidpose.models.heads.contract import HeadPrediction

TINY_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "synthetic_tiny.yaml"


def dot_frame(x: int, y: int, size=(120, 160)) -> np.ndarray:
    frame = np.zeros((*size, 3), np.uint8)
    frame[y - 1 : y + 2, x - 1 : x + 2] = 255
    return frame


@pytest.mark.parametrize(
    "box, dot",
    [([50, 10, 40, 80], (70, 40)), ([-20, -30, 60, 80], (8, 12))],
    ids=["inside", "partly-outside"],
)
def test_keypoints_come_back_in_frame_pixels(make_predictor, box, dot):
    # The stand-in model puts every joint on the brightest crop pixel: the prediction
    # must land on the dot in frame pixels (crop, decode and back-projection agree).
    predictor = make_predictor("dot")
    frame = dot_frame(*dot)
    result = predictor.predict([frame, frame, frame], [box])
    assert result.keypoints.shape == (1, 17, 2) and result.scores.shape == (1, 17)
    # One crop pixel is 75 / 48 = 1.6 frame pixels here.
    np.testing.assert_allclose(result.keypoints[0], np.tile(dot, (17, 1)), atol=1.6)


@pytest.mark.parametrize("answer", ["heatmaps", "coordinates"])
def test_flip_test_maps_the_mirrored_prediction_back(make_predictor, answer):
    # The dot is off the box centre (x = 60): a mirrored answer that is not mirrored
    # back would pull the average towards the dot's mirror image at x = 50.
    frame = dot_frame(70, 40)
    plain = make_predictor("dot", answer=answer).predict([frame] * 3, [[40, 10, 40, 80]])
    flipped = make_predictor("dot", answer=answer, flip_test=True)
    result = flipped.predict([frame] * 3, [[40, 10, 40, 80]])
    np.testing.assert_allclose(result.keypoints[0], np.tile([70, 40], (17, 1)), atol=1.0)
    assert flipped.model.batch_sizes == [1, 1]  # the clip and its mirror image
    if answer == "coordinates":
        # the dot model is mirror-equivariant up to the dot's 3-pixel width, which is
        # symmetric about the dot: the flip test gives the plain answer
        np.testing.assert_allclose(result.keypoints, plain.keypoints, atol=1e-6)


def test_batched_equals_one_by_one(make_predictor):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (90, 120, 3), dtype=np.uint8) for _ in range(3)]
    boxes = [[10, 10, 30, 60], [50, 5, 40, 70], [80, 20, 30, 50], [-10, 40, 40, 60]]
    one_by_one = make_predictor("dot", batch_size=1)
    batched = make_predictor("dot", batch_size=3)
    first = one_by_one.predict(frames, boxes)
    second = batched.predict(frames, boxes)
    assert one_by_one.model.batch_sizes == [1, 1, 1, 1]
    assert batched.model.batch_sizes == [3, 1]
    np.testing.assert_allclose(first.keypoints, second.keypoints)
    np.testing.assert_allclose(first.scores, second.scores)


def test_no_boxes_no_model_call(make_predictor):
    predictor = make_predictor()
    result = predictor.predict([np.zeros((8, 8, 3), np.uint8)] * 3, np.zeros((0, 4)))
    assert result.keypoints.shape == (0, 17, 2) and result.num_people == 0
    assert predictor.model.batch_sizes == []


def test_wrong_number_of_frames_and_wrong_answers_are_reported(make_predictor):
    predictor = make_predictor()
    frame = np.zeros((40, 40, 3), np.uint8)
    with pytest.raises(ValueError, match=r"expected 3 frames \(offsets \[-1, 0, 1\]\), got 2"):
        predictor.predict([frame, frame], [[0, 0, 10, 10]])
    predictor.model.predict = lambda frames, **sampling: HeadPrediction(
        keypoints=torch.zeros(1, 15, 2), scores=torch.zeros(1, 15)
    )
    with pytest.raises(ValueError, match=r"keypoints of shape \(1, 15, 2\), expected"):
        predictor.predict([frame] * 3, [[0, 0, 10, 10]])


def test_real_tiny_model_is_reproducible(tiny_checkpoint):
    from vidpose.inference.predictor import load_estimator

    model, config = load_estimator(tiny_checkpoint)
    assert config.data.frame_offsets == load_config(TINY_CONFIG).data.frame_offsets
    frame = np.random.default_rng(1).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    results = [
        build_predictor(model, config, hypotheses=2).predict([frame] * 3, [[20, 10, 40, 70]])
        for _ in range(2)
    ]
    assert results[0].keypoints.shape == (1, 17, 2)
    np.testing.assert_array_equal(results[0].keypoints, results[1].keypoints)
