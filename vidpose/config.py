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
import os
import tempfile
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml


class ConfigError(ValueError):
    """A config file, key or value is not what the schema expects."""


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
    box_padding: float = 1.25  # person boxes are enlarged by this factor
    sigma: float = 2.0  # Gaussian target radius in heatmap pixels
    encoding: Literal["gaussian", "udp"] = "gaussian"
    val_boxes: str = "gt"  # "gt" or a detections file (COCO results format)
    det_score_threshold: float = 0.0
    # augmentation (training only)
    scale_factor: float = 0.3
    rotation_factor: float = 40.0
    flip_prob: float = 0.5
    half_body_prob: float = 0.3
    color_jitter: float = 0.2
    num_workers: int = 2

    def __post_init__(self) -> None:
        offsets = self.frame_offsets
        if len(offsets) % 2 == 0 or 0 not in offsets:
            raise ConfigError(
                f"data.frame_offsets: expected an odd number of offsets including 0 "
                f"(the key frame), got {list(offsets)}"
            )
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
    checkpoint: str = ""  # local weights file (timm, MAE or ViTPose key names); "" = random init


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
class ModelConfig:
    """Backbone, temporal fusion and head."""

    head: Literal["diffusion", "heatmap", "tfpose"] = "diffusion"
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    temporal: Literal["linear"] = "linear"
    decoder_dim: int = 128  # channels of the feature pyramid and of the head
    decoder_heads: int = 4  # attention heads of the denoiser's coarsest interaction
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    tfpose: TFPoseConfig = field(default_factory=TFPoseConfig)


@dataclass
class LossConfig:
    """Loss weights by term name (each head offers some of them: ``head.loss_names``;
    the weights of terms the model's head does not offer are not used)."""

    heatmap: float = 1.0  # x0 estimate of the diffusion head, or the baseline head's heatmaps
    coarse: float = 1.0  # the diffusion head's coarse heatmap branch
    keypoint: float = 1.0  # tfpose: L1 of every decoder layer's points (crop fractions)
    sigma: float = 1.0  # tfpose: Laplace NLL of the predicted per-joint error scale
    aux_heatmap: float = 50.0  # tfpose: the auxiliary heatmap MSE (TFPose's weight 50)


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


@dataclass
class TestConfig:
    """Inference settings for ``vidpose test`` and validation."""

    batch_size: int = 32
    flip_test: bool = True
    steps: int | None = None  # None: model.diffusion.sampling_steps
    hypotheses: int | None = None  # None: model.diffusion.hypotheses
    protocol: Literal["posetrack18", "posetrack21"] = "posetrack18"


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
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as tmp:
        tmp.write(dump_config(config))
    os.replace(tmp.name, path)
    return path


# --------------------------------------------------------------------------- helpers


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
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
