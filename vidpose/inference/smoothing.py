"""Temporal smoothing of extracted keypoints: the One Euro filter, per track and joint.

Per-frame estimates jitter by a few pixels from frame to frame even where the person
stands still. The One Euro filter (Casiez, Roussel and Vogel, "1 Euro Filter: A Simple
Speed-based Low-pass Filter for Noisy Input in Interactive Systems", CHI 2012) is a
low-pass filter whose cut-off frequency rises with the speed of the signal:

    dx_t   = (x_t - xhat_{t-1}) / dt,     dxhat_t = lowpass(dx_t, alpha(d_cutoff))
    cutoff = min_cutoff + beta * |dxhat_t|
    xhat_t = lowpass(x_t, alpha(cutoff)),  alpha(f) = 1 / (1 + 1 / (2 pi f dt))

so slow motion is smoothed strongly (little jitter) and fast motion weakly (little
lag). It is causal (each frame's output depends only on the frames before it), so it
runs in the streaming extraction as frames finish. x and y of every joint of every
track are filtered independently, in frame pixels; ``dt`` is the frame interval (1 /
the video's frame rate). A track seen again after a gap starts afresh; joints that are
absent (NaN) pass through and leave their filter as it was.

Parameters (``vidpose extract --smooth oneeuro --smooth-min-cutoff F --smooth-beta B``):
``min_cutoff`` (Hz): lower is smoother at rest; ``beta`` (1 / pixel): higher follows
fast motion more closely; ``d_cutoff`` (Hz): the cut-off of the speed estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class OneEuroSettings:
    """The One Euro filter's parameters (module docstring)."""

    min_cutoff: float = 1.0
    beta: float = 0.01
    d_cutoff: float = 1.0

    def __post_init__(self) -> None:
        if self.min_cutoff <= 0 or self.d_cutoff <= 0 or self.beta < 0:
            raise ValueError(
                f"One Euro filter: min_cutoff and d_cutoff must be > 0 and beta >= 0, got "
                f"min_cutoff={self.min_cutoff}, beta={self.beta}, d_cutoff={self.d_cutoff}"
            )


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class _TrackFilter:
    """The state of one track: [K, 2] values and speeds, and the last frame seen."""

    def __init__(self, points: np.ndarray, frame: int) -> None:
        self.value = points.copy()
        self.speed = np.zeros_like(points)
        self.frame = frame


class KeypointSmoother:
    """One Euro filtering of every track's keypoints, fed one frame at a time in order.

    Args:
        fps: the video's frame rate (dt = 1 / fps between consecutive frames).
        settings: the filter's parameters.
        max_gap: a track unseen for more frames than this starts afresh.
    """

    def __init__(
        self, *, fps: float, settings: OneEuroSettings | None = None, max_gap: int = 5
    ) -> None:
        if fps <= 0:
            raise ValueError(f"KeypointSmoother: fps must be positive, got {fps}")
        self.fps = fps
        self.settings = settings or OneEuroSettings()
        self.max_gap = max_gap
        self._tracks: dict[int, _TrackFilter] = {}

    def __call__(self, frame: int, track_ids: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
        """Smoothed keypoints of one frame.

        Args:
            frame: the frame number (increasing).
            track_ids: [P] the people's track ids.
            keypoints: [P, K, 2] frame pixels (NaN: absent joints).

        Returns:
            [P, K, 2] the filtered keypoints (NaN where the input is NaN).
        """
        settings = self.settings
        out = np.array(keypoints, dtype=np.float64, copy=True)
        for person, track in enumerate(np.asarray(track_ids).tolist()):
            points = out[person]
            state = self._tracks.get(track)
            if state is None or frame - state.frame > self.max_gap:
                self._tracks[track] = _TrackFilter(points, frame)
                continue
            dt = (frame - state.frame) / self.fps
            present = np.isfinite(points)
            fresh = present & ~np.isfinite(state.value)  # a joint seen for the first time
            state.value[fresh] = points[fresh]
            speed = (points - state.value) / dt
            speed_alpha = _alpha(settings.d_cutoff, dt)
            smoothed_speed = speed_alpha * speed + (1 - speed_alpha) * state.speed
            cutoff = settings.min_cutoff + settings.beta * np.abs(smoothed_speed)
            alpha = _alpha(cutoff, dt)
            value = alpha * points + (1 - alpha) * state.value
            update = present & ~fresh
            state.value[update] = value[update]
            state.speed[update] = smoothed_speed[update]
            points[update] = value[update]
            state.frame = frame
        # tracks gone for good are forgotten (ids are never reused)
        for track in [t for t, s in self._tracks.items() if frame - s.frame > self.max_gap]:
            del self._tracks[track]
        return out
