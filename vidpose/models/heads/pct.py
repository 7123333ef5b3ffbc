"""PCT's stage II: the token classifier head.

Geng et al., "Human Pose as Compositional Tokens" (CVPR 2023), section 3.2. The head
classifies each of the M pose tokens over the V codebook entries of a trained,
frozen pose tokenizer (``vidpose.models.heads.pct_tokenizer``, stage I) and decodes
the pose through the tokenizer's decoder:

    coarsest pyramid level [B, D, h, w] (stride 16; PCT reads a backbone's stride 32)
      │ 1x1 conv D -> C + GroupNorm + ReLU; R residual blocks (the first of stride 2
      │ with ``downsample``: PCT's stride-32 grid)
      │ flatten -> Linear(C h' w' -> M x H_c) -> [B, M, H_c]
      │ MixerLayer x L_c over (M tokens, H_c channels); LayerNorm; Linear(H_c -> V)
      ▼
    logits [B, M, V] --softmax--> P; tokens P @ codebook [B, M, D]
      │ the frozen tokenizer decoder
      ▼
    keypoints [B, K, 2] input-crop pixels

Training: cross-entropy of the logits against the token ids the frozen encoder gives
the ground-truth pose, plus smooth-L1 of the decoded joints (PCT, eq. 4); the
gradient of the joint loss reaches the logits through the soft mix (the decoder and
codebook stay frozen).

Weights: the frozen tokenizer is a submodule, so a stage II checkpoint carries it and
inference needs one file. Building the head never reads a file: the trainer copies
the stage I checkpoint in when a run starts (:func:`load_tokenizer`, and
:func:`load_feature_extractor` for ``model.pct.init_from``), never on resume or in
``load_estimator``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from vidpose.config import ConfigError
from vidpose.models.heads.contract import HeadPrediction, Targets, merge_flipped_coordinates
from vidpose.models.heads.pct_tokenizer import MixerLayer, PoseTokenizer, smooth_l1_pixels
from vidpose.models.layers import group_norm

Score = Literal["paper", "per_joint"]
_SCORES = ("paper", "per_joint")


class ResidualBlock(nn.Module):
    """A ResNet basic block (He et al., CVPR 2016) with GroupNorm:
    relu(x' + GN(conv3x3(relu(GN(conv3x3(x)))))), x' = x, or a strided 1x1 conv + GN
    of x when the block downsamples.

    Args:
        channels: C in and out.
        stride: 1, or 2 to halve the grid.
    """

    def __init__(self, *, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False),
            group_norm(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            group_norm(channels),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1:
            self.shortcut = nn.Sequential(
                nn.Conv2d(channels, channels, 1, stride=stride, bias=False), group_norm(channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.shortcut(x) + self.layers(x))


class TokenClassifier(nn.Module):
    """PCT's classification head: a feature map -> M x V token logits.

    Args:
        in_channels: D, the feature map's channels.
        feature_size: (h, w) of the feature map (fixed: the flatten feeds a Linear).
        num_tokens: M.
        codebook_size: V.
        conv_channels: C (PCT: 256).
        residual_blocks: R (PCT: 2).
        downsample: the first residual block has stride 2 (ours, to reach PCT's
            stride-32 grid from vidpose's stride-16 level; a 4x smaller flatten Linear).
        hidden: H_c, the width of a token in the Mixer (PCT: 64).
        layers: L_c Mixer layers (PCT: 4).
        token_hidden: inner width of the token-mixing MLPs (PCT: 64).
        channel_hidden: inner width of the channel MLPs.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        feature_size: tuple[int, int],
        num_tokens: int,
        codebook_size: int,
        conv_channels: int,
        residual_blocks: int,
        downsample: bool,
        hidden: int,
        layers: int,
        token_hidden: int,
        channel_hidden: int,
    ) -> None:
        super().__init__()
        if downsample and residual_blocks < 1:
            raise ValueError("TokenClassifier: downsample needs at least one residual block")
        self.num_tokens = num_tokens
        self.hidden = hidden
        self.feature_size = (int(feature_size[0]), int(feature_size[1]))
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, conv_channels, 1, bias=False),
            group_norm(conv_channels),
            nn.ReLU(inplace=True),
        )
        self.blocks = nn.Sequential(
            *(
                ResidualBlock(channels=conv_channels, stride=2 if downsample and i == 0 else 1)
                for i in range(residual_blocks)
            )
        )
        height, width = self.feature_size
        if downsample:  # a 3x3 stride-2 conv with padding 1: ceil(n / 2)
            height, width = (height + 1) // 2, (width + 1) // 2
        self.flat_to_tokens = nn.Linear(conv_channels * height * width, num_tokens * hidden)
        self.mixer = nn.Sequential(
            *(
                MixerLayer(
                    tokens=num_tokens,
                    channels=hidden,
                    token_hidden=token_hidden,
                    channel_hidden=channel_hidden,
                )
                for _ in range(layers)
            )
        )
        self.norm = nn.LayerNorm(hidden)
        self.classify = nn.Linear(hidden, codebook_size)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """[B, D, h, w] -> logits [B, M, V]."""
        if tuple(features.shape[-2:]) != self.feature_size:
            raise ValueError(
                f"TokenClassifier: expected a {self.feature_size} feature map, got "
                f"{tuple(features.shape[-2:])}"
            )
        mapped = self.blocks(self.stem(features))  # [B, C, h', w']
        tokens = self.flat_to_tokens(mapped.flatten(1))  # [B, M * H_c]
        tokens = tokens.view(features.shape[0], self.num_tokens, self.hidden)
        return self.classify(self.norm(self.mixer(tokens)))


class PCTHead(nn.Module):
    """Pose as compositional tokens, stage II: token classification + the frozen decoder.

    Args:
        classifier: the :class:`TokenClassifier` (its M, V must be the tokenizer's).
        tokenizer: the stage I :class:`PoseTokenizer`, frozen here: no gradient, and
            kept in eval mode (no joint masking, no codebook update) whatever mode the
            head is put in.
        score: the keypoint score. "paper": PCT's, the mean over the M tokens of the
            top-1 raw logit, one score for every joint of a pose (not bounded to
            [0, 1]); "per_joint" (ours): joint k scores sum_m w_km p_m, p_m the top-1
            probability of token m and w_k the joint's share of the decoder's
            token -> joint weights (``PoseTokenizer.joint_token_weights``), in [0, 1].
    """

    codec = None  # trains on keypoints (and the token ids made from them)
    loss_names: tuple[str, ...] = ("token", "joint")

    def __init__(
        self, *, classifier: TokenClassifier, tokenizer: PoseTokenizer, score: Score = "paper"
    ) -> None:
        super().__init__()
        if score not in _SCORES:
            raise ValueError(f"PCTHead: score must be one of {_SCORES}, got {score!r}")
        if classifier.num_tokens != tokenizer.num_tokens or (
            classifier.classify.out_features != tokenizer.codebook_size
        ):
            raise ValueError(
                f"PCTHead: the classifier predicts {classifier.num_tokens} tokens over "
                f"{classifier.classify.out_features} entries, the tokenizer has "
                f"{tokenizer.num_tokens} tokens over {tokenizer.codebook_size}"
            )
        self.classifier = classifier
        self.tokenizer = tokenizer.requires_grad_(False).eval()
        self.score = score

    @property
    def input_size(self) -> tuple[int, int]:
        return self.tokenizer.input_size

    def train(self, mode: bool = True) -> PCTHead:
        super().train(mode)
        self.tokenizer.eval()  # frozen: no masking, no codebook updates
        return self

    # ------------------------------------------------------------------ training

    def forward(
        self,
        features: Sequence[torch.Tensor],
        targets: Targets | None = None,
        sample_seeds: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The training / validation pass (seeds unused).

        Args:
            features: pyramid levels coarse to fine; the head reads the first,
                [B, D, h, w].
            targets: "keypoints" [B, K, 2] input-crop pixels and "target_weight"
                [B, K]; with them the frozen encoder's token ids are returned too.

        Returns:
            "logits": [B, M, V];
            "keypoints": [B, K, 2] the soft-mix decoding, input-crop pixels;
            "token_ids": [B, M] int64, the ground-truth pose's tokens (with targets).
        """
        logits = self.classifier(features[0])
        outputs = {
            "logits": logits,
            "keypoints": self.tokenizer.decode_probabilities(logits.float().softmax(-1)),
        }
        if targets is not None:
            visible = targets["target_weight"] > 0
            outputs["token_ids"] = self.tokenizer.tokenize(targets["keypoints"], visible)
        return outputs

    def loss_terms(
        self, outputs: Mapping[str, torch.Tensor], targets: Targets
    ) -> dict[str, torch.Tensor]:
        """The unweighted loss terms (PCT, eq. 4):

        - "token": cross-entropy of the logits against the ground-truth token ids,
          a mean over B * M;
        - "joint": smooth-L1 (beta 0.05 px) of the decoded joints against the targets,
          input-crop pixels, weighted by "target_weight", a mean over B * K * 2.
        """
        logits = outputs["logits"].float()
        return {
            "token": F.cross_entropy(logits.flatten(0, 1), outputs["token_ids"].flatten()),
            "joint": smooth_l1_pixels(
                outputs["keypoints"], targets["keypoints"], targets["target_weight"]
            ),
        }

    # ------------------------------------------------------------------ inference

    def joint_scores(self, logits: torch.Tensor) -> torch.Tensor:
        """[B, M, V] logits -> [B, K] keypoint scores (``score``)."""
        logits = logits.float()
        joints = self.tokenizer.num_joints
        if self.score == "paper":
            pose_score = logits.max(dim=-1).values.mean(dim=-1)  # [B]
            return pose_score[:, None].expand(-1, joints).contiguous()
        top_probability = logits.softmax(-1).max(dim=-1).values  # [B, M]
        return top_probability @ self.tokenizer.joint_token_weights().T.to(logits)

    def predict(
        self,
        features: Sequence[torch.Tensor],
        *,
        return_trajectory: bool = False,
        **ignored: Any,
    ) -> HeadPrediction:
        """Inference in one pass. The diffusion sampler's keywords (steps, hypotheses,
        eta, init, generator, sample_seeds) are accepted and ignored.

        Returns:
            keypoints [B, K, 2] (input-crop pixels) of the soft-mix decoding; scores
            [B, K] (``score``); no heatmaps or uncertainty; an empty trajectory when
            asked (one pass); extras "token_ids" [B, M] (the top-1 entries) and
            "token_probabilities" [B, M] (their probabilities).
        """
        logits = self.classifier(features[0]).float()
        probabilities = logits.softmax(-1)
        top_probability, top_ids = probabilities.max(dim=-1)
        return HeadPrediction(
            keypoints=self.tokenizer.decode_probabilities(probabilities),
            scores=self.joint_scores(logits),
            trajectory=[] if return_trajectory else None,
            extras={"token_ids": top_ids, "token_probabilities": top_probability},
        )

    def merge_flipped(
        self, prediction: HeadPrediction, mirrored: HeadPrediction, flip_permutation: npt.ArrayLike
    ) -> HeadPrediction:
        """The flip test: keypoints and scores averaged (``merge_flipped_coordinates``;
        PCT flip-averages the joints)."""
        return merge_flipped_coordinates(
            prediction, mirrored, flip_permutation, input_width=self.input_size[1]
        )


# --------------------------------------------------------------------------- start weights


def _checkpoint_weights(path: str | Path, key: str) -> tuple[dict[str, torch.Tensor], Any]:
    """(weights, stored config) of a vidpose checkpoint named by config key ``key``; its
    EMA weights when it has them (what its validation measured)."""
    from vidpose.checkpoint import load_checkpoint

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{key}={path}: no such checkpoint file")
    saved = load_checkpoint(path)
    return (saved.ema if saved.ema else saved.model), saved.config


def load_tokenizer(tokenizer: PoseTokenizer, path: str | Path, *, skeleton: str) -> None:
    """Copy a stage I checkpoint's tokenizer into ``tokenizer`` (stage II's frozen one).

    Args:
        tokenizer: the tokenizer of a :class:`PCTHead` (its sizes from the config).
        path: a checkpoint of a ``model.head: pct_tokenizer`` run.
        skeleton: the stage II run's ``data.skeleton``; the tokenizer must have been
            trained on the same joint set.

    Raises:
        FileNotFoundError: no file at ``path``.
        ConfigError: not a tokenizer checkpoint, or one whose M, V, joints or layer
            sizes do not fit ``tokenizer`` (the message names the file and the mismatch).
    """
    key = "model.pct.tokenizer"
    if not str(path):
        raise FileNotFoundError(
            f"{key} is empty: stage II (model.head: pct) starts from a trained stage I "
            "tokenizer; train one (e.g. vidpose train configs/synthetic_tiny_pct_tokenizer.yaml)"
            f" and pass --set {key}=<work dir>/best.safetensors"
        )
    weights, config = _checkpoint_weights(path, key)
    state = {name[5:]: value for name, value in weights.items() if name.startswith("head.")}
    codebook = state.get("codebook.codebook")
    joints_to_tokens = state.get("joints_to_tokens.linear.weight")
    if codebook is None or joints_to_tokens is None:
        head = (config or {}).get("model", {}).get("head", "unknown")
        raise ConfigError(
            f"{key}={path}: not a PCT tokenizer checkpoint (its model.head is {head!r}; "
            "expected a run of model.head: pct_tokenizer)"
        )
    found = {
        "tokens M": joints_to_tokens.shape[0],
        "codebook entries V": codebook.shape[0],
        "joints K": joints_to_tokens.shape[1],
        "token width": codebook.shape[1],
    }
    expected = {
        "tokens M": tokenizer.num_tokens,
        "codebook entries V": tokenizer.codebook_size,
        "joints K": tokenizer.num_joints,
        "token width": tokenizer.codebook.dim,
    }
    mismatches = [
        f"{name} {found[name]} (this config: {expected[name]})"
        for name in found
        if found[name] != expected[name]
    ]
    trained_on = (config or {}).get("data", {}).get("skeleton")
    if trained_on is not None and trained_on != skeleton:
        mismatches.append(f"joint set {trained_on!r} (this config: {skeleton!r})")
    if mismatches:
        raise ConfigError(
            f"{key}={path}: the tokenizer does not fit this model: it has "
            f"{', '.join(mismatches)}; set model.pct.tokens, model.pct.codebook_size, "
            "model.pct.token_dim and data.skeleton as in its run, or train a tokenizer for "
            "this config"
        )
    try:
        tokenizer.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ConfigError(
            f"{key}={path}: the tokenizer's layers do not fit model.pct's sizes (set the "
            f"model.pct encoder/decoder sizes as in its run): {str(error).splitlines()[-1]}"
        ) from None


_FEATURE_PREFIXES = ("backbone.", "temporal.", "pyramid.")


def load_feature_extractor(model: nn.Module, path: str | Path) -> None:
    """Start the backbone, temporal fusion and pyramid from a trained vidpose checkpoint
    (``model.pct.init_from``: PCT freezes a backbone trained for heatmaps first).

    Every backbone weight must be in the checkpoint with the same shape; temporal and
    pyramid weights are copied where the checkpoint has them with the same shape (a
    single-frame checkpoint has no temporal mixing; the PCT model's pyramid has no
    upsamplings), and those missing are named in a warning.

    Args:
        model: the stage II estimator (``backbone``, ``temporal``, ``pyramid``).
        path: a vidpose checkpoint (any head: its head weights are not read).

    Raises:
        FileNotFoundError: no file at ``path``.
        ConfigError: a backbone weight missing, or any shape that differs.
    """
    key = "model.pct.init_from"
    weights, _ = _checkpoint_weights(path, key)
    own = {name: value for name, value in model.state_dict().items()}
    wanted = [name for name in own if name.startswith(_FEATURE_PREFIXES)]
    missing = [name for name in wanted if name not in weights]
    lacking_backbone = [name for name in missing if name.startswith("backbone.")]
    if lacking_backbone:
        raise ConfigError(
            f"{key}={path}: the checkpoint has no {lacking_backbone[:3]} "
            f"({len(lacking_backbone)} backbone weights missing; expected a vidpose "
            "checkpoint of the same backbone)"
        )
    different = [
        f"{name} {tuple(weights[name].shape)} (this model: {tuple(own[name].shape)})"
        for name in wanted
        if name in weights and weights[name].shape != own[name].shape
    ]
    if different:
        raise ConfigError(
            f"{key}={path}: weights of other shapes than this model's: {different[:3]}"
        )
    if missing:
        warnings.warn(
            f"{key}={path}: no {missing} in the checkpoint; they keep their initialisation",
            stacklevel=2,
        )
    model.load_state_dict({name: weights[name] for name in wanted if name in weights}, strict=False)
