"""Typed, strict experiment configuration.

A config is a tree of dataclasses. YAML files fill it (``yaml.safe_load``), with at
most one ``base:`` file underneath; ``--set a.b=c`` overrides are converted to the
field's type. Unknown keys, wrong types and missing files fail with a message that
names the file, the key and what was expected.

Only ``vidpose.models.build``, the dataset builders and the engine read these
objects; modules take explicit arguments.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from vidpose.runtime import InputError


class ConfigError(InputError):
    """A config file, key or value is not what the schema expects (exit status 2)."""


def _require(key: str, value: Any, valid: bool, expected: str) -> None:
    """Refuse an impossible value where it is read, not steps later as a torch error."""
    if not valid:
        shown = list(value) if isinstance(value, tuple) else value
        raise ConfigError(f"{key}: expected {expected}, got {shown!r}")


def _positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


def _at_least(value: float, low: float) -> bool:
    return math.isfinite(value) and value >= low


# --------------------------------------------------------------------------- schema


@dataclass
class SynthConfig:
    """Defaults of the procedural PoseTrack-format data generator (``vidpose synth``);
    not part of an experiment config: the dataset is generated once, then read."""

    videos: int = 8  # per split: train and val each get this many
    frames: int = 24  # frames per video
    persons: int = 2  # people per video
    size: tuple[int, int] = (320, 240)  # width, height of the frames
    occlusion: float = 0.3  # chance that an occluder crosses a person
    seed: int = 0


@dataclass
class DataConfig:
    """Where the data is and how clips are made from it."""

    format: Literal["posetrack17", "posetrack18", "posetrack21", "coco"] = "posetrack21"
    root: str = "data/synthetic"  # dataset root; annotation and image paths are relative to it
    train_annotations: str = "posetrack_data/train"  # folder of per-video JSON, or one file
    val_annotations: str = "posetrack_data/val"
    skeleton: Literal["posetrack", "coco"] = "posetrack"
    input_size: tuple[int, int] = (256, 192)  # height, width of the model input
    heatmap_stride: int = 4  # heatmap grid = input_size / heatmap_stride
    frame_offsets: tuple[int, ...] = (-1, 0, 1)  # neighbours of the key frame, key frame = 0
    # how the neighbour frames are cropped: "key", with the key frame's box (DiffPose);
    # "own", each around the person's own box in that frame (vidpose.data.neighbours),
    # so a person-frame has one crop in every clip and inference encodes it once
    neighbour_boxes: Literal["key", "own"] = "key"
    box_padding: float = 1.25  # person boxes are enlarged by this factor
    sigma: float = 2.0  # Gaussian target radius in heatmap pixels
    encoding: Literal["gaussian", "udp"] = "gaussian"
    # heatmap decoding: argmax + DARK refinement ("dark") or the integer argmax ("none");
    # a decoding choice, changeable without retraining (the CAL head decodes with its
    # offsets and does not read it)
    refine: Literal["dark", "none"] = "dark"
    val_boxes: str = "gt"  # "gt" or a detections file (COCO results format)
    det_score_threshold: float = 0.0
    # augmentation (training only)
    scale_factor: float = 0.3
    rotation_factor: float = 40.0
    flip_prob: float = 0.5
    half_body_prob: float = 0.3
    color_jitter: float = 0.2
    num_workers: int = 2
    # decode JPEG frames at 1/2, 1/4 or 1/8 scale where the crop keeps at least one
    # decoded pixel per crop pixel (vidpose.data.transforms.decode_reduction)
    decode_reduced: bool = True
    # before the first step, train and test check that every image a split reads exists
    # ("exists") or also decodes ("decode": reads every image once, slower); "off"
    check_images: Literal["exists", "decode", "off"] = "exists"

    def __post_init__(self) -> None:
        offsets = self.frame_offsets
        if len(offsets) % 2 == 0 or 0 not in offsets:
            raise ConfigError(
                f"data.frame_offsets: expected an odd number of offsets including 0 "
                f"(the key frame), got {list(offsets)}"
            )
        _require("data.input_size", self.input_size, min(self.input_size) >= 1, "sizes >= 1")
        _require("data.heatmap_stride", self.heatmap_stride, self.heatmap_stride >= 1, ">= 1")
        _require("data.box_padding", self.box_padding, _positive(self.box_padding), "> 0")
        _require("data.sigma", self.sigma, _positive(self.sigma), "> 0")
        _require("data.num_workers", self.num_workers, self.num_workers >= 0, ">= 0")
        for key in ("scale_factor", "rotation_factor", "color_jitter", "det_score_threshold"):
            value = getattr(self, key)
            _require(f"data.{key}", value, _at_least(value, 0.0), "a finite number >= 0")
        for key in ("flip_prob", "half_body_prob"):
            value = getattr(self, key)
            _require(f"data.{key}", value, 0.0 <= value <= 1.0, "a probability in [0, 1]")
        height, width = self.input_size
        if height % self.heatmap_stride or width % self.heatmap_stride:
            raise ConfigError(
                f"data.input_size: {list(self.input_size)} is not divisible by "
                f"data.heatmap_stride={self.heatmap_stride}"
            )


@dataclass
class BackboneConfig:
    """A timm ViT. ``depth``/``embed_dim``/``num_heads`` override the named model's."""

    name: str = "vit_small_patch16_224"
    patch_size: int = 16
    embed_dim: int | None = None
    depth: int | None = None
    num_heads: int | None = None
    drop_path_rate: float = 0.1
    # local weights file (timm, MAE, ViTPose or vidpose key names) a training run starts
    # from (load_initial_weights; inference never reads it); "" = random init
    checkpoint: str = ""
    # zero padding of the patch embedding, pixels per side: 2 for ViTPose weights
    # (ViTPose embeds patches with padding 2), 0 = timm's plain patches
    patch_padding: int = 0


@dataclass
class DiffusionConfig:
    """The heatmap diffusion process and its sampler defaults."""

    timesteps: int = 1000
    schedule: Literal["linear", "cosine"] = "cosine"
    signal_scale: float = 1.0  # heatmaps in [0, 1] are mapped to [-scale, scale]
    sampling_steps: int = 3  # DDIM steps at inference (any value works without retraining)
    hypotheses: int = 4  # random initialisations averaged at inference
    eta: float = 0.0  # DDIM stochasticity (0 = deterministic)
    init: Literal["noise", "coarse"] = "noise"  # where sampling starts
    # the look-up masks' softmax gain: "constant" over t (DiffPose), or "snr": scaled
    # by sqrt(alpha_bar_t) / (1 - alpha_bar_t), the evidence x_t carries about where a
    # joint is (uniform masks at pure noise, sharp ones near the data; see
    # vidpose.models.interaction.snr_mask_scales)
    mask_gain: Literal["constant", "snr"] = "constant"
    # training: the share of samples whose x_t is made from the model's own one-step
    # estimate (no gradient) instead of the ground truth, as the sampler's later steps
    # see it (against exposure bias); 0 = DDPM's training
    estimate_inputs: float = 0.0
    # init "coarse": start at t = round(coarse_start * (timesteps - 1)) from the coarse
    # heatmap noised by q_sample (near 1 the start is almost pure noise)
    coarse_start: float = 0.5

    def __post_init__(self) -> None:
        for key in ("timesteps", "sampling_steps", "hypotheses"):
            value = getattr(self, key)
            _require(f"model.diffusion.{key}", value, value >= 1, "an integer >= 1")
        scale = self.signal_scale
        _require("model.diffusion.signal_scale", scale, _positive(scale), "> 0")
        _require("model.diffusion.eta", self.eta, _at_least(self.eta, 0.0), ">= 0")
        for key in ("estimate_inputs", "coarse_start"):
            value = getattr(self, key)
            _require(f"model.diffusion.{key}", value, 0.0 <= value <= 1.0, "a number in [0, 1]")


@dataclass
class TFPoseConfig:
    """The keypoint-query regression head (TFPose, Mao et al. 2021; Poseur, ECCV 2022).

    Defaults are TFPose's (6 deformable encoder and 6 decoder layers, 8 heads, 4
    sampling points per level, learned first references, the auxiliary heatmap loss);
    ``encoder_layers: 0`` and ``init_reference: coarse`` are Poseur's choices."""

    encoder_layers: int = 6  # deformable encoder layers over the pyramid tokens (0 allowed)
    decoder_layers: int = 6  # joint-query decoder layers, each refining the points
    heads: int = 8  # attention heads (self- and cross-attention)
    points: int = 4  # deformable sampling points per head and pyramid level
    ffn_dim: int = 1024  # feed-forward hidden width (Deformable DETR's)
    dropout: float = 0.1
    # first reference points: "learned" (one per joint, TFPose / Deformable DETR) or
    # "coarse" (Poseur: regressed from the pooled coarsest level, supervised as layer 0)
    init_reference: Literal["learned", "coarse"] = "learned"
    aux_heatmap: bool = True  # TFPose's auxiliary heatmap branch on the coarsest level
    # learning-rate multiplier of the sampling offsets and the first reference points
    # (Deformable DETR's and Poseur's 0.1)
    offset_lr: float = 0.1


@dataclass
class CalConfig:
    """Heatmap + offset with confidence-aware learning (CAL; Wang et al., "Low-resolution
    human pose estimation", Pattern Recognition 2022, arXiv 2109.09090).

    Defaults are the paper's (offsets (joint - pixel) / 1.5 within 4 heatmap pixels, one
    Gaussian fitted to the batch's argmax errors, a 7 x 7 window); the window and
    covariance handling where the paper is silent are ours (docs/architecture.md)."""

    offset_radius: float = 4.0  # heatmap pixels: offset targets and loss within this distance
    offset_scale: float = 1.5  # offsets are (joint - pixel) / scale; decode p + scale * offset(p)
    # the confidence-aware weight on the offset loss (CAL); false: every pixel within
    # the radius weighs 1 (the plain heatmap + offset baseline)
    confidence: bool = True
    components: int = 1  # Gaussians fitted to the argmax errors (1: exact; more: EM)
    window: int = 7  # odd side of the pixel window around each joint's integer peak
    # two-stage training: fine-tune only this branch, everything else frozen (null: all
    # parameters train)
    train_only: Literal["heatmaps", "offsets"] | None = None
    # a vidpose checkpoint of this model (e.g. the first stage's latest.safetensors)
    # whose weights start a training run (read when it starts, never on resume or at
    # inference); "" = the usual initialisation
    init_from: str = ""

    def __post_init__(self) -> None:
        if self.offset_radius <= 0 or self.offset_scale <= 0:
            raise ConfigError(
                f"model.cal: offset_radius and offset_scale must be positive, got "
                f"{self.offset_radius} and {self.offset_scale}"
            )
        if self.components < 1:
            raise ConfigError(f"model.cal.components: expected >= 1, got {self.components}")
        if self.window < 1 or self.window % 2 == 0:
            raise ConfigError(f"model.cal.window: expected an odd size >= 1, got {self.window}")


@dataclass
class DiffusionPoseConfig:
    """Structure-guided coordinate diffusion (DiffusionPose, Qiu et al., arXiv 2306.17074).

    The paper gives the U-Net widths (64/128/256, down to 1/8), DaViT's attention (7 x 7
    windows, 8 groups) and the coarse start; zeta, the mask widths, the block count and
    the sampler are ours (docs/architecture.md, "The DiffusionPose head")."""

    timesteps: int = 1000
    schedule: Literal["linear", "cosine"] = "cosine"
    # zeta: keypoints normalised to the crop ([-1, 1]) are scaled to [-zeta, zeta]
    signal_scale: float = 2.0
    keypoint_radius: float = 1.0  # delta_kps: disc radius around each noisy point, heatmap px
    limb_radius: float = 1.0  # delta_ske: half-width of each limb segment, heatmap px
    attention_groups: int = 8  # SC-CA channel groups and window-attention heads (DaViT: 8)
    window: int = 7  # SC-CA window side (DaViT: 7), capped at the heatmap grid's sides
    unet_channels: tuple[int, ...] = (64, 128, 256)  # SGDD widths at 1, 1/2, 1/4 (2x at 1/8)
    unet_blocks: int = 2  # FiLM residual blocks per U-Net level
    sampling_steps: int = 1  # DDIM steps at inference (any value works without retraining)
    hypotheses: int = 1  # starts per clip, averaged at inference
    eta: float = 0.0  # DDIM stochasticity (0 = deterministic)
    # where sampling starts: "noise" (measured best on the tiny model), "coarse" (the
    # coarse head's keypoints noised to coarse_start by q_sample: the paper's sampling
    # initialisation, which its paper-scale configs use) or "coarse_exact" (those
    # keypoints themselves, no noise)
    init: Literal["noise", "coarse", "coarse_exact"] = "noise"
    # the coarse inits start at t = round(coarse_start * (timesteps - 1))
    coarse_start: float = 0.5

    def __post_init__(self) -> None:
        if self.signal_scale <= 0 or self.keypoint_radius <= 0 or self.limb_radius <= 0:
            raise ConfigError(
                "model.diffusionpose: signal_scale, keypoint_radius and limb_radius must be "
                f"positive, got {self.signal_scale}, {self.keypoint_radius}, {self.limb_radius}"
            )
        if not self.unet_channels or any(width < 1 for width in self.unet_channels):
            raise ConfigError(
                "model.diffusionpose.unet_channels: expected one or more positive widths, "
                f"got {list(self.unet_channels)}"
            )
        if self.unet_channels[0] % 2:
            raise ConfigError(
                "model.diffusionpose.unet_channels: the first width is the sinusoidal time "
                f"embedding's and must be even, got {self.unet_channels[0]}"
            )


@dataclass
class PCTConfig:
    """Pose as compositional tokens (PCT, Geng et al., CVPR 2023): stage I, the pose
    tokenizer (``model.head: pct_tokenizer``, trained from keypoints alone), and stage
    II, the token classifier (``model.head: pct``) over the frozen tokenizer.

    The tokenizer sizes are read by both stages (stage II rebuilds the tokenizer and
    copies the stage I weights in when training starts). Defaults are PCT's; the
    re-seeding of dead entries, the per-joint score and ``downsample`` are ours."""

    # tokenizer (stage I; stage II must use the same values)
    tokens: int = 34  # M, tokens per pose
    codebook_size: int = 2048  # V, codebook entries
    token_dim: int = 512  # D, width of a token and of a codebook entry
    encoder_hidden: int = 512  # width of the encoder's Mixer layers
    encoder_layers: int = 4
    encoder_token_hidden: int = 64  # inner width of the encoder's joint-mixing MLPs
    encoder_channel_hidden: int = 512  # inner width of the encoder's channel MLPs
    decoder_hidden: int = 32  # width of the decoder's Mixer layers
    decoder_layers: int = 1
    decoder_token_hidden: int = 64
    decoder_channel_hidden: int = 64
    mask_prob: float = 0.2  # training: each visible joint is hidden with this probability
    ema_decay: float = 0.9  # the codebook's EMA decay
    # an entry no training batch chose for this many steps is dead (reported by
    # validation) and, with reseed, moved onto an encoder output of the batch
    dead_after: int = 100
    reseed: bool = True
    # classifier (stage II)
    tokenizer: str = ""  # the stage I checkpoint, read once when a stage II run starts
    # a vidpose checkpoint (heatmap, diffusion, ...) whose backbone, temporal fusion and
    # pyramid weights start a stage II run; "" = model.backbone.checkpoint / random
    init_from: str = ""
    freeze_backbone: bool = True  # freeze the backbone, temporal fusion and pyramid (PCT)
    conv_channels: int = 256  # the classifier's convolution width
    residual_blocks: int = 2
    downsample: bool = False  # first residual block of stride 2 (PCT's stride-32 grid)
    classifier_hidden: int = 64  # token width in the classifier's Mixer layers
    classifier_layers: int = 4
    classifier_token_hidden: int = 64
    classifier_channel_hidden: int = 256
    # keypoint scores: "paper" (mean top-1 logit over the tokens, one score per pose) or
    # "per_joint" (each joint's decoder weights over the tokens' top-1 probabilities)
    score: Literal["paper", "per_joint"] = "paper"

    def __post_init__(self) -> None:
        if not 0.0 <= self.mask_prob < 1.0:
            raise ConfigError(f"model.pct.mask_prob: expected [0, 1), got {self.mask_prob}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"model.pct.ema_decay: expected [0, 1), got {self.ema_decay}")
        if min(self.tokens, self.codebook_size, self.token_dim, self.dead_after) < 1:
            raise ConfigError(
                "model.pct: tokens, codebook_size, token_dim and dead_after must be >= 1, got "
                f"{self.tokens}, {self.codebook_size}, {self.token_dim}, {self.dead_after}"
            )


@dataclass
class LMSFIConfig:
    """Sizes of DiffPose's look-up interaction as published (``model.interaction:
    diffpose``, vidpose/models/lmsfi.py). The paper gives no layer counts: these are
    ours (docs/architecture.md, section 3)."""

    # self-refinement of the features at every scale before the masking (Transformer
    # layers at the coarsest scale, 3x3 convolutions at the finer ones; once per clip)
    refine_layers: int = 1
    fuse_layers: int = 1  # the same after the masking (per sampling step and hypothesis)

    def __post_init__(self) -> None:
        if self.refine_layers < 0 or self.fuse_layers < 0:
            raise ConfigError(
                "model.lmsfi: refine_layers and fuse_layers must be >= 0, got "
                f"{self.refine_layers} and {self.fuse_layers}"
            )


@dataclass
class ModelConfig:
    """Backbone, temporal fusion and head."""

    head: Literal[
        "diffusion", "heatmap", "tfpose", "cal", "diffusionpose", "pct_tokenizer", "pct"
    ] = "diffusion"
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    # "linear": frames mixed by one Linear (the author's final notes); "transformer":
    # the paper's Transformer layers over all T frames' tokens first
    temporal: Literal["linear", "transformer"] = "linear"
    temporal_layers: int = 2  # Transformer layers of model.temporal: transformer
    decoder_dim: int = 128  # channels of the feature pyramid and of the head
    # "pyramid": vidpose's feature pyramid (GroupNorm); "vitpose": ViTPose's classic
    # decoder exactly (2 x deconv + BatchNorm + ReLU, then a 1x1 conv; head "heatmap"
    # only), what `vidpose import-weights` builds for ViTPose checkpoints
    decoder: Literal["pyramid", "vitpose"] = "pyramid"
    decoder_heads: int = 4  # attention heads of the denoiser's coarsest interaction
    # the diffusion head's look-up interaction: "lookup" (vidpose's own,
    # vidpose/models/interaction.py) or "diffpose" (the paper's LMSFI, sizes in lmsfi)
    interaction: Literal["lookup", "diffpose"] = "lookup"
    lmsfi: LMSFIConfig = field(default_factory=LMSFIConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    tfpose: TFPoseConfig = field(default_factory=TFPoseConfig)
    cal: CalConfig = field(default_factory=CalConfig)
    diffusionpose: DiffusionPoseConfig = field(default_factory=DiffusionPoseConfig)
    pct: PCTConfig = field(default_factory=PCTConfig)


@dataclass
class LossConfig:
    """Loss weights by term name (each head offers some of them: ``head.loss_names``;
    the weights of terms the model's head does not offer are not used)."""

    # x0 estimate of the diffusion head, the baseline head's heatmaps, the CAL head's
    # heatmaps (CAL's 0.5 x MSE: weight 0.5 in the CAL configs)
    heatmap: float = 1.0
    coarse: float = 1.0  # the diffusion head's coarse heatmap branch
    keypoint: float = 1.0  # tfpose: L1 of every decoder layer's points (crop fractions)
    sigma: float = 1.0  # tfpose: Laplace NLL of the predicted per-joint error scale
    aux_heatmap: float = 50.0  # tfpose: the auxiliary heatmap MSE (TFPose's weight 50)
    offset: float = 1.0  # cal: the (confidence-weighted) L1 of the offsets (CAL's w: 0.7 or 1)
    reconstruction: float = 1.0  # pct_tokenizer: smooth-L1 of the reconstructed joints (px)
    commitment: float = 15.0  # pct_tokenizer: MSE(e, sg[q]) (PCT's weight 15)
    token: float = 1.0  # pct: cross-entropy of the token logits
    joint: float = 1.0  # pct: smooth-L1 of the decoded joints (px)


@dataclass
class TrainConfig:
    """Optimisation and the training loop."""

    epochs: int = 20
    batch_size: int = 32  # global batch (split between processes)
    lr: float = 5e-4
    weight_decay: float = 0.1
    layer_decay: float = 0.75  # layer-wise learning-rate decay of the ViT
    warmup_steps: int = 500
    lr_schedule: Literal["cosine", "step"] = "cosine"
    lr_milestones: tuple[int, ...] = (170, 200)  # epochs, for the step schedule
    grad_clip: float = 1.0  # max gradient norm; 0 disables clipping
    ema_decay: float = 0.0  # 0 disables EMA weights
    max_steps: int = 0  # stop after this many steps; 0 = run all epochs
    val_every: int = 1  # validate every N epochs; 0 = never
    log_every: int = 10
    seed: int = 0
    # latest.safetensors is written at every epoch end, and also every N steps and at
    # least every M minutes of training (0 = off), so a kill loses at most that much
    checkpoint_every_steps: int = 0
    checkpoint_every_minutes: float = 10.0
    # an image that cannot be read mid-training: "skip" the sample (a warning, counted)
    # or "stop" the run (a checkpoint of the steps done is written first)
    on_bad_image: Literal["skip", "stop"] = "skip"

    def __post_init__(self) -> None:
        for key in ("epochs", "batch_size", "log_every"):
            value = getattr(self, key)
            _require(f"train.{key}", value, value >= 1, "an integer >= 1")
        for key in ("warmup_steps", "max_steps", "val_every", "checkpoint_every_steps"):
            value = getattr(self, key)
            _require(f"train.{key}", value, value >= 0, "an integer >= 0")
        for key in ("lr", "weight_decay", "grad_clip", "checkpoint_every_minutes"):
            value = getattr(self, key)
            _require(f"train.{key}", value, _at_least(value, 0.0), "a finite number >= 0")
        _require("train.layer_decay", self.layer_decay, _positive(self.layer_decay), "> 0")
        _require("train.ema_decay", self.ema_decay, 0.0 <= self.ema_decay < 1.0, "in [0, 1)")
        milestones = list(self.lr_milestones)
        _require("train.lr_milestones", milestones, min(milestones, default=0) >= 0, "epochs >= 0")


@dataclass
class TestConfig:
    """Inference settings for ``vidpose test`` and validation."""

    batch_size: int = 32
    flip_test: bool = True
    steps: int | None = None  # None: model.diffusion.sampling_steps
    hypotheses: int | None = None  # None: model.diffusion.hypotheses
    protocol: Literal["posetrack18", "posetrack21"] = "posetrack18"

    def __post_init__(self) -> None:
        _require("test.batch_size", self.batch_size, self.batch_size >= 1, "an integer >= 1")
        for key in ("steps", "hypotheses"):
            value = getattr(self, key)
            _require(f"test.{key}", value, value is None or value >= 1, "null or an integer >= 1")


@dataclass
class Config:
    """A whole experiment."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)


# --------------------------------------------------------------------------- loading


def load_config(path: str | os.PathLike | None = None, overrides: list[str] = ()) -> Config:
    """Load a config file (with its optional ``base:``) and apply ``key=value`` overrides.

    Args:
        path: a YAML file, or None for the defaults.
        overrides: strings like ``"train.lr=1e-3"`` or ``"data.input_size=[128,96]"``.
    """
    tree: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        tree = _read_with_base(Path(path))
    for override in overrides:
        key, value = _parse_override(override)
        _set_dotted(tree, key, value, source=f"--set {override}")
    return from_dict(Config, tree, source=source)


def from_dict(schema: type, values: dict[str, Any], source: str, prefix: str = "") -> Any:
    """Build dataclass ``schema`` from a nested dict, strictly."""
    if not isinstance(values, dict):
        raise ConfigError(
            f"{source}: {prefix.rstrip('.') or 'top level'}: expected a mapping, "
            f"got {_describe(values)}"
        )
    fields = {f.name: f for f in dataclasses.fields(schema)}
    hints = get_type_hints(schema)
    kwargs = {}
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise ConfigError(
                f"{source}: unknown key {dotted!r}{hint}; valid keys here: {', '.join(fields)}"
            )
        kwargs[key] = _convert(value, hints[key], source, dotted)
    try:
        return schema(**kwargs)
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict of a config (tuples become lists), ready for YAML."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        return value

    return plain(config)


def dump_config(config: Config) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def save_config(config: Config, path: str | os.PathLike) -> Path:
    """Write the resolved config as YAML, atomically (temporary file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a plain open(), not NamedTemporaryFile: that creates files of mode 0600 whatever
    # the user's umask, and the config is for everyone who reads the work dir
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(dump_config(config), encoding="utf-8")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


# --------------------------------------------------------------------------- helpers


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        with open(path, encoding="utf-8") as handle:
            tree = yaml.safe_load(handle)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {_describe(tree)}")
    return tree


def _read_with_base(path: Path) -> dict[str, Any]:
    tree = _read_yaml(path)
    base = tree.pop("base", None)
    if base is None:
        return tree
    if not isinstance(base, str):
        raise ConfigError(f"{path}: 'base' must be a file path, got {_describe(base)}")
    base_path = (path.parent / base).resolve()
    base_tree = _read_yaml(base_path) if base_path.is_file() else None
    if base_tree is None:
        raise ConfigError(f"{path}: base file not found: {base} (looked for {base_path})")
    if "base" in base_tree:
        raise ConfigError(
            f"{path}: its base {base_path} has a 'base' of its own; only one base level "
            "is allowed (flatten the chain into one file)"
        )
    return _merge(base_tree, tree)


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. train.lr=1e-3")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {text!r}: the key is empty")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    # Keep the text for values YAML would reinterpret (e.g. "on", "1e-3" parses fine as
    # str): the field type decides the conversion.
    return key, _Raw(raw, value)


@dataclass(frozen=True)
class _Raw:
    """An override value: the text as typed and its YAML reading."""

    text: str
    parsed: Any


def _set_dotted(tree: dict[str, Any], key: str, value: Any, source: str) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(annotation))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(annotation))
    if origin is tuple:
        args = get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_type_name(args[0])}"
        return f"a list of {len(args)} values ({', '.join(_type_name(a) for a in args)})"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def _convert(value: Any, annotation: Any, source: str, key: str) -> Any:
    raw_text = value.text if isinstance(value, _Raw) else None
    if isinstance(value, _Raw):
        value = value.parsed

    def fail() -> typing.NoReturn:
        shown = raw_text if raw_text is not None else value
        raise ConfigError(
            f"{source}: {key}: expected {_type_name(annotation)}, got "
            f"{type(value).__name__} {shown!r}"
        )

    origin = get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        return from_dict(annotation, value if value is not None else {}, source, f"{key}.")
    if origin in (Union, types.UnionType):
        options = get_args(annotation)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(
                    _Raw(raw_text, value) if raw_text is not None else value, option, source, key
                )
            except ConfigError:
                continue
        fail()
    if origin is Literal:
        if value in get_args(annotation):
            return value
        fail()
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            fail()
        args = get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            item_types = [args[0]] * len(value)
        else:
            if len(value) != len(args):
                fail()
            item_types = list(args)
        return tuple(
            _convert(item, item_type, source, f"{key}[{index}]")
            for index, (item, item_type) in enumerate(zip(value, item_types, strict=True))
        )
    if annotation is bool:
        if isinstance(value, bool):
            return value
        fail()
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        fail()
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        # PyYAML reads "1e-3" (no dot) as a string; accept any text float() accepts.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        fail()
    if annotation is str:
        if raw_text is not None:
            return raw_text.strip()
        if isinstance(value, str):
            return value
        fail()
    raise TypeError(f"config schema type {annotation!r} at {key} is not supported")
