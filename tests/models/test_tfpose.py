"""The TFPose head and its deformable attention: exact sampling, refinement algebra,
the head's contract (shapes, pixel frame, losses, trajectory, flip test)."""

from __future__ import annotations

import math

import pytest
import torch

from vidpose.codecs.heatmap import HeatmapCodec
from vidpose.models.deformable import (
    DeformableEncoderLayer,
    MultiScaleDeformableAttention,
    flatten_levels,
    grid_reference_points,
    grid_sine_embedding,
    sine_position_embedding,
    splat_attention,
    split_levels,
)
from vidpose.models.heads.contract import HeadPrediction
from vidpose.models.heads.tfpose import TFPoseDecoderLayer, TFPoseHead, refine_points

CHANNELS, JOINTS = 16, 5
INPUT_SIZE = (64, 48)  # H_in, W_in
SHAPES = [(4, 3), (8, 6), (16, 12)]  # the pyramid, coarse to fine
FLIP_PERMUTATION = [0, 2, 1, 4, 3]  # joint 0 central, (1, 2) and (3, 4) left/right pairs


def make_features(batch: int = 2, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, CHANNELS, h, w, generator=generator) for h, w in SHAPES]


def make_head(*, with_codec: bool = False, **overrides) -> TFPoseHead:
    torch.manual_seed(0)
    codec = None
    if with_codec:
        codec = HeatmapCodec(input_size=INPUT_SIZE, heatmap_size=SHAPES[-1])
    options = {
        "channels": CHANNELS,
        "num_joints": JOINTS,
        "input_size": INPUT_SIZE,
        "encoder_layers": 1,
        "decoder_layers": 2,
        "heads": 2,
        "points": 2,
        "ffn_dim": 32,
        "dropout": 0.0,
        "init_reference": "learned",
        "codec": codec,
    }
    options.update(overrides)
    return TFPoseHead(**options)


def make_targets(batch: int = 2, seed: int = 1, with_heatmaps: bool = False) -> dict:
    generator = torch.Generator().manual_seed(seed)
    height, width = INPUT_SIZE
    keypoints = torch.rand(batch, JOINTS, 2, generator=generator) * torch.tensor(
        [width - 1.0, height - 1.0]
    )
    weights = torch.ones(batch, JOINTS)
    weights[0, 1] = 0.0
    targets = {"keypoints": keypoints, "target_weight": weights}
    if with_heatmaps:
        targets["heatmaps"] = torch.rand(batch, JOINTS, *SHAPES[-1], generator=generator)
    return targets


# --------------------------------------------------------------------------- deformable attention


def bilinear_by_hand(value_map: torch.Tensor, u: float, v: float) -> torch.Tensor:
    """value_map [C, h, w] at normalised (u, v): pixel x = u * w - 0.5, zero outside."""
    _, height, width = value_map.shape
    x, y = u * width - 0.5, v * height - 0.5
    result = torch.zeros(value_map.shape[0], dtype=torch.float64)
    for column in (math.floor(x), math.floor(x) + 1):
        for row in (math.floor(y), math.floor(y) + 1):
            if 0 <= column < width and 0 <= row < height:
                share = (1 - abs(x - column)) * (1 - abs(y - row))
                result += share * value_map[:, row, column].double()
    return result


def test_deformable_attention_equals_direct_computation():
    torch.manual_seed(0)
    channels, heads, points = 8, 2, 3
    shapes = [(3, 4), (5, 2)]
    attention = MultiScaleDeformableAttention(
        channels=channels, levels=len(shapes), heads=heads, points=points
    )
    with torch.no_grad():  # leave the init: offsets that reach outside the maps, unequal weights
        attention.sampling_offsets.weight.normal_(std=1.0)
        attention.attention_weights.weight.normal_(std=1.0)
    batch, queries = 2, 3
    memory_maps = [torch.randn(batch, channels, h, w) for h, w in shapes]
    memory, spatial_shapes, _ = flatten_levels(memory_maps)
    query = torch.randn(batch, queries, channels)
    reference = torch.rand(batch, queries, 2)
    output, locations, weights = attention(
        query, reference, memory, spatial_shapes, return_sampling=True
    )
    assert locations.shape == (batch, queries, heads, len(shapes), points, 2)
    assert weights.shape == (batch, queries, heads, len(shapes), points)
    assert torch.allclose(weights.sum(dim=(-2, -1)), torch.ones(batch, queries, heads))
    # offsets are in pixels of each level
    offsets = attention.sampling_offsets(query).view(locations.shape)
    for level, (height, width) in enumerate(shapes):
        expected = reference[:, :, None, None, :] + offsets[:, :, :, level] / torch.tensor(
            [width, height]
        )
        assert torch.allclose(locations[:, :, :, level], expected, atol=1e-6)
    assert (locations < 0).any() or (locations > 1).any()  # zero padding is exercised

    value_maps = split_levels(attention.value_proj(memory), spatial_shapes)
    head_dim = channels // heads
    expected = torch.zeros(batch, queries, channels, dtype=torch.float64)
    for b in range(batch):
        for q in range(queries):
            for m in range(heads):
                head_slice = slice(m * head_dim, (m + 1) * head_dim)
                for level, value_map in enumerate(value_maps):
                    for p in range(points):
                        u, v = locations[b, q, m, level, p].tolist()
                        sample = bilinear_by_hand(value_map[b, head_slice].detach(), u, v)
                        expected[b, q, head_slice] += weights[b, q, m, level, p].item() * sample
    expected = attention.output_proj(expected.float())
    assert torch.allclose(output, expected, atol=1e-5)


def test_zero_offsets_sample_the_reference_pixel():
    channels, height, width = 4, 5, 7
    attention = MultiScaleDeformableAttention(channels=channels, levels=1, heads=2, points=3)
    with torch.no_grad():
        attention.sampling_offsets.bias.zero_()
        for projection in (attention.value_proj, attention.output_proj):
            projection.weight.copy_(torch.eye(channels))
            projection.bias.zero_()
    value_map = torch.randn(1, channels, height, width)
    memory, spatial_shapes, _ = flatten_levels([value_map])
    pixels = [(0, 0), (3, 2), (6, 4)]  # (column, row)
    reference = torch.tensor([[[(i + 0.5) / width, (j + 0.5) / height] for i, j in pixels]])
    output = attention(torch.randn(1, len(pixels), channels), reference, memory, spatial_shapes)
    for index, (column, row) in enumerate(pixels):
        assert torch.allclose(output[0, index], value_map[0, :, row, column], atol=1e-6)


def test_default_offsets_start_on_a_ring_around_the_reference():
    attention = MultiScaleDeformableAttention(channels=8, levels=2, heads=4, points=2)
    offsets = attention.sampling_offsets.bias.view(4, 2, 2, 2)  # [M, L, P, 2] in pixels
    # point p of every head lies p + 1 pixels out along its direction (max-norm)
    assert torch.allclose(offsets.abs().amax(dim=-1), torch.tensor([1.0, 2.0]).expand(4, 2, 2))
    assert torch.allclose(offsets[0, 0, 0], torch.tensor([1.0, 0.0]))  # head 0 looks right


def test_splat_puts_a_pixel_centre_sample_on_its_pixel():
    shapes = [(4, 3), (2, 2)]
    locations = torch.tensor([(1 + 0.5) / 3, (2 + 0.5) / 4]).expand(1, 1, 1, 2, 1, 2)
    weights = torch.full((1, 1, 1, 2, 1), 0.5)
    coarse, fine = splat_attention(locations, weights, shapes)
    assert coarse[0, 0, 2, 1] == pytest.approx(1.0)
    assert coarse.sum() == pytest.approx(1.0)
    assert fine.sum() == pytest.approx(1.0)  # a point between pixel centres: shared out
    assert fine[0, 0].min() > 0
    outside = splat_attention(torch.full((1, 1, 1, 2, 1, 2), 5.0), weights, shapes)
    assert torch.allclose(outside[0], torch.full((1, 1, 4, 3), 1 / 12))  # no mass: uniform


def test_flatten_and_split_levels_round_trip():
    maps = make_features(batch=2)
    tokens, spatial_shapes, level_start = flatten_levels(maps)
    assert tokens.shape == (2, 12 + 48 + 192, CHANNELS)
    assert spatial_shapes.tolist() == [list(shape) for shape in SHAPES]
    assert level_start.tolist() == [0, 12, 60]
    # row-major within a level: token start + j * w + i is pixel (column i, row j)
    assert torch.equal(tokens[:, 60 + 5 * 12 + 7], maps[2][:, :, 5, 7])
    for original, restored in zip(maps, split_levels(tokens, spatial_shapes), strict=True):
        assert torch.equal(original, restored)
    centres = grid_reference_points(SHAPES)
    assert torch.allclose(centres[60 + 5 * 12 + 7], torch.tensor([7.5 / 12, 5.5 / 16]))


def test_sine_embedding_of_points_matches_the_grid_at_pixel_centres():
    height, width = 4, 6
    grid = grid_sine_embedding(height, width, channels=CHANNELS)
    assert grid.shape == (CHANNELS, height, width)
    for row in range(height):
        for column in range(width):
            point = torch.tensor([(column + 0.5) / width, (row + 0.5) / height])
            embedding = sine_position_embedding(point, channels=CHANNELS)
            assert torch.allclose(grid[:, row, column], embedding, atol=1e-6)
    # DETR's layout: y features then x, each (sin, cos) pairs, the first at one turn
    point = torch.tensor([0.3, 0.7])
    embedding = sine_position_embedding(point, channels=CHANNELS)
    turn = 2 * math.pi
    assert embedding[0] == pytest.approx(math.sin(turn * 0.7), abs=1e-6)
    assert embedding[1] == pytest.approx(math.cos(turn * 0.7), abs=1e-6)
    assert embedding[CHANNELS // 2] == pytest.approx(math.sin(turn * 0.3), abs=1e-6)
    assert sine_position_embedding(torch.rand(3, 7, 2), channels=CHANNELS).shape == (3, 7, 16)


def test_encoder_layer_keeps_shapes():
    layer = DeformableEncoderLayer(
        channels=CHANNELS, levels=3, heads=2, points=2, ffn_dim=32, dropout=0.0
    )
    tokens, spatial_shapes, _ = flatten_levels(make_features())
    reference = grid_reference_points(spatial_shapes).expand(2, -1, -1)
    encoded = layer(tokens, torch.zeros(1, *tokens.shape[1:]), reference, spatial_shapes)
    assert encoded.shape == tokens.shape and torch.isfinite(encoded).all()


# --------------------------------------------------------------------------- refinement


def test_refinement_algebra():
    reference = torch.tensor([[0.1, 0.5], [0.9, 0.33]])
    assert torch.allclose(refine_points(reference, torch.zeros(2, 2)), reference, atol=1e-6)
    delta = torch.tensor([[1.0, -2.0], [0.5, 0.0]])
    expected = torch.sigmoid(torch.logit(reference) + delta)
    assert torch.allclose(refine_points(reference, delta), expected, atol=1e-6)
    # an untrained layer keeps its reference (zero-initialised refinement output)
    torch.manual_seed(0)
    layer = TFPoseDecoderLayer(
        channels=CHANNELS, levels=3, heads=2, points=2, ffn_dim=32, dropout=0.0
    )
    memory, spatial_shapes, _ = flatten_levels(make_features())
    start = torch.rand(2, JOINTS, 2)
    output = layer(
        torch.randn(2, JOINTS, CHANNELS),
        torch.randn(2, JOINTS, CHANNELS),
        start,
        memory,
        spatial_shapes,
    )
    assert torch.allclose(output.keypoints, start, atol=1e-6)
    assert ((output.sigmas > 0) & (output.sigmas < 1)).all()


def test_next_layer_gets_a_detached_reference():
    head = make_head()
    outputs = head(make_features())
    first_refinement = list(head.decoder[0].refine.parameters())
    later = torch.autograd.grad(
        outputs["layer_keypoints"][1].sum(), first_refinement, allow_unused=True, retain_graph=True
    )
    assert all(grad is None or not grad.any() for grad in later)
    own = torch.autograd.grad(
        outputs["layer_keypoints"][0].sum(), first_refinement[-2], retain_graph=True
    )[0]
    assert own.abs().sum() > 0  # the layer's own loss does train it
    # the learned starting points are trained through layer 1 (not detached)
    (start,) = torch.autograd.grad(outputs["layer_keypoints"][0].sum(), head.reference_logits)
    assert start.abs().sum() > 0


# --------------------------------------------------------------------------- the head


@pytest.mark.parametrize(
    ("encoder_layers", "init_reference", "with_codec"),
    [(1, "learned", True), (0, "learned", False), (0, "coarse", True), (1, "coarse", False)],
)
def test_head_shapes_and_pixel_frame(encoder_layers, init_reference, with_codec):
    head = make_head(
        encoder_layers=encoder_layers, init_reference=init_reference, with_codec=with_codec
    ).eval()
    features = make_features()
    supervised = 2 + (init_reference == "coarse")
    expected_names = ("keypoint", "sigma") + (("aux_heatmap",) if with_codec else ())
    assert head.loss_names == expected_names
    assert (head.codec is not None) == with_codec

    outputs = head(features)
    assert outputs["layer_keypoints"].shape == (supervised, 2, JOINTS, 2)
    assert outputs["layer_sigmas"].shape == (supervised, 2, JOINTS, 2)
    assert ("aux_heatmaps" in outputs) == with_codec
    if with_codec:
        assert outputs["aux_heatmaps"].shape == (2, JOINTS, *SHAPES[-1])
    assert set(head.train()(features)) == set(outputs)  # the same keys in train mode
    head.eval()

    with torch.no_grad():
        prediction = head.predict(
            features,
            return_trajectory=True,
            steps=3,
            hypotheses=2,
            eta=0.0,
            init="noise",
            generator=None,
            sample_seeds=None,
        )
    assert isinstance(prediction, HeadPrediction)
    assert prediction.heatmaps is None
    height, width = INPUT_SIZE
    last = outputs["layer_keypoints"][-1]
    expected = torch.stack([last[..., 0] * width - 0.5, last[..., 1] * height - 0.5], dim=-1)
    assert torch.allclose(prediction.keypoints, expected, atol=1e-4)
    scales = outputs["layer_sigmas"][-1]
    assert torch.allclose(prediction.scores, 1 - scales.mean(-1), atol=1e-6)
    rms = torch.sqrt(2 * (scales[..., 0] * width) ** 2 + 2 * (scales[..., 1] * height) ** 2)
    assert torch.allclose(prediction.uncertainty, rms, atol=1e-4)

    trajectory = prediction.trajectory
    assert [entry["step"] for entry in trajectory] == list(range(supervised))
    assert trajectory[-1]["label"] == "layer 2"
    assert torch.allclose(trajectory[-1]["keypoints"][:, 0], prediction.keypoints)
    if init_reference == "coarse":
        assert trajectory[0]["label"] == "layer 0 (coarse)"
        assert "masks" not in trajectory[0] and "reference" not in trajectory[0]
    for entry in trajectory:
        assert entry["keypoints"].shape == (2, 1, JOINTS, 2)
        assert entry["scores"].shape == (2, 1, JOINTS)
        if "masks" not in entry:
            continue
        assert entry["reference"].shape == (2, 1, JOINTS, 2)
        assert len(entry["masks"]) == len(SHAPES)
        for mask, (h, w) in zip(entry["masks"], SHAPES, strict=True):
            assert mask.shape == (2, 1, JOINTS, h, w)
            assert (mask >= 0).all()
            assert torch.allclose(mask.sum(dim=(-2, -1)), torch.ones(2, 1, JOINTS), atol=1e-5)
    # each decoder layer starts where the previous one ended
    decoder_entries = [entry for entry in trajectory if "reference" in entry]
    for before, after in zip(decoder_entries, decoder_entries[1:], strict=False):
        assert torch.allclose(after["reference"], before["keypoints"])


@pytest.mark.parametrize(
    ("encoder_layers", "init_reference", "with_codec"),
    [(1, "learned", True), (0, "learned", False), (0, "coarse", False), (1, "coarse", True)],
)
def test_every_parameter_gets_a_gradient(encoder_layers, init_reference, with_codec):
    """DistributedDataParallel needs every parameter in the graph of the summed terms."""
    head = make_head(
        encoder_layers=encoder_layers, init_reference=init_reference, with_codec=with_codec
    )
    terms = head.loss_terms(head(make_features()), make_targets(with_heatmaps=with_codec))
    sum(terms.values()).backward()
    missing = [name for name, parameter in head.named_parameters() if parameter.grad is None]
    assert not missing


def test_losses_ignore_zero_weight_joints():
    head = make_head(with_codec=True)
    outputs = head(make_features())
    targets = make_targets(with_heatmaps=True)
    terms = head.loss_terms(outputs, targets)
    assert set(terms) == set(head.loss_names)
    assert all(term.ndim == 0 and torch.isfinite(term) for term in terms.values())
    moved = {name: value.clone() for name, value in targets.items()}
    moved["keypoints"][0, 1] += torch.tensor([13.0, -7.0])  # joint (0, 1) has weight 0
    moved["heatmaps"][0, 1] = 1.0
    for name, term in head.loss_terms(outputs, moved).items():
        assert torch.equal(term, terms[name]), name
    moved["keypoints"][0, 1] = float("nan")
    assert torch.isfinite(head.loss_terms(outputs, moved)["keypoint"])


def test_keypoint_loss_is_the_mean_l1_summed_over_layers():
    head = make_head()
    outputs = head(make_features())
    targets = make_targets()
    height, width = INPUT_SIZE
    normalised = (targets["keypoints"] + 0.5) / torch.tensor([width, height])
    weight = targets["target_weight"][..., None]
    expected = sum(
        ((layer - normalised).abs() * weight).mean() for layer in outputs["layer_keypoints"]
    )
    assert head.loss_terms(outputs, targets)["keypoint"].item() == pytest.approx(
        expected.item(), rel=1e-6
    )


def test_a_few_steps_reduce_the_keypoint_loss():
    head = make_head()
    features, targets = make_features(), make_targets()
    optimiser = torch.optim.Adam(head.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        terms = head.loss_terms(head(features), targets)
        losses.append(terms["keypoint"].item())
        optimiser.zero_grad()
        (terms["keypoint"] + 0.1 * terms["sigma"]).backward()
        optimiser.step()
    assert losses[-1] < 0.6 * losses[0]


def test_flip_merge_of_an_exact_mirror_returns_the_prediction():
    head = make_head().eval()
    with torch.no_grad():
        prediction = head.predict(make_features())
    width = INPUT_SIZE[1]
    permutation = torch.tensor(FLIP_PERMUTATION)
    mirrored_points = prediction.keypoints[:, permutation].clone()
    mirrored_points[..., 0] = width - 1 - mirrored_points[..., 0]
    mirrored = HeadPrediction(
        keypoints=mirrored_points,
        scores=prediction.scores[:, permutation],
        uncertainty=prediction.uncertainty[:, permutation],
    )
    merged = head.merge_flipped(prediction, mirrored, FLIP_PERMUTATION)
    assert torch.allclose(merged.keypoints, prediction.keypoints, atol=1e-5)
    assert torch.allclose(merged.scores, prediction.scores)
    assert torch.allclose(merged.uncertainty, prediction.uncertainty)


def test_invalid_construction_is_rejected():
    with pytest.raises(ValueError, match="init_reference"):
        make_head(init_reference="random")
    with pytest.raises(ValueError, match="decoder_layers"):
        make_head(decoder_layers=0)
    with pytest.raises(ValueError, match="input_size"):
        TFPoseHead(
            channels=CHANNELS,
            num_joints=JOINTS,
            input_size=(32, 24),
            encoder_layers=0,
            decoder_layers=1,
            heads=2,
            points=1,
            ffn_dim=8,
            dropout=0.0,
            init_reference="learned",
            codec=HeatmapCodec(input_size=INPUT_SIZE, heatmap_size=SHAPES[-1]),
        )
    with pytest.raises(ValueError, match="levels"):
        make_head()(make_features()[1:])
