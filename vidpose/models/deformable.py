"""Multi-scale deformable attention and the pieces a deformable transformer needs.

Deformable DETR (Zhu et al., "Deformable DETR: Deformable Transformers for End-to-End
Object Detection", ICLR 2021) lets each query attend to a few sampled points per
feature level around a reference point instead of to every token: the cost grows with
the number of queries, not with the product of queries and tokens, so all pyramid
levels (paper scale 16 x 12 + 32 x 24 + 64 x 48 = 4032 tokens) can be attended to.

Normalised coordinates, used by every function here: a point (u, v) in [0, 1]^2
covers the map's pixel extent, the same at every level; on an h x w map it lies at
pixel x = u * w - 0.5, y = v * h - 0.5 (pixel centres at integers, as in
``vidpose.codecs.geometry``). This is ``F.grid_sample``'s convention with
``align_corners=False`` and grid = 2u - 1, and it makes a point the same place of
the crop at every level (and in input-crop pixels, x = u * W_in - 0.5).

Token order: levels are flattened coarse to fine, each row-major (token index
start_l + j * w_l + i for column i, row j of level l).

The sampling is pure PyTorch (``F.grid_sample`` per level), not the CUDA kernel of
the Deformable DETR release: the maps here are small, and it runs on any device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# --------------------------------------------------------------------------- levels and points


def flatten_levels(
    levels: Sequence[torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Concatenate feature maps into one token sequence (coarse to fine, row-major).

    Args:
        levels: L maps [B, D, h_l, w_l].

    Returns:
        tokens: [B, N, D], N = sum_l h_l * w_l.
        spatial_shapes: [L, 2] int64 (h_l, w_l), on the maps' device.
        level_start: [L] int64, the index of each level's first token.
    """
    tokens = torch.cat([level.flatten(2).transpose(1, 2) for level in levels], dim=1)
    device = levels[0].device
    spatial_shapes = torch.tensor(
        [tuple(level.shape[-2:]) for level in levels], dtype=torch.long, device=device
    )
    sizes = spatial_shapes.prod(dim=1)
    level_start = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    return tokens, spatial_shapes, level_start


def split_levels(
    tokens: torch.Tensor, spatial_shapes: Sequence[Sequence[int]] | torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """The inverse of :func:`flatten_levels`: tokens [B, N, D] -> L maps [B, D, h_l, w_l]."""
    shapes = _shape_list(spatial_shapes)
    batch, _, channels = tokens.shape
    chunks = tokens.split([height * width for height, width in shapes], dim=1)
    return tuple(
        chunk.transpose(1, 2).reshape(batch, channels, height, width)
        for chunk, (height, width) in zip(chunks, shapes, strict=True)
    )


def grid_reference_points(
    spatial_shapes: Sequence[Sequence[int]] | torch.Tensor, *, device: torch.device | None = None
) -> torch.Tensor:
    """Normalised pixel centres of every token, in :func:`flatten_levels` order.

    Args:
        spatial_shapes: L pairs (h_l, w_l) (or the [L, 2] tensor).

    Returns:
        [N, 2] float32 (u, v): column i, row j of an h x w level is
        ((i + 0.5) / w, (j + 0.5) / h).
    """
    points = []
    for height, width in _shape_list(spatial_shapes):
        u = (torch.arange(width, dtype=torch.float32, device=device) + 0.5) / width
        v = (torch.arange(height, dtype=torch.float32, device=device) + 0.5) / height
        rows, columns = torch.meshgrid(v, u, indexing="ij")  # [h, w] each
        points.append(torch.stack([columns, rows], dim=-1).reshape(-1, 2))  # [h * w, 2]
    return torch.cat(points, dim=0)


def _shape_list(spatial_shapes: Sequence[Sequence[int]] | torch.Tensor) -> list[tuple[int, int]]:
    if isinstance(spatial_shapes, torch.Tensor):
        spatial_shapes = spatial_shapes.tolist()
    return [(int(height), int(width)) for height, width in spatial_shapes]


# --------------------------------------------------------------------------- position embedding


def sine_position_embedding(
    points: torch.Tensor, *, channels: int, temperature: float = 10000.0
) -> torch.Tensor:
    """The 2-D sine position embedding of DETR (Carion et al., ECCV 2020) for points.

    Each axis gets D / 2 features: pairs (sin, cos) of 2 pi * coordinate / T^(2i / (D/2)),
    i = 0 .. D/4 - 1 (the transformer encoding of Vaswani et al., 2017, section 3.5, on
    a coordinate in [0, 1] scaled to one turn); the y features come first, then the x
    features (DETR's order). Conditional DETR and Poseur embed reference points this
    way; :func:`grid_sine_embedding` is the same function at pixel centres.

    Args:
        points: [..., 2] normalised (u, v).
        channels: D, a multiple of 4.
        temperature: T.

    Returns:
        [..., D] float32.
    """
    if channels % 4:
        raise ValueError(
            f"sine_position_embedding: channels must be a multiple of 4, got {channels}"
        )
    per_axis = channels // 2
    exponents = (
        torch.arange(per_axis // 2, dtype=torch.float32, device=points.device) * 2 / per_axis
    )
    frequencies = 2 * math.pi / temperature**exponents  # [D/4]
    angles = points.float()[..., None] * frequencies  # [..., 2, D/4]
    # interleave (sin, cos) of each frequency: [..., 2, D/4, 2] -> [..., 2, D/2]
    features = torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2)
    return torch.cat([features[..., 1, :], features[..., 0, :]], dim=-1)  # y then x


def grid_sine_embedding(
    height: int,
    width: int,
    *,
    channels: int,
    temperature: float = 10000.0,
    device: torch.device | None = None,
) -> torch.Tensor:
    """The DETR sine embedding of an h x w map's pixel centres, as a map [D, h, w].

    Pixel (column i, row j) gets :func:`sine_position_embedding` of
    ((i + 0.5) / w, (j + 0.5) / h), the normalisation of Deformable DETR's
    PositionEmbeddingSine (DETR's own uses (i + 1) / w).
    """
    points = grid_reference_points([(height, width)], device=device)  # [h * w, 2]
    embedding = sine_position_embedding(points, channels=channels, temperature=temperature)
    return embedding.transpose(0, 1).reshape(channels, height, width)


# --------------------------------------------------------------------------- attention


def deformable_sampling(
    value: torch.Tensor,
    spatial_shapes: Sequence[Sequence[int]] | torch.Tensor,
    locations: torch.Tensor,
    weights: torch.Tensor,
) -> torch.Tensor:
    """The core of multi-scale deformable attention (Deformable DETR, eq. 3):
    sum_l sum_p A[m, l, p] * bilinear(value_l[m], location[m, l, p]) for each head m.

    Bilinear sampling uses the normalised convention of the module docstring; values
    outside a map are zero (grid_sample's zero padding).

    Args:
        value: [B, N, M, D_h] the projected memory split into M heads.
        spatial_shapes: L pairs (h_l, w_l), the levels of ``value``'s tokens.
        locations: [B, Nq, M, L, P, 2] normalised sampling points.
        weights: [B, Nq, M, L, P] attention weights.

    Returns:
        [B, Nq, M * D_h] in ``value``'s dtype, heads concatenated.
    """
    dtype = value.dtype
    shapes = _shape_list(spatial_shapes)
    batch, _, heads, head_dim = value.shape
    # Sample in float32 whatever the value's dtype (bf16 under autocast): a bf16 grid
    # coordinate in [-1, 1] is only good to ~1/128, a tenth of a pixel on a 64-wide map.
    value, locations, weights = value.float(), locations.float(), weights.float()
    queries, levels, points = locations.shape[1], locations.shape[3], locations.shape[4]
    per_level = value.split([height * width for height, width in shapes], dim=1)
    grids = 2 * locations - 1  # grid_sample's [-1, 1] frame
    sampled = []
    for level, (level_value, (height, width)) in enumerate(zip(per_level, shapes, strict=True)):
        # [B, h*w, M, D_h] -> [B*M, D_h, h, w]
        level_map = level_value.permute(0, 2, 3, 1).reshape(batch * heads, head_dim, height, width)
        # [B, Nq, M, P, 2] -> [B*M, Nq, P, 2]
        grid = grids[:, :, :, level].transpose(1, 2).reshape(batch * heads, queries, points, 2)
        sampled.append(
            F.grid_sample(
                level_map, grid, mode="bilinear", padding_mode="zeros", align_corners=False
            )
        )  # [B*M, D_h, Nq, P]
    stacked = torch.stack(sampled, dim=-2)  # [B*M, D_h, Nq, L, P]
    # [B, Nq, M, L, P] -> [B*M, 1, Nq, L, P]
    flat_weights = weights.transpose(1, 2).reshape(batch * heads, 1, queries, levels, points)
    output = (stacked * flat_weights).sum(dim=(-2, -1))  # [B*M, D_h, Nq]
    return output.view(batch, heads * head_dim, queries).transpose(1, 2).to(dtype)


class MultiScaleDeformableAttention(nn.Module):
    """Multi-scale deformable attention (Deformable DETR, eq. 3).

    Each of M heads of each query samples P points per level at the reference point
    plus learned offsets (a linear map of the query, in pixels of that level) and sums
    them with softmax weights (another linear map of the query, normalised over the
    L * P samples of the head).

    Args:
        channels: D (a multiple of ``heads``).
        levels: L feature levels.
        heads: M attention heads.
        points: P sampling points per head and level.
    """

    def __init__(self, *, channels: int, levels: int, heads: int, points: int) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(
                f"MultiScaleDeformableAttention: channels ({channels}) must be divisible by "
                f"heads ({heads})"
            )
        if min(levels, points) < 1:
            raise ValueError(
                f"MultiScaleDeformableAttention: levels and points must be >= 1, got "
                f"{levels} and {points}"
            )
        self.channels, self.levels, self.heads, self.points = channels, levels, heads, points
        self.sampling_offsets = nn.Linear(channels, heads * levels * points * 2)
        self.attention_weights = nn.Linear(channels, heads * levels * points)
        self.value_proj = nn.Linear(channels, channels)
        self.output_proj = nn.Linear(channels, channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable DETR's initialisation: at first every head samples at fixed
        offsets (head m in direction 2 pi m / M, point p at p + 1 pixels along it,
        scaled so the larger component is p + 1) with equal weights."""
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.heads, dtype=torch.float32) * (2 * math.pi / self.heads)
        directions = torch.stack([angles.cos(), angles.sin()], dim=-1)  # [M, 2]
        directions = directions / directions.abs().max(dim=-1, keepdim=True).values
        distances = torch.arange(1, self.points + 1, dtype=torch.float32)  # [P]
        offsets = directions[:, None, None, :] * distances[None, None, :, None]  # [M, 1, P, 2]
        offsets = offsets.expand(self.heads, self.levels, self.points, 2)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(offsets.reshape(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for projection in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(projection.weight)
            nn.init.zeros_(projection.bias)

    def forward(
        self,
        query: torch.Tensor,
        reference: torch.Tensor,
        memory: torch.Tensor,
        spatial_shapes: torch.Tensor,
        *,
        return_sampling: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Attend from each query to its sampled points in the memory.

        Args:
            query: [B, Nq, D] (content + position).
            reference: [B, Nq, 2] normalised reference points, the same at every level.
            memory: [B, N, D] the flattened levels (:func:`flatten_levels`).
            spatial_shapes: [L, 2] int64 (h_l, w_l).
            return_sampling: also return where and how strongly each head looked.

        Returns:
            [B, Nq, D]; with ``return_sampling`` a tuple (output, locations
            [B, Nq, M, L, P, 2] normalised sampling points, weights [B, Nq, M, L, P],
            both float32).
        """
        batch, queries, _ = query.shape
        heads, levels, points = self.heads, self.levels, self.points
        if spatial_shapes.shape[0] != levels:
            raise ValueError(
                f"MultiScaleDeformableAttention: built for {levels} levels, got "
                f"{spatial_shapes.shape[0]}"
            )
        value = self.value_proj(memory).view(batch, memory.shape[1], heads, -1)  # [B, N, M, D_h]
        # locations and weights in float32 (see deformable_sampling)
        offsets = (
            self.sampling_offsets(query).float().view(batch, queries, heads, levels, points, 2)
        )
        logits = self.attention_weights(query).float().view(batch, queries, heads, levels * points)
        weights = logits.softmax(dim=-1).view(batch, queries, heads, levels, points)
        # offsets are in pixels of each level: divide by (w_l, h_l) to normalise
        normaliser = spatial_shapes.flip(-1).float()  # [L, 2] (w_l, h_l)
        locations = reference.float()[:, :, None, None, None, :] + offsets / normaliser[:, None, :]
        output = self.output_proj(deformable_sampling(value, spatial_shapes, locations, weights))
        if return_sampling:
            return output, locations, weights
        return output


def splat_attention(
    locations: torch.Tensor,
    weights: torch.Tensor,
    spatial_shapes: Sequence[Sequence[int]] | torch.Tensor,
) -> tuple[torch.Tensor, ...]:
    """Where deformable attention looked, as one map per level.

    Each sample's weight (averaged over the heads) is spread bilinearly onto the four
    pixels around its location, the transpose of the bilinear sampling (so mass that
    falls outside the map is lost, as grid_sample reads zeros there); each query's map
    is then normalised to sum to 1 per level (uniform where the level got no mass).

    Args:
        locations: [B, Nq, M, L, P, 2] normalised sampling points.
        weights: [B, Nq, M, L, P].
        spatial_shapes: L pairs (h_l, w_l).

    Returns:
        L maps [B, Nq, h_l, w_l] float32, each query's map summing to 1.
    """
    batch, queries, heads = weights.shape[:3]
    maps = []
    for level, (height, width) in enumerate(_shape_list(spatial_shapes)):
        level_points = locations[:, :, :, level].float().flatten(2, 3)  # [B, Nq, M*P, 2]
        mass = weights[:, :, :, level].float().flatten(2) / heads  # [B, Nq, M*P]
        x = level_points[..., 0] * width - 0.5
        y = level_points[..., 1] * height - 0.5
        left, top = x.floor(), y.floor()
        right_share, bottom_share = x - left, y - top
        flat = mass.new_zeros(batch, queries, height * width)
        for dx, x_share in ((0, 1 - right_share), (1, right_share)):
            for dy, y_share in ((0, 1 - bottom_share), (1, bottom_share)):
                column, row = left + dx, top + dy
                inside = (column >= 0) & (column < width) & (row >= 0) & (row < height)
                index = row.clamp(0, height - 1) * width + column.clamp(0, width - 1)
                flat.scatter_add_(2, index.long(), mass * x_share * y_share * inside)
        total = flat.sum(dim=-1, keepdim=True)
        uniform = torch.full_like(flat, 1.0 / (height * width))
        flat = torch.where(total > 0, flat / total.clamp_min(1e-12), uniform)
        maps.append(flat.view(batch, queries, height, width))
    return tuple(maps)


# --------------------------------------------------------------------------- layers


class FeedForward(nn.Module):
    """The post-norm transformer feed-forward sub-layer:
    x -> LayerNorm(x + Dropout(W_2 Dropout(ReLU(W_1 x)))).

    Args:
        channels: D.
        hidden: the hidden width.
        dropout: dropout probability.
    """

    def __init__(self, *, channels: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(channels, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, channels),
            nn.Dropout(dropout),
        )
        self.norm = nn.LayerNorm(channels)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """[..., D] -> [..., D]."""
        return self.norm(tokens + self.layers(tokens))


class DeformableEncoderLayer(nn.Module):
    """A Deformable DETR encoder layer (post-norm): every memory token attends to the
    memory around its own position at every level, then a feed-forward sub-layer.

        x = LN(x + MSDeformAttn(x + pos, reference, x));  x = LN(x + FFN(x))

    Args:
        channels: D.
        levels: L.
        heads: M.
        points: P sampling points per head and level.
        ffn_dim: the feed-forward hidden width.
        dropout: dropout probability.
    """

    def __init__(
        self, *, channels: int, levels: int, heads: int, points: int, ffn_dim: int, dropout: float
    ) -> None:
        super().__init__()
        self.attention = MultiScaleDeformableAttention(
            channels=channels, levels=levels, heads=heads, points=points
        )
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(channels)
        self.feed_forward = FeedForward(channels=channels, hidden=ffn_dim, dropout=dropout)

    def forward(
        self,
        tokens: torch.Tensor,
        position: torch.Tensor,
        reference: torch.Tensor,
        spatial_shapes: torch.Tensor,
    ) -> torch.Tensor:
        """Encode.

        Args:
            tokens: [B, N, D] the flattened levels.
            position: [B or 1, N, D] position (+ level) embedding.
            reference: [B, N, 2] each token's normalised centre (:func:`grid_reference_points`).
            spatial_shapes: [L, 2] int64.

        Returns:
            [B, N, D].
        """
        attended = self.attention(tokens + position, reference, tokens, spatial_shapes)
        tokens = self.norm(tokens + self.dropout(attended))
        return self.feed_forward(tokens)
