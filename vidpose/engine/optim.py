"""Optimiser groups and learning-rate schedules.

AdamW with layer-wise learning-rate decay for the ViT (BEiT, Bao et al. 2022;
used by MAE and ViTPose fine-tuning): block i of an L-block ViT trains with
``lr * decay ** (L - i)``, the patch embedding with ``lr * decay ** (L + 1)``, and
everything after the backbone with ``lr``. Norm weights, biases and position /
class tokens get no weight decay.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import torch
from torch import nn

# Parameters that never get weight decay, matched on the parameter name.
_NO_DECAY_NAMES = re.compile(r"(pos_embed|cls_token|reg_token|dist_token|time_embed.*frequencies)")
_BLOCK_INDEX = re.compile(r"\bblocks\.(\d+)\.")


def backbone_layer_id(name: str, num_blocks: int) -> int:
    """Depth of a backbone parameter: 0 embeddings, 1..L blocks, L + 1 the final norm."""
    match = _BLOCK_INDEX.search(name)
    if match:
        return int(match.group(1)) + 1
    if any(key in name for key in ("patch_embed", "pos_embed", "cls_token", "reg_token")):
        return 0
    return num_blocks + 1


def parameter_groups(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float,
    layer_decay: float,
    backbone_prefix: str = "backbone.",
    num_blocks: int | None = None,
    lr_multipliers: Mapping[str, float] | None = None,
) -> list[dict]:
    """AdamW parameter groups: one per (learning-rate scale, decay or not).

    Args:
        model: the whole estimator; parameters whose name starts with
            ``backbone_prefix`` get the layer-wise decay.
        num_blocks: ViT depth; found from the parameter names when None.
        lr_multipliers: name fragment -> learning-rate multiplier for parameters after
            the backbone whose name contains the fragment (the first that matches), e.g.
            a head's ``lr_multipliers`` (Deformable DETR trains its sampling offsets at
            0.1x).

    Returns:
        groups with ``params``, ``lr``, ``weight_decay`` and ``lr_scale`` (the
        factor the scheduler multiplies the scheduled learning rate with).
    """
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if num_blocks is None:
        indices = [
            int(m.group(1))
            for name, _ in named
            if name.startswith(backbone_prefix) and (m := _BLOCK_INDEX.search(name))
        ]
        num_blocks = max(indices) + 1 if indices else 0
    groups: dict[tuple[float, bool], dict] = {}
    for name, parameter in named:
        if name.startswith(backbone_prefix):
            depth = backbone_layer_id(name, num_blocks)
            scale = layer_decay ** (num_blocks + 1 - depth)
        else:
            matches = [value for key, value in (lr_multipliers or {}).items() if key in name]
            scale = matches[0] if matches else 1.0
        decays = parameter.ndim > 1 and not _NO_DECAY_NAMES.search(name)
        group = groups.setdefault(
            (scale, decays),
            {
                "params": [],
                "names": [],
                "lr": lr * scale,
                "lr_scale": scale,
                "weight_decay": weight_decay if decays else 0.0,
            },
        )
        group["params"].append(parameter)
        group["names"].append(name)
    return list(groups.values())


def build_optimizer(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float,
    layer_decay: float,
    lr_multipliers: Mapping[str, float] | None = None,
):
    groups = parameter_groups(
        model,
        lr=lr,
        weight_decay=weight_decay,
        layer_decay=layer_decay,
        lr_multipliers=lr_multipliers,
    )
    for group in groups:
        group.pop("names")
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, betas=(0.9, 0.999))


def learning_rate_factor(
    step: int,
    *,
    total_steps: int,
    warmup_steps: int,
    schedule: str,
    milestones: tuple[int, ...] = (),
    gamma: float = 0.1,
) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based).

    Linear warm-up from 1/warmup to 1 over ``warmup_steps``, then cosine decay to 0
    at ``total_steps`` (Loshchilov & Hutter, SGDR, 2017), or a step schedule that
    multiplies by ``gamma`` at each milestone (given in steps).
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "cosine":
        span = max(total_steps - warmup_steps, 1)
        progress = min((step - warmup_steps) / span, 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "step":
        return gamma ** sum(step >= milestone for milestone in milestones)
    raise ValueError(f"unknown learning-rate schedule {schedule!r}; expected 'cosine' or 'step'")


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int,
    warmup_steps: int,
    schedule: str,
    milestones: tuple[int, ...] = (),
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepping once per optimiser step; group lr_scale is applied on top."""
    for group in optimizer.param_groups:
        group.setdefault("lr_scale", 1.0)

    def factor(step: int) -> float:
        return learning_rate_factor(
            step,
            total_steps=total_steps,
            warmup_steps=warmup_steps,
            schedule=schedule,
            milestones=milestones,
        )

    # LambdaLR multiplies each group's initial lr (already scaled by lr_scale).
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
