"""DiffPose's look-up interaction as published (``model.interaction: diffpose``).

Feng et al., "DiffPose: SpatioTemporal Diffusion Model for Video-Based Human Pose
Estimation", ICCV 2023, section 3 (the Pose-Decoder, "Lookup-based MultiScale Feature
Interaction", LMSFI). vidpose's own interaction (``vidpose.models.interaction``,
``model.interaction: lookup``) follows the same outline with other layers; this module
is the paper's, so that the two can be compared on the same data.

The paper's decoder, as built here (coarse to fine over the feature pyramid; F_s the
pyramid level [B, D, h_s, w_s], x_t the noisy heatmaps [B * G, K, H, W]):

1. Size-matched pairs: F_s are the pyramid's levels (the fused map upsampled x1, x2,
   x4 by deconvolutions: ``FeaturePyramid``); x_t is downsampled *by convolutions* to
   each level's size (:class:`HeatmapDownsample`).
2. Per scale: the features self-refine (a Transformer at the coarsest scale,
   convolutions at the finer ones); the downsampled x_t is squeezed by a maximum over
   its channels and a sigmoid into one spatial mask A_s [B * G, 1, h_s, w_s]
   (:func:`squeeze_mask`); A_s (.) F_s is concatenated with F_s (and with the time
   embedding, the author's notes: concatenation beat attention on it) and passes a
   Transformer (coarsest) or convolutions (finer) (:class:`ScaleInteraction`).
3. The three scales, each upsampled to the heatmap grid, are summed element-wise, and a
   3x3 convolution gives the K heatmaps (the x0 estimate).

x_t reaches the network only through the masks A_s: it is never concatenated with the
features (the author's notes: that collapsed accuracy).

Encode once, decode many: the self-refinement reads the features alone, and the 1x1
projection of [A (.) F, F, tau] is linear with A one number per position, so
W [A (.) F, F, tau] = A (.) (W_a F) + W_f F + W_tau tau: :meth:`DiffPoseLookup.prepare`
computes the refined features' two projections once per clip, and every step and
hypothesis adds only A, tau and the layers after the masking.

Where the paper leaves sizes open the choices are ours (docs/architecture.md, section
3): every scale is D wide; x_t is downsampled by one f x f convolution of stride f
(f = 4, 2, 1), K channels to K, initialised to area averaging; the self-refinement and
the post-mask stages have ``refine_layers`` and ``fuse_layers`` layers each (pre-norm
Transformer encoder layers with ``num_heads`` heads and an MLP of 4 D at the coarsest
scale; 3x3 convolution + GroupNorm + ReLU at the finer ones); the scales are upsampled
bilinearly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vidpose.models.diffusion.decoder import DenoiserOutput
from vidpose.models.layers import group_norm, init_output_conv, timestep_embedding

# (W_a F, W_f F + b): a scale's prepared projections of its refined features
PreparedScale = tuple[torch.Tensor, torch.Tensor]


def squeeze_mask(heatmaps: torch.Tensor) -> torch.Tensor:
    """The paper's mask: the maximum over channels, then a sigmoid.

    Args:
        heatmaps: [N, C, h, w] the (downsampled) noisy heatmaps.

    Returns:
        [N, 1, h, w] in (0, 1): one mask per position, shared by all joints.
    """
    return torch.sigmoid(heatmaps.amax(dim=1, keepdim=True))


def masks_for_display(mask: torch.Tensor, num_joints: int) -> torch.Tensor:
    """A as the head's "masks" contract wants them: [N, 1, h, w] -> [N, K, h, w].

    The paper's mask is one map for all joints; it is divided by its sum (so it is a
    distribution over positions, as vidpose's per-joint masks are) and repeated for
    every joint. The visualisation then shows where the step looked, the same map for
    every joint.
    """
    weights = mask / mask.sum(dim=(-2, -1), keepdim=True)
    return weights.expand(-1, num_joints, -1, -1)


class HeatmapDownsample(nn.Module):
    """x_t to a pyramid level's size by a convolution: [N, K, H, W] -> [N, K, H/f, W/f].

    One f x f convolution of stride f, K channels to K (ours: the paper says "by
    convolutions" and gives no sizes), initialised to area averaging of each joint's own
    map (weight 1 / f^2 on the joint's channel, 0 elsewhere, bias 0): it starts as the
    resizing that keeps a narrow peak's mass, and learns to mix joints and sharpen.

    Args:
        num_joints: K.
        factor: f, H / h_s (1 at the finest level: a 1x1 convolution, initialised to
            the identity).
    """

    def __init__(self, *, num_joints: int, factor: int) -> None:
        super().__init__()
        if factor < 1:
            raise ValueError(f"HeatmapDownsample: factor must be >= 1, got {factor}")
        self.factor = factor
        self.conv = nn.Conv2d(num_joints, num_joints, kernel_size=factor, stride=factor)
        with torch.no_grad():
            self.conv.weight.zero_()
            joints = torch.arange(num_joints)
            self.conv.weight[joints, joints] = 1.0 / factor**2
            self.conv.bias.zero_()

    def forward(self, x_t: torch.Tensor) -> torch.Tensor:
        return self.conv(x_t)


class TokenTransformer(nn.Module):
    """Pre-norm Transformer encoder layers over the positions of a map.

    [N, D, h, w] -> tokens [N, h w, D] -> ``num_layers`` layers (self-attention + MLP of
    4 D, GELU, no dropout) -> LayerNorm -> [N, D, h, w]. With 0 layers: the identity.
    The pyramid's coarsest level is the ViT's token grid, whose tokens carry the ViT's
    position embedding, so no position embedding is added here (ours).

    Args:
        channels: D.
        num_heads: attention heads (D divisible by it).
        num_layers: encoder layers.
    """

    def __init__(self, *, channels: int, num_heads: int, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                channels,
                num_heads,
                dim_feedforward=4 * channels,
                dropout=0.0,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(channels) if num_layers else nn.Identity()

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        if not len(self.layers):
            return maps
        height, width = maps.shape[-2:]
        tokens = rearrange(maps, "n d h w -> n (h w) d")
        for layer in self.layers:
            tokens = layer(tokens)
        return rearrange(self.norm(tokens), "n (h w) d -> n d h w", h=height, w=width)


class ConvStack(nn.Module):
    """``num_layers`` x (3x3 convolution + GroupNorm + ReLU), D channels to D.

    With 0 layers: the identity.

    Args:
        channels: D.
        num_layers: convolution layers.
    """

    def __init__(self, *, channels: int, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            *(
                nn.Sequential(
                    nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False),
                    group_norm(channels),
                    nn.ReLU(inplace=True),
                )
                for _ in range(num_layers)
            )
        )

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return self.layers(maps)


class ScaleInteraction(nn.Module):
    """One scale of the paper's look-up interaction.

    refine(F) = F'; hidden = 1x1 conv of the concatenation [A (.) F', F', tau]
    (tau broadcast over h x w); out = fuse(hidden). The 1x1 convolution is applied by
    its three column blocks (W_a, W_f, W_tau): A is one number per position, so
    W_a (A (.) F') = A (.) (W_a F'), and :meth:`prepare` computes W_a F' and W_f F' + b
    once per clip; this is the concatenation's convolution exactly.

    Args:
        channels: D (features, tau and output).
        refine: the self-refinement of the features, [B, D, h, w] -> [B, D, h, w]
            (feature-only: run once per clip).
        fuse: the layers after the masking, [B * G, D, h, w] -> [B * G, D, h, w].
    """

    def __init__(self, *, channels: int, refine: nn.Module, fuse: nn.Module) -> None:
        super().__init__()
        self.channels = channels
        self.refine = refine
        # input channels: [A (.) F' (D), F' (D), tau (D)]
        self.project = nn.Conv2d(3 * channels, channels, kernel_size=1)
        self.fuse = fuse

    def prepare(self, features: torch.Tensor) -> PreparedScale:
        """[B, D, h, w] -> (W_a F', W_f F' + b), each [B, D, h, w] (once per clip)."""
        refined = self.refine(features)
        weight = self.project.weight
        channels = self.channels
        masked = F.conv2d(refined, weight[:, :channels])
        plain = F.conv2d(refined, weight[:, channels : 2 * channels], self.project.bias)
        return masked, plain

    def forward(
        self, mask: torch.Tensor, time: torch.Tensor, prepared: PreparedScale
    ) -> torch.Tensor:
        """Args: mask A [B * G, 1, h, w] (sample-major, G hypotheses per clip); time tau
        [B * G, D]; prepared: :meth:`prepare` of the clips' level ([B, D, h, w] each).
        Returns: [B * G, D, h, w]."""
        masked, plain = prepared
        batch = masked.shape[0]
        grouped = mask.view(batch, -1, *mask.shape[1:])  # [B, G, 1, h, w]
        hidden = grouped * masked[:, None] + plain[:, None]  # the clip's features, shared
        time_weight = self.project.weight[:, 2 * self.channels :, 0, 0]  # [D, D]
        hidden = hidden.flatten(0, 1) + (time @ time_weight.T)[..., None, None]
        return self.fuse(hidden)


class DiffPoseLookup(nn.Module):
    """The paper's LMSFI over the pyramid: masks, per-scale interaction, sum, 3x3 head.

    Args:
        downsample: one :class:`HeatmapDownsample` per level, coarse to fine.
        scales: one :class:`ScaleInteraction` per level, coarse to fine (a Transformer
            at the coarsest, convolutions at the others).
        channels: D.
        num_joints: K.
    """

    def __init__(
        self,
        *,
        downsample: Sequence[HeatmapDownsample],
        scales: Sequence[ScaleInteraction],
        channels: int,
        num_joints: int,
    ) -> None:
        super().__init__()
        if len(downsample) != len(scales) or not scales:
            raise ValueError(
                f"DiffPoseLookup: {len(downsample)} downsamplings for {len(scales)} scales"
            )
        self.downsample = nn.ModuleList(downsample)
        self.scales = nn.ModuleList(scales)
        self.num_joints = num_joints
        self.head = nn.Conv2d(channels, num_joints, kernel_size=3, padding=1)
        init_output_conv(self.head)

    def prepare(self, features: Sequence[torch.Tensor]) -> tuple[PreparedScale, ...]:
        """What does not depend on x_t or t, per level (compute once per clip)."""
        return tuple(
            scale.prepare(level) for scale, level in zip(self.scales, features, strict=True)
        )

    def forward(
        self,
        x_t: torch.Tensor,
        features: Sequence[torch.Tensor],
        time: torch.Tensor,
        prepared: Sequence[PreparedScale] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Interact at every scale, sum, and map to heatmaps.

        Args:
            x_t: [B * G, K, H, W] noisy heatmaps in signal space (H x W the finest
                level's size), G hypotheses per clip, sample-major.
            features: pyramid levels coarse to fine, [B, D, h_s, w_s].
            time: [B * G, D] the time embedding tau.
            prepared: :meth:`prepare` of the features, or None to compute it here.

        Returns:
            maps: [B * G, K, H, W] the x0 estimate (heatmap units).
            masks: per level, coarse to fine, [B * G, K, h_s, w_s]: the mask A divided
                by its sum, the same map for every joint (:func:`masks_for_display`).
        """
        if len(features) != len(self.scales):
            raise ValueError(
                f"DiffPoseLookup: expected {len(self.scales)} pyramid levels, got {len(features)}"
            )
        if x_t.shape[0] % features[0].shape[0]:
            raise ValueError(
                f"DiffPoseLookup: x_t has {x_t.shape[0]} rows, not a multiple of the "
                f"{features[0].shape[0]} clips of the features"
            )
        prepared = self.prepare(features) if prepared is None else prepared
        output_size = x_t.shape[-2:]
        total = None
        masks = []
        for downsample, scale, level, ready in zip(
            self.downsample, self.scales, features, prepared, strict=True
        ):
            resized = downsample(x_t)
            if resized.shape[-2:] != level.shape[-2:]:
                raise ValueError(
                    f"DiffPoseLookup: x_t {tuple(x_t.shape[-2:])} downsampled by "
                    f"{downsample.factor} is {tuple(resized.shape[-2:])}, the level is "
                    f"{tuple(level.shape[-2:])}"
                )
            mask = squeeze_mask(resized)  # [B*G, 1, h_s, w_s]
            maps = scale(mask, time, ready)  # [B*G, D, h_s, w_s]
            if maps.shape[-2:] != output_size:
                maps = F.interpolate(maps, size=output_size, mode="bilinear", align_corners=False)
            total = maps if total is None else total + maps
            masks.append(masks_for_display(mask, self.num_joints))
        return self.head(total), tuple(masks)


def build_diffpose_lookup(
    *,
    channels: int,
    num_joints: int,
    num_heads: int,
    num_scales: int = 3,
    refine_layers: int = 1,
    fuse_layers: int = 1,
) -> DiffPoseLookup:
    """The paper's LMSFI for a pyramid of ``num_scales`` levels, each twice the last.

    Args:
        channels: D, the pyramid width (every scale's width).
        num_joints: K.
        num_heads: attention heads of the coarsest scale's Transformer layers.
        num_scales: pyramid levels (3); x_t is downsampled by 2^(num_scales - 1 - s).
        refine_layers: self-refinement layers of the features at every scale.
        fuse_layers: layers after the masking at every scale.
    """
    if num_scales < 1 or refine_layers < 0 or fuse_layers < 0:
        raise ValueError(
            "build_diffpose_lookup: num_scales must be >= 1 and the layer counts >= 0, got "
            f"{num_scales}, {refine_layers}, {fuse_layers}"
        )
    scales = [
        ScaleInteraction(
            channels=channels,
            refine=TokenTransformer(
                channels=channels, num_heads=num_heads, num_layers=refine_layers
            ),
            fuse=TokenTransformer(channels=channels, num_heads=num_heads, num_layers=fuse_layers),
        )
    ] + [
        ScaleInteraction(
            channels=channels,
            refine=ConvStack(channels=channels, num_layers=refine_layers),
            fuse=ConvStack(channels=channels, num_layers=fuse_layers),
        )
        for _ in range(num_scales - 1)
    ]
    downsample = [
        HeatmapDownsample(num_joints=num_joints, factor=2 ** (num_scales - 1 - index))
        for index in range(num_scales)
    ]
    return DiffPoseLookup(
        downsample=downsample, scales=scales, channels=channels, num_joints=num_joints
    )


class DiffPoseDenoiser(nn.Module):
    """x0-predicting denoiser with the paper's look-up interaction.

    The time step is embedded (sinusoid + MLP, DDPM's) into tau [B * G, D], which every
    scale concatenates with its features (the author's notes: concatenation beat
    attention; the paper: "concatenated"). Same contract as
    :class:`~vidpose.models.diffusion.decoder.HeatmapDenoiser`, which ``DiffusionHead``
    relies on: ``prepare(features)`` once per clip, ``forward(x_t, t, features,
    prepared) -> DenoiserOutput(heatmaps, masks)``.

    Args:
        interaction: the paper's LMSFI (:func:`build_diffpose_lookup`).
        channels: D (the time embedding's width).
    """

    def __init__(self, *, interaction: DiffPoseLookup, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.time_mlp = nn.Sequential(
            nn.Linear(channels, channels * 4), nn.GELU(), nn.Linear(channels * 4, channels)
        )
        self.interaction = interaction

    def prepare(self, features: Sequence[torch.Tensor]) -> tuple[PreparedScale, ...]:
        """The feature-only work, per level: the self-refinement and its projections.

        Sampling calls this once per clip and passes it to every step and hypothesis.
        """
        return self.interaction.prepare(features)

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        features: Sequence[torch.Tensor],
        prepared: Sequence[PreparedScale] | None = None,
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
            :class:`~vidpose.models.diffusion.decoder.DenoiserOutput`: heatmaps
            [B * G, K, H, W] and masks per level [B * G, K, h_s, w_s] (the paper's one
            mask A per position, normalised to sum to 1 and repeated per joint).
        """
        time = self.time_mlp(timestep_embedding(t, self.channels).to(features[0].dtype))
        heatmaps, masks = self.interaction(x_t, features, time, prepared)
        return DenoiserOutput(heatmaps=heatmaps, masks=masks)
