"""build_model / build_criterion: the only code that reads the model config.

Every module below takes explicit keyword arguments; this file turns a
:class:`~vidpose.config.Config` into them (DETR's ``build``). Dataset facts come
from the data section: the number of joints from the skeleton named in
``data.skeleton``, the input and heatmap sizes from ``data.input_size`` and
``data.heatmap_stride``, T and the key frame from ``data.frame_offsets``.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from vidpose.codecs.heatmap import build_codec
from vidpose.config import Config, ConfigError
from vidpose.data.skeleton import get_skeleton
from vidpose.losses import Criterion, build_criterion
from vidpose.models.backbone import ViTBackbone
from vidpose.models.diffusion.decoder import HeatmapDenoiser
from vidpose.models.diffusion.schedule import GaussianDiffusion
from vidpose.models.estimator import PoseEstimator
from vidpose.models.heads import DiffusionHead, HeatmapConv, HeatmapHead, TFPoseHead
from vidpose.models.interaction import snr_mask_scales
from vidpose.models.pyramid import FeaturePyramid
from vidpose.models.temporal import LinearTemporalFusion

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
    return DiffusionHead(
        process=process,
        denoiser=HeatmapDenoiser(
            num_joints=num_joints,
            channels=cfg.model.decoder_dim,
            num_heads=cfg.model.decoder_heads,
            signal_scale=diffusion.signal_scale,
            mask_scales=snr_mask_scales(process.alphas_cumprod) if snr else None,
        ),
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
    return HeatmapHead(
        predictor=HeatmapConv(channels=cfg.model.decoder_dim, num_joints=num_joints),
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


HEAD_BUILDERS: dict[str, Callable[[Config, int], nn.Module]] = {
    "diffusion": _build_diffusion_head,
    "heatmap": _build_heatmap_head,
    "tfpose": _build_tfpose_head,
}


def build_model(cfg: Config) -> PoseEstimator:
    """The pose estimator described by ``cfg`` (backbone weights loaded when
    ``model.backbone.checkpoint`` names a file; the load report is logged/warned).

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
    skeleton = get_skeleton(data.skeleton)
    num_joints = skeleton.num_joints

    backbone = ViTBackbone(
        model_name=backbone_cfg.name,
        input_size=(height, width),
        patch_size=backbone_cfg.patch_size,
        embed_dim=backbone_cfg.embed_dim,
        depth=backbone_cfg.depth,
        num_heads=backbone_cfg.num_heads,
        drop_path_rate=backbone_cfg.drop_path_rate,
    )
    if backbone_cfg.checkpoint:
        backbone.load_checkpoint(backbone_cfg.checkpoint)
    temporal = LinearTemporalFusion(
        num_frames=len(data.frame_offsets),
        key_frame_index=data.frame_offsets.index(0),
        grid_size=backbone.grid_size,
    )
    pyramid = FeaturePyramid(in_channels=backbone.embed_dim, channels=model_cfg.decoder_dim)
    head = HEAD_BUILDERS[model_cfg.head](cfg, num_joints)
    return PoseEstimator(
        backbone=backbone,
        temporal=temporal,
        pyramid=pyramid,
        head=head,
        flip_permutation=skeleton.flip_permutation,
    )
