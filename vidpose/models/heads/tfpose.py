"""The TFPose head: K joint queries regress keypoints through a deformable transformer.

TFPose (Mao et al., "TFPose: Direct Human Pose Estimation with Transformers", arXiv
2103.15320) and its successor Poseur (Mao et al., "Poseur: Direct Human Pose
Regression with Transformers", ECCV 2022) read the feature pyramid with Deformable DETR
(Zhu et al., ICLR 2021):

- the pyramid levels, flattened to one memory of tokens with a sine position and a
  learned level embedding, optionally pass through deformable encoder layers
  (Poseur drops them);
- K learned joint queries start at reference points (learned, or Poseur's coarse
  global regression) and each decoder layer (self-attention among the joints,
  deformable cross-attention into the memory, FFN) refines its joint's point in
  inverse-sigmoid space (Deformable DETR's iterative refinement); every layer's point
  is supervised with L1, and a per-coordinate Laplace scale gives each joint a score
  and an uncertainty (Poseur's sigma);
- an optional auxiliary heatmap branch on the memory's coarsest level (TFPose).

Coordinates: the head works in normalised crop coordinates (u, v) in [0, 1]^2
(``vidpose.models.deformable``); input-crop pixels are x = u * W_in - 0.5,
y = v * H_in - 0.5 and back u = (x + 0.5) / W_in.

Over 600 lines on purpose: one head, whole (issue #24: a head's own layers, losses
and prediction together): its decoder layer, coarse regression, auxiliary heatmaps
and the head change together; the shared blocks it is built from are
``vidpose.models.deformable``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy.typing as npt
import torch
from torch import nn

from vidpose.losses import weighted_heatmap_mse
from vidpose.models.deformable import (
    DeformableEncoderLayer,
    FeedForward,
    MultiScaleDeformableAttention,
    flatten_levels,
    grid_reference_points,
    grid_sine_embedding,
    sine_position_embedding,
    splat_attention,
    split_levels,
)
from vidpose.models.heads.contract import HeadPrediction, Targets, merge_flipped_coordinates
from vidpose.models.layers import group_norm, init_output_conv

if TYPE_CHECKING:
    from vidpose.codecs.heatmap import HeatmapCodec

InitReference = Literal["learned", "coarse"]
_INIT_REFERENCES = ("learned", "coarse")

# A Laplace scale this small (1e-6 of the crop) already means certainty; the floor
# keeps log(2b) finite if the sigmoid underflows.
_MIN_SCALE = 1e-6


def refine_points(reference: torch.Tensor, delta: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Deformable DETR's iterative refinement: sigmoid(logit(reference) + delta).

    Refining in logit space keeps the point inside the crop ((0, 1)) whatever the
    delta; a zero delta keeps the reference. The reference is clamped to
    [eps, 1 - eps] first (Deformable DETR's inverse_sigmoid) so the logit stays finite.

    Args:
        reference: [..., 2] normalised points in [0, 1].
        delta: [..., 2] logit-space updates.

    Returns:
        [..., 2] normalised points in (0, 1).
    """
    clamped = reference.clamp(eps, 1 - eps)
    return torch.sigmoid(torch.log(clamped) - torch.log1p(-clamped) + delta)


@dataclass
class DecoderLayerOutput:
    """What a :class:`TFPoseDecoderLayer` returns.

    Attributes:
        queries: [B, K, D] the updated joint queries.
        keypoints: [B, K, 2] the refined normalised points.
        sigmas: [B, K, 2] the Laplace scales b of the points (normalised units).
        locations: [B, K, M, L, P, 2] the cross-attention's sampling points, when asked.
        weights: [B, K, M, L, P] its attention weights, when asked.
    """

    queries: torch.Tensor
    keypoints: torch.Tensor
    sigmas: torch.Tensor
    locations: torch.Tensor | None = None
    weights: torch.Tensor | None = None


class TFPoseDecoderLayer(nn.Module):
    """A Deformable DETR decoder layer (post-norm) with the joint's point refinement.

        q = LN(q + SelfAttn(q + pos, q + pos, q))
        q = LN(q + MSDeformAttn(q + pos, reference, memory))
        q = LN(q + FFN(q))
        point = sigmoid(logit(reference) + MLP(q)),  b = sigmoid(Linear(sg[q]))

    The refinement MLP's last layer starts at zero, so an untrained layer keeps its
    reference (Deformable DETR zero-initialises its box-refinement output). The
    Laplace scale b reads the queries without a gradient (sg: stop-gradient): the
    uncertainty is read off the features and does not shape them, so the regression
    trains exactly as TFPose's L1 alone. With the gradient, its negative log-likelihood
    (whose gradient grows as r / b^2 when b shrinks) kept a micro model from fitting
    even one fixed pose (the setting of tests/models/test_head_contract.py's crop-pixel
    test): after 120 steps the L1 term swung between 0.18 and 0.31, median error
    4.2 px, against 0.017 and 0.45 px without it. Our choice; Poseur's RLE differs.

    Args:
        channels: D.
        levels: L memory levels.
        heads: M heads of both attentions.
        points: P sampling points per head and level.
        ffn_dim: the feed-forward hidden width.
        dropout: dropout probability.
    """

    def __init__(
        self, *, channels: int, levels: int, heads: int, points: int, ffn_dim: int, dropout: float
    ) -> None:
        super().__init__()
        self.self_attention = nn.MultiheadAttention(
            channels, heads, dropout=dropout, batch_first=True
        )
        self.self_dropout = nn.Dropout(dropout)
        self.self_norm = nn.LayerNorm(channels)
        self.cross_attention = MultiScaleDeformableAttention(
            channels=channels, levels=levels, heads=heads, points=points
        )
        self.cross_dropout = nn.Dropout(dropout)
        self.cross_norm = nn.LayerNorm(channels)
        self.feed_forward = FeedForward(channels=channels, hidden=ffn_dim, dropout=dropout)
        # Deformable DETR's 3-layer box MLP, with a 2-d output
        self.refine = nn.Sequential(
            nn.Linear(channels, channels),
            nn.ReLU(inplace=True),
            nn.Linear(channels, channels),
            nn.ReLU(inplace=True),
            nn.Linear(channels, 2),
        )
        nn.init.zeros_(self.refine[-1].weight)
        nn.init.zeros_(self.refine[-1].bias)
        self.scale = nn.Linear(channels, 2)

    def forward(
        self,
        queries: torch.Tensor,
        query_position: torch.Tensor,
        reference: torch.Tensor,
        memory: torch.Tensor,
        spatial_shapes: torch.Tensor,
        *,
        return_sampling: bool = False,
    ) -> DecoderLayerOutput:
        """Update the queries and refine the points.

        Args:
            queries: [B, K, D] joint content queries.
            query_position: [B, K, D] the embedding of ``reference``.
            reference: [B, K, 2] the normalised points this layer starts from.
            memory: [B, N, D] the flattened levels.
            spatial_shapes: [L, 2] int64 (h_l, w_l).
            return_sampling: also return the cross-attention's locations and weights.
        """
        positioned = queries + query_position
        attended, _ = self.self_attention(positioned, positioned, queries, need_weights=False)
        queries = self.self_norm(queries + self.self_dropout(attended))
        cross = self.cross_attention(
            queries + query_position,
            reference,
            memory,
            spatial_shapes,
            return_sampling=return_sampling,
        )
        locations = weights = None
        if return_sampling:
            cross, locations, weights = cross
        queries = self.cross_norm(queries + self.cross_dropout(cross))
        queries = self.feed_forward(queries)
        return DecoderLayerOutput(
            queries=queries,
            keypoints=refine_points(reference, self.refine(queries)),
            sigmas=torch.sigmoid(self.scale(queries.detach())),
            locations=locations,
            weights=weights,
        )


class CoarseRegression(nn.Module):
    """Poseur's coarse stage: a map [B, D, h, w] globally average-pooled, then linear
    maps to K normalised points and their Laplace scales (both through a sigmoid; the
    scales read the pooled features without a gradient, as in the decoder layers).

    Args:
        channels: D.
        num_joints: K.
    """

    def __init__(self, *, channels: int, num_joints: int) -> None:
        super().__init__()
        self.num_joints = num_joints
        self.points = nn.Linear(channels, num_joints * 2)
        self.scales = nn.Linear(channels, num_joints * 2)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, D, h, w] -> (points [B, K, 2], scales [B, K, 2])."""
        pooled = features.mean(dim=(-2, -1))  # [B, D]
        shape = (features.shape[0], self.num_joints, 2)
        return self.points(pooled).sigmoid().view(shape), self.scales(
            pooled.detach()
        ).sigmoid().view(shape)


class AuxiliaryHeatmaps(nn.Module):
    """TFPose's auxiliary heatmap branch: stride-2 transposed convolutions (kernel 4,
    padding 1, + GroupNorm + ReLU) from the coarsest level up to the finest grid, then
    a 1x1 convolution to K maps.

    Args:
        channels: D.
        num_joints: K.
        upsamplings: the number of doublings (2: h x w -> 4h x 4w).
    """

    def __init__(self, *, channels: int, num_joints: int, upsamplings: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(upsamplings):
            layers += [
                nn.ConvTranspose2d(
                    channels, channels, kernel_size=4, stride=2, padding=1, bias=False
                ),
                group_norm(channels),
                nn.ReLU(inplace=True),
            ]
        output = nn.Conv2d(channels, num_joints, kernel_size=1)
        init_output_conv(output)
        self.layers = nn.Sequential(*layers, output)

    def forward(self, coarsest: torch.Tensor) -> torch.Tensor:
        """[B, D, h, w] -> [B, K, h * 2^u, w * 2^u]."""
        return self.layers(coarsest)


@dataclass
class LayerRecord:
    """One supervised layer of a decoding pass.

    Attributes:
        label: "layer 0 (coarse)" or "layer i" (i = 1 .. N).
        keypoints: [B, K, 2] normalised points.
        sigmas: [B, K, 2] Laplace scales.
        reference: [B, K, 2] the normalised points the layer started from (None for
            the coarse layer).
        locations, weights: the layer's cross-attention sampling
            ([B, K, M, L, P, 2], [B, K, M, L, P]), when asked (None for the coarse layer).
    """

    label: str
    keypoints: torch.Tensor
    sigmas: torch.Tensor
    reference: torch.Tensor | None = None
    locations: torch.Tensor | None = None
    weights: torch.Tensor | None = None


class TFPoseHead(nn.Module):
    """Keypoint regression with joint queries and a deformable transformer (TFPose / Poseur).

    Args:
        channels: D, the pyramid's width.
        num_joints: K.
        input_size: (H_in, W_in) of the model input crop.
        encoder_layers: deformable encoder layers over the memory (0: none, as Poseur).
        decoder_layers: N >= 1 decoder layers.
        heads: M attention heads (self- and cross-attention).
        points: P sampling points per head and level.
        ffn_dim: the feed-forward hidden width.
        dropout: dropout probability in the transformer layers.
        init_reference: where the decoder starts: "learned" (TFPose / Deformable DETR:
            one learned point per joint, the same for every clip) or "coarse" (Poseur:
            a global regression from the memory's coarsest level, supervised as
            "layer 0").
        codec: the heatmap codec of the auxiliary heatmap branch (TFPose); None: no
            branch. Its heatmap grid must be the finest pyramid level's.
        levels: L, the number of pyramid levels.
        offset_lr: learning-rate multiplier of the deformable attentions' sampling
            offsets and of the layers that make the first reference points
            (``lr_multipliers``, read by the trainer's optimiser; Deformable DETR and
            Poseur use 0.1).
    """

    def __init__(
        self,
        *,
        channels: int,
        num_joints: int,
        input_size: tuple[int, int],
        encoder_layers: int,
        decoder_layers: int,
        heads: int,
        points: int,
        ffn_dim: int,
        dropout: float,
        init_reference: InitReference,
        codec: HeatmapCodec | None = None,
        levels: int = 3,
        offset_lr: float = 1.0,
    ) -> None:
        super().__init__()
        if init_reference not in _INIT_REFERENCES:
            raise ValueError(
                f"TFPoseHead: init_reference must be one of {_INIT_REFERENCES}, got "
                f"{init_reference!r}"
            )
        if encoder_layers < 0 or decoder_layers < 1:
            raise ValueError(
                f"TFPoseHead: need encoder_layers >= 0 and decoder_layers >= 1, got "
                f"{encoder_layers} and {decoder_layers}"
            )
        if channels % 4:
            raise ValueError(
                f"TFPoseHead: channels must be a multiple of 4 (sine embedding), got {channels}"
            )
        self.input_size = (int(input_size[0]), int(input_size[1]))
        if codec is not None and tuple(codec.input_size) != self.input_size:
            raise ValueError(
                f"TFPoseHead: the codec's input_size {tuple(codec.input_size)} differs from "
                f"the head's {self.input_size}"
            )
        self.channels = channels
        self.num_joints = num_joints
        self.levels = levels
        self.init_reference = init_reference
        self.codec = codec
        # name fragment -> learning-rate multiplier (vidpose.engine.optim.parameter_groups)
        self.lr_multipliers = {
            "sampling_offsets": offset_lr,
            "reference_logits": offset_lr,
            "coarse.points": offset_lr,
        }
        self.loss_names: tuple[str, ...] = ("keypoint", "sigma")
        if codec is not None:
            self.loss_names += ("aux_heatmap",)

        layer_options = {
            "channels": channels,
            "levels": levels,
            "heads": heads,
            "points": points,
            "ffn_dim": ffn_dim,
            "dropout": dropout,
        }
        # Only the encoder reads positions of memory tokens (the decoder samples the
        # memory's values), so without encoder layers there is no level embedding: an
        # unused parameter would break DistributedDataParallel.
        self.level_embedding: nn.Parameter | None = None
        if encoder_layers:
            self.level_embedding = nn.Parameter(torch.empty(levels, channels))
            nn.init.normal_(self.level_embedding)  # as Deformable DETR
        self.encoder = nn.ModuleList(
            DeformableEncoderLayer(**layer_options) for _ in range(encoder_layers)
        )
        self.joint_embedding = nn.Embedding(num_joints, channels)  # content queries
        # Poseur's query position: the sine embedding of the point, Linear + LayerNorm;
        # one module shared by all layers (the point changes, the map does not)
        self.query_position = nn.Sequential(nn.Linear(channels, channels), nn.LayerNorm(channels))
        self.coarse: CoarseRegression | None = None
        self.reference_logits: nn.Parameter | None = None
        if init_reference == "coarse":
            self.coarse = CoarseRegression(channels=channels, num_joints=num_joints)
        else:
            # The joints' starting points in logit space. Start them spread over the
            # middle of the crop (sigmoid(U(-1, 1)) lies in [0.27, 0.73]), where a
            # centred person's joints are, at distinct places like Deformable DETR's
            # randomly initialised reference projection.
            self.reference_logits = nn.Parameter(torch.empty(num_joints, 2).uniform_(-1.0, 1.0))
        self.decoder = nn.ModuleList(
            TFPoseDecoderLayer(**layer_options) for _ in range(decoder_layers)
        )
        self.aux_heatmap: AuxiliaryHeatmaps | None = None
        if codec is not None:
            self.aux_heatmap = AuxiliaryHeatmaps(
                channels=channels, num_joints=num_joints, upsamplings=levels - 1
            )

    # ------------------------------------------------------------------ coordinates

    def to_pixels(self, points: torch.Tensor) -> torch.Tensor:
        """Normalised points [..., 2] -> input-crop pixels: x = u * W_in - 0.5."""
        height, width = self.input_size
        size = points.new_tensor([width, height])
        return points * size - 0.5

    def to_normalised(self, keypoints: torch.Tensor) -> torch.Tensor:
        """Input-crop pixels [..., 2] -> normalised points: u = (x + 0.5) / W_in."""
        height, width = self.input_size
        size = keypoints.new_tensor([width, height])
        return (keypoints + 0.5) / size

    # ------------------------------------------------------------------ stages

    def encode(self, features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The memory: the levels flattened, through the encoder layers.

        Args:
            features: L maps coarse to fine, [B, D, h_l, w_l].

        Returns:
            memory [B, N, D] and spatial_shapes [L, 2] int64.
        """
        if len(features) != self.levels or any(
            level.shape[1] != self.channels for level in features
        ):
            raise ValueError(
                f"TFPoseHead: expected {self.levels} levels of {self.channels} channels, got "
                f"{[tuple(level.shape) for level in features]}"
            )
        memory, spatial_shapes, _ = flatten_levels(features)
        if not self.encoder:
            return memory, spatial_shapes
        shapes = [tuple(level.shape[-2:]) for level in features]
        device = memory.device
        # Deformable DETR: the level embedding is added to the position, not the content
        position_maps = [
            grid_sine_embedding(height, width, channels=self.channels, device=device)
            + self.level_embedding[index, :, None, None]
            for index, (height, width) in enumerate(shapes)
        ]  # L x [D, h_l, w_l]
        position, _, _ = flatten_levels([level[None] for level in position_maps])  # [1, N, D]
        reference = grid_reference_points(shapes, device=device).expand(memory.shape[0], -1, -1)
        for layer in self.encoder:
            memory = layer(memory, position, reference, spatial_shapes)
        return memory, spatial_shapes

    def decode(
        self,
        memory: torch.Tensor,
        spatial_shapes: torch.Tensor,
        *,
        return_sampling: bool = False,
    ) -> list[LayerRecord]:
        """Run the joint queries through the decoder.

        The point a layer hands to the next is detached (Deformable DETR): each layer
        learns to refine the point it is given, and the L1 loss of a later layer does
        not reach an earlier layer's refinement. The learned initial points are not
        detached (layer 1's loss is what trains them); the coarse ones are, like every
        supervised point.

        Args:
            memory: [B, N, D] (:meth:`encode`).
            spatial_shapes: [L, 2] int64.
            return_sampling: keep each layer's cross-attention locations and weights.

        Returns:
            one :class:`LayerRecord` per supervised layer (the coarse layer 0 first
            when init_reference is "coarse").
        """
        batch = memory.shape[0]
        records: list[LayerRecord] = []
        if self.coarse is not None:
            coarsest = split_levels(memory, spatial_shapes)[0]  # [B, D, h, w]
            points, sigmas = self.coarse(coarsest)
            records.append(LayerRecord(label="layer 0 (coarse)", keypoints=points, sigmas=sigmas))
            reference = points.detach()
        else:
            reference = self.reference_logits.sigmoid().expand(batch, -1, -1)  # [B, K, 2]
        queries = self.joint_embedding.weight.expand(batch, -1, -1)  # [B, K, D]
        for number, layer in enumerate(self.decoder, start=1):
            query_position = self.query_position(
                sine_position_embedding(reference, channels=self.channels)
            )  # [B, K, D]
            output = layer(
                queries,
                query_position,
                reference,
                memory,
                spatial_shapes,
                return_sampling=return_sampling,
            )
            records.append(
                LayerRecord(
                    label=f"layer {number}",
                    keypoints=output.keypoints,
                    sigmas=output.sigmas,
                    reference=reference,
                    locations=output.locations,
                    weights=output.weights,
                )
            )
            queries = output.queries
            reference = output.keypoints.detach()
        return records

    # ------------------------------------------------------------------ training

    def forward(
        self,
        features: Sequence[torch.Tensor],
        targets: Targets | None = None,
        sample_seeds: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The training / validation pass (targets and seeds are accepted for a uniform
        call and unused).

        Args:
            features: L pyramid levels coarse to fine, [B, D, h_l, w_l].

        Returns:
            "layer_keypoints": [L_s, B, K, 2] every supervised layer's normalised points
                (the coarse layer 0 first, if any);
            "layer_sigmas": [L_s, B, K, 2] their Laplace scales (normalised units);
            "aux_heatmaps": [B, K, 4h, 4w] the auxiliary heatmaps, when the head has a
                codec.
        """
        memory, spatial_shapes = self.encode(features)
        records = self.decode(memory, spatial_shapes)
        outputs = {
            "layer_keypoints": torch.stack([record.keypoints for record in records]),
            "layer_sigmas": torch.stack([record.sigmas for record in records]),
        }
        if self.aux_heatmap is not None:
            coarsest = split_levels(memory, spatial_shapes)[0]  # [B, D, h, w]
            heatmaps = self.aux_heatmap(coarsest)
            if tuple(heatmaps.shape[-2:]) != self.codec.heatmap_size:
                raise ValueError(
                    f"TFPoseHead: the auxiliary heatmaps are {tuple(heatmaps.shape[-2:])} but "
                    f"the codec encodes {self.codec.heatmap_size}"
                )
            outputs["aux_heatmaps"] = heatmaps
        return outputs

    def loss_terms(
        self, outputs: Mapping[str, torch.Tensor], targets: Targets
    ) -> dict[str, torch.Tensor]:
        """The unweighted loss terms.

        Each layer's term is a mean over B * K * 2 with unannotated joints (weight 0)
        contributing 0 (as ``weighted_heatmap_mse``: per-process means average to the
        global one); the layers' terms are summed.

        - "keypoint": L1 between every layer's points and the normalised targets;
        - "sigma": the Laplace negative log-likelihood of the residual under the
          predicted scale b, log(2b) + |y - mu| / b, with the residual detached so the
          term trains only b (whose optimum is then b = E|y - mu|, Poseur's sigma);
        - "aux_heatmap" (with a codec): ``weighted_heatmap_mse`` of the aux heatmaps.

        Args:
            outputs: :meth:`forward`'s dict.
            targets: "keypoints" [B, K, 2] input-crop pixels, "target_weight" [B, K],
                and "heatmaps" [B, K, 4h, 4w] with a codec.

        Returns:
            {name: scalar float32} for every name in ``loss_names``.
        """
        target = self.to_normalised(targets["keypoints"].float())  # [B, K, 2]
        weight = targets["target_weight"].float()[..., None]  # [B, K, 1]
        points = outputs["layer_keypoints"].float()  # [L_s, B, K, 2]
        scales = outputs["layer_sigmas"].float().clamp_min(_MIN_SCALE)
        residual = (points - target).abs()
        nll = torch.log(2 * scales) + residual.detach() / scales

        def weighted_layer_sum(term: torch.Tensor) -> torch.Tensor:
            # where(): a non-finite target of a weight-0 joint must not leak in as 0 * inf
            term = torch.where(weight > 0, term * weight, torch.zeros_like(term))
            return term.mean(dim=(1, 2, 3)).sum()

        terms = {"keypoint": weighted_layer_sum(residual), "sigma": weighted_layer_sum(nll)}
        if self.codec is not None:
            terms["aux_heatmap"] = weighted_heatmap_mse(
                outputs["aux_heatmaps"], targets["heatmaps"], targets["target_weight"]
            )
        return terms

    # ------------------------------------------------------------------ inference

    def predict(
        self,
        features: Sequence[torch.Tensor],
        *,
        return_trajectory: bool = False,
        **ignored: Any,
    ) -> HeadPrediction:
        """Inference in one pass (the auxiliary heatmap branch does not run). The
        diffusion sampler's keywords (steps, hypotheses, eta, init, generator,
        sample_seeds) are accepted and ignored, so sweeps can run over every head.

        Args:
            features: L pyramid levels coarse to fine, [B, D, h_l, w_l].
            return_trajectory: also return every supervised layer.

        Returns:
            a :class:`HeadPrediction`: keypoints [B, K, 2] (input-crop pixels) of the
            last layer; scores [B, K] = 1 - mean(b_x, b_y) (Poseur's 1 - sigma);
            uncertainty [B, K] = sqrt(2 b_x^2 W_in^2 + 2 b_y^2 H_in^2), the RMS distance
            of a Laplace error with those scales (variance 2 b^2 per axis), in input-crop
            pixels; extras "sigmas" [B, K, 2] the normalised scales; "trajectory" (when
            asked), one dict per supervised layer in order:
                "step" int (0, 1, ...), "label" "layer 0 (coarse)" / "layer i",
                "keypoints" [B, 1, K, 2] input-crop pixels, "scores" [B, 1, K],
                and for decoder layers "reference" [B, 1, K, 2] (input-crop pixels,
                the point the layer started from) and "masks": L maps
                [B, 1, K, h_l, w_l], the cross-attention weights (head mean) splatted
                at their sampling points, each joint's map summing to 1 per level.
        """
        memory, spatial_shapes = self.encode(features)
        records = self.decode(memory, spatial_shapes, return_sampling=return_trajectory)
        last = records[-1]
        scales = last.sigmas.float()
        height, width = self.input_size
        uncertainty = torch.sqrt(
            2 * (scales[..., 0] * width) ** 2 + 2 * (scales[..., 1] * height) ** 2
        )
        trajectory = None
        if return_trajectory:
            trajectory = [
                self._trajectory_entry(step, record, spatial_shapes)
                for step, record in enumerate(records)
            ]
        return HeadPrediction(
            keypoints=self.to_pixels(last.keypoints.float()),
            scores=1 - scales.mean(dim=-1),
            uncertainty=uncertainty,
            trajectory=trajectory,
            extras={"sigmas": scales},
        )

    def _trajectory_entry(
        self, step: int, record: LayerRecord, spatial_shapes: torch.Tensor
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "step": step,
            "label": record.label,
            "keypoints": self.to_pixels(record.keypoints.float()).unsqueeze(1),
            "scores": (1 - record.sigmas.float().mean(dim=-1)).unsqueeze(1),
        }
        if record.reference is not None:
            entry["reference"] = self.to_pixels(record.reference.float()).unsqueeze(1)
        if record.locations is not None and record.weights is not None:
            masks = splat_attention(record.locations, record.weights, spatial_shapes)
            entry["masks"] = tuple(mask.unsqueeze(1) for mask in masks)
        return entry

    def merge_flipped(
        self, prediction: HeadPrediction, mirrored: HeadPrediction, flip_permutation: npt.ArrayLike
    ) -> HeadPrediction:
        """The flip test: keypoints and scores averaged (``merge_flipped_coordinates``)."""
        return merge_flipped_coordinates(
            prediction, mirrored, flip_permutation, input_width=self.input_size[1]
        )
