"""Backbone tokens of person-frames, encoded once and shared by every clip that has them.

With own-box crops (``data.neighbour_boxes: own``) a person's crop of frame t is the
same in each of the T clips that contain frame t, so its backbone tokens are too. The
predictor encodes a crop only when this cache does not hold it
(``PoseEstimator.encode_frames``) and fuses the cached tokens of each clip
(``PoseEstimator.predict_from_tokens``): the backbone, 86% of the temporal model's time
(docs/benchmarks.md, section a), then runs once per person and frame, as for a
single-frame model.

An entry is keyed by (frame id, box): the frame (its number in an extraction; (video,
frame) in an evaluation) and the box [4] the crop was cut around, compared exactly. Two
clips that cut the same frame around the same box have the same crop, so a hit is never
wrong; a crop made from another box (the key-box fallback of
``vidpose.data.neighbours``) simply misses and is encoded anew. The caller drops the
entries of frames no clip will need again (:meth:`TokenCache.evict`), so memory holds
about (max offset - min offset + 1) frames' people, whatever the video's length.

With the flip test an entry also holds the tokens of the mirrored crop.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vidpose.models.heads.contract import HeadPrediction

CacheKey = tuple[Hashable, tuple[float, float, float, float]]


def cache_key(frame_id: Hashable, box: np.ndarray | Sequence[float]) -> CacheKey:
    """The key of the crop of ``frame_id`` cut around ``box`` [4] (x, y, w, h, exact)."""
    x, y, w, h = (float(value) for value in np.asarray(box, dtype=np.float64).reshape(4))
    return frame_id, (x, y, w, h)


@dataclass
class CachedTokens:
    """One crop's tokens [n, C] and, for the flip test, its mirror image's."""

    tokens: torch.Tensor
    mirrored: torch.Tensor | None = None


class TokenCache:
    """Tokens of the crops encoded so far, by (frame id, box) (module docstring).

    Attributes:
        encoded: crops encoded (each once while it stays cached).
        hits: crops asked for (``encode_missing``) that the cache already held.
        high_water: the most entries ever held at once.
    """

    def __init__(self) -> None:
        self._entries: dict[CacheKey, CachedTokens] = {}
        self.encoded = 0
        self.hits = 0
        self.high_water = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: CacheKey) -> bool:
        return key in self._entries

    def __getitem__(self, key: CacheKey) -> CachedTokens:
        return self._entries[key]

    def put(self, key: CacheKey, entry: CachedTokens) -> None:
        self._entries[key] = entry
        self.high_water = max(self.high_water, len(self._entries))

    def evict(self, keep: Callable[[Hashable], bool]) -> None:
        """Drop every entry whose frame id ``keep`` refuses (frames no clip will need)."""
        for key in [key for key in self._entries if not keep(key[0])]:
            del self._entries[key]

    def clear(self) -> None:
        self._entries.clear()

    def encode_missing(
        self,
        keys: Sequence[CacheKey],
        crops: Callable[[list[int]], torch.Tensor],
        encode: Callable[[torch.Tensor], torch.Tensor],
        *,
        mirrored: bool,
        batch_size: int,
        device: torch.device,
    ) -> None:
        """Encode the crops of ``keys`` this cache does not hold, each once.

        Args:
            keys: the keys of the crops wanted (repeats allowed).
            crops: positions in ``keys`` -> their crops [M, 3, H, W] (made only for the
                missing ones).
            encode: crops [M, 3, H, W] -> tokens [M, n, C] (``PoseEstimator.encode_frames``).
            mirrored: also encode each crop's mirror image (the flip test).
            batch_size: crops per backbone call.
            device: where the crops are encoded and the tokens kept.
        """
        missing: dict[CacheKey, int] = {}
        for position, key in enumerate(keys):
            if key in self._entries:
                self.hits += 1
            elif key not in missing:
                missing[key] = position
        wanted = list(missing.items())
        for start in range(0, len(wanted), batch_size):
            chunk = wanted[start : start + batch_size]
            images = crops([position for _, position in chunk]).to(device, non_blocking=True)
            tokens = encode(images)
            flipped = encode(images.flip(-1)) if mirrored else None
            for row, (key, _) in enumerate(chunk):
                self.put(key, CachedTokens(tokens[row], None if flipped is None else flipped[row]))
            self.encoded += len(chunk)

    def gather(
        self, keys: Sequence[Sequence[CacheKey]]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Tokens [B, T, n, C] of B clips of T crops each (all cached), and the mirrored
        crops' [B, T, n, C] when the entries hold them (else None)."""
        entries = [[self._entries[key] for key in clip] for clip in keys]
        tokens = torch.stack([torch.stack([entry.tokens for entry in clip]) for clip in entries])
        if any(entry.mirrored is None for clip in entries for entry in clip):
            return tokens, None
        mirrored = torch.stack(
            [torch.stack([entry.mirrored for entry in clip]) for clip in entries]  # type: ignore[misc]
        )
        return tokens, mirrored


def supports_tokens(model: object) -> bool:
    """Whether ``model`` encodes frames and fuses tokens separately
    (``PoseEstimator.encode_frames`` and ``predict_from_tokens``)."""
    return callable(getattr(model, "encode_frames", None)) and callable(
        getattr(model, "predict_from_tokens", None)
    )


@torch.no_grad()
def predict_with_cache(
    model: Any,
    frames: torch.Tensor,
    keys: Sequence[Sequence[CacheKey]],
    cache: TokenCache,
    *,
    flip_test: bool = False,
    batch_size: int | None = None,
    **options: Any,
) -> HeadPrediction:
    """``model.predict(frames, flip_test=...)`` with each distinct crop encoded once
    across calls: for an evaluation over a dataset whose clips are made with own boxes
    (``data.neighbour_boxes: own``), where clip after clip repeats the crops of the
    clip before.

    Args:
        model: a ``PoseEstimator`` (``supports_tokens``).
        frames: [B, T, 3, H, W] the clips' crops (only those missing from ``cache``
            are encoded).
        keys: [B][T] each crop's key, ``cache_key((video, frame_index), frame_box)``
            with the sample's ``frame_indices`` and ``frame_boxes``.
        cache: kept across calls; drop what no later clip needs with ``cache.evict``
            (e.g. frames of earlier videos, or before the batch's first key frame plus
            the smallest offset).
        flip_test: as ``PoseEstimator.predict``.
        batch_size: crops per backbone call (default B T).
        options: the head's inference options (``generator``, ``steps``, ...).

    Returns:
        The head's answer for the B clips, as ``model.predict`` gives it (up to float
        rounding: the backbone sees other batches).
    """
    count, length = frames.shape[:2]
    flat = frames.reshape(count * length, *frames.shape[2:])
    cache.encode_missing(
        [key for clip in keys for key in clip],
        lambda positions: flat[positions],
        model.encode_frames,
        mirrored=flip_test,
        batch_size=batch_size or count * length,
        device=frames.device,
    )
    tokens, mirrored = cache.gather(keys)
    return model.predict_from_tokens(
        tokens, mirrored_tokens=mirrored if flip_test else None, **options
    )
