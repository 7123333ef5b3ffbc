"""The CAL head: the Gaussian fit of the argmax errors and the weight map on
hand-computed cases, the loss terms, the flip test's merge, the two-stage recipe
(frozen parts stay put, weights from a first stage), a distributed fit."""

from __future__ import annotations

import math
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vidpose.checkpoint import Checkpoint, save_checkpoint
from vidpose.codecs.heatmap import HeatmapCodec
from vidpose.codecs.offset import HeatmapOffsetCodec
from vidpose.config import ConfigError
from vidpose.data.skeleton import POSETRACK
from vidpose.engine.optim import build_optimizer
from vidpose.losses import build_criterion
from vidpose.models.build import build_model, load_initial_weights
from vidpose.models.heads.cal import (
    CalHead,
    GaussianMixture2d,
    OffsetConv,
    confidence_weights,
    fit_gaussian,
    fit_gaussian_mixture,
)
from vidpose.models.heads.contract import HeadPrediction
from vidpose.models.heads.heatmap import HeatmapConv

K = 17


def make_head(encoding: str = "gaussian", **options) -> CalHead:
    """A CAL head on 64 x 48 crops (16 x 12 heatmaps) over 8 feature channels."""
    codec = HeatmapOffsetCodec(
        heatmap=HeatmapCodec(
            input_size=(64, 48), heatmap_size=(16, 12), sigma=1.0, encoding=encoding
        )
    )
    return CalHead(
        heatmap_predictor=HeatmapConv(channels=8, num_joints=K),
        offset_predictor=OffsetConv(channels=8, num_joints=K),
        codec=codec,
        **options,
    )


def batch_targets(codec, keypoints: np.ndarray, visible: np.ndarray) -> dict[str, torch.Tensor]:
    """The trainer's targets for B persons [B, K, 2] (input-crop pixels)."""
    encoded = [codec.targets(points, seen) for points, seen in zip(keypoints, visible, strict=True)]
    targets = {
        name: torch.from_numpy(np.stack([item[name] for item in encoded])) for name in encoded[0]
    }
    targets["keypoints"] = torch.from_numpy(keypoints.astype(np.float32))
    return targets


def random_persons(batch: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    keypoints = rng.uniform([4.0, 4.0], [43.0, 59.0], size=(batch, K, 2))
    return keypoints, rng.random((batch, K)) > 0.2


# --------------------------------------------------------------------------- the fit


def test_one_gaussian_is_the_exact_mean_and_covariance():
    errors = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
    fit = fit_gaussian(errors, covariance_floor=0.0)
    torch.testing.assert_close(fit.means, torch.tensor([[1.0, 1.0]], dtype=torch.float64))
    torch.testing.assert_close(fit.covariances, torch.eye(2, dtype=torch.float64)[None])
    torch.testing.assert_close(fit.weights, torch.ones(1, dtype=torch.float64))
    # points on a line: a singular covariance, made invertible by the floor
    line = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    fit = fit_gaussian(line, covariance_floor=0.01)
    expected = torch.tensor([[1.26, 1.25], [1.25, 1.26]], dtype=torch.float64)
    torch.testing.assert_close(fit.covariances[0], expected)
    assert torch.isfinite(fit.log_density(torch.zeros(2, dtype=torch.float64)))
    # no visible joint in the batch: mean 0, the floor as covariance
    empty = fit_gaussian(torch.zeros(0, 2), covariance_floor=0.5)
    torch.testing.assert_close(empty.means, torch.zeros(1, 2, dtype=torch.float64))
    torch.testing.assert_close(empty.covariances[0], 0.5 * torch.eye(2, dtype=torch.float64))


def test_the_density_is_a_normalised_gaussian():
    mixture = GaussianMixture2d(
        weights=torch.tensor([1.0]),
        means=torch.tensor([[1.0, -1.0]]),
        covariances=torch.tensor([[[4.0, 0.0], [0.0, 1.0]]]),
    )
    # N(x; mu, diag(4, 1)) at mu + (2, 1): exp(-0.5 (2^2/4 + 1)) / (2 pi sqrt(4))
    expected = math.exp(-1.0) / (2 * math.pi * 2)
    value = mixture.log_density(torch.tensor([3.0, 0.0])).exp()
    assert value.item() == pytest.approx(expected, rel=1e-6)


def test_em_separates_two_clusters_and_one_component_is_the_exact_fit():
    generator = torch.Generator().manual_seed(0)
    left = torch.randn(300, 2, generator=generator) * 0.3 + torch.tensor([-3.0, 0.0])
    right = torch.randn(100, 2, generator=generator) * 0.3 + torch.tensor([3.0, 1.0])
    errors = torch.cat([left, right])
    mixture = fit_gaussian_mixture(errors, components=2, iterations=20, covariance_floor=0.0)
    order = mixture.means[:, 0].argsort()
    torch.testing.assert_close(
        mixture.means[order].float(), torch.tensor([[-3.0, 0.0], [3.0, 1.0]]), atol=0.1, rtol=0
    )
    torch.testing.assert_close(mixture.weights[order].float(), torch.tensor([0.75, 0.25]))
    single = fit_gaussian_mixture(errors, components=1, covariance_floor=0.0)
    torch.testing.assert_close(single.means, fit_gaussian(errors, covariance_floor=0.0).means)


# --------------------------------------------------------------------------- weight map


def standard_gaussian(mean=(0.0, 0.0)) -> GaussianMixture2d:
    return GaussianMixture2d(
        weights=torch.ones(1), means=torch.tensor([mean]), covariances=torch.eye(2)[None]
    )


def test_the_weight_map_by_hand():
    # a joint on a pixel centre, errors N(0, I), a 3 x 3 window
    weights = confidence_weights(
        standard_gaussian(), torch.tensor([[[2.0, 3.0]]]), (6, 6), window=3
    )[0, 0]
    expected = torch.zeros(6, 6)
    expected[2:5, 1:4] = torch.tensor(
        [[math.exp(-1.0), math.exp(-0.5), math.exp(-1.0)],
         [math.exp(-0.5), 1.0, math.exp(-0.5)],
         [math.exp(-1.0), math.exp(-0.5), math.exp(-1.0)]]
    )  # fmt: skip
    torch.testing.assert_close(weights, expected)
    # a sub-pixel joint: the window is centred on its integer peak (2, 3), the density
    # is read at q - t and divided by its largest value in the window (at dx = -0.4)
    weights = confidence_weights(
        standard_gaussian(), torch.tensor([[[2.4, 3.0]]]), (6, 6), window=3
    )[0, 0]
    row = torch.tensor([math.exp(-0.9), 1.0, math.exp(-0.1)])  # dx = -1.4, -0.4, 0.6
    torch.testing.assert_close(weights[3, 1:4], row)
    torch.testing.assert_close(weights[2, 1:4], row * math.exp(-0.5))
    assert weights[:, 0].sum() == 0 and weights[:, 4:].sum() == 0
    # biased errors (the argmax tends to land one pixel right): the weight follows them
    weights = confidence_weights(
        standard_gaussian((1.0, 0.0)), torch.tensor([[[2.0, 3.0]]]), (6, 6), window=3
    )[0, 0]
    assert weights[3, 3] == 1.0 and weights[3, 2] == pytest.approx(math.exp(-0.5))
    assert weights[3, 1] == pytest.approx(math.exp(-2.0))


def test_the_window_is_cut_at_the_border_and_sized_by_the_option():
    truth = torch.tensor([[[0.0, 0.0], [5.0, 5.0]]])
    weights = confidence_weights(standard_gaussian(), truth, (12, 12), window=7)[0]
    assert (weights[0] > 0).sum() == 16  # the 4 x 4 quarter of the window inside the map
    assert weights[0, 0, 0] == 1.0
    assert (weights[1] > 0).sum() == 49 and weights[1].max() == 1.0
    assert (weights[1, 2:9, 2:9] > 0).all()
    smaller = confidence_weights(standard_gaussian(), truth, (12, 12), window=5)[0]
    assert (smaller[1] > 0).sum() == 25


# --------------------------------------------------------------------------- losses


def test_offset_weights_are_the_mask_without_confidence_and_within_it_with():
    head = make_head(confidence=False)
    keypoints, visible = random_persons(3, seed=0)
    targets = batch_targets(head.codec, keypoints, visible)
    heatmaps = targets["heatmaps"] + 0.01  # argmax on the truth's peak
    plain = head.offset_weights(heatmaps, targets)
    mask = targets["offset_mask"] * targets["target_weight"][..., None, None]
    torch.testing.assert_close(plain, mask)
    head.confidence = True
    confident = head.offset_weights(heatmaps, targets)
    assert (confident <= plain).all() and (confident[plain == 0] == 0).all()
    assert confident.amax(dim=(-2, -1))[targets["target_weight"] > 0].min() > 0.5
    # at most a window of 7 x 7 pixels per joint
    assert ((confident > 0).sum(dim=(-2, -1)) <= 49).all()


def test_loss_terms_by_hand_and_weight_zero_joints_contribute_nothing():
    head = make_head(confidence=False)
    keypoints, visible = random_persons(2, seed=1)
    targets = batch_targets(head.codec, keypoints, visible)
    outputs = {"heatmaps": targets["heatmaps"].clone(), "offsets": targets["offsets"] + 1.0}
    terms = head.loss_terms(outputs, targets)
    assert terms["heatmap"] == 0
    # |error| = 1 on both components of every weighted pixel, mean over B 2K H W
    weighted = (targets["offset_mask"] * targets["target_weight"][..., None, None]).sum()
    assert terms["offset"].item() == pytest.approx(weighted.item() / (2 * K * 16 * 12))

    head.confidence = True
    noisy = {
        "heatmaps": torch.rand(2, K, 16, 12, generator=torch.Generator().manual_seed(2)),
        "offsets": torch.randn(2, 2 * K, 16, 12, generator=torch.Generator().manual_seed(3)),
    }
    terms = head.loss_terms(noisy, targets)
    assert all(torch.isfinite(value) and value > 0 for value in terms.values())
    # a weight-0 joint: any prediction, even a NaN target position, changes nothing
    hidden = int(np.flatnonzero(~visible[0])[0])
    changed = {name: value.clone() for name, value in noisy.items()}
    changed["heatmaps"][0, hidden] = 5.0 * torch.rand(16, 12)
    changed["offsets"][0, 2 * hidden : 2 * hidden + 2] = 9.0
    nan_targets = dict(targets, keypoints=targets["keypoints"].clone())
    nan_targets["keypoints"][0, hidden] = float("nan")
    again = head.loss_terms(changed, nan_targets)
    for name in terms:
        torch.testing.assert_close(again[name], terms[name])


def test_the_confidence_weight_follows_the_batchs_argmax_errors():
    """Argmax errors of +1 pixel in x for every joint: the weight peaks one pixel right
    of each joint's peak."""
    head = make_head("udp", confidence=True)
    keypoints = np.tile(np.array([[11.0, 21.0]]), (K, 1))[None] * np.ones((4, 1, 1))
    keypoints += np.random.default_rng(0).integers(0, 6, size=(4, K, 1)) * (47 / 11)
    targets = batch_targets(head.codec, keypoints, np.ones((4, K), bool))
    shifted = targets["heatmaps"].roll(1, dims=-1)  # every argmax one pixel right
    weights = head.offset_weights(shifted, targets)
    peak = head.codec.input_to_heatmap(targets["keypoints"].double()).round().long()
    best = weights.flatten(2).argmax(-1)
    torch.testing.assert_close(best % 12, peak[..., 0] + 1)
    torch.testing.assert_close(best // 12, peak[..., 1])


# --------------------------------------------------------------------------- flip test


@pytest.mark.parametrize("encoding", ["gaussian", "udp"])
def test_the_merge_of_a_prediction_and_its_exact_mirror_returns_it(encoding):
    """A prediction made of the codec's targets and the targets of the mirrored person
    (what a mirror-equivariant model answers on the mirrored crop) merge to the
    person's joints: heatmaps and offsets are brought back with the left/right swap,
    the offsets' x negated."""
    head = make_head(encoding)
    rng = np.random.default_rng(4)
    keypoints = rng.uniform([8.0, 3.0], [44.0, 60.0], size=(3, K, 2))
    mirrored_keypoints = keypoints[:, POSETRACK.flip_permutation].copy()
    mirrored_keypoints[..., 0] = 47 - mirrored_keypoints[..., 0]
    predictions = []
    for persons in (keypoints, mirrored_keypoints):
        targets = batch_targets(head.codec, persons, np.ones((3, K), bool))
        decoded, scores = head.codec.decode(targets["heatmaps"], targets["offsets"])
        predictions.append(
            HeadPrediction(
                keypoints=decoded,
                scores=scores,
                heatmaps=targets["heatmaps"],
                extras={"offsets": targets["offsets"]},
            )
        )
    merged = head.merge_flipped(*predictions, POSETRACK.flip_permutation)
    np.testing.assert_allclose(predictions[0].keypoints.numpy(), keypoints, atol=1e-4)
    np.testing.assert_allclose(merged.keypoints.numpy(), keypoints, atol=1e-3)
    assert merged.extras["offsets"].shape == (3, 2 * K, 16, 12)


# --------------------------------------------------------------------------- two stages


def micro_targets(model, batch: int = 2) -> dict[str, torch.Tensor]:
    keypoints, visible = random_persons(batch, seed=5)
    return batch_targets(model.head.codec, keypoints, visible)


@pytest.mark.parametrize("branch", ["offsets", "heatmaps"])
def test_frozen_parts_do_not_change_in_a_training_step(micro_config, branch):
    config = micro_config(f"model.cal.train_only={branch}", base="synthetic_tiny_cal.yaml")
    torch.manual_seed(0)
    model = build_model(config).train()
    trainable = {"offsets": "head.offset_predictor.", "heatmaps": "head.heatmap_predictor."}[branch]
    assert all(
        parameter.requires_grad == name.startswith(trainable)
        for name, parameter in model.named_parameters()
    )
    before = {name: value.clone() for name, value in model.state_dict().items()}
    optimizer = build_optimizer(model, lr=1e-2, weight_decay=0.1, layer_decay=0.75)
    criterion = build_criterion(config, model.head)
    frames = torch.randn(2, 1, 3, 64, 48, generator=torch.Generator().manual_seed(0))
    targets = micro_targets(model)
    loss = criterion(model(frames, targets=targets), targets)["loss"]
    loss.backward()
    optimizer.step()
    for name, value in model.state_dict().items():
        moved = not torch.equal(value, before[name])
        # the trained branch's output convolution gets a gradient and moves
        if name.startswith(trainable) and name.endswith("layers.3.weight"):
            assert moved, name
        if not name.startswith(trainable):
            assert not moved, name


def test_a_second_stage_starts_from_the_first_stages_weights(micro_config, tmp_path):
    first = build_model(micro_config(base="synthetic_tiny_cal.yaml"))
    with torch.no_grad():
        for parameter in first.parameters():
            parameter.add_(0.5)
    path = save_checkpoint(Checkpoint(model=first.state_dict()), tmp_path / "stage1.safetensors")
    config = micro_config(
        f"model.cal.init_from={path}",
        "model.cal.train_only=offsets",
        base="synthetic_tiny_cal.yaml",
    )
    # building reads no file (inference needs the checkpoint alone); a run starts from it
    second = build_model(config)
    assert not torch.equal(second.head.offset_predictor.layers[0].weight,
                           first.head.offset_predictor.layers[0].weight)  # fmt: skip
    load_initial_weights(second, config)
    for name, value in second.state_dict().items():
        torch.testing.assert_close(value, first.state_dict()[name], msg=name)
    other = micro_config(
        f"model.cal.init_from={path}", "model.decoder_dim=16", base="synthetic_tiny_cal.yaml"
    )
    with pytest.raises(ConfigError, match="model.cal.init_from"):
        load_initial_weights(build_model(other), other)


# --------------------------------------------------------------------------- distributed


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _process_losses(rank: int, port: int, results) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    torch.set_num_threads(1)
    try:
        head, outputs, targets = _global_batch()
        half = slice(2 * rank, 2 * rank + 2)
        terms = head.loss_terms(
            {name: value[half] for name, value in outputs.items()},
            {name: value[half] for name, value in targets.items()},
        )
        results[rank] = {name: value.item() for name, value in terms.items()}
    finally:
        dist.destroy_process_group()


def _global_batch():
    head = make_head(confidence=True)
    keypoints, visible = random_persons(4, seed=6)
    targets = batch_targets(head.codec, keypoints, visible)
    generator = torch.Generator().manual_seed(7)
    outputs = {
        "heatmaps": targets["heatmaps"] + 0.8 * torch.rand(4, K, 16, 12, generator=generator),
        "offsets": torch.randn(4, 2 * K, 16, 12, generator=generator),
    }
    return head, outputs, targets


def test_per_process_losses_average_to_the_global_batchs():
    """Two processes of two samples each: the fit's statistics are summed over the
    processes, so the mean of their losses is the loss of the four samples at once."""
    head, outputs, targets = _global_batch()
    expected = head.loss_terms(outputs, targets)
    results = mp.Manager().dict()
    mp.spawn(_process_losses, args=(_free_port(), results), nprocs=2, join=True)
    for name, value in expected.items():
        mean = 0.5 * (results[0][name] + results[1][name])
        assert mean == pytest.approx(value.item(), rel=1e-5), name
    # a per-process fit would differ: each half alone gives other weights
    alone = head.loss_terms(
        {name: value[:2] for name, value in outputs.items()},
        {name: value[:2] for name, value in targets.items()},
    )
    assert alone["offset"].item() != pytest.approx(results[0]["offset"], rel=1e-5)


def test_two_stages_through_the_trainer(micro_config, tmp_path):
    """`vidpose train` twice: the second run starts from the first's weights and moves
    only the offset branch."""
    from vidpose.checkpoint import load_checkpoint
    from vidpose.data.synthetic import generate_dataset
    from vidpose.engine.trainer import train

    root = tmp_path / "data"
    generate_dataset(root, videos=1, frames=6, persons=2, size=(128, 96), seed=4, progress=False)
    run = [f"data.root={root}", "data.num_workers=0", "train.batch_size=4", "train.max_steps=2",
           "train.warmup_steps=1", "train.val_every=0"]  # fmt: skip
    train(micro_config(*run, base="synthetic_tiny_cal.yaml"), tmp_path / "one", show_progress=False)
    first = load_checkpoint(tmp_path / "one" / "latest.safetensors").model
    second_stage = micro_config(
        *run,
        f"model.cal.init_from={tmp_path / 'one' / 'latest.safetensors'}",
        "model.cal.train_only=offsets",
        base="synthetic_tiny_cal.yaml",
    )
    train(second_stage, tmp_path / "two", show_progress=False)
    second = load_checkpoint(tmp_path / "two" / "latest.safetensors").model
    assert set(first) == set(second)
    for name, value in second.items():
        if name.startswith("head.offset_predictor.layers.3"):
            assert not torch.equal(value, first[name]), name
        elif not name.startswith("head.offset_predictor."):
            torch.testing.assert_close(value, first[name], rtol=0, atol=0, msg=name)
