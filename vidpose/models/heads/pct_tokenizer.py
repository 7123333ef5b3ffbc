"""PCT's stage I: the pose tokenizer, a VQ-VAE over the K joints of one pose.

Geng et al., "Human Pose as Compositional Tokens" (CVPR 2023), section 3.1. A pose of
K joints (input-crop pixels) and their visibility is encoded into M tokens, each
quantised to its nearest entry of a V-entry codebook, and decoded back to the K
joints. Every token depends on every joint (the encoder mixes the joints, then maps
the joint axis K to the token axis M), so a pose is a composition of M sub-structures;
a stage II head (``vidpose.models.heads.pct``) classifies each token over the
codebook and decodes the pose through this tokenizer's frozen decoder.

    keypoints [B, K, 2] crop pixels --normalise--> [-1, 1]^2
      │ Linear(2 -> E) per joint; masked joints -> a learned "invisible" embedding
      │ MixerLayer x L_e over (K joints, E channels); LayerNorm
      │ Linear over the joint axis K -> M; Linear(E -> D)
      ▼
    encoded [B, M, D] --nearest codebook entry (L2)--> quantised [B, M, D], ids [B, M]
      │ Linear over the token axis M -> K; Linear(D -> E_d)
      │ MixerLayer x L_d over (K, E_d); LayerNorm; Linear(E_d -> 2)
      ▼
    keypoints [B, K, 2] normalised -> crop pixels

The codebook has no gradient: it follows the encoder outputs assigned to each entry by
an exponential moving average (van den Oord et al., NeurIPS 2017, appendix A.1; Razavi
et al., NeurIPS 2019), and the decoder's gradient reaches the encoder through the
straight-through estimator. Training losses: smooth-L1 of the visible joints (in crop
pixels) and the commitment MSE(e, sg[q]) (PCT weighs it 15).

Coordinates: the encoder reads, and the decoder writes, crop-normalised coordinates
p = 2 (x + 0.5) / W_in - 1 (x = -0.5 and W_in - 0.5, the crop's edges, map to -1 and 1;
likewise y with H_in). PCT feeds pixels; the map is a fixed affine one a Linear layer
could absorb, so it only conditions the optimisation and makes the tokenizer's weights
independent of the crop size (ours).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from vidpose.models.diffusion.sampler import NoiseSource
from vidpose.models.heads.contract import HeadPrediction, Targets

# Smooth-L1 transition of the joint losses, in crop pixels (PCT's beta 0.05: an L1 that
# stays differentiable at zero).
SMOOTH_L1_BETA = 0.05
# Laplace smoothing of the codebook's EMA counts (PCT, Sonnet's VectorQuantizerEMA).
_LAPLACE_EPSILON = 1e-5


def smooth_l1_pixels(
    predicted: torch.Tensor, target: torch.Tensor, target_weights: torch.Tensor
) -> torch.Tensor:
    """Visibility-weighted smooth-L1 (beta ``SMOOTH_L1_BETA`` px) of keypoints.

    As ``vidpose.losses.weighted_l1``, the mean is over every number (B * K * 2), so
    the mean of per-process losses equals the global loss.

    Args:
        predicted: [B, K, 2] input-crop pixels.
        target: [B, K, 2] input-crop pixels (any value where the weight is 0).
        target_weights: [B, K] in [0, 1].

    Returns:
        scalar float32.
    """
    weights = target_weights.reshape(*target_weights.shape[:2], 1).float()
    # the target of a weight-0 joint may be non-finite: keep it out of the graph
    target = torch.where(weights > 0, target.float(), predicted.detach().float())
    loss = F.smooth_l1_loss(predicted.float(), target, beta=SMOOTH_L1_BETA, reduction="none")
    return (loss * weights).mean()


def _sum_over_processes(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """The tensors summed over the processes of the default group (unchanged without
    one): the codebook's EMA statistics, so every process updates with the global batch."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return list(tensors)
    flat = torch.cat([tensor.reshape(-1) for tensor in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    return [
        part.view_as(tensor)
        for part, tensor in zip(flat.split([t.numel() for t in tensors]), tensors, strict=True)
    ]


def _gather_over_processes(rows: torch.Tensor) -> torch.Tensor:
    """[N, D] rows of every process of the default group, concatenated in rank order
    (unchanged without one); every process holds the same number of rows."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return rows
    gathered = [torch.empty_like(rows) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, rows.contiguous())
    return torch.cat(gathered)


# --------------------------------------------------------------------------- layers


class MixerLayer(nn.Module):
    """One MLP-Mixer layer (Tolstikhin et al., NeurIPS 2021) over [B, N, C]:

        x = x + TokenMLP(LN(x)^T)^T     (mixes the N tokens, inner width token_hidden)
        x = x + ChannelMLP(LN(x))       (mixes the C channels, inner width channel_hidden)

    each MLP Linear -> GELU -> Linear. PCT's encoder, decoder and classifier are stacks
    of these (the tokens being joints or pose tokens).

    Args:
        tokens: N.
        channels: C.
        token_hidden: inner width of the token-mixing MLP.
        channel_hidden: inner width of the channel-mixing MLP.
    """

    def __init__(self, *, tokens: int, channels: int, token_hidden: int, channel_hidden: int):
        super().__init__()
        self.token_norm = nn.LayerNorm(channels)
        self.token_mlp = nn.Sequential(
            nn.Linear(tokens, token_hidden), nn.GELU(), nn.Linear(token_hidden, tokens)
        )
        self.channel_norm = nn.LayerNorm(channels)
        self.channel_mlp = nn.Sequential(
            nn.Linear(channels, channel_hidden), nn.GELU(), nn.Linear(channel_hidden, channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, N, C] -> [B, N, C]."""
        x = x + self.token_mlp(self.token_norm(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channel_mlp(self.channel_norm(x))


class AxisLinear(nn.Module):
    """A Linear over the token axis of [B, N_in, C] -> [B, N_out, C] (PCT's maps from
    the K joints to the M tokens and back). ``weight`` is [N_out, N_in]."""

    def __init__(self, in_tokens: int, out_tokens: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_tokens, out_tokens)

    @property
    def weight(self) -> torch.Tensor:
        return self.linear.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.transpose(1, 2)).transpose(1, 2)


# --------------------------------------------------------------------------- codebook


def assignment_statistics(
    encoded: torch.Tensor, ids: torch.Tensor, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """What a batch gives each codebook entry: n_v, the number of encoder outputs
    assigned to v, and the sum of those outputs.

    Args:
        encoded: [N, D] encoder outputs e_i.
        ids: [N] int64 their entries.
        size: V.

    Returns:
        counts [V] float32 and sums [V, D] float32.
    """
    counts = torch.bincount(ids, minlength=size).float()
    sums = encoded.new_zeros(size, encoded.shape[1], dtype=torch.float32)
    return counts, sums.index_add_(0, ids, encoded.float())


def ema_codebook_update(
    counts: torch.Tensor,
    sums: torch.Tensor,
    batch_counts: torch.Tensor,
    batch_sums: torch.Tensor,
    *,
    decay: float,
    epsilon: float = _LAPLACE_EPSILON,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One EMA step of a VQ codebook (van den Oord et al. 2017, appendix A.1, eqs. 6-8):

        N_v <- decay N_v + (1 - decay) n_v
        m_v <- decay m_v + (1 - decay) sum_{i: id_i = v} e_i
        c_v  = m_v / N~_v,   N~_v = (N_v + eps) / (n + V eps) n,   n = sum_v N_v

    N~ is N with Laplace smoothing (Sonnet's VectorQuantizerEMA; PCT's eps 1e-5): an
    entry nobody chose keeps a positive count, and the counts keep their total n. A pure
    function: the caller stores the results.

    Args:
        counts: [V] N, the EMA counts.
        sums: [V, D] m, the EMA sums of the assigned outputs.
        batch_counts: [V] n_v (:func:`assignment_statistics`).
        batch_sums: [V, D] the sums of the outputs assigned to each entry.
        decay: the EMA decay (PCT: 0.9).
        epsilon: the Laplace smoothing.

    Returns:
        (counts [V], sums [V, D], codebook [V, D]).
    """
    counts = decay * counts + (1 - decay) * batch_counts
    sums = decay * sums + (1 - decay) * batch_sums
    total = counts.sum()
    smoothed = (counts + epsilon) / (total + counts.shape[0] * epsilon) * total
    return counts, sums, sums / smoothed[:, None]


class EMACodebook(nn.Module):
    """The codebook of V entries of width D, updated by EMA (no gradient).

    Buffers (all in the state dict, so a resumed run continues exactly):
        codebook [V, D]: the entries, initialised N(0, 1) (PCT);
        counts [V], sums [V, D]: the EMA statistics (:func:`ema_codebook_update`),
            starting at one observation of each entry itself (count 1, sum = entry),
            so an entry keeps its place until chosen (ours: zero counts would send
            every unchosen entry to m / eps at the first update);
        idle_steps [V] int64: training steps since each entry was last chosen;
        reseeded [1] int64: how many entries have been re-seeded in all.

    An entry no training batch chose for ``dead_after`` steps is dead; with ``reseed``
    it is moved onto an encoder output of the current batch (those worst served by the
    codebook first: the largest distance to their nearest entry; a k-means++-like
    restart, ours: PCT does not re-seed), with its statistics reset to that one output.

    Args:
        size: V.
        dim: D.
        decay: EMA decay (PCT: 0.9).
        dead_after: steps without being chosen after which an entry is dead.
        reseed: re-seed dead entries.
    """

    def __init__(self, *, size: int, dim: int, decay: float, dead_after: int, reseed: bool) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMACodebook: decay must be in [0, 1), got {decay}")
        if dead_after < 1:
            raise ValueError(f"EMACodebook: dead_after must be >= 1, got {dead_after}")
        self.size = size
        self.dim = dim
        self.decay = decay
        self.dead_after = dead_after
        self.reseed = reseed
        codebook = torch.randn(size, dim)
        self.register_buffer("codebook", codebook)
        self.register_buffer("counts", torch.ones(size))
        self.register_buffer("sums", codebook.clone())
        self.register_buffer("idle_steps", torch.zeros(size, dtype=torch.int64))
        self.register_buffer("reseeded", torch.zeros(1, dtype=torch.int64))

    def nearest(self, encoded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The nearest entry (L2) of each row.

        Args:
            encoded: [N, D].

        Returns:
            ids [N] int64 and squared distances [N] float32.
        """
        with torch.autocast(encoded.device.type, enabled=False):
            rows, codebook = encoded.float(), self.codebook.float()
            # |e - c|^2 = |e|^2 - 2 e.c + |c|^2, without the [N, V, D] difference tensor
            distances = (
                rows.pow(2).sum(1, keepdim=True) - 2 * rows @ codebook.T + codebook.pow(2).sum(1)
            )
            best, ids = distances.min(dim=1)
        return ids, best.clamp_min(0)

    @torch.no_grad()
    def update(self, encoded: torch.Tensor, ids: torch.Tensor, distances: torch.Tensor) -> None:
        """A training step's EMA update (global over processes) and re-seeding.

        Args:
            encoded: [N, D] the step's encoder outputs.
            ids: [N] their nearest entries.
            distances: [N] their squared distances to them.
        """
        encoded = encoded.detach().float()
        batch_counts, batch_sums = _sum_over_processes(
            *assignment_statistics(encoded, ids, self.size)
        )
        counts, sums, codebook = ema_codebook_update(
            self.counts, self.sums, batch_counts, batch_sums, decay=self.decay
        )
        self.counts.copy_(counts)
        self.sums.copy_(sums)
        self.codebook.copy_(codebook)
        chosen = batch_counts > 0
        self.idle_steps.add_(1).masked_fill_(chosen, 0)
        if self.reseed:
            self._reseed(encoded, distances)

    def _reseed(self, encoded: torch.Tensor, distances: torch.Tensor) -> None:
        dead = (self.idle_steps >= self.dead_after).nonzero().squeeze(1)
        if dead.numel() == 0:
            return
        candidates = _gather_over_processes(encoded)
        errors = _gather_over_processes(distances.detach().float()[:, None]).squeeze(1)
        count = min(dead.numel(), candidates.shape[0])
        worst = errors.topk(count).indices  # the same choice on every process
        dead = dead[:count]
        self.codebook[dead] = candidates[worst]
        self.sums[dead] = candidates[worst]
        self.counts[dead] = 1.0
        self.idle_steps[dead] = 0
        self.reseeded += count

    def dead_entries(self) -> int:
        """Entries no training batch chose for ``dead_after`` steps (now)."""
        return int((self.idle_steps >= self.dead_after).sum())


def codebook_perplexity(counts: torch.Tensor) -> float:
    """exp(entropy) of how often each entry was chosen: V when all are used alike, 1
    when one entry takes everything (the usual measure of codebook use).

    Args:
        counts: [V] selections per entry.
    """
    total = counts.float().sum()
    if total <= 0:
        return 0.0
    frequencies = counts.float() / total
    entropy = -(frequencies * frequencies.clamp_min(1e-12).log()).sum()
    return float(entropy.exp())


# --------------------------------------------------------------------------- tokenizer


class PoseTokenizer(nn.Module):
    """PCT's pose tokenizer (the module docstring): K joints <-> M codebook tokens.

    It is the head of its stage I model (:class:`PoseTokenizerModel`): it trains on
    the targets "keypoints" [B, K, 2] (input-crop pixels) and "target_weight" [B, K]
    alone (visible = weight > 0), has no codec, and offers the loss terms
    "reconstruction" (smooth-L1 of the visible joints, crop pixels) and "commitment"
    (MSE(e, sg[q]); PCT weighs it 15). In stage II it sits frozen inside the
    classifier head, which reads :meth:`tokenize` (the ground-truth token ids) and
    :meth:`decode_probabilities` (the soft token mix -> joints).

    Args:
        num_joints: K.
        input_size: (H_in, W_in) of the crop the keypoints are given in.
        num_tokens: M (PCT: 34).
        codebook_size: V (PCT: 2048).
        token_dim: D, the width of a token and of a codebook entry (PCT: 512).
        encoder_hidden: E, the encoder's width (PCT: 512).
        encoder_layers: Mixer layers of the encoder (PCT: 4).
        encoder_token_hidden: inner width of its joint-mixing MLPs (PCT: 64).
        encoder_channel_hidden: inner width of its channel MLPs (PCT: 512).
        decoder_hidden: E_d, the decoder's width (PCT: 32).
        decoder_layers: Mixer layers of the decoder (PCT: 1).
        decoder_token_hidden: inner width of its joint-mixing MLPs (PCT: 64).
        decoder_channel_hidden: inner width of its channel MLPs (PCT: 64).
        mask_prob: training: each visible joint is replaced by the invisible
            embedding with this probability (PCT: 0.2), so the tokens learn to
            complete occluded poses.
        ema_decay: the codebook's EMA decay (PCT: 0.9).
        dead_after: training steps without being chosen after which an entry is dead.
        reseed: re-seed dead entries from the batch's encoder outputs.
    """

    codec = None  # trains on keypoints alone
    loss_names: tuple[str, ...] = ("reconstruction", "commitment")

    def __init__(
        self,
        *,
        num_joints: int,
        input_size: tuple[int, int],
        num_tokens: int,
        codebook_size: int,
        token_dim: int,
        encoder_hidden: int,
        encoder_layers: int,
        encoder_token_hidden: int,
        encoder_channel_hidden: int,
        decoder_hidden: int,
        decoder_layers: int,
        decoder_token_hidden: int,
        decoder_channel_hidden: int,
        mask_prob: float,
        ema_decay: float,
        dead_after: int,
        reseed: bool,
    ) -> None:
        super().__init__()
        if not 0.0 <= mask_prob < 1.0:
            raise ValueError(f"PoseTokenizer: mask_prob must be in [0, 1), got {mask_prob}")
        if min(num_tokens, codebook_size, token_dim, encoder_hidden, decoder_hidden) < 1:
            raise ValueError("PoseTokenizer: tokens, codebook size and widths must be >= 1")
        self.num_joints = num_joints
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.num_tokens = num_tokens
        self.codebook_size = codebook_size
        self.mask_prob = mask_prob

        # encoder: joints -> M tokens
        self.joint_embedding = nn.Linear(2, encoder_hidden)
        self.invisible_embedding = nn.Parameter(torch.zeros(encoder_hidden))
        nn.init.normal_(self.invisible_embedding, std=0.02)
        self.encoder = nn.Sequential(
            *(
                MixerLayer(
                    tokens=num_joints,
                    channels=encoder_hidden,
                    token_hidden=encoder_token_hidden,
                    channel_hidden=encoder_channel_hidden,
                )
                for _ in range(encoder_layers)
            )
        )
        self.encoder_norm = nn.LayerNorm(encoder_hidden)
        self.joints_to_tokens = AxisLinear(num_joints, num_tokens)
        self.token_projection = nn.Linear(encoder_hidden, token_dim)
        self.codebook = EMACodebook(
            size=codebook_size,
            dim=token_dim,
            decay=ema_decay,
            dead_after=dead_after,
            reseed=reseed,
        )
        # decoder: M tokens -> joints
        self.tokens_to_joints = AxisLinear(num_tokens, num_joints)
        self.decoder_projection = nn.Linear(token_dim, decoder_hidden)
        self.decoder = nn.Sequential(
            *(
                MixerLayer(
                    tokens=num_joints,
                    channels=decoder_hidden,
                    token_hidden=decoder_token_hidden,
                    channel_hidden=decoder_channel_hidden,
                )
                for _ in range(decoder_layers)
            )
        )
        self.decoder_norm = nn.LayerNorm(decoder_hidden)
        self.to_coordinates = nn.Linear(decoder_hidden, 2)

    # ------------------------------------------------------------------ coordinates

    def normalise(self, keypoints: torch.Tensor) -> torch.Tensor:
        """Input-crop pixels [..., 2] -> [-1, 1] over the crop: p = 2 (x + 0.5) / W - 1."""
        height, width = self.input_size
        size = keypoints.new_tensor([width, height])
        return 2 * (keypoints + 0.5) / size - 1

    def to_pixels(self, points: torch.Tensor) -> torch.Tensor:
        """Normalised points [..., 2] -> input-crop pixels: x = (p + 1) W / 2 - 0.5."""
        height, width = self.input_size
        size = points.new_tensor([width, height])
        return (points + 1) * size / 2 - 0.5

    # ------------------------------------------------------------------ stages

    def joint_mask(
        self, visible: torch.Tensor, sample_seeds: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Which joints the encoder sees as the invisible embedding: the invisible ones,
        and in training mode each visible one with probability ``mask_prob`` (PCT).

        Args:
            visible: [B, K] bool.
            sample_seeds: [B] int64; each sample's draws come from a generator seeded
                with its seed (independent of its batch). None: the global RNG.

        Returns:
            [B, K] bool, True where the joint is hidden.
        """
        hidden = ~visible
        if not self.training or self.mask_prob == 0:
            return hidden
        batch, joints = visible.shape
        source = NoiseSource(batch_size=batch, device=visible.device, sample_seeds=sample_seeds)
        # Phi(z) of a standard normal z is uniform on (0, 1): the masking draw
        uniform = torch.special.ndtr(source.normal((joints,)))
        return hidden | (uniform < self.mask_prob)

    def encode(self, keypoints: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """The M tokens of poses, before quantisation.

        Args:
            keypoints: [B, K, 2] input-crop pixels (any value where hidden).
            hidden: [B, K] bool, joints replaced by the invisible embedding.

        Returns:
            encoded [B, M, D].
        """
        # a hidden joint's coordinates may be anything (even non-finite): zero them so
        # that nothing of them reaches the graph
        points = torch.where(hidden[..., None], 0.0, self.normalise(keypoints.float()))
        embedded = self.joint_embedding(points)  # [B, K, E]
        embedded = torch.where(hidden[..., None], self.invisible_embedding, embedded)
        mixed = self.encoder_norm(self.encoder(embedded))  # [B, K, E]
        return self.token_projection(self.joints_to_tokens(mixed))  # [B, M, D]

    def quantize(self, encoded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Nearest codebook entries of the tokens (no codebook update).

        Args:
            encoded: [B, M, D].

        Returns:
            ids [B, M] int64, the entries q [B, M, D] (no gradient) and the squared
            distances [B, M].
        """
        batch, tokens, dim = encoded.shape
        ids, distances = self.codebook.nearest(encoded.reshape(-1, dim))
        quantized = self.codebook.codebook[ids].reshape(batch, tokens, dim)
        return ids.view(batch, tokens), quantized, distances.view(batch, tokens)

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens -> joints.

        Args:
            tokens: [B, M, D] (codebook entries, or any mix of them).

        Returns:
            keypoints [B, K, 2] input-crop pixels.
        """
        joints = self.decoder_projection(self.tokens_to_joints(tokens))  # [B, K, E_d]
        points = self.to_coordinates(self.decoder_norm(self.decoder(joints)))
        return self.to_pixels(points.float())

    def decode_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids [B, M] -> keypoints [B, K, 2] (input-crop pixels)."""
        return self.decode(self.codebook.codebook[ids])

    def decode_probabilities(self, probabilities: torch.Tensor) -> torch.Tensor:
        """PCT's stage II decoding: each token is the probability-weighted mix of the
        codebook entries, softmax(logits) @ C, then the decoder.

        Args:
            probabilities: [B, M, V], each row summing to 1.

        Returns:
            keypoints [B, K, 2] input-crop pixels.
        """
        with torch.autocast(probabilities.device.type, enabled=False):
            tokens = probabilities.float() @ self.codebook.codebook.float()  # [B, M, D]
        return self.decode(tokens)

    @torch.no_grad()
    def tokenize(self, keypoints: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """The token ids of poses (no masking, no codebook update): stage II's
        classification targets.

        Args:
            keypoints: [B, K, 2] input-crop pixels.
            visible: [B, K] bool.

        Returns:
            ids [B, M] int64.
        """
        ids, _, _ = self.quantize(self.encode(keypoints, ~visible))
        return ids

    def joint_token_weights(self) -> torch.Tensor:
        """[K, M] how much each joint's decoding reads each token: |W| of the decoder's
        first layer (the Linear from the M tokens to the K joints), each row summing
        to 1. The per-joint score of the stage II head weighs the tokens' confidences
        with it."""
        weights = self.tokens_to_joints.weight.detach().abs()
        return weights / weights.sum(dim=1, keepdim=True).clamp_min(1e-12)

    # ------------------------------------------------------------------ training

    def forward(
        self,
        keypoints: torch.Tensor,
        visible: torch.Tensor,
        sample_seeds: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Encode, quantise (straight-through), decode; in training mode also mask
        joints and update the codebook (EMA, re-seeding).

        Args:
            keypoints: [B, K, 2] input-crop pixels.
            visible: [B, K] bool.
            sample_seeds: [B] int64 per-sample seeds of the masking draws.

        Returns:
            "keypoints": [B, K, 2] the reconstruction, input-crop pixels;
            "encoded": [B, M, D] the encoder's tokens e;
            "quantized": [B, M, D] their codebook entries q (no gradient);
            "token_ids": [B, M] int64;
            "hidden": [B, K] bool, the joints the encoder saw as invisible.
        """
        hidden = self.joint_mask(visible, sample_seeds)
        encoded = self.encode(keypoints, hidden)
        ids, quantized, distances = self.quantize(encoded)
        # straight-through estimator (van den Oord et al. 2017): the decoder reads q,
        # its gradient passes to e unchanged
        straight_through = encoded + (quantized - encoded).detach()
        reconstruction = self.decode(straight_through)
        if self.training:
            dim = encoded.shape[-1]
            self.codebook.update(encoded.reshape(-1, dim), ids.reshape(-1), distances.reshape(-1))
        return {
            "keypoints": reconstruction,
            "encoded": encoded,
            "quantized": quantized,
            "token_ids": ids,
            "hidden": hidden,
        }

    def loss_terms(
        self, outputs: Mapping[str, torch.Tensor], targets: Targets
    ) -> dict[str, torch.Tensor]:
        """The unweighted loss terms (PCT, eq. 3):

        - "reconstruction": smooth-L1 (beta 0.05 px) of the reconstructed joints
          against the targets, input-crop pixels, weighted by "target_weight" (the
          visible joints, masked or not), a mean over B * K * 2;
        - "commitment": MSE(e, sg[q]), a mean over B * M * D (the codebook itself has
          no gradient: it follows e by EMA).
        """
        return {
            "reconstruction": smooth_l1_pixels(
                outputs["keypoints"], targets["keypoints"], targets["target_weight"]
            ),
            "commitment": F.mse_loss(
                outputs["encoded"].float(), outputs["quantized"].detach().float()
            ),
        }


class PoseTokenizerModel(nn.Module):
    """PCT's stage I model: the pose tokenizer alone, trained from keypoints.

    It stands where a :class:`~vidpose.models.estimator.PoseEstimator` stands for the
    trainer: ``forward(frames, targets, sample_seeds)`` (the frames are not read, and
    the trainer's dataset loads none: ``needs_images`` is False) and ``head`` (the
    tokenizer: its loss terms, no codec). Its evaluation is a reconstruction of the
    validation poses (``vidpose.engine.evaluate.evaluate_tokenizer``), not a prediction
    from images.

    Args:
        tokenizer: the :class:`PoseTokenizer`.
    """

    needs_images = False

    def __init__(self, *, tokenizer: PoseTokenizer) -> None:
        super().__init__()
        self.head = tokenizer

    def forward(
        self,
        frames: torch.Tensor | None = None,
        targets: Targets | None = None,
        sample_seeds: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The tokenizer's training pass on the targets' poses.

        Args:
            frames: ignored (the dataset gives [B, 0, 3, H, W] without images).
            targets: "keypoints" [B, K, 2] input-crop pixels, "target_weight" [B, K].
            sample_seeds: [B] int64 per-sample seeds of the joint masking.

        Returns:
            :meth:`PoseTokenizer.forward`'s dict.
        """
        if targets is None:
            raise ValueError(
                "PoseTokenizerModel.forward needs targets with 'keypoints' and "
                "'target_weight': the tokenizer encodes poses, not images"
            )
        visible = targets["target_weight"] > 0
        return self.head(targets["keypoints"], visible, sample_seeds)

    def predict(self, frames: torch.Tensor, **options: Any) -> HeadPrediction:
        """A tokenizer has no image input; raises ValueError with what to do instead."""
        raise ValueError(
            "a PCT pose tokenizer (model.head: pct_tokenizer) encodes and decodes poses; it "
            "does not predict them from images. Evaluate it with `vidpose test` (pose "
            "reconstruction), or train the stage II classifier (model.head: pct) with "
            "--set model.pct.tokenizer=<this checkpoint>"
        )
