"""Look-up based multi-scale feature interaction (DiffPose's LMSFI).

The author's notes: concatenating the noisy heatmaps with the features collapses
accuracy; instead the heatmaps are used as masks that look up per-joint features,
which then interact with the (unmasked) feature maps, at three scales. Across
sampling steps this is an iterative search: the current heatmaps decide where each
joint's features are read, and the refined estimate moves the masks.

At every scale s (features F_s [B, D, h_s, w_s]):

1. masks: x_t is area-averaged to h_s x w_s and a spatial softmax per joint turns
   it into a distribution over positions, M_s [B, K, h_s, w_s] (each sums to 1);
2. look-up: per-joint vectors g_k = sum_p M_s[k, p] F_s[:, p], [B, K, D];
3. interaction with the unmasked features:
   - coarsest scale: the K joint vectors (plus a learned joint embedding) attend to
     the h x w feature tokens (cross-attention), then to each other (self-attention
     over joints), then an MLP;
   - every scale: each joint vector becomes a dynamic 1x1 kernel correlated with
     every position (K similarity maps), and a convolution over [F_s, similarities]
     gives the K maps (no heatmap enters the convolution, only what was looked up);
4. the K maps of the three scales are upsampled to H x W and summed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vidpose.models.layers import group_norm, init_output_conv


def heatmap_masks(x_t: torch.Tensor, size: Sequence[int], gain: torch.Tensor) -> torch.Tensor:
    """Turn (noisy) heatmaps into per-joint spatial distributions at ``size``.

    Args:
        x_t: [B, K, H, W] heatmaps in the diffusion signal space.
        size: (h, w) of the target scale (H, W divisible by h, w).
        gain: scalar tensor, the softmax inverse temperature.

    Returns:
        [B, K, h, w] non-negative, summing to 1 over (h, w) for each joint.
    """
    # Area averaging (not sampling) keeps a narrow peak's mass when shrinking the map
    # and averages the noise down by the pooling factor.
    pooled = F.adaptive_avg_pool2d(x_t, tuple(size))
    weights = torch.softmax(pooled.flatten(2).float() * gain, dim=-1)
    return weights.view_as(pooled).to(x_t.dtype)


def look_up(features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mask-weighted sum of the features per joint.

    Args:
        features: [B, D, h, w].
        masks: [B, K, h, w].

    Returns:
        [B, K, D] one feature vector per joint.
    """
    return torch.einsum("bkn,bdn->bkd", masks.flatten(2).to(features.dtype), features.flatten(2))


class CorrelationFuse(nn.Module):
    """Per-joint vectors meet the unmasked features: dynamic kernels + a convolution.

    Each joint vector becomes a 1x1 kernel (a Linear), correlated with every
    position (scaled dot product, Vaswani et al. 2017) into K similarity maps; a
    3x3 convolution over [features, similarities] gives the K output maps. No
    heatmap enters the convolution, only what the masks looked up.

    Encode once, decode many: the convolution is linear, so its feature half
    (D -> D channels, the expensive part) is computed once per clip by
    :meth:`prepare`, and every denoising step and hypothesis adds only its K-channel
    similarity half. The time embedding tau, added uniformly to the features,
    contributes the constant conv(tau) = (sum over the kernel window of W) tau,
    exact everywhere but in the one-pixel border where zero padding cuts the window.

    Args:
        channels: D.
        num_joints: K.
    """

    def __init__(self, *, channels: int, num_joints: int) -> None:
        super().__init__()
        self.channels = channels
        self.to_kernel = nn.Linear(channels, channels)
        self.fuse = nn.Sequential(
            nn.Conv2d(channels + num_joints, channels, kernel_size=3, padding=1, bias=False),
            group_norm(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, num_joints, kernel_size=1),
        )
        init_output_conv(self.fuse[-1])

    def prepare(self, features: torch.Tensor) -> torch.Tensor:
        """The step-independent part: [B, D, h, w] -> [B, D, h, w] (once per clip)."""
        weight = self.fuse[0].weight[:, : self.channels]
        return F.conv2d(features, weight, padding=1)

    def forward(
        self,
        features: torch.Tensor,
        joints: torch.Tensor,
        time: torch.Tensor,
        prepared: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Args: features [B, D, h, w]; joints [B, K, D]; time [B, D] (the level's time
        embedding); prepared: :meth:`prepare` of the features, or None to compute it.
        Returns: maps [B, K, h, w]."""
        prepared = self.prepare(features) if prepared is None else prepared
        kernels = self.to_kernel(joints)  # [B, K, D]
        # <kernel, feature + tau> = <kernel, feature> + <kernel, tau>
        similarity = torch.einsum("bkd,bdhw->bkhw", kernels, features)
        similarity = similarity + torch.einsum("bkd,bd->bk", kernels, time)[..., None, None]
        similarity = similarity / math.sqrt(self.channels)
        conv = self.fuse[0]
        hidden = prepared + F.conv2d(similarity, conv.weight[:, self.channels :], padding=1)
        time_term = time @ conv.weight[:, : self.channels].sum(dim=(2, 3)).T  # [B, D]
        hidden = hidden + time_term[..., None, None]
        return self.fuse[1:](hidden)


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
    """

    def __init__(
        self, *, channels: int, num_joints: int, num_heads: int, mlp_ratio: float = 2.0
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
        self.fuse = CorrelationFuse(channels=channels, num_joints=num_joints)

    def forward(
        self,
        features: torch.Tensor,
        masks: torch.Tensor,
        time: torch.Tensor,
        prepared: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Args: features [B, D, h, w]; masks [B, K, h, w]; time [B, D]; prepared: the
        fuse's precomputed part or None. Returns: maps [B, K, h, w]."""
        conditioned = features + time[:, :, None, None]  # the coarsest level is small
        tokens = self.token_norm(rearrange(conditioned, "b d h w -> b (h w) d"))  # [B, N, D]
        # masks sum to 1 over space, so looking up features + tau adds tau to each joint
        joints = look_up(features, masks) + time[:, None] + self.joint_embedding  # [B, K, D]
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
    """

    def __init__(self, *, channels: int, num_joints: int) -> None:
        super().__init__()
        self.joint_embedding = nn.Parameter(torch.randn(num_joints, channels) * 0.02)
        self.fuse = CorrelationFuse(channels=channels, num_joints=num_joints)

    def forward(
        self,
        features: torch.Tensor,
        masks: torch.Tensor,
        time: torch.Tensor,
        prepared: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Args: features [B, D, h, w]; masks [B, K, h, w]; time [B, D]; prepared: the
        fuse's precomputed part or None. Returns: maps [B, K, h, w]."""
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
        self.scales = nn.ModuleList(
            [AttentionLookup(channels=channels, num_joints=num_joints, num_heads=num_heads)]
            + [ConvLookup(channels=channels, num_joints=num_joints) for _ in range(num_scales - 1)]
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
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Interact at every scale and sum.

        Args:
            x_t: [B, K, H, W] heatmaps in signal space (H x W = finest level's size).
            features: pyramid levels coarse to fine, [B, D, h_s, w_s].
            times: per level, [B, D] the time embedding added to that level.
            prepared: :meth:`prepare` of the features, or None to compute it here.

        Returns:
            maps: [B, K, H, W] the sum of the upsampled per-scale maps.
            masks: per scale (coarse to fine) [B, K, h_s, w_s].
        """
        if len(features) != len(self.scales):
            raise ValueError(
                f"MultiScaleLookup: expected {len(self.scales)} pyramid levels, got {len(features)}"
            )
        output_size = x_t.shape[-2:]
        total = None
        masks = []
        prepared = self.prepare(features) if prepared is None else prepared
        for index, (scale, level) in enumerate(zip(self.scales, features, strict=True)):
            mask = heatmap_masks(x_t, level.shape[-2:], self.log_mask_gain[index].exp())
            maps = scale(level, mask, times[index], prepared[index])
            if maps.shape[-2:] != output_size:
                maps = F.interpolate(maps, size=output_size, mode="bilinear", align_corners=False)
            total = maps if total is None else total + maps
            masks.append(mask)
        return total, tuple(masks)
