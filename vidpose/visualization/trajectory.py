"""The recorded iterative search of one person, as numpy arrays, and its measures.

A head that searches iteratively records every step (the head contract's
``HeadPrediction.trajectory``, ``vidpose.models.heads.contract``):

- the diffusion head: one entry per DDIM step, G hypotheses, with the step's input
  x_t, its x0 heatmaps and the look-up masks made from x_t (where the step read the
  features), time steps t -> t_prev;
- the DiffusionPose head: one entry per DDIM step, G hypotheses, with the heatmaps
  rendered from the step's noisy keypoints (its x_t), its x0 heatmaps, each joint's
  keypoint disc (the masks, one level: the heatmap grid), the limb mask, and the noisy
  keypoints as the step's reference;
- the TFPose head: one entry per decoder layer, G = 1, with the point each layer
  started from ("reference") and its deformable cross-attention weights splatted at
  the sampling points (where the layer read the features); no heatmaps, x_t or t.

:class:`SearchTrajectory` holds what the head recorded, whatever of it there is, and
measures it; :class:`GroundTruth` is what it is measured against. This module draws
nothing: ``search_panels`` and ``search_plot`` import it, and ``search`` writes the
outputs.

Keypoints are in *input pixels*: pixels of the model input crop, H_in x W_in, pixel
centres at integers (``vidpose.codecs.geometry``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from vidpose.codecs.heatmap import HeatmapCodec

MaskSource = Literal["heatmaps", "attention"]

# Keys a step records at every step or at none (a trajectory is one kind of search).
_WHOLE_TRAJECTORY_KEYS = ("t", "t_prev", "x_t", "heatmaps", "skeleton_masks")


@dataclass(frozen=True, kw_only=True)
class SearchTrajectory:
    """One person's search as numpy arrays (S steps, G hypotheses, K joints).

    Only the keypoints, scores and labels are always there; what else a head records
    is optional (None, or no masks), and everything that draws or measures the
    trajectory skips what is missing.

    Attributes:
        labels: [S] the steps' labels as the head gave them ("t 999->799", "layer 2").
        keypoints: [S, G, K, 2] float32 x, y in input pixels, as the head recorded them.
        scores: [S, G, K] float32 (a heatmap head's heatmap maxima, TFPose's 1 - sigma).
        consensus_keypoints: [S, K, 2] float32 the step's answer: with heatmaps, decoded
            from the hypothesis mean of the clamped x0 estimates (at the last step
            this is the model's output: ``DiffusionHead.predict`` averages the final
            clamped heatmaps the same way); without, the hypothesis mean of the
            keypoints (for G = 1 the keypoints themselves).
        consensus_scores: [S, K] float32 the same for the scores.
        input_size: (H_in, W_in) of the crop.
        t: [S] int64 time step of each step's input, in sampling order (diffusion).
        t_prev: [S] int64 time step each step lands on, -1 for the data (diffusion).
        x_t: [S, G, K, H, W] float32 each step's input in heatmap units (diffusion;
            pure noise at the first step when sampling starts from noise).
        heatmaps: [S, G, K, H, W] float32 each step's x0 estimate (heatmap units,
            unclamped).
        input_to_heatmap: (fx, fy) heatmap pixels per input pixel (the codec's
            factor), with heatmaps.
        masks: per feature level, coarse to fine, [S, G, K, h_s, w_s] float32, where
            each step read the features: each joint's map sums to 1 over its cells.
            NaN at steps that did not record masks (TFPose's coarse layer 0); empty
            when no step did.
        mask_source: what the masks are, which fixes where their cells lie:
            "heatmaps": the diffusion look-up masks, x_t area-pooled to each scale, so
            their cells divide the heatmap grid; "attention": deformable attention
            weights splatted on a feature level, whose cells divide the crop (the
            normalised-coordinate convention of ``vidpose.models.deformable``). None
            without masks.
        reference: [S, G, K, 2] float32 the point each step started from, input
            pixels (TFPose's per-layer reference, DiffusionPose's noisy points); NaN at
            steps without one (the coarse layer 0); None when no step recorded one.
        skeleton_masks: [S, G, H, W] float32 the limb mask each step read the features
            through, on the heatmap grid (DiffusionPose's M^ske: 1 within its width of
            the limbs between the step's noisy points); None without.
    """

    labels: tuple[str, ...]
    keypoints: np.ndarray
    scores: np.ndarray
    consensus_keypoints: np.ndarray
    consensus_scores: np.ndarray
    input_size: tuple[int, int]
    t: np.ndarray | None = None
    t_prev: np.ndarray | None = None
    x_t: np.ndarray | None = None
    heatmaps: np.ndarray | None = None
    input_to_heatmap: tuple[float, float] | None = None
    masks: tuple[np.ndarray, ...] = ()
    mask_source: MaskSource | None = None
    reference: np.ndarray | None = None
    skeleton_masks: np.ndarray | None = None

    def __post_init__(self) -> None:
        steps, hypotheses, joints = self.keypoints.shape[:3]
        expected = {
            "keypoints": (self.keypoints.shape, (steps, hypotheses, joints, 2)),
            "scores": (self.scores.shape, (steps, hypotheses, joints)),
            "consensus_keypoints": (self.consensus_keypoints.shape, (steps, joints, 2)),
            "consensus_scores": (self.consensus_scores.shape, (steps, joints)),
            "labels": ((len(self.labels),), (steps,)),
        }
        optional = {
            "t": (self.t, (steps,)),
            "t_prev": (self.t_prev, (steps,)),
            "heatmaps": (self.heatmaps, (steps, hypotheses, joints)),
            "reference": (self.reference, (steps, hypotheses, joints, 2)),
            "skeleton_masks": (self.skeleton_masks, (steps, hypotheses)),
        }
        for name, (array, wanted) in optional.items():
            if array is not None:
                expected[name] = (array.shape[: len(wanted)], wanted)
        if self.x_t is not None:
            wanted = (steps, hypotheses, joints) if self.heatmaps is None else self.heatmaps.shape
            expected["x_t"] = (self.x_t.shape[: len(wanted)], wanted)
        expected.update(
            {
                f"masks[{index}]": (mask.shape[:3], (steps, hypotheses, joints))
                for index, mask in enumerate(self.masks)
            }
        )
        for name, (shape, wanted) in expected.items():
            if tuple(shape) != tuple(wanted):
                raise ValueError(
                    f"SearchTrajectory: {name} has shape {tuple(shape)}, expected "
                    f"{tuple(wanted)} (S={steps} steps, G={hypotheses}, K={joints})"
                )
        if (self.t is None) != (self.t_prev is None):
            raise ValueError("SearchTrajectory: t and t_prev come together (diffusion steps)")
        if self.heatmaps is not None and self.input_to_heatmap is None:
            raise ValueError("SearchTrajectory: heatmaps need input_to_heatmap (the codec's)")
        if self.masks and self.mask_source not in ("heatmaps", "attention"):
            raise ValueError(
                "SearchTrajectory: masks need mask_source 'heatmaps' or 'attention', got "
                f"{self.mask_source!r}"
            )
        if self.skeleton_masks is not None and (
            self.heatmaps is None or self.skeleton_masks.shape[2:] != self.heatmaps.shape[3:]
        ):
            raise ValueError("SearchTrajectory: skeleton_masks lie on the heatmaps' grid")
        if self.mask_source == "heatmaps" and self.heatmaps is None:
            raise ValueError("SearchTrajectory: mask_source 'heatmaps' needs the heatmaps")

    @property
    def num_steps(self) -> int:
        return self.keypoints.shape[0]

    @property
    def num_hypotheses(self) -> int:
        return self.keypoints.shape[1]

    @property
    def num_joints(self) -> int:
        return self.keypoints.shape[2]

    @property
    def heatmap_size(self) -> tuple[int, int] | None:
        """(H, W) of the heatmaps; None without."""
        if self.heatmaps is None:
            return None
        return self.heatmaps.shape[-2], self.heatmaps.shape[-1]

    @property
    def mask_grid(self) -> tuple[tuple[int, int], tuple[float, float]]:
        """(size (H_g, W_g), input_to_grid (fx, fy)): the pixel grid whose extent every
        mask map divides into equal cells, grid pixel centres at x_in * f.

        Look-up masks pool the heatmaps (the heatmap grid, the codec's factor);
        attention maps cover the crop itself (the input pixels, factor 1): feature
        cell j of w spans normalised [j / w, (j + 1) / w), input x in
        [j W_in / w - 0.5, (j + 1) W_in / w - 0.5).
        """
        if self.mask_source == "heatmaps":
            return self.heatmap_size, self.input_to_heatmap
        return self.input_size, (1.0, 1.0)

    def masks_recorded(self) -> np.ndarray:
        """[S] bool: the steps that recorded masks (all False without masks)."""
        if not self.masks:
            return np.zeros(self.num_steps, dtype=bool)
        return np.isfinite(self.masks[0]).reshape(self.num_steps, -1).all(axis=1)

    @classmethod
    def from_trajectory(
        cls, trajectory: Sequence[Mapping[str, Any]], codec: HeatmapCodec, *, sample: int = 0
    ) -> SearchTrajectory:
        """Convert the list ``predict(..., return_trajectory=True)`` returned.

        Args:
            trajectory: S dicts, the head contract's trajectory
                (``HeadPrediction.trajectory``): every entry has "label", "keypoints"
                [B, G, K, 2] (input pixels) and "scores" [B, G, K]; entries may add
                "t", "t_prev", "x_t", "heatmaps" [B, G, K, H, W], "skeleton_masks"
                [B, G, H, W] (these at every step or none), "masks" (per level
                [B, G, K, h_s, w_s]) and "reference" [B, G, K, 2] (at some steps).
            codec: the model's codec: its input size is the crop's; with heatmaps it
                decodes the consensus.
            sample: which of the B clips.

        Raises:
            ValueError: no steps (a one-pass head), or steps that do not fit together.
        """
        if not trajectory:
            raise ValueError(
                "SearchTrajectory.from_trajectory: the trajectory has no steps (a head that "
                "predicts in one pass records none)"
            )
        for index, entry in enumerate(trajectory):
            missing = {"label", "keypoints", "scores"} - set(entry)
            if missing:
                raise ValueError(
                    f"SearchTrajectory.from_trajectory: step {index} lacks {sorted(missing)}; "
                    "expected the head contract's trajectory (HeadPrediction.trajectory)"
                )
        for key in _WHOLE_TRAJECTORY_KEYS:
            having = sum(key in entry for entry in trajectory)
            if 0 < having < len(trajectory):
                raise ValueError(
                    f"SearchTrajectory.from_trajectory: {key!r} is recorded at {having} of "
                    f"{len(trajectory)} steps; it must be at every step or at none"
                )

        def stack(key: str) -> torch.Tensor:
            return torch.stack([entry[key][sample].detach().float().cpu() for entry in trajectory])

        def present(key: str) -> bool:
            return key in trajectory[0]

        keypoints = stack("keypoints")  # [S, G, K, 2]
        scores = stack("scores")  # [S, G, K]
        heatmaps = stack("heatmaps") if present("heatmaps") else None  # [S, G, K, H, W]
        input_to_heatmap = None
        if heatmaps is not None:
            # The model's output is the mean over hypotheses of the clamped final x0
            # estimates; the same mean at every step gives the step's consensus.
            consensus_keypoints, consensus_scores = codec.decode(heatmaps.clamp(0, 1).mean(dim=1))
            factor = codec.input_to_heatmap(np.ones(2))
            input_to_heatmap = (float(factor[0]), float(factor[1]))
        else:
            consensus_keypoints, consensus_scores = keypoints.mean(dim=1), scores.mean(dim=1)
        masks = _per_step_maps(trajectory, sample)
        return cls(
            labels=tuple(str(entry["label"]) for entry in trajectory),
            keypoints=keypoints.numpy(),
            scores=scores.numpy(),
            consensus_keypoints=consensus_keypoints.numpy(),
            consensus_scores=consensus_scores.numpy(),
            input_size=codec.input_size,
            t=_integers(trajectory, "t") if present("t") else None,
            t_prev=_integers(trajectory, "t_prev") if present("t_prev") else None,
            x_t=stack("x_t").numpy() if present("x_t") else None,
            heatmaps=None if heatmaps is None else heatmaps.numpy(),
            input_to_heatmap=input_to_heatmap,
            masks=masks,
            # Masks of a heatmap search are made from its heatmaps (the look-up);
            # otherwise they are a feature level's attention maps.
            mask_source=None if not masks else "heatmaps" if heatmaps is not None else "attention",
            reference=_per_step_points(trajectory, "reference", sample),
            skeleton_masks=stack("skeleton_masks").numpy() if present("skeleton_masks") else None,
        )

    # ------------------------------------------------------------------ measures

    def step_starts(self) -> np.ndarray:
        """[S, K, 2] float64 the point each step's keypoint started from, input pixels:
        the step's recorded reference (hypothesis mean) where it has one, else the
        previous step's consensus; NaN at a first step without a reference."""
        starts = np.full(self.consensus_keypoints.shape, np.nan, dtype=np.float64)
        starts[1:] = self.consensus_keypoints[:-1]
        if self.reference is not None:
            recorded = self.reference.astype(np.float64).mean(axis=1)  # [S, K, 2]
            starts = np.where(np.isfinite(recorded), recorded, starts)
        return starts

    def displacement(self) -> np.ndarray:
        """[S, K] how far each consensus keypoint moved in the step, input pixels: from
        :meth:`step_starts` (the previous step's keypoint, or the layer's reference);
        NaN at a first step without a reference (there is no earlier estimate)."""
        moves = self.consensus_keypoints.astype(np.float64) - self.step_starts()
        return np.linalg.norm(moves, axis=-1)

    def spread(self) -> np.ndarray:
        """[S, K] RMS distance of the G hypotheses' keypoints to their mean, input pixels
        (0 with one hypothesis)."""
        points = self.keypoints.astype(np.float64)
        centre = points.mean(axis=1, keepdims=True)
        return np.sqrt(((points - centre) ** 2).sum(-1).mean(axis=1))

    def mask_area(self) -> np.ndarray:
        """[S, n_scales, K] effective area of each joint's mask, as a fraction of its
        map: exp(entropy) / (h_s w_s), averaged over the hypotheses (NaN at steps
        without masks; n_scales = 0 without masks).

        1 for a uniform mask (the step reads everywhere), 1 / (h_s w_s) for a mask on
        one cell. exp(entropy) is the number of equally weighted cells with the same
        entropy (the perplexity), so the fraction is comparable across scales.
        """
        areas = []
        for mask in self.masks:
            flat = mask.reshape(*mask.shape[:3], -1).astype(np.float64)
            flat = flat / np.maximum(flat.sum(-1, keepdims=True), 1e-12)
            entropy = -(flat * np.log(np.maximum(flat, 1e-30))).sum(-1)  # [S, G, K]
            areas.append((np.exp(entropy) / flat.shape[-1]).mean(axis=1))
        return _stack_scales(areas, self.num_steps, self.num_joints)

    def target(self, ground_truth: GroundTruth | None = None) -> np.ndarray:
        """[K, 2] where each joint should end up, input pixels: the visible ground-truth
        keypoints (NaN for the others) when given, else the final step's keypoints."""
        if ground_truth is None:
            return self.consensus_keypoints[-1].astype(np.float64)
        visible = np.asarray(ground_truth.visible, dtype=bool)[:, None]
        return np.where(visible, ground_truth.keypoints.astype(np.float64), np.nan)

    @property
    def near_radius(self) -> float:
        """The radius of "near the target" in the mask measures, input pixels: 1/8 of the
        crop height (16 at 128 x 96: one cell of the coarsest 1/16 mask, about a head)."""
        return self.input_size[0] / 8

    def cells_near(self, points: np.ndarray, radius: float) -> tuple[np.ndarray, ...]:
        """Per mask scale, [K, h_s, w_s] bool: the mask cells whose centre lies within
        ``radius`` input pixels of each joint's point.

        Args:
            points: [K, 2] x, y in input pixels (NaN: no cell is near).
            radius: input pixels.
        """
        points = np.asarray(points, dtype=np.float64)
        (grid_h, grid_w), (factor_x, factor_y) = self.mask_grid
        near = []
        for mask in self.masks:
            rows, cols = mask.shape[-2:]
            # Cell j pools grid pixels [j f, (j + 1) f): centre j f + (f - 1) / 2.
            fy, fx = grid_h / rows, grid_w / cols
            centre_y = (np.arange(rows) * fy + (fy - 1) / 2) / factor_y
            centre_x = (np.arange(cols) * fx + (fx - 1) / 2) / factor_x
            dy = centre_y[None, :, None] - points[:, 1, None, None]
            dx = centre_x[None, None, :] - points[:, 0, None, None]
            with np.errstate(invalid="ignore"):
                near.append(dx**2 + dy**2 <= radius**2)
        return tuple(near)

    def mask_mass_near(self, points: np.ndarray, radius: float) -> np.ndarray:
        """[S, n_scales, K] share of each joint's mask within ``radius`` input pixels of
        ``points`` (cell centres), averaged over the hypotheses (NaN at steps without
        masks).

        With ``points`` the target keypoints this asks whether the step reads where
        the joint is; a uniform mask scores the share of cells near the point, which
        ``cells_near(points, radius)[s].mean((1, 2))`` gives.

        Args:
            points: [K, 2] x, y in input pixels (ground truth, or the final keypoints).
            radius: input pixels.
        """
        shares = []
        for mask, near in zip(self.masks, self.cells_near(points, radius), strict=True):
            mass = (mask.astype(np.float64) * near[None, None]).sum(axis=(-2, -1))  # [S, G, K]
            shares.append(mass.mean(axis=1))
        return _stack_scales(shares, self.num_steps, self.num_joints)

    def scale_names(self) -> list[str]:
        """Each mask scale as a fraction of the input size, coarse to fine ("1/16")."""
        input_height = self.input_size[0]
        return [f"1/{round(input_height / mask.shape[-2])}" for mask in self.masks]


@dataclass(frozen=True)
class GroundTruth:
    """Target keypoints of the crop (drawn as green crosses, and measured against).

    Attributes:
        keypoints: [K, 2] x, y in input pixels.
        visible: [K] bool, joints that are annotated and inside the crop.
    """

    keypoints: np.ndarray
    visible: np.ndarray

    def error(self, keypoints: np.ndarray) -> np.ndarray:
        """[..., K] distance of ``keypoints`` [..., K, 2] (input pixels) to the target;
        NaN for joints that are not visible."""
        distance = np.linalg.norm(
            np.asarray(keypoints, dtype=np.float64) - self.keypoints.astype(np.float64), axis=-1
        )
        return np.where(self.visible, distance, np.nan)


# --------------------------------------------------------------------------- helpers


def _integers(trajectory: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    return np.asarray([int(entry[key]) for entry in trajectory], dtype=np.int64)


def _stack_scales(per_scale: list[np.ndarray], steps: int, joints: int) -> np.ndarray:
    """n_scales x [S, K] -> [S, n_scales, K] (an empty [S, 0, K] without masks)."""
    if not per_scale:
        return np.zeros((steps, 0, joints), dtype=np.float64)
    return np.stack(per_scale, axis=1)


def _per_step_maps(trajectory: Sequence[Mapping[str, Any]], sample: int) -> tuple[np.ndarray, ...]:
    """The steps' "masks" as per-level arrays [S, G, K, h_s, w_s], NaN at steps without
    (TFPose's coarse layer reads no feature map); () when no step has masks."""
    recorded = [entry.get("masks") or () for entry in trajectory]
    layouts = {tuple(tuple(level.shape[1:]) for level in masks) for masks in recorded if masks}
    if not layouts:
        return ()
    if len(layouts) > 1:
        raise ValueError(
            "SearchTrajectory.from_trajectory: the steps' masks differ in levels or shapes "
            f"({sorted(layouts)})"
        )
    (layout,) = layouts
    levels = []
    for level, shape in enumerate(layout):
        missing = np.full(shape, np.nan, dtype=np.float32)
        levels.append(
            np.stack(
                [
                    masks[level][sample].detach().float().cpu().numpy() if masks else missing
                    for masks in recorded
                ]
            )
        )
    return tuple(levels)


def _per_step_points(
    trajectory: Sequence[Mapping[str, Any]], key: str, sample: int
) -> np.ndarray | None:
    """[S, G, K, 2] float32 of ``key`` per step, NaN at steps without; None if none has it."""
    having = [entry for entry in trajectory if key in entry]
    if not having:
        return None
    shape = tuple(having[0][key].shape[1:])
    missing = np.full(shape, np.nan, dtype=np.float32)
    return np.stack(
        [
            entry[key][sample].detach().float().cpu().numpy() if key in entry else missing
            for entry in trajectory
        ]
    )
