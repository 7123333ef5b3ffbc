"""The diffusion head: heatmap diffusion conditioned on the clip's feature pyramid.

Training (``forward``): draw t and eps per sample, noise the target heatmaps
(DDPM eq. 4) and let the denoiser estimate x0. Inference (``predict``): G
hypotheses start from noise (or from the coarse branch's heatmap, noised to an
intermediate time step), run S DDIM steps in one batch of B * G, and the final
heatmaps are averaged over the hypotheses (the author's notes: averaging several
random initialisations lifted accuracy from ~68 to ~80).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy.typing as npt
import torch
from torch import nn

from vidpose.codecs.heatmap import HeatmapCodec
from vidpose.losses import weighted_heatmap_mse
from vidpose.models.diffusion.decoder import Denoiser
from vidpose.models.diffusion.sampler import NoiseSource, ddim_sample, ddim_timesteps
from vidpose.models.diffusion.schedule import GaussianDiffusion
from vidpose.models.heads.contract import (
    HeadPrediction,
    Targets,
    heatmap_hypotheses_prediction,
    merge_flipped_heatmaps,
)
from vidpose.models.heads.heatmap import HeatmapConv

_INITS = ("noise", "coarse")


class DiffusionHead(nn.Module):
    """Heatmap diffusion with an x0-predicting look-up denoiser and a coarse branch.

    Args:
        process: the noise schedule and its algebra.
        denoiser: (x_t, t, pyramid) -> x0 estimate and masks (a ``Denoiser``:
            vidpose's look-up interaction or the paper's, ``model.interaction``).
        coarse: the coarse heatmap branch on the finest pyramid level (trained with
            its own loss; can start the sampling).
        codec: encodes the training heatmaps and decodes every prediction (final,
            per hypothesis, per step) into input-crop pixels.
        sampling_steps: default S of :meth:`predict`.
        hypotheses: default G of :meth:`predict`.
        eta: default DDIM eta of :meth:`predict`.
        init: default start of :meth:`predict`: "noise" (x_{T-1} ~ N(0, I)) or
            "coarse" (the coarse heatmaps noised to ``coarse_start``).
        coarse_start: with init "coarse", sampling starts at time step
            round(coarse_start * (T - 1)) from q_sample(coarse heatmaps). Near 1 the
            start is almost pure noise (for the cosine schedule alpha_bar ~ 0 at the
            end), so the coarse estimate would be lost; 0.5 keeps about half of it.
        estimate_inputs: in training, the share of samples whose x_t is noised from
            the model's own one-step estimate (from pure noise, no gradient) instead
            of the ground truth: the sampler's second step sees exactly such an x_t,
            while DDPM's training only ever shows the denoiser true heatmaps under
            noise (exposure bias). The target stays the ground truth.
    """

    loss_names = ("heatmap", "coarse")

    def __init__(
        self,
        *,
        process: GaussianDiffusion,
        denoiser: Denoiser,
        coarse: HeatmapConv,
        codec: HeatmapCodec,
        sampling_steps: int,
        hypotheses: int,
        eta: float,
        init: Literal["noise", "coarse"],
        coarse_start: float,
        estimate_inputs: float = 0.0,
    ) -> None:
        super().__init__()
        self.process = process
        self.denoiser = denoiser
        self.coarse = coarse
        self.codec = codec
        if not 0.0 < coarse_start <= 1.0:
            raise ValueError(f"DiffusionHead: coarse_start must be in (0, 1], got {coarse_start}")
        self.coarse_start = coarse_start
        if not 0.0 <= estimate_inputs <= 1.0:
            raise ValueError(
                f"DiffusionHead: estimate_inputs must be in [0, 1], got {estimate_inputs}"
            )
        self.estimate_inputs = estimate_inputs
        self.sampling_steps = sampling_steps
        self.hypotheses = hypotheses
        self.eta = eta
        self.init = init
        self._check_sampling(sampling_steps, hypotheses, eta, init)

    def _check_sampling(self, steps: int, hypotheses: int, eta: float, init: str) -> None:
        if hypotheses < 1:
            raise ValueError(f"DiffusionHead: hypotheses must be >= 1, got {hypotheses}")
        if eta < 0:
            raise ValueError(f"DiffusionHead: eta must be >= 0, got {eta}")
        if init not in _INITS:
            raise ValueError(f"DiffusionHead: init must be one of {_INITS}, got {init!r}")
        ddim_timesteps(self._start_step(init), steps)  # raises when S does not fit

    @property
    def input_size(self) -> tuple[int, int]:
        return self.codec.input_size

    def _start_step(self, init: str) -> int:
        last = self.process.timesteps - 1
        return last if init == "noise" else round(self.coarse_start * last)

    # ------------------------------------------------------------------ training

    def forward(
        self,
        features: Sequence[torch.Tensor],
        targets: Targets | None = None,
        sample_seeds: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """One denoising pass at a random time step per sample (train and eval alike).

        Args:
            features: pyramid levels coarse to fine, [B, D, h_s, w_s]; the last is
                [B, D, H, W].
            targets: the training targets (``vidpose.models.heads.contract``); the head
                reads "heatmaps" [B, K, H, W] in [0, 1] (required: x_t is made from
                them; use :meth:`predict` for inference).
            sample_seeds: [B] int64; each sample's t and eps come from a generator
                seeded with its seed (independent of the batch it is in). None: the
                global RNG.

        Returns:
            "heatmaps": [B, K, H, W] the x0 estimate (heatmap units);
            "coarse_heatmaps": [B, K, H, W] the coarse branch;
            "t": [B] int64 the time steps drawn.
        """
        if targets is None or "heatmaps" not in targets:
            raise ValueError(
                "DiffusionHead.forward needs targets with 'heatmaps' (it noises them to train "
                "the denoiser); call predict() for inference"
            )
        target_heatmaps = targets["heatmaps"]
        coarse = self.coarse(features[-1])
        source = NoiseSource(
            batch_size=target_heatmaps.shape[0],
            device=target_heatmaps.device,
            sample_seeds=sample_seeds,
        )
        t = source.integers(self.process.timesteps)  # uniform t, DDPM algorithm 1
        noise = source.normal(target_heatmaps.shape[1:])
        x0 = self.process.to_signal(target_heatmaps.float())
        if self.estimate_inputs > 0:
            x0 = self._estimate_inputs(x0, noise, features, source)
        x_t = self.process.q_sample(x0, t, noise)
        estimate = self.denoiser(x_t, t, features)
        return {"heatmaps": estimate.heatmaps, "coarse_heatmaps": coarse, "t": t}

    def loss_terms(
        self, outputs: Mapping[str, torch.Tensor], targets: Targets
    ) -> dict[str, torch.Tensor]:
        """{"heatmap": the x0 estimate's weighted heatmap MSE, "coarse": the coarse
        branch's} (targets "heatmaps", "target_weight")."""
        heatmaps, weights = targets["heatmaps"], targets["target_weight"]
        return {
            "heatmap": weighted_heatmap_mse(outputs["heatmaps"], heatmaps, weights),
            "coarse": weighted_heatmap_mse(outputs["coarse_heatmaps"], heatmaps, weights),
        }

    def _estimate_inputs(
        self,
        x0: torch.Tensor,
        noise: torch.Tensor,
        features: Sequence[torch.Tensor],
        source: NoiseSource,
    ) -> torch.Tensor:
        """x0 with a share of its samples replaced by the model's one-step estimate.

        The estimate is what sampling makes first: the denoiser at t = T - 1 on x_T =
        ``noise``. Noising it again with the same ``noise`` is DDIM's next x_t (at
        t = T - 1, alpha_bar ~ 0, the implied eps is x_T itself).
        """
        scale = 1 << 20
        chosen = source.integers(scale) < round(self.estimate_inputs * scale)  # [B]
        rows = chosen.nonzero().squeeze(1)
        if rows.numel() == 0:
            return x0
        # the extra pass runs on the chosen samples only (the rest keep the ground truth)
        last = torch.full_like(rows, self.process.timesteps - 1)
        with torch.no_grad():
            first = self.denoiser(noise[rows], last, [level[rows] for level in features])
        x0 = x0.clone()
        x0[rows] = self.process.to_signal(first.heatmaps.float().clamp(0, 1))
        return x0

    # ------------------------------------------------------------------ inference

    def predict(
        self,
        features: Sequence[torch.Tensor],
        *,
        steps: int | None = None,
        hypotheses: int | None = None,
        eta: float | None = None,
        init: Literal["noise", "coarse"] | None = None,
        generator: torch.Generator | None = None,
        sample_seeds: torch.Tensor | None = None,
        return_trajectory: bool = False,
    ) -> HeadPrediction:
        """Sample heatmaps with DDIM; the features are used as they are (no re-encoding).

        Args:
            features: pyramid levels coarse to fine, [B, D, h_s, w_s].
            steps: S DDIM steps (any S <= the start step + 1, no retraining); None:
                the default.
            hypotheses: G random starts, run as one batch of B * G and averaged.
            eta: DDIM eta (0 deterministic).
            init: "noise" or "coarse" (see the class docstring).
            generator: one generator for all random draws (reproducible call).
            sample_seeds: [B] per-sample seeds instead (results independent of
                batching). Neither: the global RNG.
            return_trajectory: also return every step.

        Returns:
            a :class:`HeadPrediction`: "heatmaps" [B, K, H, W] the mean over the
            hypotheses of their final heatmaps (the last x0 estimate, clamped to
            [0, 1]; DDIM's last step lands on it), keypoints and scores decoded from
            it by the codec; "uncertainty" [B, K] the spread of the G hypotheses'
            own decoded keypoints (RMS distance to their mean, input-crop pixels;
            None for G = 1); extras "hypothesis_heatmaps" [B, G, K, H, W] and, with
            init "coarse", "coarse_heatmaps" [B, K, H, W]; "trajectory" (when
            asked): S dicts, one per step in sampling order:
                "step" int, "label" "t T->T_PREV", "t" int, "t_prev" int (-1 = the data),
                "x_t" [B, G, K, H, W] the step's input mapped to heatmap units
                    ((x / scale + 1) / 2, noisy),
                "heatmaps" [B, G, K, H, W] the x0 estimate (heatmap units, unclamped),
                "masks" tuple of 3: [B, G, K, h_s, w_s] coarse to fine,
                "keypoints" [B, G, K, 2] (input-crop pixels) and "scores" [B, G, K]
                    decoded from "heatmaps" by the codec.
        """
        steps = self.sampling_steps if steps is None else steps
        hypotheses = self.hypotheses if hypotheses is None else hypotheses
        eta = self.eta if eta is None else eta
        init = self.init if init is None else init
        self._check_sampling(steps, hypotheses, eta, init)

        finest = features[-1]
        batch, (height, width) = finest.shape[0], finest.shape[-2:]
        joints = self.coarse.num_joints
        folded = batch * hypotheses
        per_sample = (hypotheses, joints, height, width)
        source = NoiseSource(
            batch_size=batch, device=finest.device, generator=generator, sample_seeds=sample_seeds
        )
        start = self._start_step(init)
        x_start = source.normal(per_sample).flatten(0, 1)  # [B*G, K, H, W], sample-major
        coarse = None  # the coarse branch runs only when sampling starts from it
        if init == "coarse":
            coarse = self.coarse(finest).float()
            x0 = self.process.to_signal(coarse.clamp(0, 1))
            x0 = x0.unsqueeze(1).expand(batch, *per_sample).flatten(0, 1)
            t_start = torch.full((folded,), start, dtype=torch.long, device=finest.device)
            x_start = self.process.q_sample(x0, t_start, x_start)

        # Hypotheses are folded into x_t's batch; the G hypotheses of a clip share its
        # features and the denoiser's feature-only work (computed here, once per clip).
        prepared = self.denoiser.prepare(features)

        def denoise(x_t: torch.Tensor, t: int) -> tuple[torch.Tensor, dict[str, Any]]:
            t_batch = torch.full((folded,), t, dtype=torch.long, device=x_t.device)
            estimate = self.denoiser(x_t, t_batch, features, prepared)
            heatmaps = estimate.heatmaps.float()
            # Clamp x0 to the data range before the update (as DDPM/DDIM code clips x0
            # to [-1, 1]): an out-of-range estimate would push x_t off the data manifold.
            x0_signal = self.process.to_signal(heatmaps.clamp(0, 1))
            return x0_signal, {"heatmaps": heatmaps, "masks": estimate.masks}

        _, records = ddim_sample(
            denoise,
            x_start,
            timesteps=ddim_timesteps(start, steps),
            alphas_cumprod=self.process.alphas_cumprod,
            eta=eta,
            draw_noise=lambda: source.normal(per_sample).flatten(0, 1),
        )
        final = records[-1]["heatmaps"].clamp(0, 1).view(batch, *per_sample)
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

    def _trajectory_entry(self, index: int, record: dict[str, Any], batch: int) -> dict[str, Any]:
        def unfold(tensor: torch.Tensor) -> torch.Tensor:  # [B*G, ...] -> [B, G, ...]
            return tensor.reshape(batch, -1, *tensor.shape[1:])

        keypoints, scores = self.codec.decode(record["heatmaps"])
        return {
            "step": index,
            "label": f"t {record['t']}->{record['t_prev']}",
            "t": record["t"],
            "t_prev": record["t_prev"],
            "x_t": unfold(self.process.from_signal(record["x_t"])),
            "heatmaps": unfold(record["heatmaps"]),
            "masks": tuple(unfold(mask) for mask in record["masks"]),
            "keypoints": unfold(keypoints),
            "scores": unfold(scores),
        }
