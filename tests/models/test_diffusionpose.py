"""The DiffusionPose head: structure masks, SC-CA, the coordinate sampler."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from vidpose.config import load_config
from vidpose.data.skeleton import POSETRACK
from vidpose.models.build import build_model
from vidpose.models.heads.diffusionpose import DiffusionPoseHead
from vidpose.models.heads.diffusionpose_layers import (
    SpatialChannelCrossAttention,
    channel_group_attention,
    window_attention,
    window_size,
)
from vidpose.models.structure_masks import (
    gaussian_heatmaps,
    keypoint_masks,
    limb_masks,
    normalised_per_map,
)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
TINY = "synthetic_tiny_diffusionpose.yaml"
B, K, H_IN, W_IN = 3, 17, 64, 48
H, W = H_IN // 4, W_IN // 4


def drawing(art: str) -> torch.Tensor:
    """A hand-drawn mask: '#' is 1, '.' is 0, one text row per pixel row."""
    rows = [row.strip() for row in art.strip().splitlines()]
    return torch.tensor([[1.0 if c == "#" else 0.0 for c in row] for row in rows])


def micro_head(micro_config, *overrides: str):
    torch.manual_seed(0)
    return build_model(micro_config(*overrides, base=TINY)).eval()


@pytest.fixture
def features(generator) -> list[torch.Tensor]:
    """A pyramid for the micro model (decoder_dim 32; heatmaps 16 x 12)."""
    return [torch.randn(B, 32, H // 4 * s, W // 4 * s, generator=generator) for s in (1, 2, 4)]


# --------------------------------------------------------------------------- rendering


def test_a_limb_mask_is_the_hand_drawn_band_of_its_width():
    # joints at (2, 3) and (6, 3), radius 1: the band rows 2-4 over x 2..6, round ends
    points = torch.tensor([[[2.0, 3.0], [6.0, 3.0]]])
    mask = limb_masks(points, [(0, 1)], (7, 9), radius=1.0)
    expected = drawing(
        """
        .........
        .........
        ..#####..
        .#######.
        ..#####..
        .........
        .........
        """
    )
    assert mask.shape == (1, 1, 7, 9)
    torch.testing.assert_close(mask[0, 0], expected)


def test_a_diagonal_limb_keeps_the_pixels_within_its_half_width():
    # (1, 1) -> (5, 5), radius 0.75: the diagonal and its neighbours at 0.71 px, not the
    # pixels beyond the ends (1 px from the end points)
    points = torch.tensor([[[1.0, 1.0], [5.0, 5.0]]])
    mask = limb_masks(points, [(0, 1)], (7, 7), radius=0.75)
    expected = drawing(
        """
        .......
        .##....
        .###...
        ..###..
        ...###.
        ....##.
        .......
        """
    )
    torch.testing.assert_close(mask[0, 0], expected)


def test_a_limb_whose_points_coincide_is_a_disc():
    points = torch.tensor([[[3.0, 2.0], [3.0, 2.0]]])
    segment = limb_masks(points, [(0, 1)], (5, 7), radius=1.5)
    disc = keypoint_masks(points[:, :1], (5, 7), radius=1.5)
    torch.testing.assert_close(segment, disc)


def test_keypoint_discs_of_known_radius_and_the_empty_disc_fallback():
    point = torch.tensor([[[3.0, 2.0]]])
    cross = drawing(
        """
        .......
        ...#...
        ..###..
        ...#...
        .......
        """
    )
    torch.testing.assert_close(keypoint_masks(point, (5, 7), radius=1.0)[0, 0], cross)
    square = drawing(
        """
        .......
        ..###..
        ..###..
        ..###..
        .......
        """
    )
    torch.testing.assert_close(keypoint_masks(point, (5, 7), radius=1.5)[0, 0], square)
    # no pixel centre within 0.3 px of (2.4, 1.1): the nearest pixel (2, 1) is kept
    lonely = keypoint_masks(torch.tensor([[[2.4, 1.1]]]), (5, 7), radius=0.3)[0, 0]
    assert lonely.sum() == 1 and lonely[1, 2] == 1


def test_heatmaps_and_masks_follow_the_points(generator):
    size = (16, 12)
    points = torch.rand(2, K, 2, generator=generator) * torch.tensor([7.0, 11.0]) + 0.5
    shift = torch.tensor([3.0, 4.0])  # whole pixels: the maps move by exactly that
    limbs = POSETRACK.limbs
    renders = [
        lambda p: gaussian_heatmaps(p, size, sigma=1.5),
        lambda p: keypoint_masks(p, size, radius=1.2),
        lambda p: limb_masks(p, limbs, size, radius=1.0),
    ]
    for render in renders:
        here, there = render(points), render(points + shift)
        moved = torch.roll(here, shifts=(4, 3), dims=(-2, -1))
        # compare away from the wrapped-around border rows and columns
        torch.testing.assert_close(there[..., 4:, 3:], moved[..., 4:, 3:])
    # each heatmap peaks at its point's nearest pixel, each disc is centred on its point
    heatmaps = gaussian_heatmaps(points, size, sigma=1.5)
    peak = heatmaps.flatten(-2).argmax(-1)
    torch.testing.assert_close(
        torch.stack([peak % 12, peak // 12], -1).float(), points.round(), atol=0, rtol=0
    )
    # (discs away from the border: a clipped disc is not centred on its point)
    inside = torch.rand(2, K, 2, generator=generator) * torch.tensor([5.0, 9.0]) + 3.0
    discs = normalised_per_map(keypoint_masks(inside, size, radius=3.0))
    ys, xs = torch.meshgrid(torch.arange(16.0), torch.arange(12.0), indexing="ij")
    centroid = torch.stack([(discs * xs).sum((-2, -1)), (discs * ys).sum((-2, -1))], -1)
    assert (centroid - inside).abs().max() < 0.5


# --------------------------------------------------------------------------- SC-CA


def direct_channel_attention(q, k, v, groups):
    out = torch.zeros_like(q)
    per = q.shape[1] // groups
    for n in range(q.shape[0]):
        for g in range(groups):
            rows = slice(g * per, (g + 1) * per)
            qs, ks, vs = (x[n, rows].flatten(1) for x in (q, k, v))  # [C/G, HW]
            weights = torch.softmax(qs @ ks.T / math.sqrt(per), dim=-1)
            out[n, rows] = (weights @ vs).view(per, *q.shape[-2:])
    return out


def direct_window_attention(q, k, v, heads, window):
    """Loops over windows and heads; positions past the map are zero keys and values."""
    batch, channels, height, width = q.shape
    rows, cols = window
    pad_h, pad_w = -height % rows, -width % cols
    q, k, v = (torch.nn.functional.pad(x, (0, pad_w, 0, pad_h)) for x in (q, k, v))
    out = torch.zeros_like(q)
    per = channels // heads
    for n in range(batch):
        for top in range(0, height + pad_h, rows):
            for left in range(0, width + pad_w, cols):
                for h in range(heads):
                    c = slice(h * per, (h + 1) * per)
                    tokens = [x[n, c, top : top + rows, left : left + cols] for x in (q, k, v)]
                    qs, ks, vs = (t.reshape(per, -1).T for t in tokens)  # [wh ww, per]
                    weights = torch.softmax(qs @ ks.T / math.sqrt(per), dim=-1)
                    block = (weights @ vs).T.reshape(per, rows, cols)
                    out[n, c, top : top + rows, left : left + cols] = block
    return out[..., :height, :width]


def test_channel_and_window_attention_match_a_direct_computation(generator):
    q, k, v = (torch.randn(2, 8, 5, 3, generator=generator) for _ in range(3))
    channel = channel_group_attention(q, k, v, groups=2)
    assert channel.shape == (2, 8, 5, 3)
    torch.testing.assert_close(channel, direct_channel_attention(q, k, v, 2))
    # a 2 x 2 window on a 5 x 3 map: padded to 6 x 4, six windows
    spatial = window_attention(q, k, v, heads=4, window=(2, 2))
    assert spatial.shape == (2, 8, 5, 3)
    torch.testing.assert_close(spatial, direct_window_attention(q, k, v, 4, (2, 2)))
    # one window over the whole map is plain attention over all positions
    whole = window_attention(q, k, v, heads=2, window=(5, 3))
    torch.testing.assert_close(whole, direct_window_attention(q, k, v, 2, (5, 3)))


def test_the_window_is_capped_at_the_map():
    assert window_size(7, (64, 48)) == (7, 7)
    assert window_size(7, (16, 12)) == (7, 7)
    assert window_size(7, (4, 3)) == (4, 3)


def test_sc_ca_shapes_and_the_mask_commutes_with_its_projections(generator):
    attention = SpatialChannelCrossAttention(channels=16, groups=4, window=3)
    features = torch.randn(2, 16, 8, 6, generator=generator)
    keypoint_mask = (torch.rand(2, 1, 8, 6, generator=generator) > 0.7).float()
    skeleton_mask = (torch.rand(2, 1, 8, 6, generator=generator) > 0.5).float()
    direct = attention(features * keypoint_mask, features * skeleton_mask)
    assert direct.shape == (2, 16, 8, 6)
    # what the denoiser does: project F once, multiply the projections by each mask
    shared = attention.attend(
        attention.project_query(features) * keypoint_mask,
        attention.project_key_value(features) * skeleton_mask,
    )
    torch.testing.assert_close(shared, direct)
    with pytest.raises(ValueError, match="divisible"):
        SpatialChannelCrossAttention(channels=10, groups=4, window=7)


def test_hypotheses_share_features_as_if_repeated(micro_config, features, generator):
    denoiser = micro_head(micro_config).head.denoiser
    finest = features[-1]
    points = torch.rand(B * 2, K, 2, generator=generator) * torch.tensor([W - 1.0, H - 1.0])
    t = torch.randint(1000, (B * 2,), generator=generator)
    shared = denoiser(points, t, finest)
    repeated = denoiser(points, t, finest.repeat_interleave(2, dim=0))
    torch.testing.assert_close(shared.heatmaps, repeated.heatmaps, atol=1e-5, rtol=1e-4)
    assert shared.heatmaps.shape == (B * 2, K, H, W)
    assert shared.skeleton_masks.shape == (B * 2, len(POSETRACK.limbs), H, W)


# --------------------------------------------------------------------------- the head


def test_coordinates_map_the_crop_extent_onto_minus_zeta_zeta(micro_config):
    head: DiffusionPoseHead = micro_head(micro_config).head
    zeta = head.process.signal_scale
    corners = torch.tensor([[-0.5, -0.5], [W_IN - 0.5, H_IN - 0.5], [23.5, 31.5]])
    signal = head.to_signal(corners)
    torch.testing.assert_close(signal, torch.tensor([[-zeta, -zeta], [zeta, zeta], [0.0, 0.0]]))
    torch.testing.assert_close(head.to_crop(signal), corners)
    # noise beyond [-zeta, zeta] is clamped to the crop before rendering
    torch.testing.assert_close(
        head.to_crop(torch.tensor([[9.0, -9.0]])), torch.tensor([[47.5, -0.5]])
    )


class UNetCalls:
    """Counts the decoder's (U-Net's) calls."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.count = 0
        module.register_forward_hook(self.hook)

    def hook(self, *_):
        self.count += 1


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_s_steps_call_the_decoder_s_times(micro_config, features, steps):
    head = micro_head(micro_config).head
    calls, coarse_calls = UNetCalls(head.denoiser.unet), UNetCalls(head.coarse)
    for init, coarse_runs in (("coarse", 1), ("noise", 0)):
        calls.count = coarse_calls.count = 0
        answer = head.predict(features, steps=steps, hypotheses=2, init=init,
                              sample_seeds=torch.arange(B), return_trajectory=True)  # fmt: skip
        # one decoder call per step for all B x G poses; the coarse head only to start
        assert calls.count == steps and coarse_calls.count == coarse_runs
        assert len(answer.trajectory) == steps
        assert answer.trajectory[-1]["t_prev"] == -1


def test_the_sampler_starts_from_the_coarse_keypoints(micro_config, features):
    head = micro_head(micro_config).head
    seeds, start = torch.arange(B), 249
    coarse = head.coarse(features[-1])
    coarse_keypoints, _ = head.codec.decode(coarse)
    # the paper's start: the coarse keypoints themselves are the first noisy points
    exact = head.predict(features, init="coarse_exact", hypotheses=2, sample_seeds=seeds,
                         return_trajectory=True)  # fmt: skip
    first = exact.trajectory[0]
    assert first["t"] == round(head.coarse_start * 999)
    torch.testing.assert_close(first["noisy_points"], coarse_keypoints[:, None].expand(B, 2, K, 2))
    torch.testing.assert_close(exact.extras["coarse_heatmaps"], coarse)
    # the default "coarse": q_sample of the coarse keypoints with the call's own noise
    head.coarse_start = start / 999
    noised = head.predict(features, init="coarse", hypotheses=2, sample_seeds=seeds,
                          return_trajectory=True)  # fmt: skip
    # NoiseSource with sample seeds: the first draw of sample s is its start noise
    eps = torch.stack(
        [torch.randn(2, K, 2, generator=torch.Generator().manual_seed(s)) for s in range(B)]
    )
    abar = head.process.alphas_cumprod[start]
    y_start = abar.sqrt() * head.to_signal(coarse_keypoints)[:, None] + (1 - abar).sqrt() * eps
    torch.testing.assert_close(noised.trajectory[0]["noisy_points"], head.to_crop(y_start))
    assert noised.trajectory[0]["t"] == start


def test_the_step_maps_follow_its_noisy_points(micro_config, features):
    head = micro_head(micro_config).head
    answer = head.predict(features, steps=2, hypotheses=2, init="noise",
                          sample_seeds=torch.arange(B), return_trajectory=True)  # fmt: skip
    for step in answer.trajectory:
        on_grid = head.codec.input_to_heatmap(step["noisy_points"])  # [B, G, K, 2]
        expected = gaussian_heatmaps(on_grid.flatten(0, 1), (H, W), head.denoiser.sigma)
        torch.testing.assert_close(step["x_t"], expected.view(B, 2, K, H, W))
        masks = step["masks"][0]
        torch.testing.assert_close(masks.sum((-2, -1)), torch.ones(B, 2, K))
        discs = keypoint_masks(on_grid.flatten(0, 1), (H, W), head.denoiser.keypoint_radius)
        torch.testing.assert_close(step["keypoint_masks"], discs.amax(1).view(B, 2, H, W))
        limbs = limb_masks(on_grid.flatten(0, 1), POSETRACK.limbs, (H, W),
                           head.denoiser.limb_radius)  # fmt: skip
        torch.testing.assert_close(step["skeleton_masks"], limbs.amax(1).view(B, 2, H, W))
        # every joint's mask holds the pixel nearest to its noisy point
        nearest = on_grid.round().clamp(min=torch.zeros(2), max=torch.tensor([W - 1.0, H - 1.0]))
        nearest = nearest.long()
        picked = masks.flatten(-2).gather(-1, (nearest[..., 1] * W + nearest[..., 0])[..., None])
        assert (picked > 0).all()
        torch.testing.assert_close(step["reference"], step["noisy_points"])


def test_with_an_oracle_decoder_every_step_lands_on_its_pose(micro_config, features):
    """The DDIM update runs on coordinates with the decoded keypoints as x0: a decoder
    that always answers one pose's heatmaps gives that pose at every step and at the end,
    for any S (eta = 0 and eta = 1)."""
    head = micro_head(micro_config).head
    pose = torch.tensor([[6.0 + 2 * (j % 5), 8.0 + 3 * (j // 5)] for j in range(K)])
    heatmaps = torch.from_numpy(head.codec.encode(pose.numpy(), np.ones(K, bool))[0])
    head.denoiser.unet.forward = lambda noisy, *rest: heatmaps.expand(len(noisy), K, H, W)
    decoded, _ = head.codec.decode(heatmaps[None])
    for steps, eta in ((1, 0.0), (3, 0.0), (4, 1.0)):
        answer = head.predict(features, steps=steps, hypotheses=2, eta=eta, init="noise",
                              sample_seeds=torch.arange(B), return_trajectory=True)  # fmt: skip
        torch.testing.assert_close(answer.keypoints, decoded.expand(B, K, 2))
        for step in answer.trajectory:
            torch.testing.assert_close(step["keypoints"], decoded[:, None].expand(B, 2, K, 2))
        assert answer.uncertainty is not None and answer.uncertainty.abs().max() < 1e-4


def test_a_clip_samples_the_same_alone_or_in_a_batch(micro_config, features):
    head = micro_head(micro_config).head
    seeds = torch.tensor([5, 6, 7])
    together = head.predict(features, steps=2, hypotheses=2, init="coarse", sample_seeds=seeds,
                            return_trajectory=True)  # fmt: skip
    for index in range(B):
        alone = head.predict([level[index : index + 1] for level in features], steps=2,
                             hypotheses=2, init="coarse", sample_seeds=seeds[index : index + 1],
                             return_trajectory=True)  # fmt: skip
        torch.testing.assert_close(alone.keypoints[0], together.keypoints[index], atol=1e-4, rtol=0)
        for one, many in zip(alone.trajectory, together.trajectory, strict=True):
            torch.testing.assert_close(one["noisy_points"][0], many["noisy_points"][index])
    # training draws (t, eps) per sample too
    targets = {
        "keypoints": torch.rand(B, K, 2, generator=torch.Generator().manual_seed(1)) * 40,
        "target_weight": torch.ones(B, K),
    }
    batch = head(features, targets, sample_seeds=seeds)
    for index in range(B):
        one = head([level[index : index + 1] for level in features],
                   {name: value[index : index + 1] for name, value in targets.items()},
                   sample_seeds=seeds[index : index + 1])  # fmt: skip
        assert one["t"].item() == batch["t"][index].item()
        torch.testing.assert_close(one["heatmaps"][0], batch["heatmaps"][index], atol=1e-5, rtol=0)


def test_forward_needs_keypoint_targets(micro_config, features):
    head = micro_head(micro_config).head
    with pytest.raises(ValueError, match="keypoints"):
        head(features, {"heatmaps": torch.zeros(B, K, H, W)})
    with pytest.raises(ValueError, match="init"):
        head.predict(features, init="random")


def test_the_search_visualisation_shows_each_steps_maps(micro_config, features):
    from vidpose.visualization.search_grid import render_search_grid
    from vidpose.visualization.search_panels import summary_column_count
    from vidpose.visualization.trajectory import SearchTrajectory

    head = micro_head(micro_config).head
    answer = head.predict(features, steps=3, hypotheses=2, init="coarse",
                          sample_seeds=torch.arange(B), return_trajectory=True)  # fmt: skip
    trajectory = SearchTrajectory.from_trajectory(answer.trajectory, head.codec, sample=1)
    assert trajectory.x_t.shape == (3, 2, K, H, W) and trajectory.mask_source == "heatmaps"
    assert [mask.shape for mask in trajectory.masks] == [(3, 2, K, H, W)]
    assert trajectory.skeleton_masks.shape == (3, 2, H, W)
    # where each step started: its noisy points
    np.testing.assert_allclose(trajectory.reference[0], answer.trajectory[0]["noisy_points"][1])
    crop = np.zeros((H_IN, W_IN, 3), dtype=np.uint8)
    image, layout = render_search_grid(trajectory, crop, POSETRACK, joint_panels=[9])
    # x_t, the keypoint masks, the limb mask, keypoints, hypotheses, one joint
    assert layout.columns == summary_column_count(1, skeleton_column=True) + 1 == 6
    assert layout.rows == 3 and image.shape[:2] == layout.size


# --------------------------------------------------------------------------- configs


def test_paper_scale_configs_follow_diffusionpose():
    for dataset in ("posetrack17", "posetrack18", "posetrack21", "coco"):
        cfg = load_config(CONFIG_DIR / f"{dataset}_vit_b_diffusionpose.yaml")
        settings = cfg.model.diffusionpose
        assert cfg.model.head == "diffusionpose"
        assert settings.unet_channels == (64, 128, 256)
        assert (settings.window, settings.attention_groups) == (7, 8)
        assert settings.init == "coarse"
        # the backbone is the diffusion config's of the same size
        same = load_config(CONFIG_DIR / f"{dataset}_vit_b.yaml")
        assert cfg.model.backbone == same.model.backbone
        assert cfg.data == same.data
