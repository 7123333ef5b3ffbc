"""Look-up based multi-scale feature interaction (DiffPose's LMSFI).

The author's notes: concatenating the noisy heatmaps with the features collapses
accuracy; instead the heatmaps are used as masks that look up per-joint features,
which then interact with the (unmasked) feature maps, at three scales. Across
sampling steps this is an iterative search: the current heatmaps decide where each
joint's features are read, and the refined estimate moves the masks.

At every scale s (features F_s [B, D, h_s, w_s]):

1. masks: x_t is area-averaged to h_s x w_s and a spatial softmax per joint turns
   it into a distribution over positions, M_s [B, K, h_s, w_s] (each sums to 1);
   the softmax gain is learned per scale and, with ``mask_gain: snr``, scaled by the
   evidence x_t carries at its time step (:func:`snr_mask_scales`);
2. look-up: per-joint vectors g_k = sum_p M_s[k, p] F_s[:, p], [B, K, D];
3. interaction with the unmasked features:
   - coarsest scale: the K joint vectors (plus a learned joint embedding) attend to
     the h x w feature tokens (cross-attention), then to each other (self-attention
     over joints), then an MLP;
   - every scale: each joint vector becomes a dynamic 1x1 kernel correlated with
     every position (K similarity maps), and a convolution over [F_s, similarities]
     gives the K maps (no heatmap enters the convolution, only what was looked up);
4. the K maps of the three scales are upsampled to H x W and summed.

Hypotheses share their features. Sampling runs G hypotheses per clip: x_t has
B * G rows (sample-major) while the pyramid keeps its B rows, and every step reads
each clip's features once for all its hypotheses (look-up and similarity are one
batched product over the G * K joints of a clip). Training is the case G = 1.

The convolution's hidden width halves from each scale to the next finer one (D,
D / 2, D / 4 for three scales, at least 16): a scale has 4x the positions of the
previous one, and the per-step work at the finest scale (its hidden maps exist once
per hypothesis and step) was most of the sampling time at full width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vidpose.models.layers import group_norm, init_output_conv

MIN_FUSE_WIDTH = 16


def fuse_widths(channels: int, num_scales: int) -> list[int]:
    """Hidden width of each scale's fusing convolution, coarse to fine: D, D/2, D/4, ..."""
    return [max(channels >> level, min(channels, MIN_FUSE_WIDTH)) for level in range(num_scales)]


def snr_mask_scales(alphas_cumprod: torch.Tensor, cap: float = 10.0) -> torch.Tensor:
    """How much to trust x_t about where the joints are, per time step: [T] gain scales.

    With x_t = sqrt(a) x0 + sqrt(1 - a) eps (a = alpha_bar_t) and x0 a peak at an
    unknown position p, log p(x_t | p) = const + sqrt(a) / (1 - a) <x_t, x0_p>: the
    posterior over p is a softmax of x_t's agreement with a peak at p, with inverse
    temperature sqrt(a) / (1 - a). Scaling the masks' gain by it makes them uniform at
    pure noise (x_t says nothing; every position is looked up alike) and sharp near
    the data. Normalised to 1 at a = 0.5, so the learned gain is the gain there, and
    capped (at t -> 0 the ratio grows without bound).
    """
    alphas = alphas_cumprod.double()
    ratio = alphas.sqrt() / (1.0 - alphas).clamp_min(1e-12)
    return (ratio / math.sqrt(2.0)).clamp(max=cap).float()  # sqrt(.5) / .5 = sqrt(2)


def heatmap_masks(x_t: torch.Tensor, size: Sequence[int], gain: torch.Tensor) -> torch.Tensor:
    """Turn (noisy) heatmaps into per-joint spatial distributions at ``size``.

    Args:
        x_t: [B, K, H, W] heatmaps in the diffusion signal space.
        size: (h, w) of the target scale (H, W divisible by h, w).
        gain: the softmax inverse temperature: a scalar tensor, or [B, 1, 1] (one per
            row of x_t).

    Returns:
        [B, K, h, w] non-negative, summing to 1 over (h, w) for each joint.
    """
    # Area averaging (not sampling) keeps a narrow peak's mass when shrinking the map
    # and averages the noise down by the pooling factor.
    size = tuple(size)
    pooled = x_t if tuple(x_t.shape[-2:]) == size else F.adaptive_avg_pool2d(x_t, size)
    weights = torch.softmax(pooled.flatten(2).float() * gain, dim=-1)
    return weights.view_as(pooled).to(x_t.dtype)


def look_up(features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mask-weighted sum of the features per joint.

    Args:
        features: [B, D, h, w].
        masks: [B * G, K, h, w], G masks sets per clip (sample-major).

    Returns:
        [B * G, K, D] one feature vector per joint.
    """
    batch, channels = features.shape[:2]
    joints = masks.shape[1]
    grouped = masks.reshape(batch, -1, masks.shape[-2] * masks.shape[-1])  # [B, G*K, hw]
    vectors = torch.bmm(grouped.to(features.dtype), features.flatten(2).transpose(1, 2))
    return vectors.view(-1, joints, channels)


def correlate(kernels: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Dot product of each joint kernel with the feature vector at every position.

    Args:
        kernels: [B * G, K, D] (sample-major).
        features: [B, D, h, w].

    Returns:
        [B * G, K, h, w].
    """
    batch, channels, height, width = features.shape
    grouped = kernels.reshape(batch, -1, channels)  # [B, G*K, D]
    similarity = torch.bmm(grouped, features.flatten(2))  # [B, G*K, hw]
    return similarity.view(kernels.shape[0], kernels.shape[1], height, width)


class CorrelationFuse(nn.Module):
    """Per-joint vectors meet the unmasked features: dynamic kernels + a convolution.

    Each joint vector becomes a 1x1 kernel (a Linear), correlated with every
    position (scaled dot product, Vaswani et al. 2017) into K similarity maps; a
    3x3 convolution over [features, similarities] gives the K output maps. No
    heatmap enters the convolution, only what the masks looked up.

    Encode once, decode many: the convolution is linear, so its feature half
    (D -> hidden channels, the expensive part) is computed once per clip by
    :meth:`prepare`, and every denoising step and hypothesis adds only its K-channel
    similarity half. The time embedding tau, added uniformly to the features,
    contributes the constant conv(tau) = (sum over the kernel window of W) tau,
    exact everywhere but in the one-pixel border where zero padding cuts the window.

    Args:
        channels: D.
        num_joints: K.
        hidden: width of the convolution's output (default D).
    """

    def __init__(self, *, channels: int, num_joints: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = channels if hidden is None else hidden
        self.channels = channels
        self.to_kernel = nn.Linear(channels, channels)
        self.fuse = nn.Sequential(
            nn.Conv2d(channels + num_joints, hidden, kernel_size=3, padding=1, bias=False),
            group_norm(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, num_joints, kernel_size=1),
        )
        init_output_conv(self.fuse[-1])

    def prepare(self, features: torch.Tensor) -> torch.Tensor:
        """The step-independent part: [B, D, h, w] -> [B, hidden, h, w] (once per clip)."""
        weight = self.fuse[0].weight[:, : self.channels]
        return F.conv2d(features, weight, padding=1)

    def forward(
        self,
        features: torch.Tensor,
        joints: torch.Tensor,
        time: torch.Tensor,
        prepared: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Args: features [B, D, h, w]; joints [B * G, K, D]; time [B * G, D] (the
        level's time embedding); prepared: :meth:`prepare` of the features, or None to
        compute it. Returns: maps [B * G, K, h, w]."""
        prepared = self.prepare(features) if prepared is None else prepared
        # scaled dot products: the 1 / sqrt(D) goes on the (small) kernels, not the maps
        kernels = self.to_kernel(joints) / math.sqrt(self.channels)  # [B*G, K, D]
        # <kernel, feature + tau> = <kernel, feature> + <kernel, tau>
        similarity = correlate(kernels, features)
        similarity = similarity + torch.einsum("nkd,nd->nk", kernels, time)[..., None, None]
        conv = self.fuse[0]
        # channels-last input: oneDNN's 3x3 convolution with few (K) input channels ran
        # 2x faster that way on the reference CPU
        similarity = similarity.contiguous(memory_format=torch.channels_last)
        hidden = F.conv2d(similarity, conv.weight[:, self.channels :], padding=1)
        time_term = time @ conv.weight[:, : self.channels].sum(dim=(2, 3)).T  # [B*G, hidden]
        hidden = hidden + time_term[..., None, None]
        # the clip's prepared half, shared by its G hypotheses
        grouped = hidden.view(prepared.shape[0], -1, *hidden.shape[1:]) + prepared[:, None]
        return self.fuse[1:](grouped.flatten(0, 1))


class AttentionLookup(nn.Module):
    """Coarsest scale: per-joint query vectors attend to the feature tokens.

    The looked-up joint vectors (plus a learned joint embedding) attend to the
    h x w tokens (cross-attention), then to each other (self-attention over the
    joints: the skeleton's context), then pass an MLP (pre-norm residual blocks);
    :class:`CorrelationFuse` turns them into maps.

    Args:
        channels: D.
        num_joints: K.
        num_heads: attention heads (D divisible by it).
        mlp_ratio: hidden width of the MLP, in multiples of D.
        fuse_width: hidden width of the :class:`CorrelationFuse` (default D).
    """

    def __init__(
        self,
        *,
        channels: int,
        num_joints: int,
        num_heads: int,
        mlp_ratio: float = 2.0,
        fuse_width: int | None = None,
    ) -> None:
        super().__init__()
        self.joint_embedding = nn.Parameter(torch.randn(num_joints, channels) * 0.02)
        self.token_norm = nn.LayerNorm(channels)
        self.cross_norm = nn.LayerNorm(channels)
        self.cross_attention = nn.MultiheadAttention(channels, num_heads, batch_first=True)
        self.self_norm = nn.LayerNorm(channels)
        self.self_attention = nn.MultiheadAttention(channels, num_heads, batch_first=True)
        self.mlp_norm = nn.LayerNorm(channels)
        hidden = int(channels * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(channels, hidden), nn.GELU(), nn.Linear(hidden, channels)
        )
        self.fuse = CorrelationFuse(channels=channels, num_joints=num_joints, hidden=fuse_width)

    def forward(
        self,
        features: torch.Tensor,
        masks: torch.Tensor,
        time: torch.Tensor,
        prepared: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Args: features [B, D, h, w]; masks [B * G, K, h, w]; time [B * G, D];
        prepared: the fuse's precomputed part or None. Returns: maps [B * G, K, h, w]."""
        # the coarsest level is small: its tokens are conditioned per row of x_t
        hypotheses = masks.shape[0] // features.shape[0]
        conditioned = features.repeat_interleave(hypotheses, dim=0) + time[:, :, None, None]
        tokens = self.token_norm(rearrange(conditioned, "n d h w -> n (h w) d"))  # [B*G, N, D]
        # masks sum to 1 over space, so looking up features + tau adds tau to each joint
        joints = look_up(features, masks) + time[:, None] + self.joint_embedding  # [B*G, K, D]
        query = self.cross_norm(joints)
        joints = joints + self.cross_attention(query, tokens, tokens, need_weights=False)[0]
        query = self.self_norm(joints)
        joints = joints + self.self_attention(query, query, query, need_weights=False)[0]
        joints = joints + self.mlp(self.mlp_norm(joints))
        return self.fuse(features, joints, time, prepared)


class ConvLookup(nn.Module):
    """Finer scales: the looked-up joint vectors go straight to :class:`CorrelationFuse`.

    Args:
        channels: D.
        num_joints: K.
        fuse_width: hidden width of the :class:`CorrelationFuse` (default D).
    """

    def __init__(self, *, channels: int, num_joints: int, fuse_width: int | None = None) -> None:
        super().__init__()
        self.joint_embedding = nn.Parameter(torch.randn(num_joints, channels) * 0.02)
        self.fuse = CorrelationFuse(channels=channels, num_joints=num_joints, hidden=fuse_width)

    def forward(
        self,
        features: torch.Tensor,
        masks: torch.Tensor,
        time: torch.Tensor,
        prepared: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Args: features [B, D, h, w]; masks [B * G, K, h, w]; time [B * G, D];
        prepared: the fuse's precomputed part or None. Returns: maps [B * G, K, h, w]."""
        joints = look_up(features, masks) + time[:, None] + self.joint_embedding
        return self.fuse(features, joints, time, prepared)


class MultiScaleLookup(nn.Module):
    """LMSFI over a pyramid: attention at the coarsest level, convolutions at the others.

    Args:
        channels: D, the width of every pyramid level.
        num_joints: K.
        num_heads: attention heads at the coarsest level.
        num_scales: pyramid levels (3).
        mask_gain: initial softmax inverse temperature of the masks (learned, one per
            scale, kept positive through its log).
    """

    def __init__(
        self,
        *,
        channels: int,
        num_joints: int,
        num_heads: int,
        num_scales: int = 3,
        mask_gain: float = 5.0,
    ) -> None:
        super().__init__()
        if num_scales < 1:
            raise ValueError(f"MultiScaleLookup: num_scales must be >= 1, got {num_scales}")
        widths = fuse_widths(channels, num_scales)
        self.scales = nn.ModuleList(
            [
                AttentionLookup(
                    channels=channels,
                    num_joints=num_joints,
                    num_heads=num_heads,
                    fuse_width=widths[0],
                )
            ]
            + [
                ConvLookup(channels=channels, num_joints=num_joints, fuse_width=width)
                for width in widths[1:]
            ]
        )
        self.log_mask_gain = nn.Parameter(torch.full((num_scales,), math.log(mask_gain)))

    def prepare(self, features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """What does not depend on x_t or t, per level (compute once per clip)."""
        return tuple(
            scale.fuse.prepare(level) for scale, level in zip(self.scales, features, strict=True)
        )

    def forward(
        self,
        x_t: torch.Tensor,
        features: Sequence[torch.Tensor],
        times: Sequence[torch.Tensor],
        prepared: Sequence[torch.Tensor] | None = None,
        mask_scale: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Interact at every scale and sum.

        Args:
            x_t: [B * G, K, H, W] heatmaps in signal space (H x W = finest level's
                size), G hypotheses per clip, sample-major (G = 1 in training).
            features: pyramid levels coarse to fine, [B, D, h_s, w_s].
            times: per level, [B * G, D] the time embedding added to that level.
            prepared: :meth:`prepare` of the features, or None to compute it here.
            mask_scale: [B * G] multipliers of every scale's mask gain (the time
                step's :func:`snr_mask_scales`), or None.

        Returns:
            maps: [B * G, K, H, W] the sum of the upsampled per-scale maps.
            masks: per scale (coarse to fine) [B * G, K, h_s, w_s].
        """
        if len(features) != len(self.scales):
            raise ValueError(
                f"MultiScaleLookup: expected {len(self.scales)} pyramid levels, got {len(features)}"
            )
        if x_t.shape[0] % features[0].shape[0]:
            raise ValueError(
                f"MultiScaleLookup: x_t has {x_t.shape[0]} rows, not a multiple of the "
                f"{features[0].shape[0]} clips of the features"
            )
        output_size = x_t.shape[-2:]
        total = None
        masks = []
        prepared = self.prepare(features) if prepared is None else prepared
        for index, (scale, level) in enumerate(zip(self.scales, features, strict=True)):
            gain = self.log_mask_gain[index].exp()
            if mask_scale is not None:
                gain = gain * mask_scale.view(-1, 1, 1)
            mask = heatmap_masks(x_t, level.shape[-2:], gain)
            maps = scale(level, mask, times[index], prepared[index])
            if maps.shape[-2:] != output_size:
                maps = F.interpolate(maps, size=output_size, mode="bilinear", align_corners=False)
            total = maps if total is None else total + maps
            masks.append(mask)
        return total, tuple(masks)
