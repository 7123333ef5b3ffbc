"""The CAL head: heatmaps plus offsets, with confidence-aware learning of the offsets.

Wang et al., "Low-resolution human pose estimation" (Pattern Recognition 2022, arXiv
2109.09090). At a low input resolution the heatmap grid is coarse and its integer
argmax is quantised; two branches on the same features (the finest pyramid level,
the heatmap grid) predict K heatmaps and 2K offsets, and a keypoint is the argmax p
moved by the offset predicted there, p + 1.5 offset(p) (``HeatmapOffsetCodec``).

Training and inference disagree about the offsets: the loss treats every pixel near
the joint alike, the decoding reads one, the argmax. Confidence-aware learning (CAL)
weights the offset loss by how likely each pixel is to be the argmax: every batch it
fits a Gaussian to the argmax errors (predicted integer peak - true position, heatmap
pixels) of the batch's visible joints, evaluates it on a window of pixels around each
joint's integer peak, rescales it to [0, 1] and multiplies the offset L1 by it. The
loss is CAL's sum over joints of 0.5 MSE(heatmap) + w L1(offset (.) m), divided by K,
here as two named terms (the 0.5 and w are the config's loss weights).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy.typing as npt
import torch
import torch.distributed as dist
from torch import nn

from vidpose.codecs.offset import HeatmapOffsetCodec
from vidpose.losses import weighted_heatmap_mse
from vidpose.models.heads.contract import HeadPrediction, Targets
from vidpose.models.heads.heatmap import HeatmapConv
from vidpose.models.layers import group_norm

# --------------------------------------------------------------------------- the fit


@dataclass
class GaussianMixture2d:
    """A mixture of C two-dimensional Gaussians (C = 1: one Gaussian).

    Attributes:
        weights: [C] mixing weights, summing to 1.
        means: [C, 2].
        covariances: [C, 2, 2] symmetric positive definite.
    """

    weights: torch.Tensor
    means: torch.Tensor
    covariances: torch.Tensor

    def component_log_densities(self, points: torch.Tensor) -> torch.Tensor:
        """[..., 2] points -> [..., C] log(weight_c N(point; mean_c, covariance_c))."""
        difference = points[..., None, :] - self.means  # [..., C, 2]
        var_x = self.covariances[:, 0, 0]
        var_y = self.covariances[:, 1, 1]
        cov_xy = self.covariances[:, 0, 1]
        determinant = var_x * var_y - cov_xy**2
        dx, dy = difference[..., 0], difference[..., 1]
        # the 2 x 2 inverse in closed form: [[var_y, -cov_xy], [-cov_xy, var_x]] / det
        mahalanobis = (var_y * dx**2 - 2 * cov_xy * dx * dy + var_x * dy**2) / determinant
        return (
            self.weights.log() - math.log(2 * math.pi) - 0.5 * determinant.log() - 0.5 * mahalanobis
        )

    def log_density(self, points: torch.Tensor) -> torch.Tensor:
        """[..., 2] points -> [...] log of the mixture density."""
        return self.component_log_densities(points).logsumexp(dim=-1)

    def to(self, reference: torch.Tensor) -> GaussianMixture2d:
        """The same mixture with the dtype and device of ``reference``."""
        return GaussianMixture2d(
            weights=self.weights.to(reference),
            means=self.means.to(reference),
            covariances=self.covariances.to(reference),
        )


def _sum_over_processes(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """The tensors summed over the processes of the default group (unchanged without
    one): the fit's sufficient statistics, so every process fits the global batch."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return list(tensors)
    flat = torch.cat([tensor.reshape(-1) for tensor in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    return [part.view_as(tensor) for part, tensor in zip(
        flat.split([tensor.numel() for tensor in tensors]), tensors, strict=True
    )]  # fmt: skip


def _gaussians_from_moments(
    counts: torch.Tensor, sums: torch.Tensor, outers: torch.Tensor, covariance_floor: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Maximum-likelihood means [C, 2] and covariances [C, 2, 2] from the (weighted)
    count [C], sum [C, 2] and sum of outer products [C, 2, 2] of the points, plus
    ``covariance_floor`` times the identity (a component with no points gets mean 0)."""
    safe = counts.clamp_min(1e-12)
    means = sums / safe[:, None]
    covariances = outers / safe[:, None, None] - means[:, :, None] * means[:, None, :]
    covariances = 0.5 * (covariances + covariances.transpose(-1, -2))
    identity = torch.eye(2, dtype=sums.dtype, device=sums.device)
    return means, covariances + covariance_floor * identity


def fit_gaussian(errors: torch.Tensor, *, covariance_floor: float = 0.01) -> GaussianMixture2d:
    """One Gaussian fitted to 2-D points: their mean and (biased, maximum-likelihood)
    covariance, exactly, from their count, sum and sum of outer products; summed over
    the processes of a distributed run first, so every process fits the global batch.

    Args:
        errors: [N, 2] (N may be 0: mean 0, covariance the floor).
        covariance_floor: added to the covariance's diagonal (squared heatmap pixels):
            keeps it invertible when the points coincide (ours; the paper is silent).

    Returns:
        a one-component :class:`GaussianMixture2d` (float64).
    """
    points = errors.detach().double().reshape(-1, 2)
    count, total, outer = _sum_over_processes(
        points.new_tensor([points.shape[0]]), points.sum(0)[None], (points.T @ points)[None]
    )
    means, covariances = _gaussians_from_moments(count, total, outer, covariance_floor)
    return GaussianMixture2d(weights=points.new_ones(1), means=means, covariances=covariances)


def fit_gaussian_mixture(
    errors: torch.Tensor,
    *,
    components: int,
    iterations: int = 10,
    covariance_floor: float = 0.01,
) -> GaussianMixture2d:
    """A mixture of ``components`` Gaussians fitted by EM (Dempster et al., 1977), the
    paper's GMM; one component is :func:`fit_gaussian` (exact, no iterations).

    Deterministic, so that every process of a distributed run fits the same mixture:
    EM starts from the one-Gaussian fit, the means spread evenly along its principal
    axis over +- one standard deviation, every covariance the single one, equal
    weights; each M-step sums its statistics over the processes. A fixed number of
    iterations (no convergence test); an emptied component falls back to the single
    fit with weight ~0. These choices are ours (the paper names EM only).

    Args:
        errors: [N, 2].
        components: C >= 1.
        iterations: EM iterations.
        covariance_floor: as :func:`fit_gaussian`, for every component.
    """
    single = fit_gaussian(errors, covariance_floor=covariance_floor)
    if components == 1:
        return single
    points = errors.detach().double().reshape(-1, 2)
    eigenvalues, eigenvectors = torch.linalg.eigh(single.covariances[0])
    axis = eigenvectors[:, -1] * eigenvalues[-1].clamp_min(0).sqrt()  # largest, 1 std
    spread = torch.linspace(-1.0, 1.0, components, dtype=points.dtype, device=points.device)
    mixture = GaussianMixture2d(
        weights=points.new_full((components,), 1.0 / components),
        means=single.means + spread[:, None] * axis,
        covariances=single.covariances.expand(components, 2, 2).clone(),
    )
    for _ in range(iterations):
        # E-step: responsibilities [N, C]; M-step from their weighted moments
        responsibilities = mixture.component_log_densities(points).softmax(dim=-1)
        counts, sums, outers = _sum_over_processes(
            responsibilities.sum(0),
            responsibilities.T @ points,
            torch.einsum("nc,ni,nj->cij", responsibilities, points, points),
        )
        means, covariances = _gaussians_from_moments(counts, sums, outers, covariance_floor)
        empty = counts < 1e-6
        mixture = GaussianMixture2d(
            weights=(counts / counts.sum().clamp_min(1e-12)).clamp_min(1e-12),
            means=torch.where(empty[:, None], single.means, means),
            covariances=torch.where(empty[:, None, None], single.covariances, covariances),
        )
    return mixture


def confidence_weights(
    mixture: GaussianMixture2d,
    truth: torch.Tensor,
    heatmap_size: tuple[int, int],
    *,
    window: int = 7,
) -> torch.Tensor:
    """CAL's weight map m: the fitted error density at every pixel of a window around
    each joint's integer peak, rescaled to [0, 1], 0 outside the window.

    The error is prediction - truth, so pixel q is the argmax with density
    f(q - t): the map is f(q - t) for the pixels q of the ``window`` x ``window``
    square centred on round(t), divided by its maximum over the window's pixels
    inside the map (the likeliest pixel weighs 1). Evaluating at the exact q - t
    rather than at the window's integer offsets, and rescaling by the maximum, are
    ours (the paper: a 7 x 7 grid of offsets, rescaled to [0, 1]).

    Args:
        mixture: the fitted error distribution, heatmap pixels.
        truth: [B, K, 2] true positions t in heatmap pixels (finite).
        heatmap_size: (h, w).
        window: odd side of the window.

    Returns:
        [B, K, h, w] float32 in [0, 1].
    """
    map_h, map_w = heatmap_size
    truth = truth.detach().double()
    xs = torch.arange(map_w, dtype=truth.dtype, device=truth.device)
    ys = torch.arange(map_h, dtype=truth.dtype, device=truth.device)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # [h, w, 2] (x, y)
    difference = grid - truth[:, :, None, None, :]  # [B, K, h, w, 2]: q - t
    peak = truth.round()[:, :, None, None, :]
    in_window = ((grid - peak).abs() <= window // 2).all(dim=-1)  # [B, K, h, w]
    log_density = mixture.to(truth).log_density(difference)
    log_density = log_density.masked_fill(~in_window, -math.inf)
    largest = log_density.flatten(2).amax(dim=-1)[:, :, None, None]
    # a window wholly outside the map (a joint far outside the crop) has no pixel: 0
    weights = torch.where(in_window, (log_density - largest).exp(), 0.0)
    return torch.nan_to_num(weights, nan=0.0).float()


# --------------------------------------------------------------------------- the head


class OffsetConv(nn.Module):
    """Features [B, D, H, W] -> offsets [B, 2K, H, W]: conv3x3 + GroupNorm + ReLU +
    conv1x1, the heatmap branch's layers (:class:`HeatmapConv`) with 2K outputs.

    The output layer starts at zero, so the first decodings are the integer argmax.

    Args:
        channels: D.
        num_joints: K.
    """

    def __init__(self, *, channels: int, num_joints: int) -> None:
        super().__init__()
        self.num_joints = num_joints
        self.layers = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False),
            group_norm(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, 2 * num_joints, kernel_size=1),
        )
        nn.init.zeros_(self.layers[-1].weight)
        nn.init.zeros_(self.layers[-1].bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


def weighted_offset_l1(
    predicted: torch.Tensor, target: torch.Tensor, pixel_weights: torch.Tensor
) -> torch.Tensor:
    """CAL's L1(offset (.) m): the absolute offset error weighted per pixel and joint.

    The mean is over B * 2K * h * w (as :func:`~vidpose.losses.weighted_heatmap_mse`'s
    over B * K * h * w), so a sample's contribution does not depend on the rest of the
    batch.

    Args:
        predicted: [B, 2K, h, w] joint-major x, y.
        target: [B, 2K, h, w].
        pixel_weights: [B, K, h, w] (the within-radius mask, times m with CAL).

    Returns:
        scalar float32.
    """
    batch, channels, map_h, map_w = predicted.shape
    error = (
        (predicted.float() - target.float()).abs().reshape(batch, channels // 2, 2, map_h, map_w)
    )
    return (error * pixel_weights.float()[:, :, None]).mean()


class CalHead(nn.Module):
    """Heatmaps and offsets from the finest pyramid level, with CAL's offset weights.

    Args:
        heatmap_predictor: the :class:`HeatmapConv` of the K heatmaps.
        offset_predictor: the :class:`OffsetConv` of the 2K offsets.
        codec: encodes the targets (heatmaps, offsets, offset mask) and decodes argmax +
            offset into input-crop pixels.
        confidence: weight the offset loss by CAL's confidence map (False: every pixel
            within the codec's radius weighs 1, the plain heatmap + offset baseline).
        components: Gaussians fitted to the argmax errors (1: exact; more: EM).
        window: odd side of the window the weight map is pasted in (CAL: 7).
        em_iterations: EM iterations of a mixture (components > 1).
        covariance_floor: added to the fitted covariances' diagonal, heatmap pixels².
    """

    loss_names = ("heatmap", "offset")

    def __init__(
        self,
        *,
        heatmap_predictor: HeatmapConv,
        offset_predictor: OffsetConv,
        codec: HeatmapOffsetCodec,
        confidence: bool = True,
        components: int = 1,
        window: int = 7,
        em_iterations: int = 10,
        covariance_floor: float = 0.01,
    ) -> None:
        super().__init__()
        if components < 1 or window < 1 or window % 2 == 0:
            raise ValueError(
                f"CalHead: components must be >= 1 and window odd, got {components}, {window}"
            )
        self.heatmap_predictor = heatmap_predictor
        self.offset_predictor = offset_predictor
        self.codec = codec
        self.confidence = confidence
        self.components = components
        self.window = window
        self.em_iterations = em_iterations
        self.covariance_floor = covariance_floor

    @property
    def input_size(self) -> tuple[int, int]:
        return self.codec.input_size

    def forward(
        self,
        features: Sequence[torch.Tensor],
        targets: Targets | None = None,
        sample_seeds: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Predict heatmaps and offsets (targets and seeds are accepted for a uniform
        call and unused).

        Args:
            features: pyramid levels coarse to fine; the last is [B, D, H, W].

        Returns:
            {"heatmaps": [B, K, H, W], "offsets": [B, 2K, H, W] joint-major x, y}.
        """
        finest = features[-1]
        return {
            "heatmaps": self.heatmap_predictor(finest),
            "offsets": self.offset_predictor(finest),
        }

    # ------------------------------------------------------------------ training

    def fit_errors(self, heatmaps: torch.Tensor, targets: Targets) -> GaussianMixture2d:
        """The Gaussian (mixture) of the batch's argmax errors: integer argmax of the
        predicted heatmaps minus the true position, heatmap pixels, over the joints with
        weight > 0 (of every process, in a distributed run).

        Args:
            heatmaps: [B, K, H, W] predicted.
            targets: "keypoints" [B, K, 2] input-crop pixels, "target_weight" [B, K].
        """
        map_w = heatmaps.shape[-1]
        flat_index = heatmaps.detach().flatten(2).argmax(dim=-1)  # [B, K]
        peak = torch.stack(
            [flat_index % map_w, torch.div(flat_index, map_w, rounding_mode="floor")], dim=-1
        )
        truth = self.codec.input_to_heatmap(targets["keypoints"].detach().double())
        visible = targets["target_weight"] > 0
        errors = peak.double()[visible] - truth[visible]  # [N, 2]
        return fit_gaussian_mixture(
            errors,
            components=self.components,
            iterations=self.em_iterations,
            covariance_floor=self.covariance_floor,
        )

    def offset_weights(self, heatmaps: torch.Tensor, targets: Targets) -> torch.Tensor:
        """[B, K, H, W] the per-pixel weights of the offset loss: the codec's
        within-radius mask times the joint weight, times CAL's confidence map
        (:func:`confidence_weights` of :meth:`fit_errors`) when ``confidence`` is on.

        The confidence map is multiplied by the mask (ours): the window's corners can lie
        beyond the radius, where the offset target is 0 by definition, not a position.
        """
        weights = targets["offset_mask"].float() * targets["target_weight"].float()[..., None, None]
        if not self.confidence:
            return weights
        visible = (targets["target_weight"] > 0)[..., None]
        truth = self.codec.input_to_heatmap(targets["keypoints"].detach().double())
        # a weight-0 joint's keypoint may be NaN: its map is multiplied by 0 anyway
        truth = torch.where(visible, truth, torch.zeros_like(truth))
        mixture = self.fit_errors(heatmaps, targets)
        confidence = confidence_weights(
            mixture, truth, tuple(heatmaps.shape[-2:]), window=self.window
        )
        return weights * confidence.to(weights.device)

    def loss_terms(
        self, outputs: Mapping[str, torch.Tensor], targets: Targets
    ) -> dict[str, torch.Tensor]:
        """{"heatmap": visibility-weighted heatmap MSE, "offset": the offset L1 weighted by
        :meth:`offset_weights`}, each a mean over every number (B K H W and B 2K H W):
        CAL's sum over joints divided by K, also divided by B and the pixels, so that
        with the fit's statistics summed over processes the mean of the per-process
        losses is the global batch's loss.

        Targets: "heatmaps", "offsets", "offset_mask" (the codec's), "keypoints",
        "target_weight".
        """
        heatmap = weighted_heatmap_mse(
            outputs["heatmaps"], targets["heatmaps"], targets["target_weight"]
        )
        weights = self.offset_weights(outputs["heatmaps"], targets)
        offset = weighted_offset_l1(outputs["offsets"], targets["offsets"], weights)
        return {"heatmap": heatmap, "offset": offset}

    # ------------------------------------------------------------------ inference

    def predict(
        self,
        features: Sequence[torch.Tensor],
        *,
        return_trajectory: bool = False,
        **sampling: Any,
    ) -> HeadPrediction:
        """Inference in one pass. The diffusion sampler's keywords (steps, hypotheses,
        eta, init, generator, sample_seeds) are accepted and ignored.

        Returns:
            keypoints [B, K, 2] (input-crop pixels) and scores [B, K] decoded by the
            codec (argmax + 1.5 offset), the heatmaps; no uncertainty; an empty
            trajectory when asked (one pass); extras "offsets" [B, 2K, H, W].
        """
        outputs = self.forward(features)
        heatmaps, offsets = outputs["heatmaps"], outputs["offsets"]
        keypoints, scores = self.codec.decode(heatmaps.float(), offsets.float())
        return HeadPrediction(
            keypoints=keypoints,
            scores=scores,
            heatmaps=heatmaps,
            trajectory=[] if return_trajectory else None,
            extras={"offsets": offsets},
        )

    def merge_flipped(
        self, prediction: HeadPrediction, mirrored: HeadPrediction, flip_permutation: npt.ArrayLike
    ) -> HeadPrediction:
        """The flip test (CAL): the mirrored pass's heatmaps and offsets brought back
        (``HeatmapOffsetCodec.flip_heatmaps`` / ``flip_offsets``: mirrored, left/right
        swapped, the offsets' x negated), averaged with the unmirrored pass's and
        decoded again; the trajectory is the unmirrored pass's."""
        if prediction.heatmaps is None or mirrored.heatmaps is None:
            raise ValueError("CalHead.merge_flipped: both predictions need heatmaps")
        heatmaps = 0.5 * (
            prediction.heatmaps.float()
            + self.codec.flip_heatmaps(mirrored.heatmaps.float(), flip_permutation)
        )
        offsets = 0.5 * (
            prediction.extras["offsets"].float()
            + self.codec.flip_offsets(mirrored.extras["offsets"].float(), flip_permutation)
        )
        keypoints, scores = self.codec.decode(heatmaps, offsets)
        return replace(
            prediction,
            keypoints=keypoints,
            scores=scores,
            heatmaps=heatmaps,
            extras={**prediction.extras, "offsets": offsets},
        )
