"""ViTPose checkpoints in both public layouts import into a model that computes ViTPose's
heatmaps: each is held to a reimplementation of ViTPose's forward written here with
torch.nn.functional alone (nothing of vidpose's), on randomly initialised weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vidpose.checkpoint import load_checkpoint
from vidpose.config import Config, from_dict
from vidpose.inference.predictor import load_estimator
from vidpose.models.build import build_model, load_initial_weights
from vidpose.models.vitpose_import import (
    WeightsImportError,
    convert_vitpose,
    import_vitpose,
)

# A tiny ViTPose: 64 x 48 crops (a 4 x 3 patch grid), width 64, 2 blocks of 4 heads,
# deconvolutions 32 wide, COCO's 17 joints.
C, DEPTH, HEADS, D, K = 64, 2, 4, 32, 17
GRID = (4, 3)
INPUT = (64, 48)


def random_vitpose(generator: torch.Generator, *, with_class_slot: bool) -> dict:
    """ViTPose's parameters under neutral names (mmpose 0.x naming is added by the
    writers below). BatchNorm statistics are random too, so evaluation mode matters."""

    def rand(*shape, scale=0.2):
        return torch.randn(*shape, generator=generator) * scale

    n = GRID[0] * GRID[1] + (1 if with_class_slot else 0)
    weights = {
        "patch.w": rand(C, 3, 16, 16, scale=0.05),
        "patch.b": rand(C),
        "pos": rand(1, n, C),
        "norm.w": 1 + rand(C),
        "norm.b": rand(C),
        "final.w": rand(K, D, 1, 1),
        "final.b": rand(K),
    }
    for i in range(DEPTH):
        weights.update(
            {
                f"{i}.n1.w": 1 + rand(C),
                f"{i}.n1.b": rand(C),
                f"{i}.qkv.w": rand(3 * C, C, scale=0.1),
                f"{i}.qkv.b": rand(3 * C),
                f"{i}.proj.w": rand(C, C, scale=0.1),
                f"{i}.proj.b": rand(C),
                f"{i}.n2.w": 1 + rand(C),
                f"{i}.n2.b": rand(C),
                f"{i}.fc1.w": rand(4 * C, C, scale=0.1),
                f"{i}.fc1.b": rand(4 * C),
                f"{i}.fc2.w": rand(C, 4 * C, scale=0.1),
                f"{i}.fc2.b": rand(C),
            }
        )
    for j, width in ((0, C), (1, D)):
        weights.update(
            {
                f"de{j}.w": rand(width, D, 4, 4, scale=0.05),
                f"bn{j}.w": 1 + rand(D),
                f"bn{j}.b": rand(D),
                f"bn{j}.mean": rand(D),
                f"bn{j}.var": 0.5 + rand(D).abs(),
            }
        )
    return weights


def mmpose0_layout(w: dict) -> dict:
    """ViTAE-Transformer/ViTPose's names (mmpose 0.x)."""
    state = {
        "backbone.patch_embed.proj.weight": w["patch.w"],
        "backbone.patch_embed.proj.bias": w["patch.b"],
        "backbone.pos_embed": w["pos"],
        "backbone.last_norm.weight": w["norm.w"],
        "backbone.last_norm.bias": w["norm.b"],
        "keypoint_head.final_layer.weight": w["final.w"],
        "keypoint_head.final_layer.bias": w["final.b"],
    }
    for i in range(DEPTH):
        for ours, theirs in (
            ("n1", "norm1"),
            ("qkv", "attn.qkv"),
            ("proj", "attn.proj"),
            ("n2", "norm2"),
            ("fc1", "mlp.fc1"),
            ("fc2", "mlp.fc2"),
        ):
            state[f"backbone.blocks.{i}.{theirs}.weight"] = w[f"{i}.{ours}.w"]
            state[f"backbone.blocks.{i}.{theirs}.bias"] = w[f"{i}.{ours}.b"]
    state.update(_deconvs(w, "keypoint_head."))
    return {"state_dict": state, "meta": {"epoch": 210}}


def mmpose1_layout(w: dict) -> dict:
    """mmpose 1.x's names (mmpretrain's VisionTransformer, HeatmapHead), with the numpy
    arrays mmpose keeps in ``meta``."""
    state = {
        "backbone.patch_embed.projection.weight": w["patch.w"],
        "backbone.patch_embed.projection.bias": w["patch.b"],
        "backbone.pos_embed": w["pos"],
        "backbone.ln1.weight": w["norm.w"],
        "backbone.ln1.bias": w["norm.b"],
        "head.final_layer.weight": w["final.w"],
        "head.final_layer.bias": w["final.b"],
    }
    for i in range(DEPTH):
        for ours, theirs in (
            ("n1", "ln1"),
            ("qkv", "attn.qkv"),
            ("proj", "attn.proj"),
            ("n2", "ln2"),
            ("fc1", "ffn.layers.0.0"),
            ("fc2", "ffn.layers.1"),
        ):
            state[f"backbone.layers.{i}.{theirs}.weight"] = w[f"{i}.{ours}.w"]
            state[f"backbone.layers.{i}.{theirs}.bias"] = w[f"{i}.{ours}.b"]
    state.update(_deconvs(w, "head."))
    meta = {"dataset_meta": {"sigmas": np.linspace(0.02, 0.1, 17, dtype=np.float32)}}
    return {"state_dict": state, "meta": meta}


def _deconvs(w: dict, prefix: str) -> dict:
    state = {}
    for j, (conv, norm) in enumerate(((0, 1), (3, 4))):
        state[f"{prefix}deconv_layers.{conv}.weight"] = w[f"de{j}.w"]
        state[f"{prefix}deconv_layers.{norm}.weight"] = w[f"bn{j}.w"]
        state[f"{prefix}deconv_layers.{norm}.bias"] = w[f"bn{j}.b"]
        state[f"{prefix}deconv_layers.{norm}.running_mean"] = w[f"bn{j}.mean"]
        state[f"{prefix}deconv_layers.{norm}.running_var"] = w[f"bn{j}.var"]
        state[f"{prefix}deconv_layers.{norm}.num_batches_tracked"] = torch.tensor(7)
    return state


def vitpose_heatmaps(w: dict, images: torch.Tensor, *, class_slot: bool) -> torch.Tensor:
    """ViTPose's forward (ViTAE-Transformer/ViTPose ``ViT.forward_features`` +
    ``TopdownHeatmapSimpleHead``; mmpose 1.x the same without the class slot):
    images [B, 3, H, W] -> heatmaps [B, K, H/4, W/4]."""
    x = F.conv2d(images, w["patch.w"], w["patch.b"], stride=16, padding=2)  # [B, C, h, w]
    batch, _, h, wd = x.shape
    x = x.flatten(2).transpose(1, 2)  # [B, N, C]
    pos = w["pos"]
    x = x + (pos[:, 1:] + pos[:, :1] if class_slot else pos)
    for i in range(DEPTH):
        y = F.layer_norm(x, (C,), w[f"{i}.n1.w"], w[f"{i}.n1.b"], eps=1e-6)
        qkv = F.linear(y, w[f"{i}.qkv.w"], w[f"{i}.qkv.b"])
        qkv = qkv.reshape(batch, -1, 3, HEADS, C // HEADS).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attention = (q * (C // HEADS) ** -0.5) @ k.transpose(-2, -1)
        y = (attention.softmax(-1) @ v).transpose(1, 2).reshape(batch, -1, C)
        x = x + F.linear(y, w[f"{i}.proj.w"], w[f"{i}.proj.b"])
        y = F.layer_norm(x, (C,), w[f"{i}.n2.w"], w[f"{i}.n2.b"], eps=1e-6)
        y = F.linear(F.gelu(F.linear(y, w[f"{i}.fc1.w"], w[f"{i}.fc1.b"])), w[f"{i}.fc2.w"])
        x = x + y + w[f"{i}.fc2.b"]
    x = F.layer_norm(x, (C,), w["norm.w"], w["norm.b"], eps=1e-6)
    x = x.transpose(1, 2).reshape(batch, C, h, wd)
    for j in range(2):
        x = F.conv_transpose2d(x, w[f"de{j}.w"], stride=2, padding=1)
        x = F.batch_norm(
            x, w[f"bn{j}.mean"], w[f"bn{j}.var"], w[f"bn{j}.w"], w[f"bn{j}.b"], eps=1e-5
        )
        x = F.relu(x)
    return F.conv2d(x, w["final.w"], w["final.b"])


@pytest.mark.parametrize("layout", ["mmpose0", "mmpose1"])
def test_imported_vitpose_computes_vitposes_heatmaps(tmp_path, layout):
    generator = torch.Generator().manual_seed(3 if layout == "mmpose0" else 4)
    class_slot = layout == "mmpose0"
    weights = random_vitpose(generator, with_class_slot=class_slot)
    source = tmp_path / f"vitpose_{layout}.pth"
    torch.save((mmpose0_layout if class_slot else mmpose1_layout)(weights), source)

    out, report = import_vitpose(source, tmp_path / "imported.safetensors", num_heads=HEADS)
    assert report.layout == layout
    model, config = load_estimator(out)  # the stored config builds it; nothing else read
    assert config.model.backbone.patch_padding == 2 and config.model.decoder == "vitpose"
    assert config.data.input_size == INPUT and config.data.frame_offsets == (0,)
    assert config.data.skeleton == "coco" and config.data.encoding == "udp"

    images = torch.randn(2, 3, *INPUT, generator=generator)
    expected = vitpose_heatmaps(weights, images, class_slot=class_slot)
    with torch.no_grad():
        heatmaps = model(images[:, None])["heatmaps"]
    assert heatmaps.shape == (2, K, 16, 12)
    torch.testing.assert_close(heatmaps, expected, rtol=1e-4, atol=1e-5)
    # and through the inference path, which decodes the same heatmaps
    prediction = model.predict(images[:, None])
    torch.testing.assert_close(prediction.heatmaps, expected, rtol=1e-4, atol=1e-5)


def test_without_the_padding_the_model_would_differ(tmp_path):
    """The patch padding is what makes the import exact (a guard on the test itself)."""
    generator = torch.Generator().manual_seed(5)
    weights = random_vitpose(generator, with_class_slot=False)
    converted = convert_vitpose(mmpose1_layout(weights), num_heads=HEADS)
    converted.config["model"]["backbone"]["patch_padding"] = 0
    model = build_model(from_dict(Config, converted.config, source="test")).eval()
    model.load_state_dict(converted.state)
    images = torch.randn(1, 3, *INPUT, generator=generator)
    with torch.no_grad():
        heatmaps = model(images[:, None])["heatmaps"]
    assert not torch.allclose(heatmaps, vitpose_heatmaps(weights, images, class_slot=False))


def test_unknown_keys_and_simple_decoder_are_refused(tmp_path):
    generator = torch.Generator().manual_seed(6)
    checkpoint = mmpose1_layout(random_vitpose(generator, with_class_slot=False))
    state = dict(checkpoint["state_dict"])
    state["head.extra_conv.weight"] = torch.zeros(1)
    with pytest.raises(WeightsImportError, match="head.extra_conv.weight"):
        convert_vitpose({"state_dict": state}, num_heads=HEADS)
    simple = {k: v for k, v in checkpoint["state_dict"].items() if "deconv" not in k}
    with pytest.raises(WeightsImportError, match="simple"):
        convert_vitpose({"state_dict": simple}, num_heads=HEADS)
    with pytest.raises(WeightsImportError, match="attention heads"):
        convert_vitpose(checkpoint)  # width 64 is no ViTPose size
    with pytest.raises(WeightsImportError, match="not a ViTPose checkpoint"):
        convert_vitpose({"state_dict": {"encoder.weight": torch.zeros(1)}})


def test_imported_backbone_initialises_a_temporal_model(tmp_path):
    """The import's ViT starts a temporal diffusion model through
    model.backbone.checkpoint, read when training starts and never by build_model."""
    generator = torch.Generator().manual_seed(7)
    weights = random_vitpose(generator, with_class_slot=True)
    source = tmp_path / "vitpose.pth"
    torch.save(mmpose0_layout(weights), source)
    out, _ = import_vitpose(source, tmp_path / "imported.safetensors", num_heads=HEADS)
    imported = load_checkpoint(out).model

    values = {
        "data": {"input_size": list(INPUT), "frame_offsets": [-1, 0, 1]},
        "model": {
            "head": "diffusion",
            "decoder_dim": 32,
            "backbone": {
                "embed_dim": C,
                "depth": DEPTH,
                "num_heads": HEADS,
                "patch_padding": 2,
                "checkpoint": str(out),
            },
        },
    }
    config = from_dict(Config, values, source="test")
    model = build_model(config)  # reads no file
    assert not torch.equal(model.backbone.vit.pos_embed, imported["backbone.vit.pos_embed"])
    with pytest.warns(UserWarning, match="unexpected"):  # the decoder's weights are not the ViT's
        load_initial_weights(model, config)
    for name, value in model.backbone.state_dict().items():
        torch.testing.assert_close(value, imported[f"backbone.{name}"], msg=name)


def test_import_weights_command_and_names_fetched_into_the_cache(tmp_path, monkeypatch, capsys):
    """`vidpose import-weights SRC --out` on a file, and a name (vitpose-b) resolved
    through the cache: downloaded from its URL (a local file URL here), checked against
    the SHA-256 digits of its file name, imported once for `extract --checkpoint NAME`."""
    from vidpose.cli import main
    from vidpose.inference import pretrained
    from vidpose.inference.downloads import RemoteFile, sha256_of

    generator = torch.Generator().manual_seed(8)
    source = tmp_path / "vitpose.pth"
    torch.save(mmpose0_layout(random_vitpose(generator, with_class_slot=True)), source)
    out = tmp_path / "imported.safetensors"
    assert main(["import-weights", str(source), "--out", str(out), "--num-heads", "4"]) == 0
    assert "mmpose0 layout" in capsys.readouterr().out
    assert load_checkpoint(out).config["model"]["decoder"] == "vitpose"
    assert main(["import-weights", str(tmp_path / "missing.pth"), "--out", str(out)]) == 2

    # by name (the tiny ViT needs its head count: the import is wrapped to give it)
    digits = sha256_of(source)[:8]
    remote = RemoteFile(f"vitpose-{digits}.pth", source.as_uri(), sha256_prefix=digits)
    monkeypatch.setitem(pretrained.POSE_WEIGHTS, "vitpose-test", remote)
    monkeypatch.setenv("VIDPOSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(pretrained, "import_vitpose", _with_heads(pretrained.import_vitpose))
    resolved = pretrained.resolve_checkpoint("vitpose-test")
    assert resolved == tmp_path / "cache" / "vitpose-test.safetensors" and resolved.is_file()
    assert (tmp_path / "cache" / f"vitpose-{digits}.pth.sha256").is_file()
    model, _ = load_estimator(resolved)
    assert model.backbone.patch_padding == 2


def _with_heads(import_vitpose):
    def wrapped(source, out, *, num_heads=None):
        return import_vitpose(source, out, num_heads=HEADS)

    return wrapped


def test_a_checkpoint_trained_from_an_init_file_loads_without_that_file(tmp_path):
    """model.backbone.checkpoint is a training run's start: a checkpoint whose stored
    config names a file this machine does not have still builds and loads."""
    from vidpose.checkpoint import Checkpoint, save_checkpoint
    from vidpose.config import to_dict

    values = {
        "data": {"input_size": list(INPUT), "frame_offsets": [0]},
        "model": {
            "head": "heatmap",
            "decoder_dim": 32,
            "backbone": {
                "embed_dim": C,
                "depth": 1,
                "num_heads": HEADS,
                "checkpoint": "/weights/not_on_this_machine.pth",
            },
        },
    }
    config = from_dict(Config, values, source="test")
    model = build_model(config)
    path = save_checkpoint(
        Checkpoint(model=model.state_dict(), config=to_dict(config)),
        tmp_path / "trained.safetensors",
    )
    loaded, stored = load_estimator(path)
    assert stored.model.backbone.checkpoint == "/weights/not_on_this_machine.pth"
    with pytest.raises(FileNotFoundError, match="not_on_this_machine"):
        load_initial_weights(build_model(stored), stored)  # only a training start reads it
