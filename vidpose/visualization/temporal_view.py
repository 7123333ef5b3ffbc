"""The temporal view: a clip's T frames side by side with the aggregator's frame weights.

``vidpose.models.temporal.LinearTemporalFusion`` mixes the frames with one Linear layer
over the frame axis: fused = sum_t w_t * tokens_t + b, the same T weights for every
token position and channel. The weights are learned once and shared by all clips, so
this view shows how much each frame offset contributes, not a per-clip attention.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

KEY_FRAME_COLOUR = (255, 200, 0)
POSITIVE_COLOUR = (90, 170, 255)
NEGATIVE_COLOUR = (255, 100, 90)
BACKGROUND = (24, 24, 24)
TEXT_COLOUR = (235, 235, 235)


@dataclass(frozen=True)
class TemporalWeights:
    """The temporal aggregator's mixing weights.

    Attributes:
        weights: [T] per-frame weights, in model frame order.
        bias: the layer's bias (0 when T = 1: nothing is mixed).
        offsets: T frame offsets around the key frame, in model order.
        key_index: position of the key frame (offset 0).
    """

    weights: np.ndarray
    bias: float
    offsets: tuple[int, ...]
    key_index: int

    def __post_init__(self) -> None:
        if len(self.weights) != len(self.offsets):
            raise ValueError(
                f"TemporalWeights: {len(self.weights)} weights for {len(self.offsets)} frame "
                f"offsets {list(self.offsets)}"
            )
        if not 0 <= self.key_index < len(self.offsets):
            raise ValueError(
                f"TemporalWeights: key_index {self.key_index} outside 0..{len(self.offsets) - 1}"
            )

    @classmethod
    def from_module(cls, temporal: torch.nn.Module, offsets: Sequence[int]) -> TemporalWeights:
        """Read a ``LinearTemporalFusion`` (its ``frame_weights`` and the mix's bias).

        Args:
            temporal: the model's temporal module (``model.temporal``).
            offsets: the config's ``data.frame_offsets`` (model frame order).
        """
        weights = temporal.frame_weights.detach().float().cpu().numpy()
        mix = getattr(temporal, "mix", None)
        bias = float(mix.bias.detach().float().cpu()[0]) if mix is not None else 0.0
        return cls(
            weights=weights,
            bias=bias,
            offsets=tuple(int(offset) for offset in offsets),
            key_index=int(temporal.key_frame_index),
        )


@dataclass(frozen=True)
class TemporalLayout:
    """Where the parts of :func:`render_temporal_view` are.

    Attributes:
        frames: T.
        panel: (height, width) of one frame.
        title: height of the title band.
        bar: height of the weight band under each frame (bar and two lines of label).
        bar_height: thickness of the bar itself.
        gap: pixels between frames.
    """

    frames: int
    panel: tuple[int, int]
    title: int
    bar: int
    bar_height: int
    gap: int

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the image."""
        width = self.frames * self.panel[1] + (self.frames + 1) * self.gap
        return self.title + self.panel[0] + self.bar, width

    def frame_left(self, index: int) -> int:
        return self.gap + index * (self.panel[1] + self.gap)

    def bar_box(self, index: int, weight: float, largest: float) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of frame ``index``'s weight bar: its length is
        |weight| / largest |weight| of the panel width."""
        left = self.frame_left(index)
        top = self.title + self.panel[0] + 4
        length = round(self.panel[1] * abs(weight) / largest) if largest > 0 else 0
        return left, top, left + length, top + self.bar_height


def render_temporal_view(
    clip: np.ndarray, temporal: TemporalWeights, *, panel_height: int = 128
) -> np.ndarray:
    """The clip's crops side by side, each with its weight as a bar and a number.

    Args:
        clip: [T, H_in, W_in, 3] uint8 crops, model frame order.
        temporal: the aggregator's weights.
        panel_height: pixels per frame.

    Returns:
        [height, width, 3] uint8 (layout: :func:`temporal_layout`). Bars are blue for
        positive and red for negative weights; the key frame is outlined in yellow.
    """
    clip = np.asarray(clip)
    if clip.ndim != 4 or clip.shape[-1] != 3 or clip.dtype != np.uint8:
        raise ValueError(
            f"render_temporal_view: expected clip [T, H, W, 3] uint8, got {clip.shape}"
        )
    if len(clip) != len(temporal.weights):
        raise ValueError(
            f"render_temporal_view: {len(clip)} frames but {len(temporal.weights)} weights"
        )
    layout = temporal_layout(len(clip), clip.shape[1:3], panel_height)
    canvas = Image.new("RGB", layout.size[::-1], BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font_size = max(9, round(panel_height / 12))
    font = ImageFont.load_default(size=font_size)
    draw.text(
        (layout.gap, 3),
        f"frame weights w_t (bias {temporal.bias:+.3f})",
        fill=TEXT_COLOUR,
        font=font,
    )
    largest = float(np.abs(temporal.weights).max()) if len(temporal.weights) else 0.0
    height, width = layout.panel
    for index, (crop, weight) in enumerate(zip(clip, temporal.weights, strict=True)):
        left = layout.frame_left(index)
        image = Image.fromarray(crop).resize((width, height), Image.Resampling.BILINEAR)
        canvas.paste(image, (left, layout.title))
        if index == temporal.key_index:
            draw.rectangle(
                (left, layout.title, left + width - 1, layout.title + height - 1),
                outline=KEY_FRAME_COLOUR,
                width=2,
            )
        box = layout.bar_box(index, float(weight), largest)
        if box[2] > box[0]:
            colour = POSITIVE_COLOUR if weight >= 0 else NEGATIVE_COLOUR
            draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=colour)
        offset = temporal.offsets[index]
        name = "key frame" if offset == 0 else f"offset {offset:+d}"
        draw.multiline_text(
            (left, box[3] + 2), f"{name}\nw = {weight:.3f}", fill=TEXT_COLOUR, font=font, spacing=2
        )
    return np.asarray(canvas)


def temporal_layout(frames: int, input_size: tuple[int, int], panel_height: int) -> TemporalLayout:
    """The layout :func:`render_temporal_view` uses for ``frames`` crops of ``input_size``."""
    font_size = max(9, round(panel_height / 12))
    width = max(1, round(panel_height * input_size[1] / input_size[0]))
    return TemporalLayout(
        frames=frames,
        panel=(panel_height, width),
        title=round(font_size * 1.8),
        # gap, bar, gap, two lines of text (font size + line spacing), margin
        bar=4 + max(4, font_size // 2) + 2 + 2 * (font_size + 3) + 4,
        bar_height=max(4, font_size // 2),
        gap=6,
    )
