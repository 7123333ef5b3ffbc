"""Temporal fusion: DiffPose's spatio-temporal representation learner (STRL).

``model.temporal: linear`` (:class:`LinearTemporalFusion`), the author's notes on the
final model: put the frame axis last and mix the frames with one Linear layer. Every
token position and channel is mixed with the same T weights, so the layer is a learned
weighted average of the per-frame token maps.

``model.temporal: transformer`` (:class:`TransformerTemporalFusion`), the paper's
learner as published: a cascade of Transformer encoder layers over the tokens of all
T frames (learned frame and position embeddings) before the same linear aggregation.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn


class LinearTemporalFusion(nn.Module):
    """Tokens of T frames -> one fused feature map: [B, T, N, C] -> [B, C, h, w].

    ``[B, T, N, C] -> [B, N, C, T]``, a Linear over the last axis (T -> 1), then
    ``[B, N, C] -> [B, C, h, w]``. With T = 1 there is nothing to mix and the layer
    has no parameters (identity up to the reshape).

    Initialisation: the key frame gets ``key_frame_weight`` and the neighbours share
    the rest equally, bias 0. The weights sum to 1, so the fused map starts with the
    per-frame feature scale, dominated by the frame whose pose is estimated, and
    already uses the neighbours (a zero-initialised neighbour weight would also
    train, but would start as the single-frame model).

    Args:
        num_frames: T.
        key_frame_index: position of the key frame among the T frames.
        grid_size: (h, w) token grid, N = h * w.
        key_frame_weight: initial weight of the key frame, in (0, 1].
    """

    def __init__(
        self,
        *,
        num_frames: int,
        key_frame_index: int,
        grid_size: tuple[int, int],
        key_frame_weight: float = 0.5,
    ) -> None:
        super().__init__()
        if not 0 <= key_frame_index < num_frames:
            raise ValueError(
                f"LinearTemporalFusion: key_frame_index {key_frame_index} outside "
                f"0..{num_frames - 1}"
            )
        if not 0.0 < key_frame_weight <= 1.0:
            raise ValueError(
                f"LinearTemporalFusion: key_frame_weight must be in (0, 1], got {key_frame_weight}"
            )
        self.num_frames = num_frames
        self.key_frame_index = key_frame_index
        self.grid_size = tuple(grid_size)
        self.mix: nn.Linear | None = None
        if num_frames > 1:
            self.mix = nn.Linear(num_frames, 1)
            with torch.no_grad():
                weights = torch.full((num_frames,), (1.0 - key_frame_weight) / (num_frames - 1))
                weights[key_frame_index] = key_frame_weight
                self.mix.weight.copy_(weights[None])
                self.mix.bias.zero_()

    @property
    def frame_weights(self) -> torch.Tensor:
        """[T] the current per-frame mixing weights (detached), for visualisation."""
        if self.mix is None:
            return torch.ones(1)
        return self.mix.weight.detach()[0].clone()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Fuse the frames.

        Args:
            tokens: [B, T, N, C] per-frame patch tokens, N = h * w row-major.

        Returns:
            [B, C, h, w] the fused feature map.
        """
        if tokens.shape[1] != self.num_frames:
            raise ValueError(
                f"LinearTemporalFusion: expected {self.num_frames} frames, got tokens "
                f"{tuple(tokens.shape)}"
            )
        if self.mix is None:
            fused = tokens[:, 0]  # [B, N, C]
        else:
            frames_last = rearrange(tokens, "b t n c -> b n c t")
            fused = self.mix(frames_last).squeeze(-1)  # [B, N, C]
        height, width = self.grid_size
        return rearrange(fused, "b (h w) c -> b c h w", h=height, w=width)


class TransformerTemporalFusion(nn.Module):
    """DiffPose's spatio-temporal learner as published: Transformer layers over the
    tokens of all T frames, then the linear aggregation. [B, T, N, C] -> [B, C, h, w].

    The paper (Feng et al., ICCV 2023, section 3.2) concatenates the per-frame ViT
    tokens of all frames and passes them through a cascade of Transformer encoder
    layers, so every token attends to every token of every frame; the frames are then
    aggregated (the author's final notes: frame axis last, one Linear layer, here the
    :class:`LinearTemporalFusion` passed in). A learned frame embedding [T, C] tells the
    layers which frame a token comes from (attention alone is blind to the order of its
    tokens) and a learned position embedding [N, C] where in the grid it lies; both are
    added before the first layer (ours: initialised N(0, 0.02^2), as ViT's).

    Layers: pre-norm ``nn.TransformerEncoderLayer`` (the ViT block's layout: attention
    and an MLP of 4 C, GELU, no dropout) with the backbone's head count, then a
    LayerNorm, as a ViT ends.

    T = 1 is the image case: there is nothing to relate across frames, so the module has
    no layers and no parameters and is exactly the :class:`LinearTemporalFusion` (the
    identity up to the reshape); a T = 1 model is the same whichever ``model.temporal``.

    Args:
        aggregate: the linear frame aggregation that follows the layers.
        channels: C, the token width.
        num_heads: attention heads (C divisible by it).
        num_layers: Transformer encoder layers (>= 1).
    """

    def __init__(
        self, *, aggregate: LinearTemporalFusion, channels: int, num_heads: int, num_layers: int
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(
                f"TransformerTemporalFusion: num_layers must be >= 1, got {num_layers}"
            )
        self.aggregate = aggregate
        self.layers = nn.ModuleList()
        self.frame_embedding: nn.Parameter | None = None
        self.position_embedding: nn.Parameter | None = None
        self.norm: nn.Module = nn.Identity()
        if aggregate.num_frames == 1:
            return
        height, width = aggregate.grid_size
        self.frame_embedding = nn.Parameter(torch.zeros(aggregate.num_frames, channels))
        self.position_embedding = nn.Parameter(torch.zeros(height * width, channels))
        nn.init.trunc_normal_(self.frame_embedding, std=0.02)
        nn.init.trunc_normal_(self.position_embedding, std=0.02)
        self.layers.extend(
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
        self.norm = nn.LayerNorm(channels)

    @property
    def num_frames(self) -> int:
        return self.aggregate.num_frames

    @property
    def key_frame_index(self) -> int:
        return self.aggregate.key_frame_index

    @property
    def grid_size(self) -> tuple[int, int]:
        return self.aggregate.grid_size

    @property
    def mix(self) -> nn.Linear | None:
        """The aggregation's Linear (T -> 1), None at T = 1."""
        return self.aggregate.mix

    @property
    def frame_weights(self) -> torch.Tensor:
        """[T] the aggregation's per-frame weights (detached), for visualisation."""
        return self.aggregate.frame_weights

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Relate the frames' tokens, then fuse the frames.

        Args:
            tokens: [B, T, N, C] per-frame patch tokens, N = h * w row-major.

        Returns:
            [B, C, h, w] the fused feature map.
        """
        if tokens.shape[1] != self.num_frames:
            raise ValueError(
                f"TransformerTemporalFusion: expected {self.num_frames} frames, got tokens "
                f"{tuple(tokens.shape)}"
            )
        if self.frame_embedding is None:  # T = 1: the image case
            return self.aggregate(tokens)
        frames = tokens.shape[1]
        embedded = tokens + self.frame_embedding[:, None] + self.position_embedding[None]
        joint = rearrange(embedded, "b t n c -> b (t n) c")  # every frame's tokens, one sequence
        for layer in self.layers:
            joint = layer(joint)
        related = rearrange(self.norm(joint), "b (t n) c -> b t n c", t=frames)
        return self.aggregate(related)
