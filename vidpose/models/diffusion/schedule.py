"""The heatmap diffusion process: the noise schedule as buffers and its algebra.

The process is one object and the denoiser network another (as in lucidrains'
denoising-diffusion-pytorch): the process owns beta_t, alpha_bar_t, the forward
noising q(x_t | x0) and the conversions between an x0 estimate and the noise eps.

Conventions (DDPM, Ho et al., NeurIPS 2020): time steps t = 0 .. T-1;
alpha_t = 1 - beta_t; alpha_bar_t = prod_{s <= t} alpha_s, decreasing from about 1
(t = 0, almost clean) to about 0 (t = T-1, almost pure noise).

Signal range: heatmaps live in [0, 1] (background 0, peaks 1); the process diffuses
``x0 = (2 h - 1) * scale`` in [-scale, scale], the "signal scale" DiffusionDet
(Chen et al., ICCV 2023) and Chen et al. "Analog Bits" (ICLR 2023) tune: a larger
scale keeps more signal at a given t.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn


def linear_betas(timesteps: int, max_beta: float = 0.999) -> torch.Tensor:
    """[T] float64 betas of DDPM's linear schedule.

    Ho et al. 2020 (section 4): beta from 1e-4 to 0.02 over T = 1000. For other T
    the endpoints are scaled by 1000 / T (Nichol & Dhariwal, ICML 2021, code of
    "improved-diffusion"), which keeps alpha_bar's curve roughly the same; for
    T < 50 that would exceed 1, so betas are clipped to 0.999 like the cosine ones.
    """
    scale = 1000.0 / timesteps
    betas = torch.linspace(scale * 1e-4, scale * 0.02, timesteps, dtype=torch.float64)
    return betas.clamp(max=max_beta)


def cosine_betas(timesteps: int, offset: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """[T] float64 betas of the cosine schedule.

    Nichol & Dhariwal 2021, eq. 17: alpha_bar(t) = f(t) / f(0) with
    f(t) = cos(((t / T + s) / (1 + s)) * pi / 2)^2, s = 0.008; betas are
    1 - alpha_bar(t + 1) / alpha_bar(t), clipped to 0.999 to avoid the singularity
    at the end (their section 3.2). Step index t here holds alpha_bar(t + 1), so
    alpha_bar[T-1] = f(T) / f(0) ~ 0 (before clipping).
    """
    steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((steps + offset) / (1 + offset) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    betas = 1 - alpha_bar[1:] / alpha_bar[:-1]
    return betas.clamp(max=max_beta)


_SCHEDULES = {"linear": linear_betas, "cosine": cosine_betas}


class GaussianDiffusion(nn.Module):
    """Noise schedule buffers + q_sample + x0 <-> eps, on heatmaps mapped to a signal range.

    Args:
        timesteps: T, the number of training time steps.
        schedule: "linear" (Ho et al. 2020) or "cosine" (Nichol & Dhariwal 2021).
        signal_scale: heatmaps in [0, 1] are mapped to [-scale, scale].

    Buffers (float32, [T], not saved in checkpoints: they follow from the arguments):
        betas, alphas_cumprod (alpha_bar), sqrt_alphas_cumprod,
        sqrt_one_minus_alphas_cumprod.
    """

    def __init__(
        self,
        *,
        timesteps: int,
        schedule: Literal["linear", "cosine"],
        signal_scale: float,
    ) -> None:
        super().__init__()
        if timesteps < 1:
            raise ValueError(f"GaussianDiffusion: timesteps must be >= 1, got {timesteps}")
        if signal_scale <= 0:
            raise ValueError(f"GaussianDiffusion: signal_scale must be > 0, got {signal_scale}")
        if schedule not in _SCHEDULES:
            raise ValueError(
                f"GaussianDiffusion: unknown schedule {schedule!r}; expected one of "
                f"{', '.join(_SCHEDULES)}"
            )
        self.timesteps = timesteps
        self.schedule = schedule
        self.signal_scale = float(signal_scale)
        betas = _SCHEDULES[schedule](timesteps)  # float64: the cumulative product drifts in fp32
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        for name, value in (
            ("betas", betas),
            ("alphas_cumprod", alphas_cumprod),
            ("sqrt_alphas_cumprod", alphas_cumprod.sqrt()),
            ("sqrt_one_minus_alphas_cumprod", (1.0 - alphas_cumprod).sqrt()),
        ):
            self.register_buffer(name, value.float(), persistent=False)

    # ------------------------------------------------------------------ signal range

    def to_signal(self, heatmaps: torch.Tensor) -> torch.Tensor:
        """Heatmaps [..] in [0, 1] -> diffusion signal [..] in [-scale, scale]."""
        return (heatmaps * 2.0 - 1.0) * self.signal_scale

    def from_signal(self, signal: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_signal` (no clamping)."""
        return (signal / self.signal_scale + 1.0) * 0.5

    # ------------------------------------------------------------------ algebra

    def _at(self, buffer: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """buffer[t] shaped [B, 1, 1, ...] to broadcast against ``like`` [B, ...]."""
        return buffer[t].reshape(-1, *([1] * (like.ndim - 1))).to(like.dtype)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Forward noising, DDPM eq. 4: x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps.

        Args:
            x0: [B, ...] clean signal (already mapped with :meth:`to_signal`).
            t: [B] integer time steps in 0 .. T-1.
            noise: [B, ...] standard normal eps.

        Returns:
            [B, ...] x_t.
        """
        return (
            self._at(self.sqrt_alphas_cumprod, t, x0) * x0
            + self._at(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise
        )

    def x0_from_eps(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t) (DDPM eq. 4 solved for x0)."""
        return (x_t - self._at(self.sqrt_one_minus_alphas_cumprod, t, x_t) * eps) / self._at(
            self.sqrt_alphas_cumprod, t, x_t
        )

    def eps_from_x0(self, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """eps = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t) (DDPM eq. 4 solved for eps)."""
        return (x_t - self._at(self.sqrt_alphas_cumprod, t, x_t) * x0) / self._at(
            self.sqrt_one_minus_alphas_cumprod, t, x_t
        )

    def extra_repr(self) -> str:
        return (
            f"timesteps={self.timesteps}, schedule={self.schedule!r}, "
            f"signal_scale={self.signal_scale}"
        )
