"""ViTPose checkpoints -> vidpose checkpoints of the single-frame heatmap model.

Two public layouts are read (chosen by the keys; both under a ``state_dict`` container
or bare):

- **mmpose 0.x** (ViTAE-Transformer/ViTPose's own releases): ``backbone.patch_embed.
  proj``, ``backbone.pos_embed`` [1, 1 + N, C], ``backbone.blocks.{i}.{norm1, attn.qkv,
  attn.proj, norm2, mlp.fc1, mlp.fc2}``, ``backbone.last_norm``;
  ``keypoint_head.deconv_layers.{0, 1, 3, 4}``, ``keypoint_head.final_layer``. Its ViT
  adds ``pos_embed[:, :1]`` (the unused class slot) to every patch
  (``x + pos_embed[:, 1:] + pos_embed[:, :1]``), so the import folds that slot into the
  grid: the same sum, computed once.
- **mmpose 1.x** (mmpretrain's ``VisionTransformer``, e.g. ``td-hm_ViTPose-base_8xb64-
  210e_coco-256x192-216eae50_20230314.pth``): ``backbone.patch_embed.projection``,
  ``backbone.pos_embed`` [1, N, C] (added as is), ``backbone.layers.{i}.{ln1, attn.qkv,
  attn.proj, ln2, ffn.layers.0.0, ffn.layers.1}``, ``backbone.ln1`` (the final norm);
  ``head.deconv_layers.*``, ``head.final_layer``.

The result is a ``model.head: heatmap`` estimator with ``model.decoder: vitpose``
(``vidpose.models.vitpose_decoder``: ViTPose's deconvolutions with their BatchNorm and
the 1x1 final layer, under ViTPose's names) and ``model.backbone.patch_padding: 2``
(ViTPose embeds patches with padding 2), on the COCO skeleton, T = 1
(``data.frame_offsets: [0]``), UDP heatmaps (ViTPose's codec), 25% box padding. It
computes ViTPose's heatmaps exactly (tests/models/test_vitpose_import.py holds it to a
reimplementation of ViTPose's forward) and is ready for ``vidpose extract`` and
``vidpose test``; its backbone initialises temporal models through
``model.backbone.checkpoint`` (with ``model.backbone.patch_padding: 2``).

Nothing here downloads: ``vidpose.inference.pretrained`` fetches the public files.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vidpose.runtime import InputError

# Attention heads by ViT width, as ViTPose's configs set them (the weights do not say:
# the qkv projection is [3C, C] whatever the head count). ViTPose-S: 384 wide with 12
# heads of 32 channels; B: 768 / 12; L: 1024 / 16; H: 1280 / 16.
VITPOSE_HEADS = {384: 12, 768: 12, 1024: 16, 1280: 16}
# Stochastic depth of ViTPose's training configs, kept for fine-tuning the import.
VITPOSE_DROP_PATH = {384: 0.1, 768: 0.3, 1024: 0.5, 1280: 0.55}
PATCH_SIZE = 16
PATCH_PADDING = 2

_MMPOSE1_BLOCK = (
    ("ln1.", "norm1."),
    ("attn.qkv.", "attn.qkv."),
    ("attn.proj.", "attn.proj."),
    ("ln2.", "norm2."),
    ("ffn.layers.0.0.", "mlp.fc1."),
    ("ffn.layers.1.", "mlp.fc2."),
)
_MMPOSE0_BLOCK = tuple(
    (name, name) for name in ("norm1.", "attn.qkv.", "attn.proj.", "norm2.", "mlp.fc1.", "mlp.fc2.")
)
# Keys of a published checkpoint that hold no weights of the model.
_IGNORED = re.compile(r"^(data_preprocessor\.|meta\b)")


class WeightsImportError(InputError):
    """The file is not a ViTPose checkpoint this importer understands (the message
    names the file and what was found)."""


@dataclass
class ViTPoseImport:
    """What :func:`convert_vitpose` made of a checkpoint.

    Attributes:
        layout: "mmpose0" or "mmpose1".
        state: the vidpose model's state dict (``backbone.vit.*``, ``pyramid.*``,
            ``head.predictor.*``).
        config: the vidpose config (a plain dict, ``vidpose.config.to_dict`` form)
            that builds the model the state fits.
        notes: what the import did beyond renaming (the class slot folded, ...).
    """

    layout: str
    state: dict[str, torch.Tensor]
    config: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def read_torch_weights(path: str | Path) -> dict[str, Any]:
    """A torch checkpoint read with ``weights_only=True`` (no code runs), allowing the
    numpy arrays that mmpose stores in its ``meta`` (``dataset_meta``: sigmas, colours).

    Raises:
        FileNotFoundError: no such file.
        WeightsImportError: the file holds other Python objects (named in the message).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path), device="cpu"))
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle's errors vary; name the file and the rule
        raise WeightsImportError(
            f"{path}: cannot be read as weights with torch.load(weights_only=True): "
            f"{str(error).splitlines()[0]} (load it yourself, keep its 'state_dict' and "
            "save that with torch.save)"
        ) from None
    if not isinstance(loaded, Mapping):
        raise WeightsImportError(f"{path}: expected a dict, got {type(loaded).__name__}")
    return dict(loaded)


def _numpy_globals() -> list[Any]:
    """What pickled numpy arrays and scalars reference, under numpy 1's and 2's names."""
    from numpy import dtypes

    core = np._core if hasattr(np, "_core") else np.core  # numpy 2 : numpy 1
    found: list[Any] = [np.ndarray, np.dtype]
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        found.append((core.multiarray._reconstruct, f"{module}._reconstruct"))
        found.append((core.multiarray.scalar, f"{module}.scalar"))
    found += [
        getattr(dtypes, name) for name in dir(dtypes) if name.endswith("DType")
    ]  # numpy >= 1.25 pickles a dtype by its class
    return found


def detect_layout(keys: set[str], source: str) -> str:
    """ "mmpose0" or "mmpose1" from the state dict's keys.

    Raises:
        WeightsImportError: neither layout (the message says what the keys look like).
    """
    if any(key.startswith("backbone.layers.") for key in keys):
        return "mmpose1"
    if any(key.startswith("backbone.blocks.") for key in keys):
        return "mmpose0"
    sample = ", ".join(sorted(keys)[:5])
    raise WeightsImportError(
        f"{source}: not a ViTPose checkpoint: expected backbone.blocks.* (mmpose 0.x) or "
        f"backbone.layers.* (mmpose 1.x) keys, found e.g. {sample}"
    )


def convert_vitpose(
    checkpoint: Mapping[str, Any], *, source: str = "<memory>", num_heads: int | None = None
) -> ViTPoseImport:
    """Rename a ViTPose state dict to vidpose's model and describe that model.

    Args:
        checkpoint: the loaded file (``{"state_dict": ...}`` or the state dict itself).
        source: the file, for messages.
        num_heads: attention heads of the ViT (None: ViTPose's for its width,
            ``VITPOSE_HEADS``; required for other widths).

    Returns:
        The state, the config and notes (:class:`ViTPoseImport`).

    Raises:
        WeightsImportError: an unknown layout, a key with no place in the model, a missing
            part (e.g. ViTPose's "simple" decoder, which has no deconvolutions), or a
            width without a known head count.
    """
    state = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state, Mapping):
        raise WeightsImportError(f"{source}: 'state_dict' is a {type(state).__name__}, not a dict")
    tensors = {
        key.removeprefix("module."): value
        for key, value in state.items()
        if isinstance(value, torch.Tensor) and not _IGNORED.match(key)
    }
    layout = detect_layout(set(tensors), source)
    head_prefix = "keypoint_head." if layout == "mmpose0" else "head."
    block_names = _MMPOSE0_BLOCK if layout == "mmpose0" else _MMPOSE1_BLOCK
    block_key = "blocks" if layout == "mmpose0" else "layers"
    patch_key = "patch_embed.proj." if layout == "mmpose0" else "patch_embed.projection."
    final_norm = "last_norm." if layout == "mmpose0" else "ln1."

    converted: dict[str, torch.Tensor] = {}
    unplaced: list[str] = []
    notes: list[str] = []
    block_pattern = re.compile(rf"^backbone\.{block_key}\.(\d+)\.(.*)$")
    for key, value in tensors.items():
        name = None
        if key.startswith("backbone."):
            rest = key[len("backbone.") :]
            match = block_pattern.match(key)
            if match:
                index, inner = match.groups()
                for old, new in block_names:
                    if inner.startswith(old):
                        name = f"backbone.vit.blocks.{index}.{new}{inner[len(old) :]}"
            elif rest.startswith(patch_key):
                name = "backbone.vit.patch_embed.proj." + rest[len(patch_key) :]
            elif rest.startswith(final_norm):
                name = "backbone.vit.norm." + rest[len(final_norm) :]
            elif rest == "pos_embed":
                name = "backbone.vit.pos_embed"
            elif rest == "cls_token":
                notes.append("class token dropped (ViTPose's ViT reads patches only)")
                continue
        elif key.startswith(head_prefix + "deconv_layers."):
            name = "pyramid." + key[len(head_prefix) :]
        elif key.startswith(head_prefix + "final_layer."):
            name = "head.predictor." + key[len(head_prefix) :]
        if name is None:
            unplaced.append(key)
        else:
            converted[name] = value.detach().clone()
    if unplaced:
        raise WeightsImportError(
            f"{source}: {len(unplaced)} keys have no place in ViTPose's heatmap model "
            f"({layout} layout): {', '.join(sorted(unplaced)[:8])}"
        )
    for required in (
        "backbone.vit.patch_embed.proj.weight",
        "backbone.vit.pos_embed",
        "backbone.vit.norm.weight",
        "pyramid.deconv_layers.0.weight",
        "head.predictor.final_layer.weight",
    ):
        if required not in converted:
            hint = (
                " (ViTPose's 'simple' decoder, a bilinear upsampling + 3x3 conv, is not "
                "supported: import a classic-decoder checkpoint)"
                if required.startswith("pyramid")
                else ""
            )
            raise WeightsImportError(f"{source}: no weights for {required}{hint}")

    patch = converted["backbone.vit.patch_embed.proj.weight"]
    embed_dim = int(patch.shape[0])
    if tuple(patch.shape[1:]) != (3, PATCH_SIZE, PATCH_SIZE):
        raise WeightsImportError(
            f"{source}: patch embedding of shape {list(patch.shape)}, expected "
            f"[C, 3, {PATCH_SIZE}, {PATCH_SIZE}] (ViTPose's 16-pixel patches)"
        )
    depth = 1 + max(
        int(name.split(".")[3]) for name in converted if name.startswith("backbone.vit.blocks.")
    )
    heads = num_heads if num_heads is not None else VITPOSE_HEADS.get(embed_dim)
    if heads is None:
        raise WeightsImportError(
            f"{source}: a ViT {embed_dim} wide is none of ViTPose-S/B/L/H "
            f"({', '.join(map(str, VITPOSE_HEADS))}); give its number of attention heads"
        )
    hidden = converted["backbone.vit.blocks.0.mlp.fc1.weight"].shape[0]
    if hidden != 4 * embed_dim:
        raise WeightsImportError(
            f"{source}: MLP width {hidden} is not 4 x {embed_dim} (timm's and ViTPose's ratio)"
        )

    # The position embedding: [1, N, C], or [1, 1 + N, C] with ViTPose's class slot,
    # which mmpose 0.x adds to every patch; its grid gives the input size (4:3 crops).
    pos = converted["backbone.vit.pos_embed"]
    count = pos.shape[1]
    grid = _grid_of(count)
    if grid is None and _grid_of(count - 1) is not None:
        grid = _grid_of(count - 1)
        pos = pos[:, 1:] + pos[:, :1]
        notes.append("pos_embed's class slot added into every patch's (ViTPose's forward)")
    if grid is None:
        raise WeightsImportError(
            f"{source}: pos_embed has {count} entries, not a 4:3 grid of patches "
            "(with or without ViTPose's class slot)"
        )
    converted["backbone.vit.pos_embed"] = pos.contiguous()
    deconv_width = int(converted["pyramid.deconv_layers.0.weight"].shape[1])
    num_joints = int(converted["head.predictor.final_layer.weight"].shape[0])
    if num_joints != 17:
        raise WeightsImportError(
            f"{source}: {num_joints} heatmaps; the import makes a COCO-17 model (a "
            "whole-body or other-dataset ViTPose is not supported)"
        )
    input_size = (grid[0] * PATCH_SIZE, grid[1] * PATCH_SIZE)
    config = {
        "data": {
            "format": "coco",
            "skeleton": "coco",
            "input_size": list(input_size),
            "heatmap_stride": 4,
            "frame_offsets": [0],
            "box_padding": 1.25,
            "sigma": 2.0,
            "encoding": "udp",
        },
        "model": {
            "head": "heatmap",
            "decoder": "vitpose",
            "decoder_dim": deconv_width,
            "backbone": {
                "name": "vit_base_patch16_224",
                "patch_size": PATCH_SIZE,
                "patch_padding": PATCH_PADDING,
                "embed_dim": embed_dim,
                "depth": depth,
                "num_heads": heads,
                "drop_path_rate": VITPOSE_DROP_PATH.get(embed_dim, 0.1),
            },
        },
        "test": {"flip_test": True},
    }
    return ViTPoseImport(layout=layout, state=converted, config=config, notes=notes)


def _grid_of(count: int) -> tuple[int, int] | None:
    """(h, w) with h * w = count and h : w = 4 : 3 (ViTPose's 256x192 and 384x288)."""
    if count <= 0 or count % 12:
        return None
    side = math.isqrt(count // 12)
    return (4 * side, 3 * side) if 12 * side * side == count else None


def import_vitpose(
    source: str | Path, out: str | Path, *, num_heads: int | None = None
) -> tuple[Path, ViTPoseImport]:
    """Convert a ViTPose checkpoint file into a vidpose checkpoint (safetensors).

    The model is built from the config and loaded strictly, so every tensor of the
    file found its place and every parameter of the model got one.

    Args:
        source: the ViTPose ``.pth`` (or ``.safetensors``) file.
        out: the vidpose checkpoint to write.
        num_heads: see :func:`convert_vitpose`.

    Returns:
        (the written path, the import's description).
    """
    from vidpose.checkpoint import Checkpoint, save_checkpoint
    from vidpose.config import Config, from_dict, to_dict
    from vidpose.models.build import build_model

    source = Path(source)
    converted = convert_vitpose(read_torch_weights(source), source=str(source), num_heads=num_heads)
    config = from_dict(Config, converted.config, source=f"{source} (imported)")
    model = build_model(config)
    try:
        model.load_state_dict(converted.state, strict=True)
    except RuntimeError as error:
        raise WeightsImportError(
            f"{source}: the converted weights do not fit the model: {str(error).splitlines()[0]}"
        ) from None
    saved = Checkpoint(
        model={name: tensor.clone() for name, tensor in model.state_dict().items()},
        config=to_dict(config),
        trainer={"imported_from": str(source), "layout": converted.layout},
    )
    return save_checkpoint(saved, out), converted
