"""The training loop: one function, no hooks.

Reproducibility contract: every random choice of a training sample (augmentation,
diffusion time, noise) derives from (seed, epoch, dataset index), and batches are
cut from a permutation fixed by (seed, epoch). So N processes over a global batch
compute what one process computes, and a run resumed from any checkpoint continues
exactly as if it had never stopped.

What a failure keeps (docs/getting_started.md, "When a command fails"):

- Before the first step the work dir is checked writable, and every annotation file
  and every image the run reads is checked (``vidpose.data.checks``): all problems are
  reported at once, before the long work.
- ``latest.safetensors`` is written at every epoch end, every
  ``train.checkpoint_every_steps`` steps and at least every
  ``train.checkpoint_every_minutes`` minutes, so a kill loses at most that much. The
  file it replaces is kept as ``previous.safetensors`` until the new one is complete,
  and ``--resume`` falls back to it when ``latest`` is unreadable.
- Ctrl-C and any error (a NaN loss, an unreadable image with ``train.on_bad_image:
  stop``, a full disk at validation, ...) write a checkpoint of the steps done when the
  weights are finite, before the error is reported.
- A killed run leaves no temporary file for long: the next start removes them.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from vidpose.checkpoint import (
    Checkpoint,
    CheckpointError,
    capture_rng_state,
    load_checkpoint,
    non_finite_tensors,
    remove_partial_files,
    restore_rng_state,
    save_checkpoint,
)
from vidpose.config import Config, from_dict, save_config, to_dict
from vidpose.data.frames import FrameReadError
from vidpose.engine.distributed import (
    DistributedContext,
    all_reduce_mean,
    barrier,
    broadcast_object,
    context_from_environment,
)
from vidpose.engine.metrics_log import MetricsLog
from vidpose.engine.optim import build_optimizer, build_scheduler
from vidpose.runtime import InputError, RunStopped, prepare_output_folder, writing

LOGGER = logging.getLogger(__name__)

LATEST = "latest.safetensors"
PREVIOUS = "previous.safetensors"  # the checkpoint latest replaced, kept for --resume
BEST = "best.safetensors"


class TrainingDiverged(RunStopped):
    """The loss (or the weights) became NaN or infinite; the weights of the last good
    step are written to ``latest`` (exit status 4)."""


class BadImageStop(RunStopped):
    """An image could not be read mid-training with ``train.on_bad_image: stop``; a
    checkpoint of the steps done is written first (exit status 4)."""


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
            raise InputError(
                f"train.batch_size={global_batch} must be divisible by the number of "
                f"processes ({world_size})"
            )
        if dataset_size < global_batch:
            raise InputError(
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


class ReadableSamples(Dataset):
    """The training set, with a sample whose image cannot be read replaced by the next
    sample that reads, and marked.

    Every sample gets an ``unreadable`` entry: "" when it read, else the read errors of
    the samples it stands in for (one per line); the trainer warns and counts them, or
    stops (``train.on_bad_image``). Standing in, rather than dropping, keeps every
    process's batch full, which distributed training needs. The stand-in is the next
    index, so a resumed run picks the same one.

    Raises:
        FrameReadError: ``attempts`` samples in a row cannot be read (the first named).
    """

    def __init__(self, dataset: Dataset, attempts: int = 8) -> None:
        self.dataset = dataset
        self.attempts = attempts

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        problems = []
        for attempt in range(self.attempts):
            try:
                sample = self.dataset[(index + attempt) % len(self.dataset)]
            except FrameReadError as error:
                problems.append(" ".join(str(error).split()))
                continue
            sample["unreadable"] = "\n".join(problems)
            return sample
        raise FrameReadError(
            f"{problems[0]}; the next {self.attempts - 1} samples cannot be read either"
        )


@dataclass
class TrainResult:
    work_dir: Path
    steps: int
    final_loss: float
    best_metric: float | None
    checkpoint: Path
    skipped_samples: int = 0  # samples whose image could not be read (train.on_bad_image)


class ResumeMismatch(InputError):
    """``--resume`` onto a checkpoint trained with other model settings or another
    batch size."""


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


def _schedule(config: Config, clips: int) -> dict[str, Any]:
    """What a resumed run must share with its checkpoint to continue it: recorded in
    every checkpoint (``trainer["schedule"]``) and compared on ``--resume``."""
    train_cfg = config.train
    return {
        "batch_size": train_cfg.batch_size,
        "clips": clips,
        "epochs": train_cfg.epochs,
        "lr": train_cfg.lr,
        "lr_schedule": train_cfg.lr_schedule,
        "warmup_steps": train_cfg.warmup_steps,
        "lr_milestones": list(train_cfg.lr_milestones),
        "seed": train_cfg.seed,
    }


def _check_same_schedule(then: dict[str, Any] | None, now: dict[str, Any], path: Path) -> None:
    """Refuse ``--resume`` with another batch size (the saved step would count batches of
    another size: the position in the epoch, the schedule and the epoch count would all be
    off); warn when the schedule, the seed or the training set changed (the run goes on,
    but is no longer the one the checkpoint started). Checkpoints of older vidpose
    versions record nothing to compare."""
    if not then:
        return
    if then.get("batch_size") != now["batch_size"]:
        raise ResumeMismatch(
            f"--resume: {path} was trained with train.batch_size={then.get('batch_size')}, "
            f"now {now['batch_size']}: its step count and position in the epoch would not "
            f"match; resume with train.batch_size={then.get('batch_size')}, or train into a "
            "new --work-dir"
        )
    changed = sorted(key for key in now if key in then and then[key] != now[key])
    if changed:
        details = ", ".join(f"{key}: {then[key]!r} -> {now[key]!r}" for key in changed)
        what = "training set (clips)" if changed == ["clips"] else "schedule"
        LOGGER.warning(
            f"--resume: {path} was trained with another {what} ({details}); the run goes "
            "on with the new values, so it is not the run the checkpoint started"
        )


def _resume_state(work_dir: Path) -> tuple[Checkpoint, Path]:
    """The checkpoint ``--resume`` continues: ``latest``, or ``previous`` when latest is
    missing, unreadable or not finite (a warning says so).

    Raises:
        FileNotFoundError: neither exists.
        CheckpointError: neither can be resumed from (both named).
    """
    problems = []
    for path in (work_dir / LATEST, work_dir / PREVIOUS):
        if not path.is_file():
            continue
        try:
            saved = load_checkpoint(path)  # refuses non-finite weights too
            if saved.optimizer is None or saved.scheduler is None or "step" not in saved.trainer:
                raise CheckpointError(
                    f"{path}: holds weights but no training state (optimizer, step), so it "
                    "cannot be resumed; start without --resume (model.backbone.checkpoint "
                    "or the head's init_from start a run from weights)"
                )
        except CheckpointError as error:
            problems.append(str(error))
            continue
        if path.name == PREVIOUS:
            why = problems[0] if problems else f"{work_dir / LATEST} is missing"
            LOGGER.warning(
                f"--resume: {why}; resuming from {path} (step {saved.trainer['step']}) instead"
            )
        return saved, path
    if not problems:
        raise FileNotFoundError(
            f"--resume: no checkpoint to resume from at {work_dir / LATEST}; start without --resume"
        )
    raise CheckpointError("--resume: " + "; ".join(problems))


def _remove_leftovers(work_dir: Path) -> None:
    """Delete the temporary files a killed run left in its work dir (a half-written
    checkpoint, config, metrics log or plot)."""
    leftovers = remove_partial_files(work_dir)
    for hidden in sorted(work_dir.glob(".*.tmp")):
        with contextlib.suppress(FileNotFoundError):
            hidden.unlink()
            leftovers.append(hidden)
    if leftovers:
        LOGGER.warning(
            f"removed {len(leftovers)} temporary files a killed run left in {work_dir} "
            f"({', '.join(path.name for path in leftovers[:3])})"
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
        work_dir: output folder: ``config.yaml``, ``latest.safetensors`` (and
            ``previous.safetensors``, the one it last replaced), ``best.safetensors``,
            ``metrics.jsonl``, ``curves.png``.
        resume: continue from ``work_dir/latest.safetensors`` (exactly: same batches,
            same randomness, same schedule), or from ``previous.safetensors`` when latest
            cannot be read.
        device: "cpu", "cuda" or None (CUDA when available).
        context: distributed context; read from torchrun's environment when None.

    Raises:
        vidpose.data.checks.DatasetProblems: annotation files or images that cannot be
            read, every one listed, before the first step.
        vidpose.runtime.OutputError: the work dir cannot be written (the path named).
        TrainingDiverged: a NaN or infinite loss; ``latest`` holds the last good step.
        BadImageStop: an unreadable image with ``train.on_bad_image: stop``.
        ResumeMismatch: ``resume`` onto a checkpoint of other model settings or another
            batch size.
        CheckpointError: ``resume`` with neither ``latest`` nor ``previous`` readable.
    """
    from vidpose.data.checks import image_problems, raise_problems, read_split
    from vidpose.data.clips import build_dataset
    from vidpose.data.posetrack import repeated_track_ids
    from vidpose.losses import build_criterion
    from vidpose.models.build import build_model, load_initial_weights

    context = context or context_from_environment(device)
    work_dir = Path(work_dir)
    train_cfg = config.train
    torch.manual_seed(train_cfg.seed)

    # Before the long work: the work dir can be written, every file the run reads is
    # there and whole, and the checkpoint to resume from reads.
    if context.is_main:
        prepare_output_folder(work_dir, "the work dir")
        _remove_leftovers(work_dir)
    videos, problems = read_split(config, "train")
    model = build_model(config).to(context.device)
    # the dataset encodes the targets of the head's codec (none for keypoint-only heads)
    # and decodes no frames for a model that reads poses alone (PCT's tokenizer)
    dataset = build_dataset(
        config, "train", videos, codec=model.head.codec, load_images=model.needs_images
    )
    problems += image_problems(dataset, config.data.check_images)
    if train_cfg.val_every > 0:
        val_videos, val_problems = read_split(config, "val")
        problems += val_problems + repeated_track_ids(val_videos)
        if model.needs_images and not val_problems:
            problems += image_problems(
                build_dataset(config, "val", val_videos), config.data.check_images
            )
    raise_problems(problems, f"the data of {config.data.root}")
    saved = saved_path = None
    if resume:
        saved, saved_path = _resume_state(work_dir)
    else:
        load_initial_weights(model, config)  # e.g. PCT's stage I tokenizer

    criterion = build_criterion(config, model.head)
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
    schedule = _schedule(config, len(dataset))

    step, best_metric = 0, None
    latest_path = work_dir / LATEST
    if saved is not None:
        _check_same_model(config, saved.config, saved_path)
        _check_same_schedule(saved.trainer.get("schedule"), schedule, saved_path)
        try:
            model.load_state_dict(saved.model)
            optimizer.load_state_dict(saved.optimizer)
            scheduler.load_state_dict(saved.scheduler)
        except (RuntimeError, ValueError, KeyError) as error:
            reason = " ".join(str(error).split())[:300]
            raise ResumeMismatch(
                f"--resume: {saved_path} does not fit the model and optimizer of this config "
                f"({reason}); resume with the config it was trained with, or train into a "
                "new --work-dir"
            ) from None
        if ema is not None and saved.ema is not None:
            ema.state = saved.ema
        step = int(saved.trainer["step"])
        best_metric = saved.trainer.get("best_metric")
        if saved.rng is not None:
            restore_rng_state(saved.rng)

    if context.is_main:
        with writing(work_dir / "config.yaml", "the run's config"):
            save_config(config, work_dir / "config.yaml")
    log = MetricsLog(work_dir, resume_step=step if resume else None) if context.is_main else None
    trained = (
        nn.parallel.DistributedDataParallel(model, device_ids=None) if context.enabled else model
    )
    saved_step = step if resume else -1  # the step latest.safetensors holds (-1: none yet)
    last_saved = time.monotonic()

    def checkpoint_now(path: Path) -> None:
        nonlocal saved_step, last_saved
        if not context.is_main:
            return
        bad = non_finite_tensors(model.state_dict())
        if bad:
            kept = f"{latest_path} (step {saved_step}) is kept" if saved_step >= 0 else "none"
            raise TrainingDiverged(
                f"the weights hold NaN or infinite values at step {step} ({bad[0]}); "
                f"not saved, the last good checkpoint: {kept}"
            )
        with writing(path, "a checkpoint"):
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
                        "schedule": schedule,
                    },
                    rng=capture_rng_state(),
                    config=to_dict(config),
                ),
                path,
                previous=work_dir / PREVIOUS if path == latest_path else None,
            )
        if path == latest_path:
            saved_step, last_saved = step, time.monotonic()

    def checkpoint_due() -> bool:
        """A periodic checkpoint between epoch ends (train.checkpoint_every_*)."""
        every = train_cfg.checkpoint_every_steps
        if every and step % every == 0:
            return True
        minutes = train_cfg.checkpoint_every_minutes
        return minutes > 0 and time.monotonic() - last_saved >= 60 * minutes

    def save_on_the_way_out(reason: str) -> str | None:
        """Write ``latest`` before an error or Ctrl-C ends the run: the steps since the
        last checkpoint are kept when the weights are finite. Returns what happened."""
        if not context.is_main or step == saved_step:
            return None
        try:
            state = {**model.state_dict(), **(ema.state if ema is not None else {})}
            if non_finite_tensors(state):
                return f"{reason}: the weights are not finite at step {step}; not saved"
            checkpoint_now(latest_path)
        except Exception as failure:  # the error being reported matters more
            return f"{reason}: the checkpoint of step {step} could not be written ({failure})"
        return f"{reason}: checkpoint written to {latest_path} (step {step})"

    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=context.device.type == "cuda")
    progress = tqdm(
        total=last_step,
        initial=step,
        desc="train",
        disable=not (show_progress and context.is_main),
        dynamic_ncols=True,
    )
    loss_value = math.nan
    skipped = 0
    readable = ReadableSamples(dataset)
    try:
        while step < last_step:
            epoch, done_in_epoch = divmod(step, steps_per_epoch)
            sampler.set_epoch(epoch, start_batch=done_in_epoch)
            dataset.set_epoch(epoch)
            loader = DataLoader(
                readable,
                batch_sampler=sampler,
                num_workers=config.data.num_workers,
                persistent_workers=False,
                # the workers' seeds from (seed, epoch), not from the global RNG: a loader
                # made mid-epoch by a resumed run then leaves the RNG (dropout) as the
                # uninterrupted run has it
                generator=torch.Generator().manual_seed(train_cfg.seed * 10_007 + epoch),
            )
            trained.train()
            tick = time.perf_counter()
            for batch in loader:
                unreadable = [line for text in batch.pop("unreadable") if text
                              for line in text.split("\n")]  # fmt: skip
                if unreadable:
                    skipped += len(unreadable)
                    if train_cfg.on_bad_image == "stop":
                        raise BadImageStop(
                            f"{unreadable[0]}; stopped before step {step + 1} "
                            "(train.on_bad_image: stop)"
                        )
                    for problem in unreadable:
                        LOGGER.warning(
                            f"{problem}; sample skipped, a readable one takes its place "
                            f"({skipped} skipped so far)"
                        )
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
                        f"stopped before that step's update, {latest_path} keeps the weights "
                        f"of step {step}"
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
                if step % train_cfg.log_every == 0 or step == last_step:
                    # every process takes part in the reduction: the log records the
                    # global batch's loss terms, not rank 0's share of them
                    terms = all_reduce_mean(
                        torch.stack([value.detach().float() for value in losses.values()]),
                        context,
                    )
                    if log is not None:
                        record = {"kind": "train", "step": step, "epoch": epoch}
                        record["lr"] = learning_rate
                        record.update(zip(losses.keys(), terms.tolist(), strict=True))
                        record["clips_per_second"] = clips_per_second
                        if skipped:
                            record["skipped_samples"] = skipped
                        log.append(record)
                if step >= last_step or step % steps_per_epoch == 0:
                    break
                if checkpoint_due():
                    checkpoint_now(latest_path)
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
        note = save_on_the_way_out("interrupted")
        if note is not None:
            progress.write(note)
        raise
    except Exception:
        note = save_on_the_way_out(f"stopped by an error at step {step}")
        if note is not None:
            LOGGER.warning(note)
        raise
    finally:
        progress.close()
    return TrainResult(work_dir, step, loss_value, best_metric, latest_path, skipped)


def _validate(
    config: Config,
    model: nn.Module,
    ema: ModelEMA | None,
    work_dir: Path,
    step: int,
    context: DistributedContext,
    log: MetricsLog | None,
) -> float | None:
    """Run the validation split on rank 0 (EMA weights when kept); returns the main metric.

    The data was checked when the run started (``check=False``), and the training RNG is
    left as it was (``fork_rng``: the EMA model's initialisation draws from it), so a run
    resumed from the checkpoint written before validation continues exactly.
    """
    from vidpose.engine.evaluate import evaluate_model

    metric = None
    if context.is_main:
        with torch.random.fork_rng(devices=[]):
            evaluated = model
            if ema is not None:
                from vidpose.models.build import build_model

                evaluated = build_model(config).to(context.device)
                evaluated.load_state_dict(ema.state)
            result = evaluate_model(
                config,
                evaluated,
                out_dir=work_dir / "val_predictions",
                device=context.device,
                check=False,
            )
        metric = result.main_metric
        if log is not None:
            log.append({"kind": "val", "step": step, **result.summary})
    return broadcast_object(metric, context)
