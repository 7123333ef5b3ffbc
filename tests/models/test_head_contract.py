"""The head contract, for every head: what ``PoseEstimator.predict`` answers (shapes,
the input-crop pixel frame, uncertainty and trajectory where the head has them) and
the flip test on a model made mirror-equivariant.

Heads are micro models of the configs in configs/ (64 x 48 input, 16 x 12 heatmaps).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from vidpose.data.skeleton import POSETRACK
from vidpose.losses import build_criterion
from vidpose.models.build import build_model
from vidpose.models.estimator import predict_with_flip
from vidpose.models.heads.contract import HeadPrediction

B, K, H_IN, W_IN = 3, 17, 64, 48

HEADS = {
    "diffusion": ("synthetic_tiny.yaml", ["model.diffusion.sampling_steps=2",
                                          "model.diffusion.hypotheses=3"]),
    "heatmap": ("synthetic_tiny_temporal_baseline.yaml", []),
    "tfpose": ("synthetic_tiny_tfpose.yaml", ["model.tfpose.heads=2",
                                              "model.tfpose.ffn_dim=32"]),
    # the tiny CAL config is single-frame; here on the same 3-frame clips as the others
    "cal": ("synthetic_tiny_cal.yaml", ["data.frame_offsets=[-1,0,1]"]),
    "diffusionpose": ("synthetic_tiny_diffusionpose.yaml",
                      ["model.diffusionpose.sampling_steps=2", "model.diffusionpose.hypotheses=3",
                       "model.diffusionpose.attention_groups=4"]),
    # PCT's stage II over a micro tokenizer (M = 6 tokens, V = 16 entries of width 8)
    "pct": ("synthetic_tiny_pct.yaml",
            ["model.pct.tokens=6", "model.pct.codebook_size=16", "model.pct.token_dim=8",
             "model.pct.encoder_hidden=16", "model.pct.encoder_layers=1",
             "model.pct.encoder_token_hidden=8", "model.pct.encoder_channel_hidden=16",
             "model.pct.decoder_hidden=8", "model.pct.decoder_token_hidden=8",
             "model.pct.decoder_channel_hidden=8", "model.pct.conv_channels=8",
             "model.pct.classifier_hidden=8", "model.pct.classifier_layers=1",
             "model.pct.classifier_token_hidden=8", "model.pct.classifier_channel_hidden=8"]),
}  # fmt: skip
# The heads that answer in one pass (no trajectory to record).
ONE_PASS = ("heatmap", "cal", "pct")
# UDP codec: a mirrored heatmap grid is exactly the mirrored input (no sub-pixel shift),
# so the mirror-equivariant model below can be built without the library's flip code.
UDP = ["data.encoding=udp"]


def build(micro_config, head: str, *extra: str):
    base, overrides = HEADS[head]
    torch.manual_seed(0)
    model = build_model(micro_config(*overrides, *extra, base=base)).eval()
    if head == "cal":
        # the offset branch starts at zero (the integer argmax); random offsets make the
        # flip tests check how the offsets are mirrored
        torch.nn.init.normal_(model.head.offset_predictor.layers[-1].weight, std=0.1)
    if head == "pct":
        # a stage II head decodes through a trained tokenizer (stage I)
        model.head.tokenizer.load_state_dict(standing_pose_tokenizer(model.head.tokenizer))
    return model


_TOKENIZERS: dict[str, dict[str, torch.Tensor]] = {}


def standing_pose_tokenizer(tokenizer) -> dict[str, torch.Tensor]:
    """The weights of a copy of PCT's ``tokenizer`` after 200 steps on the standing pose
    of the crop-pixel test (jittered by up to 2 px): it reconstructs it to 0.4 px
    (median). Computed once."""
    if "standing" not in _TOKENIZERS:
        pose = torch.tensor(
            [[0.2 + 0.6 * (j % 5) / 4, 0.1 + 0.8 * (j // 5) / 3] for j in range(K)]
        ) * torch.tensor([W_IN - 1.0, H_IN - 1.0])
        fitted = copy.deepcopy(tokenizer).requires_grad_(True).train()
        generator = torch.Generator().manual_seed(0)
        optimizer = torch.optim.AdamW(fitted.parameters(), lr=1e-2, weight_decay=0.0)
        visible = torch.ones(32, K, dtype=torch.bool)
        for step in range(200):
            keypoints = pose + (torch.rand(32, K, 2, generator=generator) - 0.5) * 4
            outputs = fitted(keypoints, visible, torch.arange(32) + 100 * step)
            targets = {"keypoints": keypoints, "target_weight": visible.float()}
            terms = fitted.loss_terms(outputs, targets)
            optimizer.zero_grad()
            (terms["reconstruction"] + 15 * terms["commitment"]).backward()
            optimizer.step()
        _TOKENIZERS["standing"] = fitted.state_dict()
    return _TOKENIZERS["standing"]


@pytest.fixture
def frames(generator) -> torch.Tensor:
    return torch.randn(B, 3, 3, H_IN, W_IN, generator=generator)


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("head", list(HEADS))
def test_every_head_answers_with_the_contract(micro_config, head, frames):
    model = build(micro_config, head)
    seeds = torch.arange(B)
    answer = model.predict(frames, sample_seeds=seeds, return_trajectory=True)
    assert isinstance(answer, HeadPrediction)
    assert answer.keypoints.shape == (B, K, 2) and answer.keypoints.dtype == torch.float32
    assert answer.scores.shape == (B, K)
    assert torch.isfinite(answer.keypoints).all() and torch.isfinite(answer.scores).all()
    if answer.heatmaps is not None:
        assert answer.heatmaps.shape == (B, K, H_IN // 4, W_IN // 4)
    if answer.uncertainty is not None:
        assert answer.uncertainty.shape == (B, K) and (answer.uncertainty >= 0).all()
    assert isinstance(answer.trajectory, list)
    for index, step in enumerate(answer.trajectory):
        assert step["step"] == index and isinstance(step["label"], str)
        hypotheses = step["keypoints"].shape[1]
        assert step["keypoints"].shape == (B, hypotheses, K, 2)
        assert step["scores"].shape == (B, hypotheses, K)
        for mask in step.get("masks", ()):
            torch.testing.assert_close(mask.sum((-2, -1)), torch.ones(B, hypotheses, K))
    # the iterative heads record their search; the one-pass heads have none to record
    assert (len(answer.trajectory) > 0) == (head not in ONE_PASS)
    # the same answer without the trajectory
    again = model.predict(frames, sample_seeds=seeds)
    assert again.trajectory is None
    torch.testing.assert_close(again.keypoints, answer.keypoints)


@pytest.mark.parametrize("head", list(HEADS))
def test_a_head_trained_on_crop_pixel_targets_answers_in_crop_pixels(micro_config, head, frames):
    """Fit one fixed pose given in input-crop pixels; the answer lands on it. A head that
    mixed up frames (heatmap pixels, crop fractions, a half-pixel convention) would
    answer in the wrong place by a factor or an offset."""
    model = build(micro_config, head, "train.lr=3e-3").train()
    criterion = build_criterion(micro_config(base=HEADS[head][0]), model.head)
    # a standing pose spread over the crop, in input-crop pixels
    pose = torch.tensor(
        [[0.2 + 0.6 * (j % 5) / 4, 0.1 + 0.8 * (j // 5) / 3] for j in range(K)]
    ) * torch.tensor([W_IN - 1.0, H_IN - 1.0])
    keypoints = pose.expand(B, K, 2).clone()
    weights = torch.ones(B, K)
    targets = {"keypoints": keypoints, "target_weight": weights}
    if model.head.codec is not None:
        # the codec's named targets (heatmaps; offsets and their mask for CAL)
        encoded = model.head.codec.targets(pose.numpy(), np.ones(K, bool))
        for name in model.head.codec.target_names:
            targets[name] = torch.from_numpy(np.stack([encoded[name]] * B))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    for step in range(120):
        outputs = model(frames, targets=targets, sample_seeds=torch.arange(B) + 10 * step)
        loss = criterion(outputs, targets)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    answer = model.predict(frames, sample_seeds=torch.arange(B))
    error = (answer.keypoints - keypoints).norm(dim=-1)
    # one heatmap pixel is 4 input pixels: the frames differ by 4x, or by half a pixel
    # of the wrong grid, long before this bound
    assert error.median() < 2.0, (head, error.median())


# --------------------------------------------------------------------------- flip test


def _names_permutation() -> torch.Tensor:
    """Left/right swap built from the joint names (independent of Skeleton.flip_permutation)."""
    names = list(POSETRACK.joint_names)
    swapped = [
        name.replace("left", "@").replace("right", "left").replace("@", "right") for name in names
    ]
    return torch.tensor([names.index(name) for name in swapped])


def mirror_offsets(offsets: torch.Tensor, swap: torch.Tensor) -> torch.Tensor:
    """[B, 2K, H, W] joint-major offsets of a mirrored crop in the crop's frame, this
    test's own way: flipped along x, joints swapped, x components negated (UDP)."""
    batch, channels, height, width = offsets.shape
    per_joint = offsets.reshape(batch, channels // 2, 2, height, width).flip(-1)[:, swap]
    per_joint = per_joint * torch.tensor([-1.0, 1.0]).view(1, 1, 2, 1, 1)
    return per_joint.reshape(offsets.shape)


def mirror_equivariant(model, head: str):
    """``predict`` of a model made mirror-equivariant by averaging it with its mirror
    image, with this test's own mirroring: heatmaps flipped along x with channels
    swapped (exact with the UDP codec), keypoints at W_in - 1 - x with joints swapped.
    For a heatmap head the symmetric heatmaps are decoded by its codec (for CAL with
    its symmetric offsets)."""
    swap = _names_permutation()

    def predict(frames: torch.Tensor, **options) -> HeadPrediction:
        seeds = torch.zeros(len(frames), dtype=torch.long)  # the same noise for any input
        plain = model.predict(frames, sample_seeds=seeds)
        mirrored = model.predict(frames.flip(-1), sample_seeds=seeds)
        if head == "cal":
            heatmaps = 0.5 * (plain.heatmaps + mirrored.heatmaps.flip(-1)[:, swap])
            offsets = 0.5 * (
                plain.extras["offsets"] + mirror_offsets(mirrored.extras["offsets"], swap)
            )
            keypoints, scores = model.head.codec.decode(heatmaps, offsets)
            return HeadPrediction(
                keypoints=keypoints, scores=scores, heatmaps=heatmaps, extras={"offsets": offsets}
            )
        if plain.heatmaps is not None and head != "tfpose":
            heatmaps = 0.5 * (plain.heatmaps + mirrored.heatmaps.flip(-1)[:, swap])
            keypoints, scores = model.head.codec.decode(heatmaps)
            return HeadPrediction(keypoints=keypoints, scores=scores, heatmaps=heatmaps)
        back = mirrored.keypoints[:, swap].clone()
        back[..., 0] = W_IN - 1 - back[..., 0]
        return HeadPrediction(
            keypoints=0.5 * (plain.keypoints + back),
            scores=0.5 * (plain.scores + mirrored.scores[:, swap]),
        )

    return predict


@pytest.mark.parametrize("head", list(HEADS))
def test_the_flip_test_of_a_mirror_equivariant_model_keeps_its_keypoints(
    micro_config, head, frames
):
    model = build(micro_config, head, *UDP)
    symmetric = mirror_equivariant(model, head)
    plain = symmetric(frames)
    # the model is equivariant: mirroring the clip mirrors the answer (this test's mirror)
    mirrored = symmetric(frames.flip(-1))
    back = mirrored.keypoints[:, _names_permutation()].clone()
    back[..., 0] = W_IN - 1 - back[..., 0]
    torch.testing.assert_close(back, plain.keypoints, atol=1e-3, rtol=0)
    # so the library's flip test (the head's own merge) must return the same keypoints
    flipped = predict_with_flip(
        symmetric, frames, head=model.head, flip_permutation=POSETRACK.flip_permutation
    )
    torch.testing.assert_close(flipped.keypoints, plain.keypoints, atol=1e-3, rtol=0)
    torch.testing.assert_close(flipped.scores, plain.scores, atol=1e-5, rtol=0)


@pytest.mark.parametrize("head", list(HEADS))
def test_predict_with_flip_test_is_the_heads_merge_of_two_passes(micro_config, head, frames):
    model = build(micro_config, head)
    seeds = torch.arange(B)
    flipped = model.predict(frames, flip_test=True, sample_seeds=seeds)
    plain = model.predict(frames, sample_seeds=seeds)
    mirrored = model.predict(frames.flip(-1), sample_seeds=seeds)
    expected = model.head.merge_flipped(plain, mirrored, POSETRACK.flip_permutation)
    torch.testing.assert_close(flipped.keypoints, expected.keypoints)
    assert not torch.allclose(flipped.keypoints, plain.keypoints)
