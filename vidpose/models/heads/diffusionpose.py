"""The DiffusionPose head: structure-guided diffusion on keypoint coordinates.

DiffusionPose (Qiu et al., "Learning Structure-Guided Diffusion Model for 2D Human Pose
Estimation", arXiv 2306.17074) diffuses the keypoint *coordinates* and denoises them
through heatmaps:

- forward process (its eq. 1): y_t = sqrt(gamma_t) (zeta y0) + sqrt(1 - gamma_t) eps,
  gamma_t the cumulative alpha of the schedule, zeta the signal scale. Here y0 is the
  keypoints normalised to the crop: y0 = 2 (x + 0.5) / W_in - 1 (and the same for y
  with H_in), so [-1, 1] spans the crop's pixel extent [-0.5, W_in - 0.5) exactly
  (the crop-fraction convention of ``vidpose.models.deformable``); this is
  ``GaussianDiffusion.to_signal`` of the crop fraction;
- from y_t (clamped to [-zeta, zeta], as DiffusionDet clamps its noisy boxes, then
  mapped back to the crop) it renders noisy heatmaps, keypoint and skeleton masks at the
  finest pyramid level (stride 4), and the denoiser
  (``vidpose.models.heads.diffusionpose_layers``) estimates the clean heatmaps; loss
  L2 to the ground-truth heatmaps, plus L2 of a coarse convolution head on F (its
  eq. 9);
- inference (DDIM, Song et al. 2021, the same ``ddim_step`` and ``ddim_sample`` as the
  heatmap diffusion head) runs on the coordinates: at each step the x0 estimate is the
  keypoints decoded from the estimated heatmaps by the codec, normalised and scaled by
  zeta; the next step re-renders heatmaps and masks from its noisy keypoints. G
  hypotheses are folded into the batch and share the clip's features; the final
  heatmaps are averaged over them.

Sampling starts (``init``) from the coarse head's keypoints, the paper's "sampling
initialisation", either noised to time step t_s = round(coarse_start (T - 1)) by
q_sample ("coarse", as the heatmap diffusion head's init) or taken as y_{t_s}
themselves ("coarse_exact", the paper's ỹ_T = conv(x^fea) read literally); or from
noise ("noise"). On the tiny synthetic model the noise start measured best (see
docs/architecture.md); the paper-scale configs keep the paper's coarse start.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy.typing as npt
import torch
from torch import nn

from vidpose.codecs.heatmap import HeatmapCodec
from vidpose.losses import weighted_heatmap_mse
from vidpose.models.diffusion.sampler import NoiseSource, ddim_sample, ddim_timesteps
from vidpose.models.diffusion.schedule import GaussianDiffusion
from vidpose.models.heads.contract import (
    HeadPrediction,
    Targets,
    heatmap_hypotheses_prediction,
    merge_flipped_heatmaps,
)
from vidpose.models.heads.diffusionpose_layers import (
    PreparedFeatures,
    StructureEstimate,
    StructureGuidedDenoiser,
)
from vidpose.models.heads.heatmap import HeatmapConv
from vidpose.models.structure_masks import normalised_per_map, union

Init = Literal["noise", "coarse", "coarse_exact"]
_INITS = ("noise", "coarse", "coarse_exact")


class DiffusionPoseHead(nn.Module):
    """Coordinate diffusion with a structure-guided heatmap denoiser and a coarse head.

    Args:
        process: the noise schedule; its ``signal_scale`` is zeta.
        denoiser: (noisy keypoints in heatmap pixels, t, F) -> x0 heatmaps and the maps
            it rendered.
        coarse: the coarse heatmap head on the finest pyramid level (its own loss;
            starts the sampling).
        codec: encodes the training heatmaps, maps input-crop pixels to heatmap pixels
            and decodes every heatmap (the x0 estimate of each step, the answer).
        sampling_steps: default S of :meth:`predict`.
        hypotheses: default G of :meth:`predict`.
        eta: default DDIM eta.
        init: default start: "coarse" (the coarse keypoints noised to ``coarse_start``
            by q_sample), "coarse_exact" (the coarse keypoints themselves as y at
            ``coarse_start``, the paper's initialisation) or "noise" (y ~ N(0, I) at
            T - 1).
        coarse_start: the start time step of the coarse inits, round(coarse_start
            (T - 1)).
    """

    loss_names = ("heatmap", "coarse")

    def __init__(
        self,
        *,
        process: GaussianDiffusion,
        denoiser: StructureGuidedDenoiser,
        coarse: HeatmapConv,
        codec: HeatmapCodec,
        sampling_steps: int,
        hypotheses: int,
        eta: float,
        init: Init,
        coarse_start: float,
    ) -> None:
        super().__init__()
        if not 0.0 < coarse_start <= 1.0:
            raise ValueError(
                f"DiffusionPoseHead: coarse_start must be in (0, 1], got {coarse_start}"
            )
        if denoiser.num_joints != coarse.num_joints:
            raise ValueError(
                f"DiffusionPoseHead: the denoiser has {denoiser.num_joints} joints, the coarse "
                f"head {coarse.num_joints}"
            )
        self.process = process
        self.denoiser = denoiser
        self.coarse = coarse
        self.codec = codec
        self.coarse_start = coarse_start
        self.sampling_steps = sampling_steps
        self.hypotheses = hypotheses
        self.eta = eta
        self.init = init
        self._check_sampling(sampling_steps, hypotheses, eta, init)

    def _check_sampling(self, steps: int, hypotheses: int, eta: float, init: str) -> None:
        if hypotheses < 1:
            raise ValueError(f"DiffusionPoseHead: hypotheses must be >= 1, got {hypotheses}")
        if eta < 0:
            raise ValueError(f"DiffusionPoseHead: eta must be >= 0, got {eta}")
        if init not in _INITS:
            raise ValueError(f"DiffusionPoseHead: init must be one of {_INITS}, got {init!r}")
        ddim_timesteps(self._start_step(init), steps)  # raises when S does not fit

    @property
    def input_size(self) -> tuple[int, int]:
        return self.codec.input_size

    @property
    def num_joints(self) -> int:
        return self.coarse.num_joints

    def _start_step(self, init: str) -> int:
        last = self.process.timesteps - 1
        return last if init == "noise" else round(self.coarse_start * last)

    # ------------------------------------------------------------------ coordinates

    def _crop_extent(self, like: torch.Tensor) -> torch.Tensor:
        height, width = self.codec.input_size
        return torch.tensor([width, height], dtype=like.dtype, device=like.device)

    def to_signal(self, keypoints: torch.Tensor) -> torch.Tensor:
        """[..., 2] input-crop pixels -> zeta y0 [..., 2]: y0 = 2 (x + 0.5) / W_in - 1,
        the crop's pixel extent mapped onto [-1, 1], times the signal scale."""
        return self.process.to_signal((keypoints + 0.5) / self._crop_extent(keypoints))

    def to_crop(self, signal: torch.Tensor) -> torch.Tensor:
        """[..., 2] (noisy) signal -> input-crop pixels, clamped to the crop first
        ([-zeta, zeta], as DiffusionDet clamps its noisy boxes before rendering them)."""
        scale = self.process.signal_scale
        fraction = self.process.from_signal(signal.clamp(-scale, scale))
        return fraction * self._crop_extent(signal) - 0.5

    def _denoise(
        self,
        signal: torch.Tensor,
        t: torch.Tensor,
        finest: torch.Tensor,
        prepared: PreparedFeatures | None = None,
    ) -> tuple[torch.Tensor, StructureEstimate]:
        """(noisy points in input-crop pixels [N, K, 2], the denoiser's estimate)."""
        points = self.to_crop(signal.float())
        estimate = self.denoiser(self.codec.input_to_heatmap(points), t, finest, prepared)
        return points, estimate

    # ------------------------------------------------------------------ training

    def forward(
        self,
        features: Sequence[torch.Tensor],
        targets: Targets | None = None,
        sample_seeds: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """One denoising pass at a random time step per sample (train and eval alike).

        Joints without a target (weight 0: not annotated or outside the crop) diffuse
        from the coarse head's own keypoints (decoded, no gradient), which is where
        sampling starts them: the masks of a missing joint then sit where inference
        would put them, not at the (0, 0) placeholder of a missing annotation.

        Args:
            features: pyramid levels coarse to fine, [B, D, h_s, w_s]; the last is
                [B, D, H, W].
            targets: "keypoints" [B, K, 2] input-crop pixels (y0), "target_weight"
                [B, K]; the loss reads "heatmaps" [B, K, H, W].
            sample_seeds: [B] int64; each sample's t and eps come from a generator
                seeded with its seed. None: the global RNG.

        Returns:
            "heatmaps": [B, K, H, W] the x0 estimate (heatmap units);
            "coarse_heatmaps": [B, K, H, W] the coarse head;
            "t": [B] int64 the time steps drawn.
        """
        if targets is None or "keypoints" not in targets or "target_weight" not in targets:
            raise ValueError(
                "DiffusionPoseHead.forward needs targets with 'keypoints' and 'target_weight' "
                "(it noises the keypoints to train the denoiser); call predict() for inference"
            )
        finest = features[-1]
        coarse = self.coarse(finest)
        keypoints = targets["keypoints"].float()
        missing = targets["target_weight"] <= 0  # [B, K]
        if missing.any():
            guessed, _ = self.codec.decode(coarse.detach().float())
            keypoints = torch.where(missing[..., None], guessed, keypoints)
        source = NoiseSource(
            batch_size=keypoints.shape[0], device=keypoints.device, sample_seeds=sample_seeds
        )
        t = source.integers(self.process.timesteps)  # uniform t, DDPM algorithm 1
        noise = source.normal(keypoints.shape[1:])  # [B, K, 2]
        y_t = self.process.q_sample(self.to_signal(keypoints), t, noise)
        _, estimate = self._denoise(y_t, t, finest)
        return {"heatmaps": estimate.heatmaps, "coarse_heatmaps": coarse, "t": t}

    def loss_terms(
        self, outputs: Mapping[str, torch.Tensor], targets: Targets
    ) -> dict[str, torch.Tensor]:
        """{"heatmap": the denoiser's weighted heatmap MSE, "coarse": the coarse head's}
        (DiffusionPose eq. 9; targets "heatmaps", "target_weight")."""
        heatmaps, weights = targets["heatmaps"], targets["target_weight"]
        return {
            "heatmap": weighted_heatmap_mse(outputs["heatmaps"], heatmaps, weights),
            "coarse": weighted_heatmap_mse(outputs["coarse_heatmaps"], heatmaps, weights),
        }

    # ------------------------------------------------------------------ inference

    def predict(
        self,
        features: Sequence[torch.Tensor],
        *,
        steps: int | None = None,
        hypotheses: int | None = None,
        eta: float | None = None,
        init: Init | None = None,
        generator: torch.Generator | None = None,
        sample_seeds: torch.Tensor | None = None,
        return_trajectory: bool = False,
    ) -> HeadPrediction:
        """Sample keypoints with DDIM on coordinates; the features are used as they are.

        Args:
            features: pyramid levels coarse to fine, [B, D, h_s, w_s].
            steps: S DDIM steps (S denoiser calls; any S <= the start step + 1).
            hypotheses: G starts per clip, run as one batch of B * G and averaged.
            eta: DDIM eta (0 deterministic).
            init: "coarse", "coarse_exact" or "noise" (see the class docstring).
            generator: one generator for all random draws (reproducible call).
            sample_seeds: [B] per-sample seeds instead (results independent of
                batching). Neither: the global RNG.
            return_trajectory: also return every step.

        Returns:
            a :class:`HeadPrediction`: "heatmaps" [B, K, H, W] the mean over the
            hypotheses of their last x0 estimates (clamped to [0, 1]), keypoints and
            scores decoded from it by the codec; "uncertainty" [B, K] the spread of the
            G hypotheses' own decoded keypoints (None for G = 1); extras
            "hypothesis_heatmaps" [B, G, K, H, W] and, with a coarse init,
            "coarse_heatmaps" [B, K, H, W]; "trajectory" (when asked): S dicts in
            sampling order:
                "step" int, "label" "t T->T_PREV", "t" int, "t_prev" int (-1: the data),
                "noisy_points" [B, G, K, 2] the step's noisy keypoints y_t in input-crop
                    pixels (clamped to the crop); "reference" the same (where the step
                    started: the search visualisation draws the move from there),
                "x_t" and "noisy_heatmaps" [B, G, K, H, W] the heatmaps rendered from
                    them (the denoiser's input),
                "keypoint_masks", "skeleton_masks" [B, G, H, W] 0 / 1: M^kps and M^ske,
                    the unions of the joints' discs and of the limbs' segments,
                "masks" (one level, the finest) [B, G, K, H, W] each joint's disc
                    scaled to sum to 1 (where the step read the features for it),
                "heatmaps" [B, G, K, H, W] the x0 estimate (unclamped),
                "keypoints" [B, G, K, 2] (input-crop pixels) and "scores" [B, G, K]
                    decoded from "heatmaps" by the codec: the step's x0.
        """
        steps = self.sampling_steps if steps is None else steps
        hypotheses = self.hypotheses if hypotheses is None else hypotheses
        eta = self.eta if eta is None else eta
        init = self.init if init is None else init
        self._check_sampling(steps, hypotheses, eta, init)

        finest = features[-1]
        batch = finest.shape[0]
        joints = self.num_joints
        folded = batch * hypotheses
        per_sample = (hypotheses, joints, 2)
        source = NoiseSource(
            batch_size=batch, device=finest.device, generator=generator, sample_seeds=sample_seeds
        )
        start = self._start_step(init)
        y_start = source.normal(per_sample).flatten(0, 1)  # [B*G, K, 2], sample-major
        coarse = None  # the coarse head runs only when sampling starts from it
        if init != "noise":
            coarse = self.coarse(finest).float()
            coarse_keypoints, _ = self.codec.decode(coarse)  # [B, K, 2] input-crop pixels
            signal = self.to_signal(coarse_keypoints)
            signal = signal.unsqueeze(1).expand(batch, *per_sample).flatten(0, 1)
            if init == "coarse":
                t_start = torch.full((folded,), start, dtype=torch.long, device=finest.device)
                y_start = self.process.q_sample(signal, t_start, y_start)
            else:
                y_start = signal

        # The hypotheses share the clip's features and the feature-only work (once here).
        prepared = self.denoiser.prepare(finest)

        def denoise(y_t: torch.Tensor, t: int) -> tuple[torch.Tensor, dict[str, Any]]:
            t_batch = torch.full((folded,), t, dtype=torch.long, device=y_t.device)
            points, estimate = self._denoise(y_t, t_batch, finest, prepared)
            heatmaps = estimate.heatmaps.float()
            keypoints, scores = self.codec.decode(heatmaps)
            # The DDIM update runs on coordinates: its x0 is the decoded keypoints.
            record = {
                "points": points,
                "estimate": estimate,
                "heatmaps": heatmaps,
                "keypoints": keypoints,
                "scores": scores,
            }
            return self.to_signal(keypoints), record

        _, records = ddim_sample(
            denoise,
            y_start,
            timesteps=ddim_timesteps(start, steps),
            alphas_cumprod=self.process.alphas_cumprod,
            eta=eta,
            draw_noise=lambda: source.normal(per_sample).flatten(0, 1),
        )
        height, width = finest.shape[-2:]
        final = records[-1]["heatmaps"].clamp(0, 1).view(batch, hypotheses, joints, height, width)
        trajectory = None
        if return_trajectory:
            trajectory = [
                self._trajectory_entry(index, record, batch) for index, record in enumerate(records)
            ]
        return heatmap_hypotheses_prediction(
            self.codec, final, coarse=coarse, trajectory=trajectory
        )

    def merge_flipped(
        self, prediction: HeadPrediction, mirrored: HeadPrediction, flip_permutation: npt.ArrayLike
    ) -> HeadPrediction:
        """The flip test: the two passes' (hypothesis-mean) heatmaps averaged
        (``merge_flipped_heatmaps``)."""
        return merge_flipped_heatmaps(prediction, mirrored, flip_permutation, codec=self.codec)

    @staticmethod
    def _trajectory_entry(index: int, record: dict[str, Any], batch: int) -> dict[str, Any]:
        def unfold(tensor: torch.Tensor) -> torch.Tensor:  # [B*G, ...] -> [B, G, ...]
            return tensor.reshape(batch, -1, *tensor.shape[1:])

        estimate: StructureEstimate = record["estimate"]
        points = unfold(record["points"])
        noisy_heatmaps = unfold(estimate.noisy_heatmaps)
        return {
            "step": index,
            "label": f"t {record['t']}->{record['t_prev']}",
            "t": record["t"],
            "t_prev": record["t_prev"],
            "noisy_points": points,
            "reference": points,
            "x_t": noisy_heatmaps,
            "noisy_heatmaps": noisy_heatmaps,
            "keypoint_masks": unfold(union(estimate.keypoint_masks)[:, 0]),
            "skeleton_masks": unfold(union(estimate.skeleton_masks)[:, 0]),
            "masks": (unfold(normalised_per_map(estimate.keypoint_masks)),),
            "heatmaps": unfold(record["heatmaps"]),
            "keypoints": unfold(record["keypoints"]),
            "scores": unfold(record["scores"]),
        }
