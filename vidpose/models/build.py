"""build_model / build_criterion: the only code that reads the model config.

Every module below takes explicit keyword arguments; this file turns a
:class:`~vidpose.config.Config` into them (DETR's ``build``). Dataset facts come
from the data section: the number of joints from the skeleton named in
``data.skeleton``, the input and heatmap sizes from ``data.input_size`` and
``data.heatmap_stride``, T and the key frame from ``data.frame_offsets``.

The CAL head's two-stage recipe is also set up here: ``model.cal.train_only`` freezes
every parameter but one branch's (``requires_grad`` off: the optimizer skips them) and
``model.cal.init_from``, the first stage's checkpoint, starts the run
(:func:`load_initial_weights`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

from torch import nn

from vidpose.codecs.heatmap import build_codec
from vidpose.codecs.offset import HeatmapOffsetCodec
from vidpose.config import Config, ConfigError
from vidpose.data.skeleton import get_skeleton
from vidpose.losses import Criterion, build_criterion
from vidpose.models.backbone import ViTBackbone
from vidpose.models.diffusion.decoder import HeatmapDenoiser
from vidpose.models.diffusion.schedule import GaussianDiffusion
from vidpose.models.estimator import PoseEstimator
from vidpose.models.heads import (
    CalHead,
    DiffusionHead,
    HeatmapConv,
    HeatmapHead,
    OffsetConv,
    TFPoseHead,
)
from vidpose.models.heads.diffusionpose import DiffusionPoseHead
from vidpose.models.heads.diffusionpose_layers import (
    SpatialChannelCrossAttention,
    StructureGuidedDenoiser,
    StructureUNet,
)
from vidpose.models.heads.pct import (
    PCTHead,
    TokenClassifier,
    load_feature_extractor,
    load_tokenizer,
)
from vidpose.models.heads.pct_tokenizer import PoseTokenizer, PoseTokenizerModel
from vidpose.models.interaction import snr_mask_scales
from vidpose.models.lmsfi import DiffPoseDenoiser, build_diffpose_lookup
from vidpose.models.pyramid import FeaturePyramid
from vidpose.models.temporal import LinearTemporalFusion, TransformerTemporalFusion
from vidpose.models.vitpose_decoder import ViTPoseDecoder, ViTPoseFinalLayer

__all__ = ["build_model", "build_criterion", "Criterion"]

# The pyramid upsamples the token grid twice (x4), so heatmap grid = input / patch * 4.
_PYRAMID_UPSAMPLING = 4


def _build_diffusion_head(cfg: Config, num_joints: int) -> nn.Module:
    diffusion = cfg.model.diffusion
    process = GaussianDiffusion(
        timesteps=diffusion.timesteps,
        schedule=diffusion.schedule,
        signal_scale=diffusion.signal_scale,
    )
    snr = diffusion.mask_gain == "snr"
    if cfg.model.interaction == "diffpose":
        if snr:
            raise ConfigError(
                "model.diffusion.mask_gain=snr scales the softmax of vidpose's look-up masks; "
                "model.interaction=diffpose has the paper's sigmoid masks: set "
                "model.diffusion.mask_gain=constant"
            )
        denoiser: nn.Module = DiffPoseDenoiser(
            interaction=build_diffpose_lookup(
                channels=cfg.model.decoder_dim,
                num_joints=num_joints,
                num_heads=cfg.model.decoder_heads,
                refine_layers=cfg.model.lmsfi.refine_layers,
                fuse_layers=cfg.model.lmsfi.fuse_layers,
            ),
            channels=cfg.model.decoder_dim,
        )
    else:
        denoiser = HeatmapDenoiser(
            num_joints=num_joints,
            channels=cfg.model.decoder_dim,
            num_heads=cfg.model.decoder_heads,
            signal_scale=diffusion.signal_scale,
            mask_scales=snr_mask_scales(process.alphas_cumprod) if snr else None,
        )
    return DiffusionHead(
        process=process,
        denoiser=denoiser,
        coarse=HeatmapConv(channels=cfg.model.decoder_dim, num_joints=num_joints),
        codec=build_codec(cfg.data),
        sampling_steps=diffusion.sampling_steps,
        hypotheses=diffusion.hypotheses,
        eta=diffusion.eta,
        init=diffusion.init,
        coarse_start=diffusion.coarse_start,
        estimate_inputs=diffusion.estimate_inputs,
    )


def _build_heatmap_head(cfg: Config, num_joints: int) -> nn.Module:
    # ViTPose's decoder ends in a 1x1 convolution (vidpose/models/vitpose_decoder.py)
    predictor_type = ViTPoseFinalLayer if cfg.model.decoder == "vitpose" else HeatmapConv
    return HeatmapHead(
        predictor=predictor_type(channels=cfg.model.decoder_dim, num_joints=num_joints),
        codec=build_codec(cfg.data),
    )


def _build_tfpose_head(cfg: Config, num_joints: int) -> nn.Module:
    tfpose = cfg.model.tfpose
    if cfg.model.decoder_dim % tfpose.heads:
        raise ConfigError(
            f"model.decoder_dim={cfg.model.decoder_dim} is not divisible by "
            f"model.tfpose.heads={tfpose.heads}"
        )
    return TFPoseHead(
        channels=cfg.model.decoder_dim,
        num_joints=num_joints,
        input_size=cfg.data.input_size,
        encoder_layers=tfpose.encoder_layers,
        decoder_layers=tfpose.decoder_layers,
        heads=tfpose.heads,
        points=tfpose.points,
        ffn_dim=tfpose.ffn_dim,
        dropout=tfpose.dropout,
        init_reference=tfpose.init_reference,
        # the auxiliary heatmap branch trains on heatmaps: the head then has a codec
        codec=build_codec(cfg.data) if tfpose.aux_heatmap else None,
        offset_lr=tfpose.offset_lr,
    )


def _build_cal_head(cfg: Config, num_joints: int) -> nn.Module:
    cal = cfg.model.cal
    return CalHead(
        heatmap_predictor=HeatmapConv(channels=cfg.model.decoder_dim, num_joints=num_joints),
        offset_predictor=OffsetConv(channels=cfg.model.decoder_dim, num_joints=num_joints),
        codec=HeatmapOffsetCodec(
            heatmap=build_codec(cfg.data), radius=cal.offset_radius, scale=cal.offset_scale
        ),
        confidence=cal.confidence,
        components=cal.components,
        window=cal.window,
    )


def _build_diffusionpose_head(cfg: Config, num_joints: int) -> nn.Module:
    settings = cfg.model.diffusionpose
    channels = cfg.model.decoder_dim
    if channels % settings.attention_groups:
        raise ConfigError(
            f"model.decoder_dim={channels} is not divisible by "
            f"model.diffusionpose.attention_groups={settings.attention_groups}"
        )
    codec = build_codec(cfg.data)
    unet = StructureUNet(
        num_joints=num_joints,
        feature_channels=channels,
        channels=settings.unet_channels,
        blocks=settings.unet_blocks,
        time_dim=4 * settings.unet_channels[0],  # DDPM's embedding MLP width
    )
    return DiffusionPoseHead(
        process=GaussianDiffusion(
            timesteps=settings.timesteps,
            schedule=settings.schedule,
            signal_scale=settings.signal_scale,
        ),
        denoiser=StructureGuidedDenoiser(
            num_joints=num_joints,
            channels=channels,
            limbs=get_skeleton(cfg.data.skeleton).limbs,
            sigma=codec.sigma,
            keypoint_radius=settings.keypoint_radius,
            limb_radius=settings.limb_radius,
            attention=SpatialChannelCrossAttention(
                channels=channels, groups=settings.attention_groups, window=settings.window
            ),
            unet=unet,
        ),
        coarse=HeatmapConv(channels=channels, num_joints=num_joints),
        codec=codec,
        sampling_steps=settings.sampling_steps,
        hypotheses=settings.hypotheses,
        eta=settings.eta,
        init=settings.init,
        coarse_start=settings.coarse_start,
    )


def _build_pose_tokenizer(cfg: Config, num_joints: int) -> PoseTokenizer:
    pct = cfg.model.pct
    return PoseTokenizer(
        num_joints=num_joints,
        input_size=cfg.data.input_size,
        num_tokens=pct.tokens,
        codebook_size=pct.codebook_size,
        token_dim=pct.token_dim,
        encoder_hidden=pct.encoder_hidden,
        encoder_layers=pct.encoder_layers,
        encoder_token_hidden=pct.encoder_token_hidden,
        encoder_channel_hidden=pct.encoder_channel_hidden,
        decoder_hidden=pct.decoder_hidden,
        decoder_layers=pct.decoder_layers,
        decoder_token_hidden=pct.decoder_token_hidden,
        decoder_channel_hidden=pct.decoder_channel_hidden,
        mask_prob=pct.mask_prob,
        ema_decay=pct.ema_decay,
        dead_after=pct.dead_after,
        reseed=pct.reseed,
    )


def _build_pct_head(cfg: Config, num_joints: int) -> nn.Module:
    # The tokenizer is built untrained; its stage I weights are copied in when training
    # starts (load_initial_weights) and travel in every stage II checkpoint after that.
    pct = cfg.model.pct
    patch = cfg.model.backbone.patch_size
    height, width = cfg.data.input_size
    classifier = TokenClassifier(
        in_channels=cfg.model.decoder_dim,
        feature_size=(height // patch, width // patch),  # the pyramid's coarsest level
        num_tokens=pct.tokens,
        codebook_size=pct.codebook_size,
        conv_channels=pct.conv_channels,
        residual_blocks=pct.residual_blocks,
        downsample=pct.downsample,
        hidden=pct.classifier_hidden,
        layers=pct.classifier_layers,
        token_hidden=pct.classifier_token_hidden,
        channel_hidden=pct.classifier_channel_hidden,
    )
    return PCTHead(
        classifier=classifier, tokenizer=_build_pose_tokenizer(cfg, num_joints), score=pct.score
    )


HEAD_BUILDERS: dict[str, Callable[[Config, int], nn.Module]] = {
    "diffusion": _build_diffusion_head,
    "heatmap": _build_heatmap_head,
    "tfpose": _build_tfpose_head,
    "cal": _build_cal_head,
    "diffusionpose": _build_diffusionpose_head,
    "pct": _build_pct_head,
}


def _load_estimator_weights(model: nn.Module, path: str) -> None:
    """Initialise the whole estimator from a vidpose checkpoint (its EMA weights when it
    has them, as ``load_estimator``); the weights must fit exactly."""
    from vidpose.checkpoint import load_checkpoint

    saved = load_checkpoint(path)
    try:
        model.load_state_dict(saved.ema if saved.ema else saved.model, strict=True)
    except RuntimeError as error:
        raise ConfigError(
            f"model.cal.init_from={path}: its weights do not fit the model this config "
            f"describes ({str(error).splitlines()[0]})"
        ) from None


def _train_only(model: nn.Module, branch: nn.Module) -> None:
    """Freeze every parameter of ``model`` but those of ``branch``."""
    model.requires_grad_(False)
    branch.requires_grad_(True)


def build_model(cfg: Config) -> PoseEstimator | PoseTokenizerModel:
    """The pose estimator described by ``cfg``, randomly initialised, or for
    ``model.head: pct_tokenizer`` PCT's stage I model (no backbone). No file is read
    here: the files that only start a training run (``model.backbone.checkpoint``,
    ``model.pct.tokenizer``, ``model.pct.init_from``, ``model.cal.init_from``) are read
    by :func:`load_initial_weights`, so a checkpoint's stored config builds its model
    on a machine without them.

    Raises:
        ConfigError: sizes that do not fit together.
    """
    model_cfg, data = cfg.model, cfg.data
    backbone_cfg = model_cfg.backbone
    height, width = data.input_size
    if backbone_cfg.patch_size != data.heatmap_stride * _PYRAMID_UPSAMPLING:
        raise ConfigError(
            f"model.backbone.patch_size={backbone_cfg.patch_size} must be "
            f"{_PYRAMID_UPSAMPLING} x data.heatmap_stride={data.heatmap_stride}: the feature "
            "pyramid upsamples the token grid 4x to reach the heatmap grid"
        )
    if height % backbone_cfg.patch_size or width % backbone_cfg.patch_size:
        raise ConfigError(
            f"data.input_size={list(data.input_size)} is not divisible by "
            f"model.backbone.patch_size={backbone_cfg.patch_size}"
        )
    if model_cfg.decoder_dim % model_cfg.decoder_heads:
        raise ConfigError(
            f"model.decoder_dim={model_cfg.decoder_dim} is not divisible by "
            f"model.decoder_heads={model_cfg.decoder_heads}"
        )
    if model_cfg.interaction != "lookup" and model_cfg.head != "diffusion":
        raise ConfigError(
            f"model.interaction={model_cfg.interaction} is the diffusion head's look-up "
            f"interaction; model.head={model_cfg.head} has none (set model.interaction=lookup)"
        )
    if model_cfg.decoder == "vitpose" and model_cfg.head != "heatmap":
        raise ConfigError(
            f"model.decoder=vitpose (ViTPose's decoder) feeds the heatmap head only; "
            f"model.head={model_cfg.head} reads every pyramid level (set model.decoder=pyramid)"
        )
    if model_cfg.temporal == "transformer" and model_cfg.temporal_layers < 1:
        raise ConfigError(
            f"model.temporal_layers={model_cfg.temporal_layers}: model.temporal=transformer "
            "needs at least one layer (model.temporal=linear is the learner without them)"
        )
    skeleton = get_skeleton(data.skeleton)
    num_joints = skeleton.num_joints
    if model_cfg.head == "pct_tokenizer":
        # PCT's stage I reads poses alone: no backbone, and no images to load
        return PoseTokenizerModel(tokenizer=_build_pose_tokenizer(cfg, num_joints))

    backbone = ViTBackbone(
        model_name=backbone_cfg.name,
        input_size=(height, width),
        patch_size=backbone_cfg.patch_size,
        embed_dim=backbone_cfg.embed_dim,
        depth=backbone_cfg.depth,
        num_heads=backbone_cfg.num_heads,
        drop_path_rate=backbone_cfg.drop_path_rate,
        patch_padding=backbone_cfg.patch_padding,
    )
    temporal: nn.Module = LinearTemporalFusion(
        num_frames=len(data.frame_offsets),
        key_frame_index=data.frame_offsets.index(0),
        grid_size=backbone.grid_size,
    )
    if model_cfg.temporal == "transformer":
        # the paper's learner: Transformer layers over all frames' tokens, then the Linear;
        # as many heads as the backbone's own blocks
        temporal = TransformerTemporalFusion(
            aggregate=temporal,
            channels=backbone.embed_dim,
            num_heads=backbone.vit.blocks[0].attn.num_heads,
            num_layers=model_cfg.temporal_layers,
        )
    # the PCT head reads only the coarsest level: upsamplings would be unused weights
    # (which DistributedDataParallel refuses) and wasted work
    upsamplings = 0 if model_cfg.head == "pct" else 2
    if model_cfg.decoder == "vitpose":
        pyramid: nn.Module = ViTPoseDecoder(
            in_channels=backbone.embed_dim, channels=model_cfg.decoder_dim
        )
    else:
        pyramid = FeaturePyramid(
            in_channels=backbone.embed_dim,
            channels=model_cfg.decoder_dim,
            num_upsamplings=upsamplings,
        )
    head = HEAD_BUILDERS[model_cfg.head](cfg, num_joints)
    model = PoseEstimator(
        backbone=backbone,
        temporal=temporal,
        pyramid=pyramid,
        head=head,
        flip_permutation=skeleton.flip_permutation,
    )
    if model_cfg.head == "cal" and model_cfg.cal.train_only is not None:
        # CAL's second stage: one branch fine-tuned, the rest frozen
        branches = {"heatmaps": head.heatmap_predictor, "offsets": head.offset_predictor}
        _train_only(model, branches[model_cfg.cal.train_only])
    if model_cfg.head == "pct" and model_cfg.pct.freeze_backbone:
        # PCT trains its classifier on a frozen backbone (trained for heatmaps first:
        # model.pct.init_from); the tokenizer is frozen by the head itself
        for frozen in (backbone, temporal, pyramid):
            frozen.requires_grad_(False)
    return model


def load_initial_weights(model: nn.Module, cfg: Config) -> None:
    """Copy in the weights a training run starts from, read from files named by the
    config. The trainer calls it once when a run starts, never on resume (the weights
    are in the run's checkpoints by then); ``load_estimator`` never does, so inference
    needs the checkpoint alone.

    Every estimator: the backbone from ``model.backbone.checkpoint`` when it names a
    file (``ViTBackbone.load_checkpoint``: timm, MAE, ViTPose or vidpose key names; the
    load report is logged or warned); the files below, read after it, may replace it.

    CAL's second stage (``model.head: cal``): the whole estimator from
    ``model.cal.init_from`` when it names a file (the first stage's checkpoint).

    PCT's stage II (``model.head: pct``): the stage I tokenizer ``model.pct.tokenizer``
    (required; refused with a ConfigError when its M, V or joint set do not fit) and,
    when named, the backbone, temporal fusion and pyramid of ``model.pct.init_from``.

    Raises:
        FileNotFoundError: a named file is missing (or the tokenizer is not named).
        ConfigError: a file whose weights do not fit the model.
    """
    if cfg.model.head != "pct_tokenizer" and cfg.model.backbone.checkpoint:
        model.backbone.load_checkpoint(cfg.model.backbone.checkpoint)
    if cfg.model.head == "cal":
        if cfg.model.cal.init_from:
            _load_estimator_weights(model, cfg.model.cal.init_from)
        return
    if cfg.model.head != "pct":
        return
    pct = cfg.model.pct
    load_tokenizer(model.head.tokenizer, pct.tokenizer, skeleton=cfg.data.skeleton)
    if pct.init_from:
        load_feature_extractor(model, pct.init_from)
    elif pct.freeze_backbone and not cfg.model.backbone.checkpoint:
        warnings.warn(
            "model.pct.freeze_backbone is on but neither model.pct.init_from nor "
            "model.backbone.checkpoint names weights: the classifier trains on a frozen, "
            "random backbone",
            stacklevel=2,
        )
