"""Every config in configs/ validates and builds; the tiny ones run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vidpose.config import ConfigError, load_config
from vidpose.data.skeleton import get_skeleton
from vidpose.losses import build_criterion
from vidpose.models.build import build_model
from vidpose.models.heads import CalHead, DiffusionHead, HeatmapHead, TFPoseHead
from vidpose.models.heads.diffusionpose import DiffusionPoseHead
from vidpose.models.heads.pct import PCTHead

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
ALL_CONFIGS = sorted(CONFIG_DIR.rglob("*.yaml"))
TINY_CONFIGS = sorted(CONFIG_DIR.glob("synthetic_tiny*.yaml"))


def test_the_expected_configs_exist():
    names = {path.stem for path in ALL_CONFIGS}
    for dataset in ("posetrack17", "posetrack18", "posetrack21", "coco"):
        for size in "sblh":
            assert f"{dataset}_vit_{size}" in names
            assert f"{dataset}_vit_{size}_tfpose" in names
    assert {
        "synthetic_tiny", "synthetic_tiny_baseline", "synthetic_tiny_temporal_baseline",
        "synthetic_tiny_tfpose", "synthetic_tiny_cal", "synthetic_tiny_cal_64x48",
    } <= names  # fmt: skip
    for dataset in ("posetrack17", "posetrack18", "posetrack21", "coco"):
        for size in ("64x48", "128x96", "256x192"):
            assert f"{dataset}_vit_b_cal_{size}" in names


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=lambda p: str(p.relative_to(CONFIG_DIR)))
def test_config_builds(path):
    cfg = load_config(path)
    # Paper-scale models (ViT-H: 630M parameters) are built without memory.
    with torch.device("meta"):
        model = build_model(cfg)
    if cfg.model.head == "pct_tokenizer":  # PCT's stage I: the tokenizer alone, no backbone
        assert model.head.num_joints == get_skeleton(cfg.data.skeleton).num_joints
        build_criterion(cfg, model.head)
        return
    height, width = cfg.data.input_size
    stride = cfg.data.heatmap_stride
    assert model.num_frames == len(cfg.data.frame_offsets)
    assert model.temporal.key_frame_index == cfg.data.frame_offsets.index(0)
    assert model.backbone.grid_size == (height // 16, width // 16)
    head_type = {
        "diffusion": DiffusionHead, "heatmap": HeatmapHead, "tfpose": TFPoseHead, "cal": CalHead
    }  # fmt: skip
    head_type["diffusionpose"] = DiffusionPoseHead
    head_type["pct"] = PCTHead
    assert isinstance(model.head, head_type[cfg.model.head])
    num_joints = get_skeleton(cfg.data.skeleton).num_joints
    if cfg.model.head == "tfpose":
        assert model.head.num_joints == num_joints
        assert model.head.input_size == (height, width)
        assert len(model.head.decoder) == cfg.model.tfpose.decoder_layers
    elif cfg.model.head == "pct":
        assert model.head.tokenizer.num_joints == num_joints
    else:
        heatmap_branch = {"heatmap": "predictor", "cal": "heatmap_predictor"}
        final_conv = getattr(model.head, heatmap_branch.get(cfg.model.head, "coarse")).layers[-1]
        assert final_conv.out_channels == num_joints
    assert (height // stride, width // stride) == tuple(
        4 * side for side in model.backbone.grid_size
    )
    build_criterion(cfg, model.head)


def test_paper_scale_configs_match_the_paper_setting():
    cfg = load_config(CONFIG_DIR / "posetrack17_vit_h.yaml")
    assert cfg.data.input_size == (256, 192)
    assert len(cfg.data.frame_offsets) == 3
    assert cfg.model.head == "diffusion"
    with torch.device("meta"):
        model = build_model(cfg)
    assert model.backbone.embed_dim == 1280 and len(model.backbone.vit.blocks) == 32
    assert model.backbone.grid_size == (16, 12)


def test_tfpose_paper_scale_configs_follow_tfpose():
    cfg = load_config(CONFIG_DIR / "posetrack21_vit_b_tfpose.yaml")
    tfpose = cfg.model.tfpose
    assert cfg.model.head == "tfpose" and cfg.model.decoder_dim == 256
    assert (tfpose.encoder_layers, tfpose.decoder_layers, tfpose.heads, tfpose.points) == (
        6, 6, 8, 4
    )  # fmt: skip
    assert tfpose.aux_heatmap and cfg.loss.aux_heatmap == 50.0 and cfg.loss.keypoint == 1.0
    assert cfg.train.weight_decay == 1e-4 and cfg.train.lr_schedule == "cosine"
    assert tfpose.offset_lr == 0.1
    # the backbone is the diffusion config's of the same size
    same = load_config(CONFIG_DIR / "posetrack21_vit_b.yaml").model.backbone
    assert cfg.model.backbone == same
    assert load_config(CONFIG_DIR / "coco_vit_b_tfpose.yaml").train.lr_schedule == "cosine"


@pytest.mark.parametrize("path", TINY_CONFIGS, ids=lambda p: p.stem)
def test_tiny_configs_run_a_forward_pass(path, generator):
    cfg = load_config(path)
    model = build_model(cfg)
    frames_per_clip = len(cfg.data.frame_offsets)
    height, width = cfg.data.input_size
    frames = torch.randn(2, frames_per_clip, 3, height, width, generator=generator)
    targets = {
        "heatmaps": torch.rand(2, 17, height // 4, width // 4, generator=generator),
        "keypoints": torch.rand(2, 17, 2, generator=generator) * torch.tensor([width, height]),
        "target_weight": torch.ones(2, 17),
        # the CAL head's offset targets (HeatmapOffsetCodec)
        "offsets": torch.randn(2, 34, height // 4, width // 4, generator=generator),
        "offset_mask": torch.ones(2, 17, height // 4, width // 4),
    }
    outputs = model(frames, targets=targets, sample_seeds=torch.arange(2))
    losses = build_criterion(cfg, model.head)(outputs, targets)
    assert set(losses) == {*model.head.loss_names, "loss"}
    assert torch.isfinite(losses["loss"])


def test_sizes_that_do_not_fit_are_config_errors():
    with pytest.raises(ConfigError, match="patch_size"):
        build_model(load_config(CONFIG_DIR / "synthetic_tiny.yaml", ["data.heatmap_stride=2"]))
    with pytest.raises(ConfigError, match="decoder_heads"):
        build_model(load_config(CONFIG_DIR / "synthetic_tiny.yaml", ["model.decoder_heads=5"]))
    with pytest.raises(ConfigError, match="divisible"):
        build_model(load_config(CONFIG_DIR / "synthetic_tiny.yaml", ["data.input_size=[120,96]"]))
