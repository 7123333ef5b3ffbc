"""Writes the pinned-prediction fixtures of tests/models/test_pinned_heads.py.

Run once, at commit 346c9e3 (before the head contract, issue #15), with
``.venv/bin/python tests/models/pinned/make_pinned.py``: two micro models (the
diffusion head and the heatmap head) are fitted for a few steps to random clips so
that their heatmaps have clear peaks, saved as vidpose checkpoints in that commit's
format, and their keypoints and scores through the predictor (the path of
``vidpose extract``; ``vidpose test`` decodes the same way) are written as JSON. The
test loads the checkpoints with today's code and must get the same numbers: the
contract changed how heads answer, not what they answer. Do not re-run it to make
a failing test pass.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from vidpose.checkpoint import Checkpoint, save_checkpoint
from vidpose.config import load_config, to_dict
from vidpose.inference.predictor import build_predictor
from vidpose.losses import build_criterion
from vidpose.models.build import build_model

HERE = Path(__file__).resolve().parent
CONFIGS = HERE.parents[2] / "configs"
MICRO = [
    "data.input_size=[64,48]",
    "model.backbone.embed_dim=32",
    "model.backbone.depth=1",
    "model.backbone.num_heads=2",
    "model.decoder_dim=32",
    "model.decoder_heads=2",
]
MODELS = {
    "diffusion": (
        "synthetic_tiny.yaml",
        ["model.diffusion.sampling_steps=3", "model.diffusion.hypotheses=4"],
    ),
    "heatmap": ("synthetic_tiny_temporal_baseline.yaml", []),
}


def targets(generator: torch.Generator, batch: int) -> torch.Tensor:
    centres = torch.rand(batch, 17, 2, generator=generator) * torch.tensor([11.0, 15.0])
    xs = torch.arange(12).view(1, 1, 1, 12)
    ys = torch.arange(16).view(1, 1, 16, 1)
    squared = (xs - centres[..., 0, None, None]) ** 2 + (ys - centres[..., 1, None, None]) ** 2
    return torch.exp(-squared / (2 * 1.5**2))


def main() -> None:
    torch.set_num_threads(1)
    expected = {}
    for name, (base, overrides) in MODELS.items():
        config = load_config(CONFIGS / base, [*MICRO, *overrides])
        torch.manual_seed(0)
        model = build_model(config)
        criterion = build_criterion(config)
        generator = torch.Generator().manual_seed(1)
        frames = torch.randn(8, 3, 3, 64, 48, generator=generator)
        heatmaps = targets(generator, 8)
        weights = torch.ones(8, 17)
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        model.train()
        for step in range(150):
            outputs = model(frames, target_heatmaps=heatmaps, sample_seeds=torch.arange(8) + step)
            loss = criterion(outputs, heatmaps, weights)["loss"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        save_checkpoint(
            Checkpoint(model=model.state_dict(), config=to_dict(config)),
            HERE / f"{name}.safetensors",
        )
        clips = frames[:4]
        results = {}
        for flip in (False, True):
            predictor = build_predictor(model, config, flip_test=flip, batch_size=4)
            keypoints, scores = predictor.predict_crops(clips)
            results[f"flip={flip}"] = {
                "keypoints": keypoints.double().tolist(),
                "scores": scores.double().tolist(),
            }
        expected[name] = results
        print(name, "final loss", float(loss))
    (HERE / "expected.json").write_text(json.dumps(expected) + "\n")


if __name__ == "__main__":
    main()
