"""The head contract changed how heads answer, not what they answer.

``tests/models/pinned/`` holds two micro checkpoints (diffusion head, heatmap head)
written at commit 346c9e3, before the head contract (issue #15), and the keypoints
and scores that commit's predictor computed from them (``make_pinned.py`` says how).
Today's code must load those checkpoints (old checkpoints keep working) and answer
with the same numbers, with and without the flip test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vidpose.inference.predictor import build_predictor, load_estimator

PINNED = Path(__file__).resolve().parent / "pinned"


@pytest.fixture(scope="module")
def expected() -> dict:
    return json.loads((PINNED / "expected.json").read_text())


def pinned_clips() -> torch.Tensor:
    """The four clips make_pinned.py predicted (its training frames' first four)."""
    generator = torch.Generator().manual_seed(1)
    return torch.randn(8, 3, 3, 64, 48, generator=generator)[:4]


@pytest.mark.parametrize("head", ["diffusion", "heatmap"])
@pytest.mark.parametrize("flip", [False, True])
def test_an_old_checkpoint_gives_the_pinned_keypoints_and_scores(expected, head, flip) -> None:
    model, config = load_estimator(PINNED / f"{head}.safetensors")
    predictor = build_predictor(model, config, flip_test=flip, batch_size=4)
    answer = predictor.predict_crops(pinned_clips())
    pinned = expected[head][f"flip={flip}"]
    torch.testing.assert_close(
        answer.keypoints.double(),
        torch.tensor(pinned["keypoints"], dtype=torch.float64),
        atol=1e-3,
        rtol=0,
    )
    torch.testing.assert_close(
        answer.scores.double(),
        torch.tensor(pinned["scores"], dtype=torch.float64),
        atol=1e-4,
        rtol=0,
    )
