"""DDIM sampling: a pure update step plus a small loop that records every step.

Song, Meng & Ermon, "Denoising Diffusion Implicit Models", ICLR 2021. The step is
eq. 12 with sigma from eq. 16; eta = 0 is the deterministic DDIM sampler, eta = 1
gives DDPM's posterior variance. Any number of steps S works with a model trained
on T steps, because eq. 12 only needs alpha_bar at the two time steps it connects.

Ensembling hypotheses, converting signal to heatmaps and decoding keypoints are the
head's job; this module knows nothing about heatmaps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

Denoise = Callable[[torch.Tensor, int], tuple[torch.Tensor, dict[str, Any]]]


def ddim_timesteps(start: int, steps: int) -> list[tuple[int, int]]:
    """The (t, t_prev) pairs of an S-step DDIM run from time step ``start`` to the data.

    The S + 1 times -1 + floor((start + 1) * (S - i) / S), i = 0 .. S, are evenly
    spaced from ``start`` down to -1, where -1 stands for the clean data
    (alpha_bar = 1): the last step always lands on the x0 estimate.

    Args:
        start: the first time step, usually T - 1.
        steps: S >= 1, at most start + 1 (the steps must be distinct).

    Returns:
        S pairs, e.g. start=999, S=3: [(999, 665), (665, 332), (332, -1)].
    """
    if steps < 1:
        raise ValueError(f"ddim_timesteps: steps must be >= 1, got {steps}")
    if start < 0:
        raise ValueError(f"ddim_timesteps: start must be >= 0, got {start}")
    if steps > start + 1:
        raise ValueError(
            f"ddim_timesteps: {steps} steps do not fit between time step {start} and the "
            f"data; use at most {start + 1}"
        )
    times = [-1 + (start + 1) * (steps - i) // steps for i in range(steps + 1)]
    return list(zip(times[:-1], times[1:], strict=True))


def _alpha_bar(alphas_cumprod: torch.Tensor, t: int) -> torch.Tensor:
    # t = -1 is the data itself: alpha_bar = 1 (the convention of DDIM's code).
    return alphas_cumprod[t] if t >= 0 else torch.ones((), dtype=alphas_cumprod.dtype)


def ddim_sigma(alpha_bar_t: torch.Tensor, alpha_bar_prev: torch.Tensor, eta: float):
    """DDIM eq. 16: the standard deviation of the noise added by one step.

    sigma = eta * sqrt((1 - abar_prev) / (1 - abar_t)) * sqrt(1 - abar_t / abar_prev).
    With eta = 1 and consecutive steps this is DDPM's posterior standard deviation.
    """
    return (
        eta
        * ((1 - alpha_bar_prev) / (1 - alpha_bar_t)).sqrt()
        * (1 - alpha_bar_t / alpha_bar_prev).clamp(min=0).sqrt()
    )


def ddim_step(
    x_t: torch.Tensor,
    x0_pred: torch.Tensor,
    t: int,
    t_prev: int,
    alphas_cumprod: torch.Tensor,
    eta: float,
    noise: torch.Tensor | None,
) -> torch.Tensor:
    """One DDIM update x_t -> x_{t_prev} from an x0 estimate (pure function).

    Song et al. 2021, eq. 12:
        x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - sigma^2) eps + sigma z,
    with eps = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t) the noise implied by the
    x0 estimate (the model predicts x0, not eps) and sigma from eq. 16.

    Args:
        x_t: [N, ...] current sample.
        x0_pred: [N, ...] the denoiser's x0 estimate (same space as x_t).
        t: current time step, 0 .. T-1.
        t_prev: next time step, -1 .. t-1 (-1: the data, alpha_bar = 1).
        alphas_cumprod: [T] alpha_bar.
        eta: 0 deterministic DDIM, 1 DDPM-like.
        noise: [N, ...] standard normal z; may be None when sigma is 0 (eta = 0 or
            t_prev = -1).

    Returns:
        [N, ...] x_{t_prev}. With t_prev = -1 this is exactly ``x0_pred``.
    """
    if not 0 <= t < alphas_cumprod.shape[0] or not -1 <= t_prev < t:
        raise ValueError(f"ddim_step: need 0 <= t < T and -1 <= t_prev < t, got {t}, {t_prev}")
    x0_pred = x0_pred.to(x_t.dtype)
    alpha_bar_t = _alpha_bar(alphas_cumprod, t).to(x_t)
    alpha_bar_prev = _alpha_bar(alphas_cumprod, t_prev).to(x_t)
    eps = (x_t - alpha_bar_t.sqrt() * x0_pred) / (1 - alpha_bar_t).sqrt()
    sigma = ddim_sigma(alpha_bar_t, alpha_bar_prev, eta)
    direction = (1 - alpha_bar_prev - sigma**2).clamp(min=0).sqrt() * eps
    x_prev = alpha_bar_prev.sqrt() * x0_pred + direction
    if eta > 0 and t_prev >= 0:
        if noise is None:
            raise ValueError("ddim_step: eta > 0 needs noise for intermediate steps")
        x_prev = x_prev + sigma * noise
    return x_prev


def ddim_sample(
    denoise: Denoise,
    x_start: torch.Tensor,
    *,
    timesteps: Sequence[tuple[int, int]],
    alphas_cumprod: torch.Tensor,
    eta: float,
    draw_noise: Callable[[], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """Run DDIM from ``x_start`` through ``timesteps``, calling ``denoise`` once per step.

    Args:
        denoise: (x_t [N, ...], t) -> (x0 estimate [N, ...], record) where record is
            a dict of anything worth keeping for this step (masks, raw outputs).
        x_start: [N, ...] the sample at the first time step.
        timesteps: (t, t_prev) pairs, e.g. from :func:`ddim_timesteps`.
        alphas_cumprod: [T] alpha_bar.
        eta: DDIM stochasticity.
        draw_noise: () -> [N, ...] standard normal; needed when eta > 0 (called once
            per intermediate step).

    Returns:
        x_final: [N, ...] the sample after the last step (the last x0 estimate when
            the last t_prev is -1).
        steps: per step, {"t", "t_prev", "x_t", "x0", **record}.
    """
    if eta > 0 and draw_noise is None:
        raise ValueError("ddim_sample: eta > 0 needs draw_noise")
    x = x_start
    steps: list[dict[str, Any]] = []
    for t, t_prev in timesteps:
        x0, record = denoise(x, t)
        noise = draw_noise() if eta > 0 and t_prev >= 0 else None
        steps.append({"t": t, "t_prev": t_prev, "x_t": x, "x0": x0, **record})
        x = ddim_step(x, x0, t, t_prev, alphas_cumprod, eta, noise)
    return x, steps


class NoiseSource:
    """Random numbers for a batch, drawn either from one generator or per sample.

    Per-sample seeds make every sample's draws independent of the batch it is in
    (so a batch split across processes, or processed one by one, draws the same
    numbers); one generator makes a whole call reproducible; neither uses the
    global RNG.

    Args:
        batch_size: B.
        device: where the numbers are drawn (generators live there too).
        generator: one torch.Generator for the whole batch.
        sample_seeds: [B] integer seeds, one generator per sample.
    """

    def __init__(
        self,
        *,
        batch_size: int,
        device: torch.device | str,
        generator: torch.Generator | None = None,
        sample_seeds: torch.Tensor | Sequence[int] | None = None,
    ) -> None:
        if generator is not None and sample_seeds is not None:
            raise ValueError("NoiseSource: pass a generator or sample_seeds, not both")
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.generator = generator
        self.per_sample: list[torch.Generator] | None = None
        if sample_seeds is not None:
            seeds = (
                sample_seeds.tolist()
                if isinstance(sample_seeds, torch.Tensor)
                else list(sample_seeds)
            )
            if len(seeds) != batch_size:
                raise ValueError(
                    f"NoiseSource: {len(seeds)} sample seeds for a batch of {batch_size}"
                )
            self.per_sample = [
                torch.Generator(device=self.device).manual_seed(int(seed)) for seed in seeds
            ]

    def normal(self, shape: Sequence[int]) -> torch.Tensor:
        """[B, *shape] float32 standard normal."""
        if self.per_sample is None:
            return torch.randn(
                (self.batch_size, *shape), generator=self.generator, device=self.device
            )
        return torch.stack(
            [torch.randn(tuple(shape), generator=g, device=self.device) for g in self.per_sample]
        )

    def integers(self, high: int) -> torch.Tensor:
        """[B] int64 uniform in 0 .. high-1."""
        if self.per_sample is None:
            return torch.randint(
                high, (self.batch_size,), generator=self.generator, device=self.device
            )
        return torch.cat(
            [torch.randint(high, (1,), generator=g, device=self.device) for g in self.per_sample]
        )


def argmax_keypoints(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer argmax of each heatmap (the default keypoint decoder of a trajectory).

    Args:
        heatmaps: [N, K, H, W].

    Returns:
        keypoints: [N, K, 2] float32 x, y in heatmap pixels.
        scores: [N, K] the maxima.
    """
    width = heatmaps.shape[-1]
    scores, index = heatmaps.flatten(-2).max(dim=-1)
    keypoints = torch.stack([index % width, torch.div(index, width, rounding_mode="floor")], -1)
    return keypoints.float(), scores
