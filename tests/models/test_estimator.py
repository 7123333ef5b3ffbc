"""Heads and the estimator: dict contracts, shapes, encode-once, batching, gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vidpose.losses import build_criterion
from vidpose.models.build import build_model
from vidpose.models.diffusion import DenoiserOutput, ddim_timesteps
from vidpose.models.interaction import fuse_widths

B, K, H, W = 3, 17, 16, 12  # micro config: 64 x 48 input, 4 x 3 tokens
LEVELS = [(4, 3), (8, 6), (16, 12)]


# Sampler defaults of the model under test (the tiny config samples in 1 step; 3 here
# so that the tests see a multi-step search).
MODEL_STEPS, MODEL_HYPOTHESES = 3, 4


@pytest.fixture(scope="module")
def diffusion_model(micro_config):
    torch.manual_seed(0)
    sampling = [
        f"model.diffusion.sampling_steps={MODEL_STEPS}",
        f"model.diffusion.hypotheses={MODEL_HYPOTHESES}",
    ]
    return build_model(micro_config(*sampling)).eval()


@pytest.fixture(scope="module")
def baseline_model(micro_config):
    torch.manual_seed(0)
    return build_model(micro_config(base="synthetic_tiny_baseline.yaml")).eval()


@pytest.fixture
def clip(generator, gaussian_heatmaps):
    frames = torch.randn(B, 3, 3, 64, 48, generator=generator)
    targets = gaussian_heatmaps(B, K, (H, W), generator)
    return frames, targets


def shapes(tree):
    if isinstance(tree, torch.Tensor):
        return tuple(tree.shape)
    if isinstance(tree, (tuple, list)):
        return [shapes(item) for item in tree]
    return tree


# --------------------------------------------------------------------------- forward


def test_forward_has_the_same_keys_in_train_and_eval(diffusion_model, clip):
    frames, targets = clip
    seeds = torch.arange(B)
    try:
        diffusion_model.train()
        trained = diffusion_model(frames, targets={"heatmaps": targets}, sample_seeds=seeds)
    finally:
        diffusion_model.eval()
    evaluated = diffusion_model(frames, targets={"heatmaps": targets}, sample_seeds=seeds)
    assert set(trained) == set(evaluated) == {"heatmaps", "coarse_heatmaps", "t"}
    for outputs in (trained, evaluated):
        assert outputs["heatmaps"].shape == (B, K, H, W)
        assert outputs["coarse_heatmaps"].shape == (B, K, H, W)
        assert outputs["t"].shape == (B,) and outputs["t"].dtype == torch.int64
    assert torch.equal(trained["t"], evaluated["t"])  # t comes from the seeds


def test_stage_shapes(diffusion_model, clip):
    frames, _ = clip
    tokens = diffusion_model.backbone(frames)
    assert tokens.shape == (B, 3, 12, 32)
    fused = diffusion_model.temporal(tokens)
    assert fused.shape == (B, 32, 4, 3)
    levels = diffusion_model.pyramid(fused)
    assert shapes(list(levels)) == [(B, 32, h, w) for h, w in LEVELS]
    assert shapes(list(diffusion_model.encode(frames))) == shapes(list(levels))


def test_diffusion_forward_needs_targets(diffusion_model, clip):
    with pytest.raises(ValueError, match="targets"):
        diffusion_model(clip[0])


def test_forward_is_batch_independent_with_sample_seeds(diffusion_model, clip):
    frames, targets = clip
    seeds = torch.tensor([11, 12, 13])
    batched = diffusion_model(frames, targets={"heatmaps": targets}, sample_seeds=seeds)
    for index in range(B):
        single = diffusion_model(
            frames[index : index + 1],
            targets={"heatmaps": targets[index : index + 1]},
            sample_seeds=seeds[index : index + 1],
        )
        assert torch.equal(single["t"][0], batched["t"][index])
        for key in ("heatmaps", "coarse_heatmaps"):
            torch.testing.assert_close(single[key][0], batched[key][index], atol=1e-5, rtol=1e-4)


def test_wrong_clip_shape_is_rejected(diffusion_model):
    with pytest.raises(ValueError, match=r"\[B, 3, 3, H, W\]"):
        diffusion_model.encode(torch.zeros(1, 1, 3, 64, 48))


# --------------------------------------------------------------------------- predict


def test_predict_outputs_and_trajectory(diffusion_model, clip):
    frames, _ = clip
    steps, hypotheses = 3, 2
    result = diffusion_model.predict(
        frames,
        steps=steps,
        hypotheses=hypotheses,
        generator=torch.Generator().manual_seed(1),
        return_trajectory=True,
    )
    assert set(result.extras) == {"hypothesis_heatmaps"}
    assert result.heatmaps.shape == (B, K, H, W)
    hypothesis_heatmaps = result.extras["hypothesis_heatmaps"]
    assert hypothesis_heatmaps.shape == (B, hypotheses, K, H, W)
    torch.testing.assert_close(result.heatmaps, hypothesis_heatmaps.mean(1))
    trajectory = result.trajectory
    assert len(trajectory) == steps
    assert [(s["t"], s["t_prev"]) for s in trajectory] == ddim_timesteps(999, steps)
    for index, entry in enumerate(trajectory):
        assert set(entry) == {
            "step", "label", "t", "t_prev", "x_t", "heatmaps", "masks", "keypoints", "scores"
        }  # fmt: skip
        assert entry["step"] == index
        assert entry["label"] == f"t {entry['t']}->{entry['t_prev']}"
        assert entry["x_t"].shape == (B, hypotheses, K, H, W)
        assert entry["heatmaps"].shape == (B, hypotheses, K, H, W)
        assert shapes(list(entry["masks"])) == [(B, hypotheses, K, h, w) for h, w in LEVELS]
        for mask in entry["masks"]:
            torch.testing.assert_close(mask.sum((-2, -1)), torch.ones(B, hypotheses, K))
        assert entry["keypoints"].shape == (B, hypotheses, K, 2)
        assert entry["scores"].shape == (B, hypotheses, K)
    # the final heatmaps are the last x0 estimate (DDIM's last step lands on it)
    torch.testing.assert_close(hypothesis_heatmaps, trajectory[-1]["heatmaps"].clamp(0, 1))


@pytest.mark.parametrize("init", ["noise", "coarse"])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_predict_is_batch_independent_with_sample_seeds(diffusion_model, clip, init, eta):
    frames, _ = clip
    seeds = torch.tensor([5, 6, 7])
    options = dict(steps=2, hypotheses=3, eta=eta, init=init)
    batched = diffusion_model.predict(frames, sample_seeds=seeds, **options)
    for index in range(B):
        single = diffusion_model.predict(
            frames[index : index + 1], sample_seeds=seeds[index : index + 1], **options
        )
        torch.testing.assert_close(
            single.extras["hypothesis_heatmaps"][0],
            batched.extras["hypothesis_heatmaps"][index],
            atol=1e-5,
            rtol=1e-4,
        )


def test_predict_with_a_generator_is_reproducible(diffusion_model, clip):
    frames, _ = clip
    first = diffusion_model.predict(frames, generator=torch.Generator().manual_seed(3))
    second = diffusion_model.predict(frames, generator=torch.Generator().manual_seed(3))
    third = diffusion_model.predict(frames, generator=torch.Generator().manual_seed(4))
    assert torch.equal(first.heatmaps, second.heatmaps)
    assert torch.equal(first.keypoints, second.keypoints)
    assert not torch.equal(first.extras["hypothesis_heatmaps"], third.extras["hypothesis_heatmaps"])


def test_predict_from_features_equals_predict(diffusion_model, clip):
    frames, _ = clip
    with torch.no_grad():
        features = diffusion_model.encode(frames)
    direct = diffusion_model.predict(frames, generator=torch.Generator().manual_seed(2))
    from_features = diffusion_model.predict_from_features(
        features, generator=torch.Generator().manual_seed(2)
    )
    assert torch.equal(direct.heatmaps, from_features.heatmaps)
    assert torch.equal(direct.keypoints, from_features.keypoints)


def test_predict_defaults_come_from_the_config(diffusion_model, clip):
    result = diffusion_model.predict(clip[0][:1], return_trajectory=True)
    assert len(result.trajectory) == MODEL_STEPS  # model.diffusion.sampling_steps
    assert result.extras["hypothesis_heatmaps"].shape[1] == MODEL_HYPOTHESES


def test_predict_argument_errors(diffusion_model, clip):
    frames = clip[0][:1]
    with pytest.raises(ValueError, match="do not fit"):
        diffusion_model.predict(frames, steps=1001)
    with pytest.raises(ValueError, match="do not fit"):
        diffusion_model.predict(frames, steps=600, init="coarse")  # starts at t = 500
    with pytest.raises(ValueError, match="hypotheses"):
        diffusion_model.predict(frames, hypotheses=0)
    with pytest.raises(ValueError, match="init"):
        diffusion_model.predict(frames, init="zeros")
    with pytest.raises(ValueError, match="not both"):
        diffusion_model.predict(frames, generator=torch.Generator(), sample_seeds=torch.tensor([1]))


class CallCounter:
    """Counts forward calls of a module and the batch size of each."""

    def __init__(self, module: nn.Module) -> None:
        self.batches: list[int] = []
        self.handle = module.register_forward_hook(self.hook)

    def hook(self, module, inputs, output) -> None:
        self.batches.append(inputs[0].shape[0])


@pytest.mark.parametrize("steps, hypotheses", [(1, 1), (4, 3), (7, 5)])
def test_encoder_runs_once_per_clip_and_the_decoder_once_per_step(
    diffusion_model, clip, steps, hypotheses
):
    frames, _ = clip
    counters = {
        name: CallCounter(module)
        for name, module in (
            ("backbone", diffusion_model.backbone),
            ("temporal", diffusion_model.temporal),
            ("pyramid", diffusion_model.pyramid),
            ("denoiser", diffusion_model.head.denoiser),
        )
    }
    try:
        diffusion_model.predict(frames, steps=steps, hypotheses=hypotheses)
    finally:
        for counter in counters.values():
            counter.handle.remove()
    assert counters["backbone"].batches == [B]
    assert counters["temporal"].batches == [B]
    assert counters["pyramid"].batches == [B]
    # hypotheses are batched: one decoder call per step, on B * G samples
    assert counters["denoiser"].batches == [B * hypotheses] * steps


class OracleDenoiser(nn.Module):
    """Returns the true x0 (heatmap units) for every hypothesis; counts its calls."""

    def __init__(self, targets: torch.Tensor, hypotheses: int) -> None:
        super().__init__()
        self.x0 = targets.repeat_interleave(hypotheses, dim=0)  # sample-major folding
        self.calls: list[int] = []
        self.prepare_calls = 0

    def prepare(self, features):
        self.prepare_calls += 1
        return tuple(level[:, :1] for level in features)

    def forward(self, x_t, t, features, prepared=None) -> DenoiserOutput:
        self.calls.append(int(t[0]))
        assert torch.all(t == t[0])
        masks = tuple(torch.zeros(x_t.shape[0], K, *level.shape[-2:]) for level in features)
        return DenoiserOutput(heatmaps=self.x0, masks=masks)


@pytest.mark.parametrize("steps", [1, 2, 5])
@pytest.mark.parametrize("init", ["noise", "coarse"])
def test_sampling_with_an_oracle_denoiser_returns_x0(diffusion_model, clip, steps, init):
    frames, targets = clip
    hypotheses = 3
    head = diffusion_model.head
    real = head.denoiser
    head.denoiser = OracleDenoiser(targets, hypotheses)
    try:
        result = diffusion_model.predict(
            frames, steps=steps, hypotheses=hypotheses, eta=0.0, init=init
        )
        calls = head.denoiser.calls
        prepare_calls = head.denoiser.prepare_calls
    finally:
        head.denoiser = real
    start = 999 if init == "noise" else 500
    assert calls == [t for t, _ in ddim_timesteps(start, steps)]
    assert prepare_calls == 1  # the feature-only work: once per clip, whatever S and G
    assert torch.equal(
        result.extras["hypothesis_heatmaps"], targets[:, None].expand(-1, 3, -1, -1, -1)
    )
    # the mean of three equal float32 maps can differ from them in the last bit
    torch.testing.assert_close(result.heatmaps, targets, atol=1e-7, rtol=0)
    # three identical hypotheses: no spread
    torch.testing.assert_close(result.uncertainty, torch.zeros(B, K), atol=1e-4, rtol=0)


def test_prepared_features_give_the_same_estimate_as_computing_them_inside(diffusion_model, clip):
    frames, targets = clip
    denoiser = diffusion_model.head.denoiser
    with torch.no_grad():
        features = diffusion_model.encode(frames)
        x_t = diffusion_model.head.process.to_signal(targets)
        t = torch.tensor([10, 500, 990])  # one time step per sample (B = 3)
        inside = denoiser(x_t, t, features)
        shared = denoiser(x_t, t, features, denoiser.prepare(features))
    torch.testing.assert_close(shared.heatmaps, inside.heatmaps, rtol=0, atol=0)
    for a, b in zip(shared.masks, inside.masks, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_hypotheses_sharing_their_clips_features_equal_repeated_features(
    diffusion_model, clip, generator
):
    """x_t with G rows per clip (sample-major) against features with B rows gives what
    repeating every clip's features G times gives: the sharing is only a saving."""
    frames, _ = clip
    denoiser = diffusion_model.head.denoiser
    hypotheses = 2
    with torch.no_grad():
        features = diffusion_model.encode(frames)
        x_t = torch.randn(B * hypotheses, K, H, W, generator=generator)
        t = torch.tensor([10, 10, 500, 500, 990, 990])
        shared = denoiser(x_t, t, features, denoiser.prepare(features))
        repeated = [level.repeat_interleave(hypotheses, dim=0) for level in features]
        separate = denoiser(x_t, t, repeated)
    torch.testing.assert_close(shared.heatmaps, separate.heatmaps, rtol=1e-5, atol=1e-6)
    for a, b in zip(shared.masks, separate.masks, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="not a multiple of the 3 clips"):
        denoiser(x_t[:4], t[:4], features)


def test_the_coarse_branch_runs_only_when_sampling_starts_from_it(diffusion_model, clip):
    frames, _ = clip
    with torch.no_grad():
        features = diffusion_model.encode(frames)
        from_noise = diffusion_model.head.predict(features, steps=1, init="noise")
        from_coarse = diffusion_model.head.predict(features, steps=1, init="coarse")
        expected = diffusion_model.head.coarse(features[-1])
    assert "coarse_heatmaps" not in from_noise.extras
    torch.testing.assert_close(from_coarse.extras["coarse_heatmaps"], expected)


def test_the_denoiser_reads_x_t_through_its_masks(diffusion_model, clip, generator):
    frames, targets = clip
    head = diffusion_model.head
    with torch.no_grad():
        features = diffusion_model.encode(frames)
        t = torch.full((B,), 100)
        clean = head.denoiser(head.process.to_signal(targets), t, features)
        moved = head.denoiser(head.process.to_signal(targets.flip(-1)), t, features)
    assert not torch.allclose(clean.heatmaps, moved.heatmaps)
    # a clean heatmap's mask at the finest scale peaks where the heatmap peaks
    finest = clean.masks[-1]
    assert torch.equal(finest.flatten(2).argmax(-1), targets.flatten(2).argmax(-1))


# --------------------------------------------------------------------------- baseline


def test_baseline_head_forward_and_predict(baseline_model, clip):
    frames = clip[0][:, 1:2]  # T = 1: the key frame only
    outputs = baseline_model(frames)
    assert set(outputs) == {"heatmaps"} and outputs["heatmaps"].shape == (B, K, H, W)
    predicted = baseline_model.predict(frames, steps=5, hypotheses=3, return_trajectory=True)
    torch.testing.assert_close(predicted.heatmaps, outputs["heatmaps"])
    keypoints, scores = baseline_model.head.codec.decode(outputs["heatmaps"])
    torch.testing.assert_close(predicted.keypoints, keypoints)
    torch.testing.assert_close(predicted.scores, scores)
    assert predicted.uncertainty is None
    assert predicted.extras["hypothesis_heatmaps"].shape == (B, 1, K, H, W)
    assert predicted.trajectory == []
    assert baseline_model.num_frames == 1


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("base", ["synthetic_tiny.yaml", "synthetic_tiny_temporal_baseline.yaml"])
def test_gradients_reach_every_parameter(micro_config, base, generator, gaussian_heatmaps):
    cfg = micro_config(base=base)
    torch.manual_seed(0)
    model = build_model(cfg).train()
    criterion = build_criterion(cfg, model.head)
    frames = torch.randn(4, 3, 3, 64, 48, generator=generator)
    targets = {
        "heatmaps": gaussian_heatmaps(4, K, (H, W), generator),
        "target_weight": torch.ones(4, K),
    }
    outputs = model(frames, targets=targets, sample_seeds=torch.arange(4))
    criterion(outputs, targets)["loss"].backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_keypoints_are_decoded_by_the_heads_codec(diffusion_model, clip, micro_config):
    from vidpose.codecs.heatmap import build_codec

    codec = build_codec(micro_config().data)
    result = diffusion_model.predict(clip[0], steps=2, hypotheses=2, return_trajectory=True)
    keypoints, scores = codec.decode(result.heatmaps)
    torch.testing.assert_close(result.keypoints, keypoints)
    torch.testing.assert_close(result.scores, scores)
    # the uncertainty is the spread of the hypotheses' own keypoints
    own, _ = codec.decode(result.extras["hypothesis_heatmaps"].flatten(0, 1))
    own = own.view(B, 2, K, 2)
    spread = ((own - own.mean(1, keepdim=True)) ** 2).sum(-1).mean(1).sqrt()
    torch.testing.assert_close(result.uncertainty, spread)
    assert (result.uncertainty > 0).any()
    for entry in result.trajectory:
        assert entry["keypoints"].shape == (B, 2, K, 2)
        expected, _ = codec.decode(entry["heatmaps"].flatten(0, 1))
        torch.testing.assert_close(entry["keypoints"].flatten(0, 1), expected)
        assert entry["keypoints"][..., 0].max() <= 48 and entry["keypoints"][..., 1].max() <= 64


def test_fuse_widths_halve_from_coarse_to_fine_with_a_floor():
    assert fuse_widths(128, 3) == [128, 64, 32]
    assert fuse_widths(64, 3) == [64, 32, 16]
    assert fuse_widths(32, 3) == [32, 16, 16]
    assert fuse_widths(8, 2) == [8, 8]  # never wider than D


# --------------------------------------------------------------------------- SNR masks


def test_snr_mask_scales_follow_the_evidence_in_x_t():
    from vidpose.models.diffusion.schedule import GaussianDiffusion
    from vidpose.models.interaction import snr_mask_scales

    alphas = GaussianDiffusion(timesteps=1000, schedule="cosine", signal_scale=1).alphas_cumprod
    scales = snr_mask_scales(alphas, cap=10.0)
    assert scales.shape == (1000,)
    assert torch.all(scales[1:] <= scales[:-1])  # less evidence as t grows
    assert scales[0] == 10.0 and scales[-1] < 1e-3  # capped near the data, ~0 at noise
    half = int(torch.argmin((alphas - 0.5).abs()))  # 1 where alpha_bar = 0.5
    assert scales[half] == pytest.approx(1.0, abs=0.01)
    a = alphas[700].double()
    assert scales[700] == pytest.approx(float(a.sqrt() / (1 - a) / 2**0.5), rel=1e-5)


@pytest.fixture(scope="module")
def gain_models(micro_config):
    models = {}
    for gain in ("snr", "constant"):
        torch.manual_seed(0)
        models[gain] = build_model(micro_config(f"model.diffusion.mask_gain={gain}")).eval()
    return models


def test_snr_masks_are_uniform_at_pure_noise_and_follow_a_clean_heatmap(
    gain_models, clip, generator
):
    frames, targets = clip
    snr_model = gain_models["snr"]
    with torch.no_grad():
        features = snr_model.encode(frames)
        last = snr_model.head.process.timesteps - 1
        noise = torch.randn(B, K, H, W, generator=generator)
        at_noise = snr_model.head.denoiser(noise, torch.full((B,), last), features)
        clean = snr_model.head.process.to_signal(targets)
        near_data = snr_model.head.denoiser(clean, torch.full((B,), 10), features)
        # the constant gain (DiffPose) reads positions off the noise
        constant = gain_models["constant"].head.denoiser(noise, torch.full((B,), last), features)
    for mask in at_noise.masks:
        uniform = torch.full_like(mask, 1 / mask[0, 0].numel())
        torch.testing.assert_close(mask, uniform, rtol=1e-3, atol=0)
    assert constant.masks[-1].amax() > 10 / constant.masks[-1][0, 0].numel()
    finest = near_data.masks[-1].flatten(2)
    assert torch.equal(finest.argmax(-1), targets.flatten(2).argmax(-1))
    assert finest.amax(-1).mean() > 0.8  # sharp: most of the mass on the peak pixel
    # at pure noise every hypothesis looks up the same features: one-step estimates agree
    with torch.no_grad():
        sampled = snr_model.predict(frames, steps=1, hypotheses=3).extras["hypothesis_heatmaps"]
    torch.testing.assert_close(sampled[:, 0], sampled[:, 2], rtol=0, atol=1e-4)


# --------------------------------------------------------------------------- estimate inputs


def test_training_inputs_from_the_models_own_estimate(micro_config, clip):
    frames, targets = clip
    seeds = torch.tensor([1, 2, 3])  # the same t and noise in both runs
    runs = {}
    for share in (0.0, 1.0):
        torch.manual_seed(0)
        model = build_model(micro_config(f"model.diffusion.estimate_inputs={share}")).eval()
        calls = []
        hook = model.head.denoiser.register_forward_hook(
            lambda _, args, output, calls=calls: calls.append((args[0], args[1], output))
        )
        try:
            out = model(frames, targets={"heatmaps": targets}, sample_seeds=seeds)
        finally:
            hook.remove()
        runs[share] = (model.head, calls, out)
    head, calls, out = runs[1.0]
    assert len(calls) == 2
    # first the estimate sampling starts with: the denoiser at t = T - 1 on x_T = noise
    noise, first_t, first = calls[0]
    assert torch.equal(first_t, torch.full((B,), head.process.timesteps - 1))
    assert not first.heatmaps.requires_grad  # no gradient through the estimate
    estimate = head.process.to_signal(first.heatmaps.clamp(0, 1))
    assert not torch.allclose(estimate, head.process.to_signal(targets))
    x_t, t, _ = calls[1]
    torch.testing.assert_close(t, out["t"])
    torch.testing.assert_close(x_t, head.process.q_sample(estimate, t, noise))
    # DDPM's training: one call, the ground truth under the same noise
    head, calls, out = runs[0.0]
    assert len(calls) == 1
    x_t, t, _ = calls[0]
    torch.testing.assert_close(
        x_t, head.process.q_sample(head.process.to_signal(targets), t, noise)
    )


def test_estimate_inputs_outside_0_1_is_rejected(micro_config):
    with pytest.raises(ValueError, match="estimate_inputs"):
        build_model(micro_config("model.diffusion.estimate_inputs=1.5"))
