"""The image backbone: a timm Vision Transformer applied to every frame of a clip.

Time is folded into the batch, so each frame is encoded independently by the same
weights (DiffPose's spatio-temporal representation learner mixes frames afterwards,
in ``vidpose.models.temporal``). The output is the patch-token grid; class and
register tokens are dropped because the pose heads are dense.

Weights come from a local file only (``pretrained=False`` always: no hub download).
See :meth:`ViTBackbone.load_checkpoint` for the key names understood.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from einops import rearrange
from torch import nn

from vidpose.timm_import import import_timm

logger = logging.getLogger(__name__)

# Containers that checkpoints wrap their weights in: mmpose/ViTPose "state_dict",
# MAE and DeiT "model", a few trainers "model_state_dict" / "module".
_CONTAINER_KEYS = ("state_dict", "model", "model_state_dict", "model_state", "module")
# Prefixes in front of the ViT's own names, tried in order; the first one that some
# key carries selects the backbone's keys (vidpose's own checkpoints: "backbone.vit.";
# ViTPose / mmpose: "backbone."; some MAE and BEiT exports: "encoder."). A vidpose
# checkpoint file itself stores "ema/" and "model/" sections: the EMA weights first,
# as ``load_estimator`` uses them.
_BACKBONE_PREFIXES = (
    "ema/backbone.vit.",
    "model/backbone.vit.",
    "backbone.vit.",
    "backbone.",
    "encoder.",
    "vit.",
)
# ViTPose names the final LayerNorm "last_norm"; timm calls it "norm".
_RENAMES = (("last_norm.", "norm."),)


@dataclass
class CheckpointReport:
    """What :meth:`ViTBackbone.load_checkpoint` did with a weights file.

    Attributes:
        path: the file read.
        loaded: model parameter names that received weights from the file.
        missing: model parameter names the file did not provide (left at their
            random initialisation).
        unexpected: file keys (as written in the file) that have no place in the
            backbone: other modules' weights, a class token the model does not have,
            MAE's decoder, classifier heads.
        mismatched: keys present in both whose shapes cannot be reconciled (left at
            their initialisation), as "name: file shape -> model shape".
        resized: keys reshaped to fit, as "name: file shape -> model shape"
            (position embeddings to a new grid, patch kernels to a new patch size).
    """

    path: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    resized: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"backbone checkpoint {self.path}: {len(self.loaded)} tensors loaded"]
        for title, names in (
            ("missing (kept at random init)", self.missing),
            ("unexpected (not loaded)", self.unexpected),
            ("shape mismatch (kept at random init)", self.mismatched),
            ("resized", self.resized),
        ):
            if names:
                lines.append(f"  {title}: {len(names)}: {', '.join(names)}")
        return "\n".join(lines)


class ViTBackbone(nn.Module):
    """A timm VisionTransformer over every frame: frames [B, T, 3, H, W] -> tokens [B, T, N, C].

    Args:
        model_name: a timm VisionTransformer name, e.g. "vit_small_patch16_224"
            (built with ``pretrained=False``; only its architecture is used).
        input_size: (H, W) of the input crops in pixels.
        patch_size: patch side in pixels (overrides the named model's, e.g. ViT-H/14
            -> 16 as in ViTPose-H).
        embed_dim, depth, num_heads: override the named model's width, number of
            blocks and attention heads (tiny CPU models); None keeps the model's.
        drop_path_rate: stochastic depth (Huang et al., 2016) of the last block.
        class_token: keep timm's class token (its output is dropped either way).
            False, the default, matches ViTPose, whose ViT has no class token.
        patch_padding: zero padding of the patch embedding's convolution, pixels on
            every side (0: timm's plain patches). ViTPose embeds patches with padding
            2 (its ``PatchEmbed``: ``padding=4 + 2 * (ratio // 2 - 1)`` with ratio 1;
            mmpose 1.x: ``patch_cfg=dict(padding=2)``), so patch (i, j) covers pixels
            [16 i - 2, 16 i + 14) and weights trained that way need it. Must be below
            half the patch size, which keeps the grid at (H / patch, W / patch).

    Attributes:
        grid_size: (h, w) = (H / patch, W / patch), the token grid; N = h * w.
        embed_dim: C, the token width.
        vit: the timm model (parameter names ``vit.blocks.{i}.`` etc.).
    """

    def __init__(
        self,
        *,
        model_name: str,
        input_size: tuple[int, int],
        patch_size: int,
        embed_dim: int | None = None,
        depth: int | None = None,
        num_heads: int | None = None,
        drop_path_rate: float = 0.0,
        class_token: bool = False,
        patch_padding: int = 0,
    ) -> None:
        super().__init__()
        height, width = input_size
        if height % patch_size or width % patch_size:
            raise ValueError(
                f"ViTBackbone: input size {input_size} is not divisible by patch size {patch_size}"
            )
        if not 0 <= 2 * patch_padding < patch_size:
            raise ValueError(
                f"ViTBackbone: patch_padding {patch_padding} must be >= 0 and below half the "
                f"patch size {patch_size} (the token grid would change)"
            )
        timm = import_timm()
        overrides = {
            name: value
            for name, value in (
                ("embed_dim", embed_dim),
                ("depth", depth),
                ("num_heads", num_heads),
            )
            if value is not None
        }
        self.vit = timm.create_model(
            model_name,
            pretrained=False,  # never download: weights come from load_checkpoint()
            img_size=(height, width),
            patch_size=patch_size,
            num_classes=0,
            global_pool="",
            class_token=class_token,
            drop_path_rate=drop_path_rate,
            **overrides,
        )
        vit_type = timm.models.vision_transformer.VisionTransformer
        if not isinstance(self.vit, vit_type):
            raise TypeError(
                f"ViTBackbone: timm model {model_name!r} is a {type(self.vit).__name__}, "
                "not a timm VisionTransformer; pick a vit_* model"
            )
        if patch_padding:
            # (H + 2p - patch) // patch + 1 = H / patch for 2p < patch: same grid, each
            # patch shifted by p pixels up and left (ViTPose's embedding)
            self.vit.patch_embed.proj.padding = (patch_padding, patch_padding)
        self.patch_padding = patch_padding
        self.grid_size: tuple[int, int] = (height // patch_size, width // patch_size)
        self.embed_dim: int = self.vit.embed_dim
        self.num_prefix_tokens: int = self.vit.num_prefix_tokens

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Encode every frame.

        Args:
            frames: [B, T, 3, H, W] normalised crops.

        Returns:
            [B, T, N, C] patch tokens (row-major over the h x w grid, after the final
            LayerNorm), class/register tokens removed.
        """
        batch = frames.shape[0]
        images = rearrange(frames, "b t c h w -> (b t) c h w")  # time folded into batch
        tokens = self.vit.forward_features(images)  # [B*T, prefix + N, C]
        tokens = tokens[:, self.num_prefix_tokens :]
        return rearrange(tokens, "(b t) n c -> b t n c", b=batch)

    def load_checkpoint(self, path: str | Path) -> CheckpointReport:
        """Initialise from a local weights file; report what did not fit.

        The file is a safetensors file (``.safetensors``) or a torch file (loaded
        with ``weights_only=True``). Keys are mapped to timm names like this:

        1. Unwrap a container dict: ``state_dict`` (mmpose/ViTPose), ``model``
           (MAE, DeiT), ``model_state_dict``, ``model_state``, ``module``.
        2. Strip DDP's ``module.`` prefix; then the first of ``ema/backbone.vit.``
           and ``model/backbone.vit.`` (a vidpose checkpoint file, e.g. one written by
           ``vidpose import-weights``), ``backbone.vit.`` (vidpose state dicts),
           ``backbone.`` (ViTPose), ``encoder.``, ``vit.`` that some key
           carries selects the backbone's keys (the others, e.g. ViTPose's
           ``keypoint_head.*``, are reported as unexpected).
        3. Rename ViTPose's ``last_norm.*`` to timm's ``norm.*``. MAE and timm names
           (``patch_embed.proj``, ``blocks.{i}.norm1/attn.qkv/attn.proj/norm2/mlp.fc1/
           mlp.fc2``, ``norm``) are already timm's.
        4. ``pos_embed``: the file's grid is read from its length (square, the
           model's grid, or the model's aspect ratio) and resized to the model's grid
           (bicubic, as timm does). A leading class-token entry is dropped when the
           file has a ``cls_token`` (timm, MAE); without one (ViTPose, whose ViT adds
           ``pos_embed[:, :1]`` to every patch at run time) it is added into the grid.
        5. ``patch_embed.proj.weight`` with another patch size is resampled (timm's
           FlexiViT resampling, Beyer et al., 2023).
        6. Any other shape difference is reported as a mismatch and not loaded.

        Missing, unexpected, mismatched and resized keys are logged as a warning and
        returned; nothing is dropped silently.

        Args:
            path: the weights file.

        Returns:
            the :class:`CheckpointReport`.
        """
        path = Path(path)
        state = read_state_dict(path)
        report = CheckpointReport(path=str(path))
        mapped = map_vit_state_dict(state, self.vit, self.grid_size, report)
        result = self.vit.load_state_dict(mapped, strict=False)
        # map_vit_state_dict only keeps keys the model has, with matching shapes.
        assert not result.unexpected_keys, result.unexpected_keys
        report.loaded = sorted(mapped)
        report.missing = sorted(result.missing_keys)
        if report.missing or report.unexpected or report.mismatched or report.resized:
            warnings.warn(report.summary(), stacklevel=2)
        else:
            logger.info(report.summary())
        return report


def read_state_dict(path: Path) -> dict[str, object]:
    """Read a safetensors file or a torch file (``weights_only=True``) onto the CPU."""
    if not path.is_file():
        raise FileNotFoundError(f"backbone checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path), device="cpu"))
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle errors vary; name the file and the rule
        raise ValueError(
            f"{path}: could not be read as a torch weights file with weights_only=True "
            f"({error}); convert it to safetensors or a plain state dict"
        ) from error
    if not isinstance(loaded, Mapping):
        raise ValueError(f"{path}: expected a dict of tensors, got {type(loaded).__name__}")
    return dict(loaded)


def map_vit_state_dict(
    state: Mapping[str, object],
    vit: nn.Module,
    grid_size: tuple[int, int],
    report: CheckpointReport,
) -> dict[str, torch.Tensor]:
    """Map a file's keys to ``vit``'s names (rules in :meth:`ViTBackbone.load_checkpoint`).

    Fills ``report.unexpected``, ``report.mismatched`` and ``report.resized``.

    Returns:
        the tensors to load, keyed by ``vit`` parameter names, shapes matching.
    """
    for container in _CONTAINER_KEYS:
        if isinstance(state.get(container), Mapping):
            ignored = [key for key in state if key != container]
            report.unexpected.extend(f"{key} (outside '{container}')" for key in ignored)
            state = state[container]
            break
    # original file key -> tensor, non-tensors reported
    tensors: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            tensors[key] = value
        else:
            report.unexpected.append(f"{key} (not a tensor)")

    def strip(key: str, prefix: str) -> str:
        return key[len(prefix) :] if key.startswith(prefix) else key

    renamed = {key: strip(key, "module.") for key in tensors}  # file key -> working name
    prefix = next(
        (p for p in _BACKBONE_PREFIXES if any(n.startswith(p) for n in renamed.values())), ""
    )
    if prefix:
        for key, name in list(renamed.items()):
            if name.startswith(prefix):
                renamed[key] = name[len(prefix) :]
            else:
                report.unexpected.append(key)
                del renamed[key]
    for key, name in renamed.items():
        for old, new in _RENAMES:
            if name.startswith(old):
                renamed[key] = new + name[len(old) :]

    by_name = {name: key for key, name in renamed.items()}
    model_state = vit.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    for name, key in by_name.items():
        value = tensors[key]
        if name not in model_state:
            report.unexpected.append(key)
            continue
        target = model_state[name]
        if name == "pos_embed" and value.shape != target.shape:
            value = _fit_pos_embed(value, vit, grid_size, "cls_token" in by_name, key, report)
            if value is None:
                continue
        elif name == "patch_embed.proj.weight" and value.shape != target.shape:
            value = _fit_patch_kernel(value, target, key, report)
            if value is None:
                continue
        elif value.shape != target.shape:
            report.mismatched.append(f"{key}: {list(value.shape)} -> {list(target.shape)}")
            continue
        mapped[name] = value.to(target.dtype)
    return mapped


def _infer_grid(
    count: int, target: tuple[int, int], prefixes: tuple[int, ...]
) -> tuple[int, tuple[int, int]] | None:
    """How ``count`` position embeddings split into leading non-grid entries (0 or 1)
    and an (h, w) grid.

    Rules, in order of preference: the model's own grid; a square grid (timm / MAE
    pre-training at 224 x 224); the model's aspect ratio. Within a rule, ``prefixes``
    gives the order in which 0 or 1 leading entries are tried.
    """

    def square(n: int) -> tuple[int, int] | None:
        side = math.isqrt(n)
        return (side, side) if side * side == n else None

    def same_aspect(n: int) -> tuple[int, int] | None:
        height = math.isqrt(round(n * target[0] / target[1]))
        for h in (height - 1, height, height + 1):
            if h > 0 and n % h == 0 and h * target[1] == (n // h) * target[0]:
                return h, n // h
        return None

    def model_grid(n: int) -> tuple[int, int] | None:
        return target if n == target[0] * target[1] else None

    for rule in (model_grid, square, same_aspect):
        for prefix in prefixes:
            grid = rule(count - prefix) if count > prefix else None
            if grid is not None:
                return prefix, grid
    return None


def _fit_pos_embed(
    value: torch.Tensor,
    vit: nn.Module,
    grid_size: tuple[int, int],
    file_has_cls_token: bool,
    key: str,
    report: CheckpointReport,
) -> torch.Tensor | None:
    target = vit.pos_embed
    model_prefix = target.shape[1] - grid_size[0] * grid_size[1]  # 0 unless embedded cls
    # A file with a class token most likely has its position-embedding slot too.
    split = None
    if value.ndim == 3 and value.shape[-1] == target.shape[-1]:
        split = _infer_grid(value.shape[1], grid_size, (1, 0) if file_has_cls_token else (0, 1))
    if split is None:
        report.mismatched.append(f"{key}: {list(value.shape)} -> {list(target.shape)}")
        return None
    file_prefix, source_grid = split
    prefix, grid = value[:, :file_prefix], value[:, file_prefix:]
    if file_prefix and not file_has_cls_token:
        # ViTPose keeps a class-token slot in pos_embed but adds it to every patch
        # (x + pos_embed[:, 1:] + pos_embed[:, :1]); fold it in to keep that meaning.
        grid = grid + prefix[:, :1]
    if tuple(source_grid) != tuple(grid_size):
        timm = import_timm()
        grid = timm.layers.resample_abs_pos_embed(
            grid, new_size=list(grid_size), old_size=list(source_grid), num_prefix_tokens=0
        )
    if model_prefix:
        keep = prefix if prefix.shape[1] == model_prefix else target[:, :model_prefix].detach()
        grid = torch.cat([keep.to(grid.dtype), grid], dim=1)
    report.resized.append(
        f"{key}: {list(value.shape)} (grid {source_grid[0]}x{source_grid[1]}) -> "
        f"{list(target.shape)} (grid {grid_size[0]}x{grid_size[1]})"
    )
    return grid


def _fit_patch_kernel(
    value: torch.Tensor, target: torch.Tensor, key: str, report: CheckpointReport
) -> torch.Tensor | None:
    if value.ndim != 4 or value.shape[:2] != target.shape[:2]:
        report.mismatched.append(f"{key}: {list(value.shape)} -> {list(target.shape)}")
        return None
    timm = import_timm()
    resized = timm.layers.resample_patch_embed(value.float(), new_size=list(target.shape[-2:]))
    report.resized.append(f"{key}: {list(value.shape)} -> {list(target.shape)}")
    return resized
