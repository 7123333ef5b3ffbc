"""The training loop: one function, no hooks.

Reproducibility contract: every random choice of a training sample (augmentation,
diffusion time, noise) derives from (seed, epoch, dataset index), and batches are
cut from a permutation fixed by (seed, epoch). So N processes over a global batch
compute what one process computes, and a run resumed from any checkpoint continues
exactly as if it had never stopped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from vidpose.checkpoint import (
    Checkpoint,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from vidpose.config import Config, from_dict, save_config, to_dict
from vidpose.engine.distributed import (
    DistributedContext,
    all_reduce_mean,
    barrier,
    broadcast_object,
    context_from_environment,
)
from vidpose.engine.metrics_log import MetricsLog
from vidpose.engine.optim import build_optimizer, build_scheduler

LATEST = "latest.safetensors"
BEST = "best.safetensors"


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def sample_seeds(seed: int, epoch: int, indices: torch.Tensor) -> torch.Tensor:
    """Per-sample seeds [B] from (run seed, epoch, dataset index): independent of
    batch composition, worker count and process count."""
    return (seed * 1_000_003 + epoch) * 16_777_259 + indices.to(torch.int64)


class GlobalBatchSampler(Sampler[list[int]]):
    """This process's share of each global batch, from a permutation fixed by (seed, epoch).

    Global batch b holds positions [b * G, (b + 1) * G) of the epoch's permutation;
    rank r takes the r-th contiguous slice of G / world_size. The last incomplete
    batch is dropped, so every step sees exactly G samples.
    """

    def __init__(
        self,
        dataset_size: int,
        *,
        global_batch: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
    ) -> None:
        if global_batch % world_size:
            raise ValueError(
                f"train.batch_size={global_batch} must be divisible by the number of "
                f"processes ({world_size})"
            )
        if dataset_size < global_batch:
            raise ValueError(
                f"the training set has {dataset_size} clips, fewer than one batch "
                f"(train.batch_size={global_batch})"
            )
        self.dataset_size = dataset_size
        self.global_batch = global_batch
        self.local_batch = global_batch // world_size
        self.rank = rank
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch = epoch
        self.start_batch = start_batch

    def __len__(self) -> int:
        return self.dataset_size // self.global_batch - self.start_batch

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 10_007 + self.epoch)
            order = torch.randperm(self.dataset_size, generator=generator).tolist()
        else:
            order = list(range(self.dataset_size))
        for batch in range(self.start_batch, self.dataset_size // self.global_batch):
            start = batch * self.global_batch + self.rank * self.local_batch
            yield order[start : start + self.local_batch]


class ModelEMA:
    """Exponential moving average of the weights (floating-point tensors only)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for key, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                self.state[key].lerp_(value.detach(), 1.0 - self.decay)
            else:
                self.state[key].copy_(value)


@dataclass
class TrainResult:
    work_dir: Path
    steps: int
    final_loss: float
    best_metric: float | None
    checkpoint: Path


class ResumeMismatch(ValueError):
    """``--resume`` onto a checkpoint trained with other model settings."""


# Model settings that only choose how a trained model samples: a resumed run may change them.
_SAMPLER_FIELDS = ("sampling_steps", "hypotheses", "eta", "init", "coarse_start")
# Files only a run's start reads (load_initial_weights): its checkpoints hold their
# weights since, so a resumed run may name them differently.
_START_FILES = ("tokenizer", "init_from", "checkpoint")  # checkpoint: model.backbone's


# The config sections that belong to one head: only the model's own head reads its section.
_HEAD_SECTIONS = {
    "diffusion": "diffusion",
    "tfpose": "tfpose",
    "pct": "pct",
    "pct_tokenizer": "pct",  # both PCT stages read model.pct
    "cal": "cal",
    "diffusionpose": "diffusionpose",
}


def _model_settings(model: dict[str, Any]) -> dict[str, Any]:
    """The dotted ``model.*`` settings that decide what a run trains: all but the
    sampler defaults, and no settings of other heads than the model's (a heatmap head
    has no diffusion settings, a diffusion head no tfpose settings)."""
    settings = {}
    own = _HEAD_SECTIONS.get(model["head"])
    others = {section for section in _HEAD_SECTIONS.values() if section != own}

    def walk(tree: dict[str, Any], prefix: str) -> None:
        for key, value in tree.items():
            if isinstance(value, dict):
                if not (prefix == "model" and key in others):
                    walk(value, f"{prefix}.{key}")
            elif key not in _SAMPLER_FIELDS and key not in _START_FILES:
                settings[f"{prefix}.{key}"] = value

    walk(model, "model")
    return settings


def _check_same_model(config: Config, saved: dict | None, path: Path) -> None:
    """A resumed run must train the model its checkpoint holds: some settings (the
    mask gain, the noise schedule) change no parameter shape, so loading the weights
    would not catch a change of them."""
    if saved is None:
        return
    # through the schema, so settings added since the checkpoint take their defaults
    then = _model_settings(to_dict(from_dict(Config, saved, source=str(path)))["model"])
    now = _model_settings(to_dict(config)["model"])
    changed = sorted(key for key in now.keys() | then.keys() if now.get(key) != then.get(key))
    if changed:
        details = ", ".join(f"{key}: {then.get(key)!r} -> {now.get(key)!r}" for key in changed)
        raise ResumeMismatch(
            f"--resume: {path} was trained with other model settings ({details}); resume "
            "with the config it was trained with, or train into a new --work-dir"
        )


def train(
    config: Config,
    work_dir: str | Path,
    *,
    resume: bool = False,
    device: str | None = None,
    context: DistributedContext | None = None,
    show_progress: bool = True,
) -> TrainResult:
    """Train ``config`` and write checkpoints, metrics and curves to ``work_dir``.

    Args:
        config: the resolved experiment config.
        work_dir: output folder: ``config.yaml``, ``latest.safetensors``,
            ``best.safetensors``, ``metrics.jsonl``, ``curves.png``.
        resume: continue from ``work_dir/latest.safetensors`` (exactly: same batches,
            same randomness, same schedule).
        device: "cpu", "cuda" or None (CUDA when available).
        context: distributed context; read from torchrun's environment when None.

    Raises:
        TrainingDiverged: a NaN or infinite loss; ``latest`` is left as it was.
        ResumeMismatch: ``resume`` onto a checkpoint of other model settings.
    """
    from vidpose.data.clips import build_dataset_from_config
    from vidpose.losses import build_criterion
    from vidpose.models.build import build_model, load_initial_weights

    context = context or context_from_environment(device)
    work_dir = Path(work_dir)
    train_cfg = config.train
    torch.manual_seed(train_cfg.seed)

    model = build_model(config).to(context.device)
    if not resume:
        load_initial_weights(model, config)  # e.g. PCT's stage I tokenizer
    criterion = build_criterion(config, model.head)
    # the dataset encodes the targets of the head's codec (none for keypoint-only heads)
    # and decodes no frames for a model that reads poses alone (PCT's tokenizer)
    dataset = build_dataset_from_config(
        config, "train", codec=model.head.codec, load_images=model.needs_images
    )
    sampler = GlobalBatchSampler(
        len(dataset),
        global_batch=train_cfg.batch_size,
        rank=context.rank,
        world_size=context.world_size,
        seed=train_cfg.seed,
    )
    steps_per_epoch = len(dataset) // train_cfg.batch_size
    # The schedule spans all epochs whatever max_steps says, so that a run stopped
    # early by max_steps and resumed follows the same learning-rate curve.
    total_steps = steps_per_epoch * train_cfg.epochs
    last_step = min(total_steps, train_cfg.max_steps) if train_cfg.max_steps else total_steps

    optimizer = build_optimizer(
        model,
        lr=train_cfg.lr,
        weight_decay=train_cfg.weight_decay,
        layer_decay=train_cfg.layer_decay,
        # a head's own learning-rate multipliers (TFPose: its sampling offsets at 0.1x)
        lr_multipliers=getattr(model.head, "lr_multipliers", None),
    )
    scheduler = build_scheduler(
        optimizer,
        total_steps=total_steps,
        warmup_steps=train_cfg.warmup_steps,
        schedule=train_cfg.lr_schedule,
        milestones=tuple(m * steps_per_epoch for m in train_cfg.lr_milestones),
    )
    ema = ModelEMA(model, train_cfg.ema_decay) if train_cfg.ema_decay > 0 else None

    step, best_metric = 0, None
    latest_path = work_dir / LATEST
    if resume:
        if not latest_path.is_file():
            raise FileNotFoundError(
                f"--resume: no checkpoint to resume from at {latest_path}; start without --resume"
            )
        saved = load_checkpoint(latest_path)
        _check_same_model(config, saved.config, latest_path)
        model.load_state_dict(saved.model)
        optimizer.load_state_dict(saved.optimizer)
        scheduler.load_state_dict(saved.scheduler)
        if ema is not None and saved.ema is not None:
            ema.state = saved.ema
        step = int(saved.trainer["step"])
        best_metric = saved.trainer.get("best_metric")
        if saved.rng is not None:
            restore_rng_state(saved.rng)

    if context.is_main:
        work_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, work_dir / "config.yaml")
    log = MetricsLog(work_dir, resume_step=step if resume else None) if context.is_main else None
    trained = (
        nn.parallel.DistributedDataParallel(model, device_ids=None) if context.enabled else model
    )

    def checkpoint_now(path: Path) -> None:
        if not context.is_main:
            return
        save_checkpoint(
            Checkpoint(
                model=model.state_dict(),
                ema=ema.state if ema is not None else None,
                optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(),
                trainer={
                    "step": step,
                    "epoch": step // max(steps_per_epoch, 1),
                    "best_metric": best_metric,
                },
                rng=capture_rng_state(),
                config=to_dict(config),
            ),
            path,
        )

    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=context.device.type == "cuda")
    progress = tqdm(
        total=last_step,
        initial=step,
        desc="train",
        disable=not (show_progress and context.is_main),
        dynamic_ncols=True,
    )
    loss_value = math.nan
    try:
        while step < last_step:
            epoch, done_in_epoch = divmod(step, steps_per_epoch)
            sampler.set_epoch(epoch, start_batch=done_in_epoch)
            dataset.set_epoch(epoch)
            loader = DataLoader(
                dataset,
                batch_sampler=sampler,
                num_workers=config.data.num_workers,
                persistent_workers=False,
            )
            trained.train()
            tick = time.perf_counter()
            for batch in loader:
                frames = batch["frames"].to(context.device, non_blocking=True)
                # the head's training targets (vidpose.models.heads.contract)
                targets = {key: batch[key].to(context.device) for key in dataset.target_keys}
                seeds = sample_seeds(train_cfg.seed, epoch, batch["index"])
                with autocast:
                    outputs = trained(frames, targets=targets, sample_seeds=seeds)
                losses = criterion(outputs, targets)
                loss = losses["loss"]
                reduced = all_reduce_mean(loss.detach().float(), context)
                if not torch.isfinite(reduced):
                    raise TrainingDiverged(
                        f"loss is {reduced.item()} at step {step + 1} (epoch {epoch}); "
                        f"stopped without saving, the last good checkpoint is {latest_path}"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if train_cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                if ema is not None:
                    ema.update(model)
                step += 1
                loss_value = reduced.item()
                elapsed = time.perf_counter() - tick
                tick = time.perf_counter()
                clips_per_second = train_cfg.batch_size / max(elapsed, 1e-9)
                learning_rate = optimizer.param_groups[0]["lr"] / optimizer.param_groups[0].get(
                    "lr_scale", 1.0
                )
                progress.update(1)
                progress.set_postfix(
                    loss=f"{loss_value:.4g}",
                    lr=f"{learning_rate:.2e}",
                    clips_s=f"{clips_per_second:.1f}",
                )
                if log is not None and (step % train_cfg.log_every == 0 or step == last_step):
                    record = {"kind": "train", "step": step, "epoch": epoch, "lr": learning_rate}
                    record.update({k: float(v.detach()) for k, v in losses.items()})
                    record["clips_per_second"] = clips_per_second
                    log.append(record)
                if step >= last_step or step % steps_per_epoch == 0:
                    break
            epoch_finished = step % steps_per_epoch == 0
            checkpoint_now(latest_path)
            finished_epoch = step // steps_per_epoch
            if (
                epoch_finished
                and train_cfg.val_every > 0
                and (finished_epoch % train_cfg.val_every == 0 or step >= last_step)
            ):
                metric = _validate(config, model, ema, work_dir, step, context, log)
                if (
                    context.is_main
                    and metric is not None
                    and (best_metric is None or metric > best_metric)
                ):
                    best_metric = metric
                    checkpoint_now(work_dir / BEST)
                    checkpoint_now(latest_path)  # records the new best metric
            if log is not None:
                log.plot()
            barrier(context)
    except KeyboardInterrupt:
        checkpoint_now(latest_path)
        if context.is_main:
            progress.write(f"interrupted: checkpoint written to {latest_path} (step {step})")
        raise
    finally:
        progress.close()
    return TrainResult(work_dir, step, loss_value, best_metric, latest_path)


def _validate(
    config: Config,
    model: nn.Module,
    ema: ModelEMA | None,
    work_dir: Path,
    step: int,
    context: DistributedContext,
    log: MetricsLog | None,
) -> float | None:
    """Run the validation split on rank 0 (EMA weights when kept); returns the main metric."""
    from vidpose.engine.evaluate import evaluate_model

    metric = None
    if context.is_main:
        evaluated = model
        if ema is not None:
            from vidpose.models.build import build_model

            evaluated = build_model(config).to(context.device)
            evaluated.load_state_dict(ema.state)
        result = evaluate_model(
            config, evaluated, out_dir=work_dir / "val_predictions", device=context.device
        )
        metric = result.main_metric
        if log is not None:
            log.append({"kind": "val", "step": step, **result.summary})
    return broadcast_object(metric, context)
