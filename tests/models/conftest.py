"""Shared helpers for the model tests: very small models built from the tiny config."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from vidpose.config import Config, load_config  # noqa: E402

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"

# Smaller than synthetic_tiny.yaml: 64 x 48 input -> 4 x 3 tokens -> 16 x 12 heatmaps.
MICRO = [
    "data.input_size=[64,48]",
    "model.backbone.embed_dim=32",
    "model.backbone.depth=1",
    "model.backbone.num_heads=2",
    "model.decoder_dim=32",
    "model.decoder_heads=2",
]


def micro_config(*overrides: str, base: str = "synthetic_tiny.yaml") -> Config:
    """The tiny config shrunk further, with extra ``key=value`` overrides."""
    return load_config(CONFIG_DIR / base, [*MICRO, *overrides])


def gaussian_heatmaps(
    batch: int, joints: int, size: tuple[int, int], generator: torch.Generator, sigma: float = 1.5
) -> torch.Tensor:
    """[B, K, H, W] Gaussian targets (peak 1) at random positions."""
    height, width = size
    centres = torch.rand(batch, joints, 2, generator=generator) * torch.tensor(
        [width - 1.0, height - 1.0]
    )
    xs = torch.arange(width).view(1, 1, 1, width)
    ys = torch.arange(height).view(1, 1, height, 1)
    squared = (xs - centres[..., 0, None, None]) ** 2 + (ys - centres[..., 1, None, None]) ** 2
    return torch.exp(-squared / (2 * sigma**2))


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@pytest.fixture(name="micro_config", scope="session")
def micro_config_fixture():
    """The :func:`micro_config` factory (test modules cannot import conftest)."""
    return micro_config


@pytest.fixture(name="gaussian_heatmaps", scope="session")
def gaussian_heatmaps_fixture():
    """The :func:`gaussian_heatmaps` factory."""
    return gaussian_heatmaps
