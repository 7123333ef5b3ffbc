"""The ViT backbone: shapes, frame folding, and the checkpoint key mapping."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from vidpose.models.backbone import ViTBackbone, _infer_grid
from vidpose.models.build import build_model, load_initial_weights
from vidpose.timm_import import import_timm

INPUT = (64, 48)  # -> 4 x 3 tokens


def tiny_backbone(**overrides) -> ViTBackbone:
    arguments = dict(
        model_name="vit_small_patch16_224",
        input_size=INPUT,
        patch_size=16,
        embed_dim=32,
        depth=2,
        num_heads=2,
    )
    arguments.update(overrides)
    return ViTBackbone(**arguments)


def test_tokens_shape_and_prefix_tokens_dropped(generator):
    frames = torch.randn(2, 3, 3, *INPUT, generator=generator)
    for class_token in (False, True):
        backbone = tiny_backbone(class_token=class_token).eval()
        assert backbone.grid_size == (4, 3) and backbone.embed_dim == 32
        tokens = backbone(frames)
        assert tokens.shape == (2, 3, 12, 32)
        if class_token:
            full = backbone.vit.forward_features(frames.flatten(0, 1))
            assert full.shape[1] == 13
            torch.testing.assert_close(tokens.flatten(0, 1), full[:, 1:])


def test_frames_are_folded_into_the_batch_and_encoded_independently(generator):
    backbone = tiny_backbone().eval()
    frames = torch.randn(2, 3, 3, *INPUT, generator=generator)
    tokens = backbone(frames)
    torch.testing.assert_close(tokens[:, 1], backbone(frames[:, 1:2])[:, 0])
    torch.testing.assert_close(tokens[1], backbone(frames[1:2])[0])


def test_input_not_divisible_by_patch_is_rejected():
    with pytest.raises(ValueError, match="divisible"):
        tiny_backbone(input_size=(60, 48))


# --------------------------------------------------------------------------- checkpoints


def source_state(backbone: ViTBackbone) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in backbone.vit.state_dict().items()}


def test_timm_names_load_one_to_one(tmp_path):
    source = tiny_backbone()
    path = tmp_path / "vit.safetensors"
    save_file(source_state(source), str(path))
    target = tiny_backbone()
    report = target.load_checkpoint(path)
    assert report.missing == [] and report.unexpected == [] and report.mismatched == []
    assert report.resized == []
    for name, value in source.vit.state_dict().items():
        assert torch.equal(target.vit.state_dict()[name], value), name


def test_mae_checkpoint_drops_class_token_and_resizes_pos_embed(tmp_path, generator):
    source = tiny_backbone()
    state = source_state(source)
    # MAE pre-training at a square grid with a class token and its own decoder
    grid = torch.randn(1, 25, 32, generator=generator)  # 5 x 5
    state["pos_embed"] = torch.cat([torch.zeros(1, 1, 32), grid], dim=1)
    state["cls_token"] = torch.randn(1, 1, 32, generator=generator)
    state["mask_token"] = torch.randn(1, 1, 32, generator=generator)
    state["decoder_embed.weight"] = torch.randn(16, 32, generator=generator)
    path = tmp_path / "mae.pth"
    torch.save({"model": state, "epoch": 799}, path)

    target = tiny_backbone()
    with pytest.warns(UserWarning, match="unexpected"):
        report = target.load_checkpoint(path)
    assert sorted(report.unexpected) == sorted(
        ["cls_token", "mask_token", "decoder_embed.weight", "epoch (outside 'model')"]
    )
    assert report.missing == []
    assert len(report.resized) == 1 and report.resized[0].startswith("pos_embed")
    timm = import_timm()
    expected = timm.layers.resample_abs_pos_embed(
        grid, new_size=[4, 3], old_size=[5, 5], num_prefix_tokens=0
    )
    torch.testing.assert_close(target.vit.pos_embed.detach(), expected)
    assert torch.equal(target.vit.blocks[1].attn.qkv.weight, source.vit.blocks[1].attn.qkv.weight)


def test_vitpose_checkpoint_maps_prefix_last_norm_and_folds_the_class_slot(tmp_path, generator):
    source = tiny_backbone()
    vitpose = {f"backbone.{k}": v for k, v in source_state(source).items()}
    vitpose["backbone.last_norm.weight"] = vitpose.pop("backbone.norm.weight")
    vitpose["backbone.last_norm.bias"] = vitpose.pop("backbone.norm.bias")
    grid = torch.randn(1, 12, 32, generator=generator)
    slot = torch.randn(1, 1, 32, generator=generator)
    vitpose["backbone.pos_embed"] = torch.cat([slot, grid], dim=1)  # 1 + 4 x 3, no cls_token
    vitpose["keypoint_head.final_layer.weight"] = torch.randn(17, 32, 1, 1, generator=generator)
    path = tmp_path / "vitpose.pth"
    torch.save({"state_dict": vitpose, "meta": {"epoch": 210}}, path)

    target = tiny_backbone()
    with pytest.warns(UserWarning):
        report = target.load_checkpoint(path)
    assert report.missing == []
    assert sorted(report.unexpected) == [
        "keypoint_head.final_layer.weight",
        "meta (outside 'state_dict')",
    ]
    # ViTPose adds pos_embed[:, :1] to every patch at run time
    torch.testing.assert_close(target.vit.pos_embed.detach(), grid + slot)
    assert torch.equal(target.vit.norm.weight, source.vit.norm.weight)
    assert torch.equal(target.vit.patch_embed.proj.weight, source.vit.patch_embed.proj.weight)


def test_missing_mismatched_and_resized_keys_are_reported(tmp_path):
    state = source_state(tiny_backbone())
    del state["blocks.0.mlp.fc1.weight"]
    state["blocks.1.mlp.fc2.bias"] = torch.zeros(7)
    state["patch_embed.proj.weight"] = torch.randn(32, 3, 8, 8)  # patch 8 -> 16
    path = tmp_path / "partial.safetensors"
    save_file(state, str(path))
    target = tiny_backbone()
    before = target.vit.blocks[1].mlp.fc2.bias.detach().clone()
    with pytest.warns(UserWarning, match="missing"):
        report = target.load_checkpoint(path)
    assert report.missing == ["blocks.0.mlp.fc1.weight", "blocks.1.mlp.fc2.bias"]
    assert report.mismatched == ["blocks.1.mlp.fc2.bias: [7] -> [32]"]
    assert report.resized == ["patch_embed.proj.weight: [32, 3, 8, 8] -> [32, 3, 16, 16]"]
    assert torch.equal(target.vit.blocks[1].mlp.fc2.bias, before)  # left at its init
    assert "patch_embed.proj.weight" in report.loaded


def test_vidpose_checkpoint_prefix_and_build_model_loads_it(tmp_path, micro_config):
    cfg = micro_config()
    trained = build_model(cfg)
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, str(path))
    rebuilt = build_model(micro_config(f"model.backbone.checkpoint={path}"))  # reads nothing
    with pytest.warns(UserWarning, match="unexpected"):  # the other modules' weights
        load_initial_weights(rebuilt, micro_config(f"model.backbone.checkpoint={path}"))
    for name, value in trained.backbone.state_dict().items():
        assert torch.equal(rebuilt.backbone.state_dict()[name], value), name


def test_grid_inference_prefers_the_model_grid():
    # ViTPose file for an 8 x 6 grid: 1 + 48 = 49 entries, not a 7 x 7 grid
    assert _infer_grid(49, (8, 6), (0, 1)) == (1, (8, 6))
    assert _infer_grid(197, (16, 12), (1, 0)) == (1, (14, 14))
    assert _infer_grid(193, (8, 6), (0, 1)) == (1, (16, 12))  # same aspect ratio
    assert _infer_grid(196, (16, 12), (0, 1)) == (0, (14, 14))
    assert _infer_grid(31, (16, 12), (0, 1)) is None
