"""PCT (pose as compositional tokens): the tokenizer's codebook algebra, straight-through
gradient and joint masking; the classifier's soft-mix decoding and scores; the two
stages chained through one file (loaded when training starts, frozen, carried in the
stage II checkpoint, refused when it does not fit).

Models are micro versions of configs/synthetic_tiny_pct{_tokenizer,}.yaml.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from vidpose.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from vidpose.config import ConfigError, load_config, to_dict
from vidpose.data.clips import build_dataset_from_config
from vidpose.data.synthetic import generate_dataset
from vidpose.engine.optim import build_optimizer
from vidpose.engine.trainer import train
from vidpose.inference.predictor import load_estimator
from vidpose.losses import build_criterion
from vidpose.models.build import build_model, load_initial_weights
from vidpose.models.heads.pct import PCTHead, load_feature_extractor
from vidpose.models.heads.pct_tokenizer import (
    EMACodebook,
    PoseTokenizerModel,
    assignment_statistics,
    codebook_perplexity,
    ema_codebook_update,
)

B, K, H_IN, W_IN = 4, 17, 64, 48
# a micro tokenizer: M = 6 tokens over V = 16 entries of width 8
PCT_MICRO = [
    "model.pct.tokens=6",
    "model.pct.codebook_size=16",
    "model.pct.token_dim=8",
    "model.pct.encoder_hidden=16",
    "model.pct.encoder_layers=1",
    "model.pct.encoder_token_hidden=8",
    "model.pct.encoder_channel_hidden=16",
    "model.pct.decoder_hidden=8",
    "model.pct.decoder_token_hidden=8",
    "model.pct.decoder_channel_hidden=8",
    "model.pct.conv_channels=8",
    "model.pct.classifier_hidden=8",
    "model.pct.classifier_layers=1",
    "model.pct.classifier_token_hidden=8",
    "model.pct.classifier_channel_hidden=8",
]


@pytest.fixture(autouse=True)
def seeded():
    """Every test builds its models from the same random state."""
    torch.manual_seed(0)


@pytest.fixture
def tokenizer_config(micro_config):
    def make(*extra: str):
        return micro_config(*PCT_MICRO, *extra, base="synthetic_tiny_pct_tokenizer.yaml")

    return make


@pytest.fixture
def classifier_config(micro_config):
    def make(*extra: str):
        return micro_config(*PCT_MICRO, *extra, base="synthetic_tiny_pct.yaml")

    return make


def random_poses(generator: torch.Generator, batch: int = B) -> dict[str, torch.Tensor]:
    keypoints = torch.rand(batch, K, 2, generator=generator) * torch.tensor([W_IN - 1.0, H_IN - 1])
    weights = (torch.rand(batch, K, generator=generator) > 0.25).float()
    return {"keypoints": keypoints, "target_weight": weights}


def save_tokenizer(model: PoseTokenizerModel, config, path: Path) -> Path:
    """A stage I checkpoint as the trainer writes it (weights and the resolved config)."""
    return save_checkpoint(Checkpoint(model=model.state_dict(), config=to_dict(config)), path)


def trained_tokenizer(config, generator: torch.Generator, steps: int = 3) -> PoseTokenizerModel:
    """A stage I model after a few training steps (its codebook moved by EMA)."""
    torch.manual_seed(0)
    model = build_model(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    criterion = build_criterion(config, model.head)
    for step in range(steps):
        targets = random_poses(generator)
        outputs = model(None, targets=targets, sample_seeds=torch.arange(B) + 10 * step)
        optimizer.zero_grad()
        criterion(outputs, targets)["loss"].backward()
        optimizer.step()
    return model.eval()


def with_max_steps(config, steps: int):
    """``config`` stopping after ``steps`` training steps."""
    return replace(config, train=replace(config.train, max_steps=steps))


# --------------------------------------------------------------------------- codebook


def test_ema_codebook_update_on_a_hand_computed_case():
    # three entries in 2-D; two outputs choose entry 0, one entry 2, none entry 1
    codebook = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    encoded = torch.tensor([[0.2, 0.0], [0.4, 0.0], [0.2, 1.2]])
    ids = torch.tensor([0, 0, 2])
    batch_counts, batch_sums = assignment_statistics(encoded, ids, 3)
    torch.testing.assert_close(batch_counts, torch.tensor([2.0, 0.0, 1.0]))
    torch.testing.assert_close(batch_sums, torch.tensor([[0.6, 0.0], [0.0, 0.0], [0.2, 1.2]]))
    counts, sums = torch.ones(3), codebook.clone()
    # decay 0.5: N = 0.5 [1, 1, 1] + 0.5 [2, 0, 1] = [1.5, 0.5, 1.0]
    #            m = 0.5 codebook + 0.5 sums = [[0.3, 0], [0.5, 0], [0.1, 1.1]]
    new_counts, new_sums, new_codebook = ema_codebook_update(
        counts, sums, batch_counts, batch_sums, decay=0.5, epsilon=0.0
    )
    torch.testing.assert_close(new_counts, torch.tensor([1.5, 0.5, 1.0]))
    torch.testing.assert_close(new_sums, torch.tensor([[0.3, 0.0], [0.5, 0.0], [0.1, 1.1]]))
    # without smoothing c = m / N: the unchosen entry keeps its place
    torch.testing.assert_close(new_codebook, torch.tensor([[0.2, 0.0], [1.0, 0.0], [0.1, 1.1]]))
    # Laplace smoothing eps = 0.1: N~ = (N + 0.1) / (3 + 0.3) * 3 = [16/11, 6/11, 1]
    _, _, smoothed = ema_codebook_update(
        counts, sums, batch_counts, batch_sums, decay=0.5, epsilon=0.1
    )
    torch.testing.assert_close(
        smoothed, torch.tensor([[0.3 * 11 / 16, 0.0], [0.5 * 11 / 6, 0.0], [0.1, 1.1]])
    )

    # the module: nearest entries, the same update, and the idle counter
    module = EMACodebook(size=3, dim=2, decay=0.5, dead_after=2, reseed=False)
    module.codebook.copy_(codebook)
    module.sums.copy_(codebook)
    found, distances = module.nearest(encoded)
    assert found.tolist() == [0, 0, 2]
    torch.testing.assert_close(distances, torch.tensor([0.04, 0.16, 0.08]))
    module.update(encoded, found, distances)
    torch.testing.assert_close(module.codebook, new_codebook, atol=1e-4, rtol=0)
    assert module.idle_steps.tolist() == [0, 1, 0]
    module.update(encoded, found, distances)
    assert module.dead_entries() == 1


def test_dead_entries_are_reseeded_on_the_worst_served_outputs():
    module = EMACodebook(size=3, dim=2, decay=0.5, dead_after=1, reseed=True)
    module.codebook.copy_(torch.tensor([[0.0, 0.0], [9.0, 9.0], [-9.0, 9.0]]))
    encoded = torch.tensor([[0.1, 0.0], [3.0, 0.0], [0.0, 2.0]])
    ids, distances = module.nearest(encoded)  # all choose entry 0
    module.update(encoded, ids, distances)
    # entries 1 and 2 were dead after one idle step: moved onto the two outputs farthest
    # from their entry, (3, 0) and (0, 2), with one observation of them
    assert {tuple(row) for row in module.codebook[1:].tolist()} == {(3.0, 0.0), (0.0, 2.0)}
    assert module.counts[1:].tolist() == [1.0, 1.0] and module.reseeded.item() == 2
    assert module.dead_entries() == 0


def test_codebook_perplexity():
    assert codebook_perplexity(torch.tensor([5.0, 5.0, 5.0, 5.0])) == pytest.approx(4.0)
    assert codebook_perplexity(torch.tensor([7.0, 0.0, 0.0])) == pytest.approx(1.0)


# --------------------------------------------------------------------------- tokenizer


def test_straight_through_passes_the_decoders_gradient_to_the_encoder(tokenizer_config, generator):
    tokenizer = build_model(tokenizer_config()).head.eval()
    poses = random_poses(generator)
    visible = poses["target_weight"] > 0
    encoded = tokenizer.encode(poses["keypoints"], ~visible).detach().requires_grad_()
    ids, quantized, _ = tokenizer.quantize(encoded)
    straight_through = encoded + (quantized - encoded).detach()
    # the decoder reads q (up to the rounding of e + (q - e))...
    torch.testing.assert_close(straight_through, quantized, atol=1e-4, rtol=1e-5)
    (gradient,) = torch.autograd.grad(tokenizer.decode(straight_through).sum(), encoded)
    leaf = quantized.clone().requires_grad_()
    (expected,) = torch.autograd.grad(tokenizer.decode(leaf).sum(), leaf)
    # ... and its gradient reaches e as is
    torch.testing.assert_close(gradient, expected, atol=1e-5, rtol=1e-3)

    # in the training pass: the reconstruction is the decoding of the ids, its loss
    # trains the encoder, and the codebook is a buffer without gradient
    outputs = tokenizer(poses["keypoints"], visible)
    torch.testing.assert_close(outputs["keypoints"], tokenizer.decode_ids(outputs["token_ids"]))
    reconstruction = tokenizer.loss_terms(outputs, poses)["reconstruction"]
    reconstruction.backward()
    assert tokenizer.joint_embedding.weight.grad.abs().sum() > 0
    assert not tokenizer.codebook.codebook.requires_grad
    assert all("codebook" not in name for name, _ in tokenizer.named_parameters())


def test_masking_hides_visible_joints_only_in_training(tokenizer_config, generator):
    tokenizer = build_model(tokenizer_config()).head
    visible = torch.rand(512, K, generator=generator) > 0.3
    seeds = torch.arange(512)
    tokenizer.train()
    hidden = tokenizer.joint_mask(visible, seeds)
    assert hidden[~visible].all()  # invisible joints always get the invisible embedding
    rate = hidden[visible].float().mean().item()
    assert abs(rate - 0.2) < 0.02, rate  # PCT's 20% of the visible ones
    # per-sample seeds: a sample's mask does not depend on its batch
    assert torch.equal(tokenizer.joint_mask(visible[5:6], seeds[5:6]), hidden[5:6])
    tokenizer.eval()
    assert torch.equal(tokenizer.joint_mask(visible, seeds), ~visible)

    # a hidden joint's coordinates do not reach the tokens, whatever they are
    poses = random_poses(generator)
    mask = hidden[:B]
    scrambled = torch.where(mask[..., None], torch.nan, poses["keypoints"])
    torch.testing.assert_close(
        tokenizer.encode(scrambled, mask), tokenizer.encode(poses["keypoints"], mask)
    )


def test_training_updates_the_codebook_and_evaluation_does_not(tokenizer_config, generator):
    model = build_model(tokenizer_config())
    poses = random_poses(generator)
    before = model.head.codebook.codebook.clone()
    model.eval()(None, targets=poses)
    assert torch.equal(model.head.codebook.codebook, before)
    model.train()(None, targets=poses, sample_seeds=torch.arange(B))
    assert not torch.equal(model.head.codebook.codebook, before)


def test_the_tokenizer_model_refuses_to_predict_from_images(tokenizer_config):
    model = build_model(tokenizer_config())
    assert isinstance(model, PoseTokenizerModel) and not model.needs_images
    with pytest.raises(ValueError, match="does not predict them from images"):
        model.predict(torch.zeros(1, 3, 3, H_IN, W_IN))


# --------------------------------------------------------------------------- classifier


def test_the_soft_mix_of_one_hot_logits_is_the_hard_decoding(classifier_config, generator):
    head: PCTHead = build_model(classifier_config()).head.eval()
    tokenizer = head.tokenizer
    ids = torch.randint(tokenizer.codebook_size, (B, tokenizer.num_tokens), generator=generator)
    one_hot = torch.nn.functional.one_hot(ids, tokenizer.codebook_size).float()
    torch.testing.assert_close(
        tokenizer.decode_probabilities(one_hot), tokenizer.decode_ids(ids), atol=0, rtol=0
    )
    # through the head: logits -inf off the chosen entries give exactly one-hot softmax
    logits = torch.where(one_hot > 0, 0.0, -torch.inf)
    head.classifier.forward = lambda features: logits
    features = (torch.zeros(B, 1, 1, 1),)
    torch.testing.assert_close(head.predict(features).keypoints, tokenizer.decode_ids(ids))
    torch.testing.assert_close(head(features)["keypoints"], tokenizer.decode_ids(ids))


def test_scores_paper_and_per_joint(classifier_config, generator):
    head: PCTHead = build_model(classifier_config()).head.eval()
    tokens, size = head.tokenizer.num_tokens, head.tokenizer.codebook_size
    logits = torch.randn(B, tokens, size, generator=generator)
    paper = head.joint_scores(logits)
    # PCT: the mean over the tokens of the top-1 raw logit, the same for every joint
    expected = logits.max(-1).values.mean(-1, keepdim=True).expand(B, K)
    torch.testing.assert_close(paper, expected)
    # per joint: joint k reads only token k % M -> its score is that token's top-1 probability
    weights = torch.zeros(K, tokens)
    weights[torch.arange(K), torch.arange(K) % tokens] = -2.0  # |W| counts
    head.tokenizer.tokens_to_joints.linear.weight.data.copy_(weights)
    head.score = "per_joint"
    top = logits.softmax(-1).max(-1).values  # [B, M]
    torch.testing.assert_close(head.joint_scores(logits), top[:, torch.arange(K) % tokens])


# --------------------------------------------------------------------------- two stages


def test_stage_two_loads_the_tokenizer_and_keeps_it_frozen(
    tokenizer_config, classifier_config, generator, tmp_path
):
    stage_one = trained_tokenizer(tokenizer_config(), generator)
    path = save_tokenizer(stage_one, tokenizer_config(), tmp_path / "tokenizer.safetensors")
    config = classifier_config(f"model.pct.tokenizer={path}")
    model = build_model(config)
    load_initial_weights(model, config)
    expected = stage_one.head.state_dict()
    loaded = model.head.tokenizer.state_dict()
    assert loaded.keys() == expected.keys()
    for name, value in loaded.items():
        torch.testing.assert_close(value, expected[name])

    # a training step, as the trainer takes it: the tokenizer (weights, codebook, idle
    # counters) does not change, the classifier and the backbone do
    before = {name: value.clone() for name, value in model.state_dict().items()}
    optimizer = build_optimizer(model, lr=1e-2, weight_decay=0.05, layer_decay=1.0)
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert not any(id(p) in trained for p in model.head.tokenizer.parameters())
    model.train()
    assert not model.head.tokenizer.training  # no masking, no codebook update
    targets = random_poses(generator)
    frames = torch.randn(B, 3, 3, H_IN, W_IN, generator=generator)
    outputs = model(frames, targets=targets, sample_seeds=torch.arange(B))
    losses = build_criterion(config, model.head)(outputs, targets)
    assert set(losses) == {"token", "joint", "loss"}
    optimizer.zero_grad()
    losses["loss"].backward()
    optimizer.step()
    after = model.state_dict()
    for name, value in after.items():
        if name.startswith("head.tokenizer."):
            assert torch.equal(value, before[name]), name
    assert not torch.equal(
        after["head.classifier.classify.weight"], before["head.classifier.classify.weight"]
    )
    patch = "backbone.vit.patch_embed.proj.weight"
    assert not torch.equal(after[patch], before[patch])


def test_a_tokenizer_that_does_not_fit_is_refused(
    tokenizer_config, classifier_config, generator, tmp_path
):
    def refused(stage_one_overrides: list[str], stage_two_overrides: list[str] = ()) -> str:
        stage_one = tokenizer_config(*stage_one_overrides)
        path = save_tokenizer(build_model(stage_one), stage_one, tmp_path / "tok.safetensors")
        config = classifier_config(f"model.pct.tokenizer={path}", *stage_two_overrides)
        with pytest.raises(ValueError) as error:
            load_initial_weights(build_model(config), config)
        assert str(path) in str(error.value)
        return str(error.value)

    assert "tokens M 8 (this config: 6)" in refused(["model.pct.tokens=8"])
    assert "codebook entries V 32 (this config: 16)" in refused(["model.pct.codebook_size=32"])
    assert "joint set 'coco' (this config: 'posetrack')" in refused(["data.skeleton=coco"])
    assert "layers do not fit" in refused(["model.pct.encoder_hidden=32"])
    # a checkpoint of another head is not a tokenizer
    other = classifier_config()
    path = save_tokenizer(build_model(other), other, tmp_path / "other.safetensors")
    with pytest.raises(ConfigError, match="not a PCT tokenizer checkpoint.*'pct'"):
        load_initial_weights(build_model(other), classifier_config(f"model.pct.tokenizer={path}"))
    with pytest.raises(FileNotFoundError, match="model.pct.tokenizer"):
        config = classifier_config(f"model.pct.tokenizer={tmp_path / 'missing.safetensors'}")
        load_initial_weights(build_model(config), config)


def test_init_from_loads_and_freezes_the_feature_extractor(
    micro_config, classifier_config, tmp_path
):
    torch.manual_seed(1)
    heatmap_config = micro_config(base="synthetic_tiny_temporal_baseline.yaml")
    heatmap = build_model(heatmap_config)
    path = save_checkpoint(
        Checkpoint(model=heatmap.state_dict(), config=to_dict(heatmap_config)),
        tmp_path / "heatmap.safetensors",
    )
    model = build_model(classifier_config("model.pct.freeze_backbone=true"))
    load_feature_extractor(model, path)
    source = heatmap.state_dict()
    for name, value in model.state_dict().items():
        if name.startswith(("backbone.", "temporal.", "pyramid.")):
            torch.testing.assert_close(value, source[name])
    features = (model.backbone, model.temporal, model.pyramid)
    trainable = [parameter.requires_grad for part in features for parameter in part.parameters()]
    assert trainable and not any(trainable)
    assert all(p.requires_grad for p in model.head.classifier.parameters())
    # another backbone width is refused, naming the file
    wider = build_model(classifier_config("model.backbone.embed_dim=64"))
    with pytest.raises(ConfigError, match="heatmap.safetensors: weights of other shapes"):
        load_feature_extractor(wider, path)


# --------------------------------------------------------------------------- one file


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    generate_dataset(root, videos=1, frames=6, persons=2, size=(128, 96), seed=4, progress=False)
    return root


def test_the_tokenizer_dataset_loads_no_frames_and_the_same_keypoints(
    tokenizer_config, dataset_root
):
    config = tokenizer_config(f"data.root={dataset_root}", "data.num_workers=0")
    with_frames = build_dataset_from_config(config, "train")
    without = build_dataset_from_config(config, "train", load_images=False)
    for index in (0, len(without) - 1):
        sample, bare = with_frames[index], without[index]
        assert bare["frames"].shape == (0, 3, H_IN, W_IN)
        for key in ("keypoints", "target_weight", "affine"):
            torch.testing.assert_close(bare[key], sample[key])


def test_two_stages_chain_through_one_file_loaded_only_when_training_starts(
    tokenizer_config, classifier_config, dataset_root, tmp_path
):
    common = [f"data.root={dataset_root}", "data.num_workers=0", "train.batch_size=4",
              "train.warmup_steps=1", "train.val_every=0", "test.batch_size=8"]  # fmt: skip
    stage_one = train(
        tokenizer_config(*common, "train.max_steps=2"), tmp_path / "tok", show_progress=False
    )
    tokenizer_file = tmp_path / "tokenizer.safetensors"
    tokenizer_file.write_bytes(stage_one.checkpoint.read_bytes())
    stage_two = classifier_config(*common, f"model.pct.tokenizer={tokenizer_file}")
    first = train(with_max_steps(stage_two, 1), tmp_path / "cls", show_progress=False)
    saved = load_checkpoint(first.checkpoint).model
    tokenizer = load_checkpoint(tokenizer_file).model
    codebook = "head.tokenizer.codebook.codebook"
    torch.testing.assert_close(saved[codebook], tokenizer["head.codebook.codebook"])

    # the tokenizer file is read when a run starts, never again: resume and inference
    # work without it (even with another path in the config)
    tokenizer_file.unlink()
    moved = classifier_config(*common, "model.pct.tokenizer=elsewhere/tokenizer.safetensors")
    resumed = train(with_max_steps(moved, 2), tmp_path / "cls", resume=True, show_progress=False)
    assert load_checkpoint(resumed.checkpoint).trainer["step"] == 2
    model, _ = load_estimator(resumed.checkpoint)
    frames = torch.randn(2, 3, 3, H_IN, W_IN)
    answer = model.predict(frames, flip_test=True)
    assert answer.keypoints.shape == (2, K, 2) and torch.isfinite(answer.keypoints).all()
    torch.testing.assert_close(model.state_dict()[codebook], saved[codebook])
    # a new run does need it
    with pytest.raises(FileNotFoundError, match="model.pct.tokenizer"):
        train(with_max_steps(moved, 1), tmp_path / "new", show_progress=False)


# --------------------------------------------------------------------------- configs

_TOKENIZER_FIELDS = (
    "tokens", "codebook_size", "token_dim", "encoder_hidden", "encoder_layers",
    "encoder_token_hidden", "encoder_channel_hidden", "decoder_hidden", "decoder_layers",
    "decoder_token_hidden", "decoder_channel_hidden",
)  # fmt: skip


@pytest.mark.parametrize(
    ("tokenizer", "classifier"),
    [("synthetic_tiny_pct_tokenizer", "synthetic_tiny_pct")]
    + [
        (f"{d}_pct_tokenizer", f"{d}_vit_b_pct")
        for d in ("posetrack17", "posetrack18", "posetrack21", "coco")
    ],
)
def test_each_stage_two_config_reads_a_tokenizer_of_its_stage_one_config(tokenizer, classifier):
    """A stage II config names its stage I run's default checkpoint and has its sizes
    and joint set (else its run would refuse the tokenizer when it starts)."""
    configs = Path(__file__).resolve().parents[2] / "configs"
    stage_one = load_config(configs / f"{tokenizer}.yaml")
    stage_two = load_config(configs / f"{classifier}.yaml")
    assert stage_one.model.head == "pct_tokenizer" and stage_two.model.head == "pct"
    assert stage_two.model.pct.tokenizer == f"work_dirs/{tokenizer}/best.safetensors"
    for field in _TOKENIZER_FIELDS:
        assert getattr(stage_two.model.pct, field) == getattr(stage_one.model.pct, field), field
    assert stage_two.data.skeleton == stage_one.data.skeleton
    assert stage_one.train.val_every > 0  # a best.safetensors is written
