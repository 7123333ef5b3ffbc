"""Small layer factories shared by the pyramid, the heads and the denoiser.

Normalisation is GroupNorm everywhere after the backbone: BatchNorm statistics would
depend on how a global batch is split between processes (and on batch size at
inference), which breaks the trainer's contract that N processes compute what one
process computes.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 32 groups (Wu & He, 2018), fewer when ``channels`` needs it."""
    return nn.GroupNorm(math.gcd(32, channels), channels)


def init_output_conv(conv: nn.Conv2d, std: float = 1e-3) -> None:
    """Small-normal init of a layer that emits heatmaps.

    SimpleBaseline (Xiao et al., ECCV 2018) and ViTPose start their final layer
    near zero, so the first heatmaps are flat (close to the mostly-zero target)
    instead of large random maps the loss has to pull down first.
    """
    nn.init.normal_(conv.weight, std=std)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0):
    """Sinusoidal embedding of diffusion time steps.

    The transformer position encoding (Vaswani et al., 2017, section 3.5), used for
    the time step by DDPM (Ho et al., 2020, appendix B).

    Args:
        timesteps: [B] integer (or float) time steps.
        dim: embedding width (even).

    Returns:
        [B, dim] float32: sin of the first half of the frequencies, then cos.
    """
    if dim % 2:
        raise ValueError(f"timestep_embedding: dim must be even, got {dim}")
    half = dim // 2
    frequencies = torch.exp(
        -math.log(max_period)
        * torch.arange(half, dtype=torch.float32, device=timesteps.device)
        / half
    )
    angles = timesteps.float()[:, None] * frequencies[None, :]  # [B, half]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)
