"""DiffPose as published (issue #19): the paper's look-up interaction
(``model.interaction: diffpose``, vidpose/models/lmsfi.py) and its Transformer temporal
learner (``model.temporal: transformer``), each against the contract vidpose's own
parts keep."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vidpose.config import ConfigError, load_config
from vidpose.losses import build_criterion
from vidpose.models.build import build_model
from vidpose.models.lmsfi import (
    ConvStack,
    DiffPoseDenoiser,
    HeatmapDownsample,
    ScaleInteraction,
    TokenTransformer,
    squeeze_mask,
)
from vidpose.models.temporal import LinearTemporalFusion, TransformerTemporalFusion

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
B, K, H, W = 3, 17, 16, 12  # the micro config: 64 x 48 input, 4 x 3 tokens
LEVELS = [(4, 3), (8, 6), (16, 12)]
FACTORS = [4, 2, 1]

# the benchmark's three models, on top of synthetic_tiny.yaml
PAPER_INTERACTION = ["model.interaction=diffpose", "model.diffusion.mask_gain=constant"]
OPTIONS = {
    "interaction": ("synthetic_tiny.yaml", PAPER_INTERACTION),
    "temporal": ("synthetic_tiny.yaml", ["model.temporal=transformer"]),
    "both": ("synthetic_tiny_diffpose_paper.yaml", []),
}


def build(micro_config, option: str, *extra: str) -> nn.Module:
    base, overrides = OPTIONS[option]
    torch.manual_seed(0)
    return build_model(micro_config(*overrides, *extra, base=base)).eval()


@pytest.fixture(scope="module")
def paper_model(micro_config):
    return build(micro_config, "both")


@pytest.fixture
def clip(generator):
    return torch.randn(B, 3, 3, 64, 48, generator=generator)


def test_the_options_build_the_papers_parts(micro_config):
    interaction = build(micro_config, "interaction")
    assert isinstance(interaction.head.denoiser, DiffPoseDenoiser)
    assert type(interaction.temporal) is LinearTemporalFusion
    temporal = build(micro_config, "temporal")
    assert isinstance(temporal.temporal, TransformerTemporalFusion)
    assert not isinstance(temporal.head.denoiser, DiffPoseDenoiser)
    assert len(temporal.temporal.layers) == 2  # model.temporal_layers' default
    both = build(micro_config, "both")
    assert isinstance(both.head.denoiser, DiffPoseDenoiser)
    assert isinstance(both.temporal, TransformerTemporalFusion)
    scales = both.head.denoiser.interaction.scales
    assert isinstance(scales[0].refine, TokenTransformer)  # a Transformer at the coarsest
    assert all(isinstance(scale.fuse, ConvStack) for scale in scales[1:])  # convs finer


# --------------------------------------------------------------------------- the mask


def test_the_mask_is_a_sigmoid_of_the_channel_maximum_by_hand():
    # two joints on a 4 x 4 grid, downsampled 2x by the initial (area-averaging) conv
    x_t = torch.zeros(1, 2, 4, 4)
    x_t[0, 0, 0, 0] = 4.0  # joint 0: block (0, 0) averages to 1
    x_t[0, 1, 2:, 2:] = -2.0  # joint 1: block (1, 1) averages to -2
    x_t[0, 1, 0, 2] = 8.0  # joint 1: block (0, 1) averages to 2
    resized = HeatmapDownsample(num_joints=2, factor=2)(x_t)
    expected_resized = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[0.0, 2.0], [0.0, -2.0]]])
    torch.testing.assert_close(resized[0], expected_resized)
    mask = squeeze_mask(resized)
    # max over joints [[1, 2], [0, 0]], then the sigmoid
    expected = torch.tensor([[0.7310586, 0.8807971], [0.5, 0.5]])
    assert mask.shape == (1, 1, 2, 2)
    torch.testing.assert_close(mask[0, 0], expected)


def test_the_downsampling_convolution_starts_as_area_averaging(generator):
    for factor in (1, 2, 4):
        x_t = torch.randn(2, K, 16, 12, generator=generator)
        resized = HeatmapDownsample(num_joints=K, factor=factor)(x_t)
        torch.testing.assert_close(resized, F.avg_pool2d(x_t, factor))


def test_the_denoisers_masks_are_the_papers_mask_per_level(paper_model, clip, generator):
    """Every level's reported mask is sigmoid(max_k resize(x_t)), normalised to sum to 1
    and the same for every joint (at the initial, area-averaging downsampling)."""
    denoiser = paper_model.head.denoiser
    with torch.no_grad():
        features = paper_model.encode(clip)
        x_t = torch.randn(B, K, H, W, generator=generator)
        output = denoiser(x_t, torch.tensor([0, 500, 999]), features)
    assert output.heatmaps.shape == (B, K, H, W)
    for mask, (height, width), factor in zip(output.masks, LEVELS, FACTORS, strict=True):
        assert mask.shape == (B, K, height, width)
        paper = torch.sigmoid(F.avg_pool2d(x_t, factor).amax(dim=1, keepdim=True))
        expected = (paper / paper.sum(dim=(-2, -1), keepdim=True)).expand(-1, K, -1, -1)
        torch.testing.assert_close(mask, expected)
        torch.testing.assert_close(mask.sum(dim=(-2, -1)), torch.ones(B, K))


def test_x_t_reaches_the_output_only_through_the_mask(paper_model, clip, generator):
    """With the masks forced to ones (downsampling weights 0, bias 100: sigmoid = 1),
    a different x_t gives exactly the same output: x_t is never concatenated with the
    features, it reaches them only through A."""
    denoiser = paper_model.head.denoiser
    t = torch.tensor([10, 500, 990])
    first = torch.randn(B, K, H, W, generator=generator)
    second = torch.randn(B, K, H, W, generator=generator) * 3
    with torch.no_grad():
        features = paper_model.encode(clip)
        # the denoiser does read x_t (the premise of the test)
        assert not torch.allclose(
            denoiser(first, t, features).heatmaps, denoiser(second, t, features).heatmaps
        )
        saved = [
            (downsample.conv.weight.clone(), downsample.conv.bias.clone())
            for downsample in denoiser.interaction.downsample
        ]
        try:
            for downsample in denoiser.interaction.downsample:
                downsample.conv.weight.zero_()
                downsample.conv.bias.fill_(100.0)
            forced_first = denoiser(first, t, features)
            forced_second = denoiser(second, t, features)
        finally:
            for downsample, (weight, bias) in zip(
                denoiser.interaction.downsample, saved, strict=True
            ):
                downsample.conv.weight.copy_(weight)
                downsample.conv.bias.copy_(bias)
    for mask in forced_first.masks:
        torch.testing.assert_close(mask, torch.full_like(mask, 1.0 / mask[0, 0].numel()))
    assert torch.equal(forced_first.heatmaps, forced_second.heatmaps)


def test_the_gradient_to_x_t_flows_only_through_the_mask(paper_model, clip, generator):
    """d output / d x_t flows only through A: with the mask's input (the downsampled
    x_t) detached, x_t has no gradient path left."""
    denoiser = paper_model.head.denoiser
    with torch.no_grad():
        features = paper_model.encode(clip)
    x_t = torch.randn(B, K, H, W, generator=generator, requires_grad=True)
    t = torch.tensor([10, 500, 990])
    denoiser(x_t, t, features).heatmaps.sum().backward()
    assert x_t.grad is not None and x_t.grad.abs().sum() > 0
    handles = [
        downsample.register_forward_hook(lambda module, inputs, output: output.detach())
        for downsample in denoiser.interaction.downsample
    ]
    try:
        detached = x_t.detach().requires_grad_(True)
        output = denoiser(detached, t, features).heatmaps
    finally:
        for handle in handles:
            handle.remove()
    (gradient,) = torch.autograd.grad(output.sum(), detached, allow_unused=True)
    assert gradient is None


def test_the_concatenation_is_applied_exactly(generator):
    """The prepared, block-wise 1x1 convolution equals the literal
    conv1x1(cat[A (.) F', F', tau]) with hypotheses folded into the batch."""
    channels, clips, hypotheses = 8, 2, 3
    scale = ScaleInteraction(
        channels=channels,
        refine=ConvStack(channels=channels, num_layers=1),
        fuse=ConvStack(channels=channels, num_layers=1),
    ).eval()
    features = torch.randn(clips, channels, 6, 5, generator=generator)
    mask = torch.rand(clips * hypotheses, 1, 6, 5, generator=generator)
    time = torch.randn(clips * hypotheses, channels, generator=generator)
    with torch.no_grad():
        fast = scale(mask, time, scale.prepare(features))
        refined = scale.refine(features).repeat_interleave(hypotheses, dim=0)
        tau = time[..., None, None].expand(-1, -1, 6, 5)
        literal = scale.fuse(scale.project(torch.cat([mask * refined, refined, tau], dim=1)))
    torch.testing.assert_close(fast, literal, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- hypotheses


def test_hypotheses_batched_equal_one_by_one(paper_model, clip, generator):
    """x_t with G rows per clip against the clip's B feature rows gives, row for row,
    what each hypothesis alone gives."""
    denoiser = paper_model.head.denoiser
    hypotheses = 3
    with torch.no_grad():
        features = paper_model.encode(clip)
        prepared = denoiser.prepare(features)
        x_t = torch.randn(B * hypotheses, K, H, W, generator=generator)
        t = torch.tensor([10, 10, 10, 500, 500, 500, 990, 990, 990])
        batched = denoiser(x_t, t, features, prepared)
        for row in range(B * hypotheses):
            clip_index = row // hypotheses
            single_features = [level[clip_index : clip_index + 1] for level in features]
            single = denoiser(x_t[row : row + 1], t[row : row + 1], single_features)
            torch.testing.assert_close(
                single.heatmaps[0], batched.heatmaps[row], rtol=1e-4, atol=1e-5
            )
            for a, b in zip(single.masks, batched.masks, strict=True):
                torch.testing.assert_close(a[0], b[row])
    with pytest.raises(ValueError, match="not a multiple of the 3 clips"):
        denoiser(x_t[:4], t[:4], features)


@pytest.mark.parametrize("option", ["interaction", "both"])
def test_predict_is_batch_independent_with_sample_seeds(micro_config, option, clip):
    model = build(micro_config, option)
    seeds = torch.tensor([5, 6, 7])
    options = dict(steps=2, hypotheses=3, eta=0.0)
    batched = model.predict(clip, sample_seeds=seeds, return_trajectory=True, **options)
    for index in range(B):
        single = model.predict(
            clip[index : index + 1], sample_seeds=seeds[index : index + 1], **options
        )
        torch.testing.assert_close(
            single.extras["hypothesis_heatmaps"][0],
            batched.extras["hypothesis_heatmaps"][index],
            atol=1e-5,
            rtol=1e-4,
        )
    for entry in batched.trajectory:  # the head's "masks": per level [B, G, K, h, w], sums 1
        for mask, (height, width) in zip(entry["masks"], LEVELS, strict=True):
            assert mask.shape == (B, 3, K, height, width)
            torch.testing.assert_close(mask.sum((-2, -1)), torch.ones(B, 3, K))


class CallCounter:
    """Counts forward calls of a module and the batch size of each."""

    def __init__(self, module: nn.Module) -> None:
        self.batches: list[int] = []
        self.handle = module.register_forward_hook(self.hook)

    def hook(self, module, inputs, output) -> None:
        self.batches.append(inputs[0].shape[0])


@pytest.mark.parametrize("option", list(OPTIONS))
def test_encode_runs_once_per_clip(micro_config, option, clip, monkeypatch):
    model = build(micro_config, option)
    steps, hypotheses = 3, 2
    counters = {
        name: CallCounter(getattr(model, name)) for name in ("backbone", "temporal", "pyramid")
    }
    counters["denoiser"] = CallCounter(model.head.denoiser)
    prepare_calls = []
    prepare = model.head.denoiser.prepare
    monkeypatch.setattr(
        model.head.denoiser,
        "prepare",
        lambda features: prepare_calls.append(1) or prepare(features),
    )
    try:
        model.predict(clip, steps=steps, hypotheses=hypotheses)
    finally:
        for counter in counters.values():
            counter.handle.remove()
    assert counters["backbone"].batches == [B]
    assert counters["temporal"].batches == [B]
    assert counters["pyramid"].batches == [B]
    assert counters["denoiser"].batches == [B * hypotheses] * steps
    assert len(prepare_calls) == 1  # the feature-only work, once per clip


# --------------------------------------------------------------------------- temporal


def temporal_learner(frames: int, generator: torch.Generator) -> TransformerTemporalFusion:
    torch.manual_seed(int(torch.randint(1000, (1,), generator=generator)))
    aggregate = LinearTemporalFusion(
        num_frames=frames, key_frame_index=frames // 2, grid_size=(4, 3)
    )
    return TransformerTemporalFusion(
        aggregate=aggregate, channels=16, num_heads=2, num_layers=2
    ).eval()


def test_the_temporal_learner_knows_the_frame_order(generator):
    """Swapping the two neighbours changes the output (the frame embeddings tell the
    layers which frame a token comes from), though the initial Linear weighs the
    neighbours alike; with equal neighbour embeddings the swap changes nothing
    (attention alone is blind to the order of its tokens)."""
    learner = temporal_learner(3, generator)
    torch.testing.assert_close(learner.frame_weights, torch.tensor([0.25, 0.5, 0.25]))
    tokens = torch.randn(2, 3, 12, 16, generator=generator)
    swapped = tokens[:, [2, 1, 0]]
    with torch.no_grad():
        assert not torch.allclose(learner(tokens), learner(swapped), atol=1e-4)
        learner.frame_embedding[2] = learner.frame_embedding[0]
        torch.testing.assert_close(learner(tokens), learner(swapped), rtol=1e-5, atol=1e-5)


def test_the_temporal_learner_relates_every_frames_tokens(generator):
    """The key frame's fused map depends on a neighbour's token at another position
    (the Linear alone mixes each position with itself only)."""
    learner = temporal_learner(3, generator)
    tokens = torch.randn(1, 3, 12, 16, generator=generator)
    changed = tokens.clone()
    changed[0, 0, 11] += 5.0  # neighbour t-1, last grid position
    with torch.no_grad():
        difference = (learner(tokens) - learner(changed)).abs().sum(dim=1)[0]  # [h, w]
    assert difference.flatten()[0] > 0  # position 0 of the fused map moved


def test_with_one_frame_the_temporal_learner_is_the_image_case(generator):
    learner = temporal_learner(1, generator)
    assert list(learner.parameters()) == []
    tokens = torch.randn(2, 1, 12, 16, generator=generator)
    assert torch.equal(learner(tokens), rearrange(tokens[:, 0], "b (h w) c -> b c h w", h=4, w=3))
    torch.testing.assert_close(learner.frame_weights, torch.ones(1))


def test_the_temporal_learner_delegates_to_its_aggregation(generator):
    learner = temporal_learner(3, generator)
    assert learner.num_frames == 3 and learner.key_frame_index == 1
    assert learner.grid_size == (4, 3) and learner.mix is learner.aggregate.mix
    with pytest.raises(ValueError, match="3 frames"):
        learner(torch.zeros(1, 2, 12, 16))
    with pytest.raises(ValueError, match="num_layers"):
        TransformerTemporalFusion(
            aggregate=learner.aggregate, channels=16, num_heads=2, num_layers=0
        )


def test_a_single_frame_model_is_the_same_whichever_temporal_learner(micro_config):
    single = ["data.frame_offsets=[0]"]
    linear = build(micro_config, "interaction", *single)
    transformer = build(micro_config, "both", *single)
    assert list(transformer.temporal.parameters()) == []
    assert set(linear.state_dict()) == set(transformer.state_dict())


# --------------------------------------------------------------------------- training


@pytest.mark.parametrize("option", list(OPTIONS))
def test_gradients_reach_every_parameter(micro_config, option, generator, gaussian_heatmaps):
    base, overrides = OPTIONS[option]
    cfg = micro_config(*overrides, base=base)
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


# --------------------------------------------------------------------------- configs


def test_configs_that_do_not_fit_are_refused(micro_config):
    with pytest.raises(ConfigError, match="mask_gain=constant"):
        build_model(micro_config("model.interaction=diffpose"))  # the tiny config's snr gain
    with pytest.raises(ConfigError, match="model.interaction=diffpose"):
        build_model(micro_config("model.interaction=diffpose", base="synthetic_tiny_baseline.yaml"))
    with pytest.raises(ConfigError, match="temporal_layers"):
        build_model(micro_config("model.temporal=transformer", "model.temporal_layers=0"))
    with pytest.raises(ConfigError, match="model.lmsfi"):
        micro_config("model.lmsfi.fuse_layers=-1")


@pytest.mark.parametrize("dataset", ["posetrack17", "posetrack18", "posetrack21"])
def test_the_paper_configs_have_the_published_setting(dataset):
    cfg = load_config(CONFIG_DIR / f"{dataset}_diffpose_paper.yaml")
    assert cfg.data.format == dataset
    assert cfg.data.input_size == (256, 192)
    assert tuple(cfg.data.frame_offsets) == (-1, 0, 1)
    assert cfg.data.box_padding == 1.25
    assert cfg.train.epochs == 60
    assert cfg.loss.coarse == 0.0  # the paper trains the x0 estimate alone
    assert (cfg.model.interaction, cfg.model.temporal) == ("diffpose", "transformer")
    with torch.device("meta"):
        model = build_model(cfg)
    assert model.backbone.embed_dim == 1280 and len(model.backbone.vit.blocks) == 32  # ViT-H
    assert isinstance(model.temporal, TransformerTemporalFusion)
    assert isinstance(model.head.denoiser, DiffPoseDenoiser)


def test_the_tiny_paper_config_is_synthetic_tiny_with_the_papers_parts():
    paper = load_config(CONFIG_DIR / "synthetic_tiny_diffpose_paper.yaml")
    expected = load_config(
        CONFIG_DIR / "synthetic_tiny.yaml",
        [
            "model.interaction=diffpose",
            "model.temporal=transformer",
            "model.diffusion.mask_gain=constant",
        ],
    )
    assert paper == expected
