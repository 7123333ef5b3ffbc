import random

import numpy as np
import pytest
import torch
from torch import nn

from vidpose.checkpoint import (
    Checkpoint,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from vidpose.engine.optim import (
    build_optimizer,
    build_scheduler,
    learning_rate_factor,
    parameter_groups,
)


class TinyViTLike(nn.Module):
    """Parameter names shaped like the estimator's: backbone.vit.blocks.<i>...."""

    def __init__(self, blocks: int = 3) -> None:
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.pos_embed = nn.Parameter(torch.zeros(1, 4, 8))
        self.backbone.patch_embed = nn.Linear(8, 8)
        self.backbone.blocks = nn.ModuleList(nn.Linear(8, 8) for _ in range(blocks))
        self.backbone.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        x = self.backbone.patch_embed(x) + self.backbone.pos_embed.mean()
        for block in self.backbone.blocks:
            x = block(x)
        return self.head(self.backbone.norm(x))


def train_steps(model, optimizer, scheduler, steps, seed=0):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(4, 8, generator=generator)
        loss = model(x).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()


def test_layer_decay_scales_and_no_decay_sets():
    model = TinyViTLike(blocks=3)
    groups = parameter_groups(model, lr=1.0, weight_decay=0.1, layer_decay=0.5)
    by_name = {name: group for group in groups for name in group["names"]}
    # 3 blocks: block i has depth i+1; scale = 0.5 ** (3 + 1 - depth)
    assert by_name["backbone.blocks.0.weight"]["lr_scale"] == 0.5**3
    assert by_name["backbone.blocks.2.weight"]["lr_scale"] == 0.5**1
    assert by_name["backbone.patch_embed.weight"]["lr_scale"] == 0.5**4
    assert by_name["backbone.norm.weight"]["lr_scale"] == 1.0
    assert by_name["head.weight"]["lr_scale"] == 1.0
    # no decay on norms, biases and position embeddings
    assert by_name["backbone.pos_embed"]["weight_decay"] == 0.0
    assert by_name["backbone.blocks.1.bias"]["weight_decay"] == 0.0
    assert by_name["backbone.norm.weight"]["weight_decay"] == 0.0
    assert by_name["backbone.blocks.1.weight"]["weight_decay"] == 0.1
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_schedule_warmup_then_cosine_to_zero_and_step():
    factors = [
        learning_rate_factor(s, total_steps=110, warmup_steps=10, schedule="cosine")
        for s in range(110)
    ]
    assert factors[0] == pytest.approx(0.1)
    assert factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0)
    assert factors[60] == pytest.approx(0.5)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False))
    assert learning_rate_factor(110, total_steps=110, warmup_steps=10, schedule="cosine") == 0
    step = [
        learning_rate_factor(s, total_steps=100, warmup_steps=0, schedule="step", milestones=(5, 8))
        for s in (0, 4, 5, 8)
    ]
    assert step == pytest.approx([1, 1, 0.1, 0.01])
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'poly'"):
        learning_rate_factor(0, total_steps=1, warmup_steps=0, schedule="poly")


def test_scheduler_applies_layer_scale_times_schedule():
    model = TinyViTLike()
    optimizer = build_optimizer(model, lr=0.01, weight_decay=0.0, layer_decay=0.5)
    scheduler = build_scheduler(optimizer, total_steps=20, warmup_steps=4, schedule="cosine")
    for group in optimizer.param_groups:
        assert group["lr"] == pytest.approx(0.01 * group["lr_scale"] * 0.25)
    train_steps(model, optimizer, scheduler, 6)
    factor = learning_rate_factor(6, total_steps=20, warmup_steps=4, schedule="cosine")
    for group in optimizer.param_groups:
        assert group["lr"] == pytest.approx(0.01 * group["lr_scale"] * factor)


def test_checkpoint_round_trip_resumes_training_exactly(tmp_path):
    def fresh():
        torch.manual_seed(0)
        model = TinyViTLike()
        optimizer = build_optimizer(model, lr=0.01, weight_decay=0.05, layer_decay=0.7)
        scheduler = build_scheduler(optimizer, total_steps=10, warmup_steps=2, schedule="cosine")
        return model, optimizer, scheduler

    straight, optimizer, scheduler = fresh()
    train_steps(straight, optimizer, scheduler, 2, seed=1)
    train_steps(straight, optimizer, scheduler, 2, seed=2)

    resumed, optimizer, scheduler = fresh()
    train_steps(resumed, optimizer, scheduler, 2, seed=1)
    path = save_checkpoint(
        Checkpoint(
            model=resumed.state_dict(),
            optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict(),
            trainer={"step": 2, "epoch": 0},
            config={"train": {"lr": 0.01}},
        ),
        tmp_path / "latest.safetensors",
    )
    assert [p.name for p in tmp_path.iterdir()] == ["latest.safetensors"]  # no temp file left
    model, optimizer, scheduler = fresh()
    loaded = load_checkpoint(path)
    model.load_state_dict(loaded.model)
    optimizer.load_state_dict(loaded.optimizer)
    scheduler.load_state_dict(loaded.scheduler)
    assert loaded.trainer == {"step": 2, "epoch": 0}
    assert loaded.config == {"train": {"lr": 0.01}}
    train_steps(model, optimizer, scheduler, 2, seed=2)
    for (name, a), b in zip(
        straight.state_dict().items(), model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_rng_state_round_trip(tmp_path):
    torch.manual_seed(3)
    np.random.seed(3)  # noqa: NPY002
    random.seed(3)
    state = capture_rng_state()
    expected = (torch.rand(3), np.random.rand(3), random.random())  # noqa: NPY002
    path = save_checkpoint(Checkpoint(model={}, rng=state), tmp_path / "c.safetensors")
    torch.manual_seed(99)
    restore_rng_state(load_checkpoint(path).rng)
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])  # noqa: NPY002
    assert random.random() == expected[2]


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found: .*missing.safetensors"):
        load_checkpoint(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="junk.safetensors: not a readable safetensors checkpoint"):
        load_checkpoint(junk)
    from safetensors.torch import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(ValueError, match="plain.safetensors: safetensors file without vidpose"):
        load_checkpoint(plain)
