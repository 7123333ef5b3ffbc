"""Linear temporal aggregation: DiffPose's spatio-temporal representation learner (STRL).

The author's notes on the final model: put the frame axis last and mix the frames
with one Linear layer. Every token position and channel is mixed with the same T
weights, so the layer is a learned weighted average of the per-frame token maps.
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
