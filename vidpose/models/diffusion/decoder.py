"""The denoiser network (DiffPose's pose decoder): (x_t, t, features) -> x0 estimate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

import torch
from torch import nn

from vidpose.models.interaction import MultiScaleLookup
from vidpose.models.layers import timestep_embedding


class DenoiserOutput(NamedTuple):
    """What the denoiser returns.

    Attributes:
        heatmaps: [B * G, K, H, W] the x0 estimate in heatmap units (targets are in
            [0, 1]).
        masks: per pyramid level, coarse to fine, [B * G, K, h_s, w_s]: where each joint's
            features were looked up (each map sums to 1).
    """

    heatmaps: torch.Tensor
    masks: tuple[torch.Tensor, ...]


class Denoiser(Protocol):
    """What ``DiffusionHead`` asks of a denoiser: :class:`HeatmapDenoiser` (vidpose's
    look-up interaction) and ``vidpose.models.lmsfi.DiffPoseDenoiser`` (the paper's).

    ``prepare(features)`` is the feature-only work, called once per clip (any value,
    or None); ``denoiser(x_t, t, features, prepared)`` with x_t [B * G, K, H, W]
    (G hypotheses per clip, sample-major), t [B * G] and features with B rows returns
    a :class:`DenoiserOutput` whose masks are per level [B * G, K, h_s, w_s], each
    joint's map summing to 1.
    """

    def prepare(self, features: Sequence[torch.Tensor]) -> Any: ...

    def __call__(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        features: Sequence[torch.Tensor],
        prepared: Any = None,
    ) -> DenoiserOutput: ...


class HeatmapDenoiser(nn.Module):
    """x0-predicting denoiser with look-up multi-scale interaction.

    The time step is embedded (sinusoid + MLP) and added, per channel, to every
    pyramid level before the interaction. Adding a projection of the embedding is
    the same as concatenating the embedding to the features and applying a 1x1
    convolution; the author's notes found this better than attending to the time
    embedding. x_t enters only through the masks (see ``vidpose.models.interaction``).

    The network predicts x0 in heatmap units (what the baseline head predicts), so
    its loss is the ordinary heatmap MSE whatever the signal scale; the diffusion
    head maps it to signal space for the DDIM update.

    Args:
        num_joints: K.
        channels: D, the pyramid width.
        num_heads: attention heads of the coarsest interaction.
        num_scales: pyramid levels (3).
        signal_scale: the diffusion signal scale; sets the masks' initial softmax
            gain to 5 / scale, so a clean heatmap's peak (+scale) stands 10 nats
            above its background (-scale): enough to concentrate a mask on the peak
            of a 64 x 48 map (e^10 ~ 22000 > 3072 positions).
        mask_scales: [T] multipliers of the masks' gain per time step
            (:func:`~vidpose.models.interaction.snr_mask_scales`), or None for one
            gain at every t (DiffPose).
    """

    def __init__(
        self,
        *,
        num_joints: int,
        channels: int,
        num_heads: int,
        num_scales: int = 3,
        signal_scale: float = 1.0,
        mask_scales: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.channels = channels
        # not saved in checkpoints: it follows from the config, like the schedule
        self.register_buffer("mask_scales", mask_scales, persistent=False)
        self.time_mlp = nn.Sequential(
            nn.Linear(channels, channels * 4), nn.GELU(), nn.Linear(channels * 4, channels)
        )
        self.time_to_level = nn.ModuleList(nn.Linear(channels, channels) for _ in range(num_scales))
        self.interaction = MultiScaleLookup(
            channels=channels,
            num_joints=num_joints,
            num_heads=num_heads,
            num_scales=num_scales,
            mask_gain=5.0 / signal_scale,
        )

    def prepare(self, features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """The part of the computation that depends on the features alone, per level.

        Sampling calls this once per clip and passes the result to every step and
        hypothesis (see ``CorrelationFuse``): it is most of the denoiser's work.
        """
        return self.interaction.prepare(features)

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        features: Sequence[torch.Tensor],
        prepared: Sequence[torch.Tensor] | None = None,
    ) -> DenoiserOutput:
        """Estimate x0.

        Args:
            x_t: [B * G, K, H, W] noisy heatmaps in signal space: G hypotheses per
                clip, sample-major (G = 1 in training).
            t: [B * G] integer time steps.
            features: pyramid levels coarse to fine, [B, D, h_s, w_s], shared by each
                clip's hypotheses; the finest is H x W.
            prepared: :meth:`prepare` of the features (same B clips), or None.

        Returns:
            :class:`DenoiserOutput` (heatmaps [B * G, K, H, W], masks per level).
        """
        time = self.time_mlp(timestep_embedding(t, self.channels).to(features[0].dtype))
        # Each level is conditioned on its projection of the time embedding, added
        # uniformly over h x w; the interaction applies it without materialising
        # features + tau, so the feature-only work can be shared by every step.
        times = [project(time) for project in self.time_to_level]  # [B, D] per level
        mask_scale = None if self.mask_scales is None else self.mask_scales[t]  # [B * G]
        heatmaps, masks = self.interaction(x_t, features, times, prepared, mask_scale)
        return DenoiserOutput(heatmaps=heatmaps, masks=masks)
