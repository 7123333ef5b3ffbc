"""DiffusionPose's denoiser: structure masks, SC-CA and the SGDD U-Net.

DiffusionPose (Qiu et al., arXiv 2306.17074, section 3.3): from the noisy keypoints
y_t render noisy heatmaps y_t^hm, a keypoint mask M^kps and a skeleton mask M^ske
(``vidpose.models.structure_masks``); mask the stride-4 features F,
x^kps = F (.) M^kps and x^ske = F (.) M^ske; relate them with the spatial-channel
cross attention A = A_channel + A_spatial (DaViT's channel-group and window attention,
Ding et al., ECCV 2022) with Q = x^kps, K = V = x^ske; the condition is
x^c = concat(x^kps + A(x^kps, x^ske, x^ske), F); the structure-guided diffusion decoder
(SGDD), a U-Net over concat(y_t^hm, x^c), estimates the clean heatmaps.

Our readings where the paper is silent (docs/architecture.md, "The DiffusionPose head"):
- M^kps and M^ske multiply F as one map each, the union of the K discs and of the L
  limb segments (a per-joint mask would need K copies of F);
- the projections of SC-CA are 1x1 convolutions without bias, so masked-out positions
  stay zero and a projection commutes with the mask: W (F (.) M) = (W F) (.) M. The
  projections of F are computed once per clip (:meth:`StructureGuidedDenoiser.prepare`)
  and every step and hypothesis only multiplies them by its masks;
- the time step enters every U-Net block by FiLM of a sinusoidal embedding (scale and
  shift after the block's second GroupNorm, the "scale-shift norm" of Nichol &
  Dhariwal, ICML 2021), as heads.md suggests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from vidpose.models.layers import group_norm, init_output_conv, timestep_embedding
from vidpose.models.structure_masks import gaussian_heatmaps, keypoint_masks, limb_masks, union

# --------------------------------------------------------------------------- SC-CA


def channel_group_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, groups: int
) -> torch.Tensor:
    """DaViT's channel attention, as cross-attention: channels are the tokens.

    The C channels split into ``groups`` groups of C / G; within a group each query
    channel (its map over all N = H W positions) attends to the group's key channels:
    A = softmax(q k^T / sqrt(C / G)) [C/G, C/G], out = A v. DaViT scales by the group
    width (its ``head_dim ** -0.5``); we keep that.

    Args:
        query, key, value: [N, C, H, W], C divisible by ``groups``.

    Returns:
        [N, C, H, W].
    """
    batch, channels, height, width = query.shape
    width_per_group = channels // groups

    def split(tensor: torch.Tensor) -> torch.Tensor:  # [N, C, H, W] -> [N, G, C/G, HW]
        return tensor.reshape(batch, groups, width_per_group, height * width)

    logits = split(query) @ split(key).transpose(-1, -2) * width_per_group**-0.5
    out = logits.softmax(dim=-1) @ split(value)  # [N, G, C/G, HW]
    return out.reshape(batch, channels, height, width)


def window_size(window: int, size: tuple[int, int]) -> tuple[int, int]:
    """The attention window on an H x W map: ``window`` x ``window`` (DaViT's 7), each
    side capped at the map's (a map smaller than the window is one window)."""
    return min(window, size[0]), min(window, size[1])


def _to_windows(tensor: torch.Tensor, window: tuple[int, int]) -> torch.Tensor:
    """[N, C, H, W] -> [N * n_windows, wh * ww, C], zero-padded to whole windows at the
    bottom and right (padding acts like masked-out positions: zero keys and values)."""
    batch, channels, height, width = tensor.shape
    rows, cols = window
    tensor = F.pad(tensor, (0, (-width) % cols, 0, (-height) % rows))
    padded_h, padded_w = tensor.shape[-2:]
    tensor = tensor.view(batch, channels, padded_h // rows, rows, padded_w // cols, cols)
    return tensor.permute(0, 2, 4, 3, 5, 1).reshape(-1, rows * cols, channels)


def _from_windows(
    windows: torch.Tensor, batch: int, size: tuple[int, int], window: tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`_to_windows`, padding removed: -> [N, C, H, W]."""
    height, width = size
    rows, cols = window
    grid_h, grid_w = -(-height // rows), -(-width // cols)
    channels = windows.shape[-1]
    tensor = windows.view(batch, grid_h, grid_w, rows, cols, channels)
    tensor = tensor.permute(0, 5, 1, 3, 2, 4).reshape(batch, channels, grid_h * rows, -1)
    return tensor[:, :, :height, :width]


def window_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    heads: int,
    window: tuple[int, int],
) -> torch.Tensor:
    """DaViT's spatial window attention, as cross-attention: each query position
    attends to the key positions of its own window (non-overlapping windows, Swin's
    partition without the shift), ``heads`` heads of C / heads channels, scale
    1 / sqrt(C / heads).

    Args:
        query, key, value: [N, C, H, W], C divisible by ``heads``.
        window: (wh, ww) (:func:`window_size`).

    Returns:
        [N, C, H, W].
    """
    batch, channels, height, width = query.shape

    def split(tensor: torch.Tensor) -> torch.Tensor:  # -> [N n_win, heads, wh ww, C/heads]
        windows = _to_windows(tensor, window)
        return windows.view(*windows.shape[:2], heads, -1).transpose(1, 2)

    out = F.scaled_dot_product_attention(split(query), split(key), split(value))
    out = out.transpose(1, 2).reshape(-1, window[0] * window[1], channels)
    return _from_windows(out, batch, (height, width), window)


class SpatialChannelCrossAttention(nn.Module):
    """SC-CA: A(Q, K, V) = A_channel(Q, K, V) + A_spatial(Q, K, V) (DiffusionPose eq. 6).

    Each branch has its own query, key and value projections (1x1 convolutions without
    bias: zero, masked-out positions stay zero) and its output projection.

    Args:
        channels: C.
        groups: channel groups of A_channel and heads of A_spatial (DaViT: 8).
        window: window side of A_spatial (DaViT: 7), capped at the map size.
    """

    def __init__(self, *, channels: int, groups: int, window: int) -> None:
        super().__init__()
        if channels % groups:
            raise ValueError(
                f"SpatialChannelCrossAttention: channels={channels} is not divisible by "
                f"groups={groups}"
            )
        if window < 1:
            raise ValueError(f"SpatialChannelCrossAttention: window must be >= 1, got {window}")
        self.channels = channels
        self.groups = groups
        self.window = window
        # [q_channel, q_spatial] and [k_channel, v_channel, k_spatial, v_spatial]
        self.query_projection = nn.Conv2d(channels, 2 * channels, kernel_size=1, bias=False)
        self.key_value_projection = nn.Conv2d(channels, 4 * channels, kernel_size=1, bias=False)
        self.channel_output = nn.Conv2d(channels, channels, kernel_size=1)
        self.spatial_output = nn.Conv2d(channels, channels, kernel_size=1)

    def project_query(self, query: torch.Tensor) -> torch.Tensor:
        """[N, C, H, W] -> [N, 2C, H, W] the two branches' queries."""
        return self.query_projection(query)

    def project_key_value(self, key_value: torch.Tensor) -> torch.Tensor:
        """[N, C, H, W] -> [N, 4C, H, W] the two branches' keys and values."""
        return self.key_value_projection(key_value)

    def attend(self, queries: torch.Tensor, keys_values: torch.Tensor) -> torch.Tensor:
        """A from projected inputs (:meth:`project_query`, :meth:`project_key_value`).

        Args:
            queries: [N, 2C, H, W].
            keys_values: [N, 4C, H, W].

        Returns:
            [N, C, H, W].
        """
        q_channel, q_spatial = queries.chunk(2, dim=1)
        k_channel, v_channel, k_spatial, v_spatial = keys_values.chunk(4, dim=1)
        channel = channel_group_attention(q_channel, k_channel, v_channel, self.groups)
        window = window_size(self.window, tuple(queries.shape[-2:]))
        spatial = window_attention(q_spatial, k_spatial, v_spatial, self.groups, window)
        return self.channel_output(channel) + self.spatial_output(spatial)

    def forward(self, query: torch.Tensor, key_value: torch.Tensor) -> torch.Tensor:
        """A(Q, K, V) with K = V = ``key_value``.

        Args:
            query: [N, C, H, W] (x^kps).
            key_value: [N, C, H, W] (x^ske).

        Returns:
            [N, C, H, W].
        """
        return self.attend(self.project_query(query), self.project_key_value(key_value))

    def extra_repr(self) -> str:
        return f"channels={self.channels}, groups={self.groups}, window={self.window}"


# --------------------------------------------------------------------------- SGDD U-Net


class FiLMResBlock(nn.Module):
    """A U-Net residual block whose features are modulated by the time embedding.

    GroupNorm, SiLU, conv3x3; GroupNorm, FiLM (h (1 + scale) + shift, both from the
    time embedding), SiLU, conv3x3; plus the input (a 1x1 convolution when the width
    changes). The second convolution starts at zero, so every block starts as the
    identity (improved-diffusion's ResBlock, Nichol & Dhariwal 2021).

    Args:
        in_channels, out_channels: widths.
        time_dim: width of the time embedding.
    """

    def __init__(self, *, in_channels: int, out_channels: int, time_dim: int) -> None:
        super().__init__()
        self.norm_in = group_norm(in_channels)
        self.conv_in = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.norm_out = group_norm(out_channels)
        self.film = nn.Linear(time_dim, 2 * out_channels)
        self.conv_out = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)
        self.skip = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Conv2d(in_channels, out_channels, kernel_size=1)
        )

    def forward(self, x: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        """x [N, C_in, h, w], time [N, time_dim] -> [N, C_out, h, w]."""
        hidden = self.conv_in(F.silu(self.norm_in(x)))
        scale, shift = self.film(time)[..., None, None].chunk(2, dim=1)
        hidden = self.norm_out(hidden) * (1 + scale) + shift
        return self.conv_out(F.silu(hidden)) + self.skip(x)


class _Level(nn.Module):
    """``blocks`` FiLM blocks in a row, the first changing the width."""

    def __init__(self, *, in_channels: int, out_channels: int, blocks: int, time_dim: int):
        super().__init__()
        self.blocks = nn.ModuleList(
            FiLMResBlock(
                in_channels=in_channels if index == 0 else out_channels,
                out_channels=out_channels,
                time_dim=time_dim,
            )
            for index in range(blocks)
        )

    def forward(self, x: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, time)
        return x


class StructureUNet(nn.Module):
    """SGDD's U-Net: concat(noisy heatmaps, x^c) -> K heatmaps (the x0 estimate).

    Levels at 1, 1/2 and 1/4 of the H x W map with ``channels`` widths (the paper's
    64 / 128 / 256), a middle at 1/8 with twice the last width (the paper's 2C x H/8 x
    W/8), and the way back up with a skip connection from each level (concatenated).
    Downsampling is a stride-2 conv3x3 (ceil for odd sizes), upsampling nearest to the
    skip's exact size then conv3x3, so any map size works.

    The first convolution over concat(y^hm [K], x^kps + A [D], F [D]) is written as the
    sum of three convolutions over the three parts (the same linear map); the part of F
    depends on the clip alone and is computed once (:meth:`prepare_features`).

    Args:
        num_joints: K (input noisy heatmaps and output heatmaps).
        feature_channels: D, the width of F (and of x^kps + A).
        channels: widths of the levels, fine to coarse (at least one).
        blocks: FiLM blocks per level (and in the middle; >= 1).
        time_dim: width of the time embedding.
    """

    def __init__(
        self,
        *,
        num_joints: int,
        feature_channels: int,
        channels: Sequence[int],
        blocks: int,
        time_dim: int,
    ) -> None:
        super().__init__()
        channels = [int(width) for width in channels]
        if not channels or min(channels) < 1 or blocks < 1:
            raise ValueError(
                f"StructureUNet: need at least one level of positive width and blocks >= 1, "
                f"got channels={channels}, blocks={blocks}"
            )
        first = channels[0]
        if first % 2:
            raise ValueError(
                f"StructureUNet: the first width ({first}) is the sinusoidal time embedding's "
                "and must be even"
            )
        self.time_channels = first  # the sinusoid's width (DDPM: the first level's)
        self.time_dim = time_dim
        self.stem_heatmaps = nn.Conv2d(num_joints, first, kernel_size=3, padding=1)
        self.stem_structure = nn.Conv2d(feature_channels, first, 3, padding=1, bias=False)
        self.stem_features = nn.Conv2d(feature_channels, first, 3, padding=1, bias=False)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        previous = first
        for width in channels:
            self.down.append(
                _Level(in_channels=previous, out_channels=width, blocks=blocks, time_dim=time_dim)
            )
            self.downsample.append(nn.Conv2d(width, width, kernel_size=3, stride=2, padding=1))
            previous = width
        self.middle = _Level(
            in_channels=previous, out_channels=2 * previous, blocks=blocks, time_dim=time_dim
        )
        previous *= 2
        self.upsample = nn.ModuleList()
        self.up = nn.ModuleList()
        for width in reversed(channels):
            self.upsample.append(nn.Conv2d(previous, width, kernel_size=3, padding=1))
            self.up.append(
                _Level(in_channels=2 * width, out_channels=width, blocks=blocks, time_dim=time_dim)
            )
            previous = width
        self.output = nn.Sequential(
            group_norm(first), nn.SiLU(), nn.Conv2d(first, num_joints, kernel_size=1)
        )
        init_output_conv(self.output[-1])

    def prepare_features(self, features: torch.Tensor) -> torch.Tensor:
        """[B, D, H, W] F -> [B, channels[0], H, W] its part of the first convolution."""
        return self.stem_features(features)

    def forward(
        self,
        heatmaps: torch.Tensor,
        structure: torch.Tensor,
        prepared_features: torch.Tensor,
        time: torch.Tensor,
    ) -> torch.Tensor:
        """The x0 estimate.

        Args:
            heatmaps: [N, K, H, W] noisy heatmaps y_t^hm.
            structure: [N, D, H, W] x^kps + A(x^kps, x^ske, x^ske).
            prepared_features: [N, channels[0], H, W] :meth:`prepare_features` of F.
            time: [N, time_dim] the time embedding.

        Returns:
            [N, K, H, W] heatmaps (heatmap units).
        """
        x = self.stem_heatmaps(heatmaps) + self.stem_structure(structure) + prepared_features
        skips = []
        for level, downsample in zip(self.down, self.downsample, strict=True):
            x = level(x, time)
            skips.append(x)
            x = downsample(x)
        x = self.middle(x, time)
        for upsample, level, skip in zip(self.upsample, self.up, reversed(skips), strict=True):
            x = upsample(F.interpolate(x, size=skip.shape[-2:], mode="nearest"))
            x = level(torch.cat([x, skip], dim=1), time)
        return self.output(x)


# --------------------------------------------------------------------------- the denoiser


class PreparedFeatures(NamedTuple):
    """What the denoiser computes from the clip's features alone (once per clip).

    Attributes:
        features: [B, D, H, W] F, the finest pyramid level.
        queries: [B, 2D, H, W] SC-CA's query projections of F.
        keys_values: [B, 4D, H, W] SC-CA's key and value projections of F.
        stem: [B, channels[0], H, W] F's part of the U-Net's first convolution.
    """

    features: torch.Tensor
    queries: torch.Tensor
    keys_values: torch.Tensor
    stem: torch.Tensor


class StructureEstimate(NamedTuple):
    """One denoiser call on N = B * G noisy poses.

    Attributes:
        heatmaps: [N, K, H, W] the x0 estimate (heatmap units; targets are in [0, 1]).
        noisy_heatmaps: [N, K, H, W] y_t^hm rendered from the noisy points.
        keypoint_masks: [N, K, H, W] 0 / 1 each joint's disc (M^kps is their union).
        skeleton_masks: [N, L, H, W] 0 / 1 each limb's segment (M^ske is their union).
    """

    heatmaps: torch.Tensor
    noisy_heatmaps: torch.Tensor
    keypoint_masks: torch.Tensor
    skeleton_masks: torch.Tensor


class StructureGuidedDenoiser(nn.Module):
    """(noisy keypoints, t, F) -> x0 heatmaps, through the structure masks, SC-CA and SGDD.

    Args:
        num_joints: K.
        channels: D, the width of the finest pyramid level F.
        limbs: the skeleton's (joint, joint) pairs (``Skeleton.limbs``).
        sigma: the noisy heatmaps' Gaussian standard deviation, heatmap pixels (the
            codec's).
        keypoint_radius: delta_kps, heatmap pixels.
        limb_radius: delta_ske, heatmap pixels.
        attention: the SC-CA module on D channels.
        unet: the SGDD U-Net (K joints, D feature channels).
    """

    def __init__(
        self,
        *,
        num_joints: int,
        channels: int,
        limbs: Sequence[tuple[int, int]],
        sigma: float,
        keypoint_radius: float,
        limb_radius: float,
        attention: SpatialChannelCrossAttention,
        unet: StructureUNet,
    ) -> None:
        super().__init__()
        if keypoint_radius <= 0 or limb_radius <= 0 or sigma <= 0:
            raise ValueError(
                "StructureGuidedDenoiser: keypoint_radius, limb_radius and sigma must be > 0, "
                f"got {keypoint_radius}, {limb_radius}, {sigma}"
            )
        for a, b in limbs:
            if not (0 <= a < num_joints and 0 <= b < num_joints):
                raise ValueError(f"StructureGuidedDenoiser: limb ({a}, {b}) is not among K joints")
        self.num_joints = num_joints
        self.channels = channels
        self.limbs = tuple((int(a), int(b)) for a, b in limbs)
        self.sigma = float(sigma)
        self.keypoint_radius = float(keypoint_radius)
        self.limb_radius = float(limb_radius)
        self.attention = attention
        self.unet = unet
        # DDPM's time embedding: a sinusoid, then Linear, SiLU, Linear (Ho et al. 2020)
        self.time_mlp = nn.Sequential(
            nn.Linear(unet.time_channels, unet.time_dim),
            nn.SiLU(),
            nn.Linear(unet.time_dim, unet.time_dim),
        )

    def prepare(self, features: torch.Tensor) -> PreparedFeatures:
        """The work that depends on the clip's features alone (see the module docstring).

        Args:
            features: [B, D, H, W] the finest pyramid level.
        """
        return PreparedFeatures(
            features=features,
            queries=self.attention.project_query(features),
            keys_values=self.attention.project_key_value(features),
            stem=self.unet.prepare_features(features),
        )

    def forward(
        self,
        points: torch.Tensor,
        t: torch.Tensor,
        features: torch.Tensor,
        prepared: PreparedFeatures | None = None,
    ) -> StructureEstimate:
        """Estimate the clean heatmaps of N noisy poses.

        Args:
            points: [N, K, 2] the noisy keypoints, x, y in heatmap pixels of F's grid;
                N = B * G, the G hypotheses of a clip next to each other (sample-major).
            t: [N] integer time steps.
            features: [B, D, H, W] F, shared by each clip's G hypotheses.
            prepared: :meth:`prepare` of ``features``, or None (computed here).

        Returns:
            :class:`StructureEstimate`.
        """
        batch, _, height, width = features.shape
        count = points.shape[0]
        if count % batch:
            raise ValueError(
                f"StructureGuidedDenoiser: {count} poses for {batch} clips (expected B * G)"
            )
        hypotheses = count // batch
        if prepared is None:
            prepared = self.prepare(features)
        size = (height, width)
        points = points.float()
        noisy_heatmaps = gaussian_heatmaps(points, size, self.sigma)
        joint_discs = keypoint_masks(points, size, self.keypoint_radius)  # [N, K, H, W]
        limb_segments = limb_masks(points, self.limbs, size, self.limb_radius)  # [N, L, H, W]
        dtype = features.dtype
        keypoint_mask = union(joint_discs).to(dtype)  # M^kps [N, 1, H, W]
        skeleton_mask = union(limb_segments).to(dtype)  # M^ske

        def masked(tensor: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            # [B, C, H, W] x [B*G, 1, H, W] -> [B*G, C, H, W] without copying F G times first
            shared = tensor.unsqueeze(1)  # [B, 1, C, H, W]
            per_pose = mask.view(batch, hypotheses, 1, height, width)
            return (shared * per_pose).flatten(0, 1)

        # x^kps = F (.) M^kps; SC-CA's projections of x^kps and x^ske are the prepared
        # projections of F times the masks (1x1, no bias: they commute with the mask).
        x_keypoints = masked(prepared.features, keypoint_mask)
        attended = self.attention.attend(
            masked(prepared.queries, keypoint_mask), masked(prepared.keys_values, skeleton_mask)
        )

        def shared(tensor: torch.Tensor) -> torch.Tensor:  # [B, ...] -> [B*G, ...]
            return tensor.repeat_interleave(hypotheses, dim=0) if hypotheses > 1 else tensor

        time = self.time_mlp(timestep_embedding(t, self.unet.time_channels).to(dtype))
        heatmaps = self.unet(
            noisy_heatmaps.to(dtype), x_keypoints + attended, shared(prepared.stem), time
        )
        return StructureEstimate(
            heatmaps=heatmaps,
            noisy_heatmaps=noisy_heatmaps,
            keypoint_masks=joint_discs,
            skeleton_masks=limb_segments,
        )
