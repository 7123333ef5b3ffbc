"""Every head through every command a user runs: `vidpose train`, `vidpose test` (its
prediction files accepted by `vidpose eval`, the uncertainty where the head has one),
`vidpose extract --render` and `vidpose visualize` (iterative heads; the one-pass
heads get a one-line refusal), on a micro
model trained for a few steps on a tiny synthetic dataset."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from vidpose.cli import main
from vidpose.data.synthetic import generate_dataset

REPO = Path(__file__).resolve().parents[1]
HEADS = {
    "diffusion": ("synthetic_tiny.yaml", ["model.diffusion.hypotheses=2"]),
    "heatmap": ("synthetic_tiny_temporal_baseline.yaml", []),
    "tfpose": ("synthetic_tiny_tfpose.yaml", ["model.tfpose.heads=2", "model.tfpose.ffn_dim=32"]),
    "cal": ("synthetic_tiny_cal.yaml", []),
    "diffusionpose": (
        "synthetic_tiny_diffusionpose.yaml",
        [
            "model.diffusionpose.hypotheses=2",
            "model.diffusionpose.sampling_steps=2",
            "model.diffusionpose.attention_groups=4",
        ],
    ),  # fmt: skip
}
# PCT: a micro tokenizer (both stages) and classifier; stage II starts from a tokenizer
# trained by the pct_tokenizer fixture
PCT_MICRO = [
    "model.pct.tokens=6", "model.pct.codebook_size=16", "model.pct.token_dim=8",
    "model.pct.encoder_hidden=16", "model.pct.encoder_layers=1", "model.pct.decoder_hidden=8",
    "model.pct.conv_channels=8", "model.pct.classifier_hidden=8", "model.pct.classifier_layers=1",
]  # fmt: skip
HEADS["pct"] = ("synthetic_tiny_pct.yaml", PCT_MICRO)
# no iterative search: no uncertainty, nothing to visualise
ONE_PASS = ("heatmap", "cal", "pct")
MICRO = [
    "data.input_size=[64,48]",
    "data.num_workers=0",
    "model.backbone.embed_dim=32",
    "model.backbone.depth=1",
    "model.backbone.num_heads=2",
    "model.decoder_dim=16",
    "train.batch_size=4",
    "train.max_steps=3",
    "train.warmup_steps=1",
    "train.val_every=0",
    "test.batch_size=16",
    "test.flip_test=true",
]


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    generate_dataset(root, videos=1, frames=6, persons=2, size=(128, 96), seed=4, progress=False)
    return root


def overrides(root: Path, head: str) -> list[str]:
    words = []
    for value in [f"data.root={root}", *MICRO, *HEADS[head][1]]:
        words += ["--set", value]
    return words


@pytest.fixture(scope="module")
def pct_tokenizer(dataset_root, tmp_path_factory) -> Path:
    """PCT's stage I, trained for 3 steps (no frame decoded) and evaluated by `vidpose
    test` (the reconstruction of the validation poses); its checkpoint."""
    work = tmp_path_factory.mktemp("pct_tokenizer")
    config = str(REPO / "configs" / "synthetic_tiny_pct_tokenizer.yaml")
    options = overrides(dataset_root, "pct")
    assert main(["train", config, "--work-dir", str(work), *options]) == 0
    checkpoint = work / "latest.safetensors"
    metrics = work / "reconstruction.json"
    test = ["test", config, "--checkpoint", str(checkpoint), "--out", str(work / "test")]
    assert main([*test, "--json", str(metrics), *options]) == 0
    summary = json.loads(metrics.read_text())
    assert summary["reconstruction_px"] > 0 and 1 <= summary["codebook_used"] <= 16
    return checkpoint


@pytest.mark.parametrize("head", list(HEADS))
def test_train_test_eval_extract_visualize(head, dataset_root, tmp_path, capsys, request):
    config = str(REPO / "configs" / HEADS[head][0])
    work = tmp_path / "work"
    stage_one = []
    if head == "pct":  # stage II starts from a stage I tokenizer, a file read once
        tokenizer = tmp_path / "tokenizer.safetensors"
        tokenizer.write_bytes(request.getfixturevalue("pct_tokenizer").read_bytes())
        stage_one = ["--set", f"model.pct.tokenizer={tokenizer}"]
    train = ["train", config, "--work-dir", str(work), *overrides(dataset_root, head)]
    assert main([*train, *stage_one]) == 0
    if head == "pct":
        tokenizer.unlink()  # test, extract and visualize need the stage II checkpoint alone
    checkpoint = work / "latest.safetensors"

    # vidpose test with the flip test on: files for every video, accepted by vidpose eval
    predictions = tmp_path / "predictions"
    metrics = tmp_path / "metrics.json"
    arguments = ["test", config, "--checkpoint", str(checkpoint), "--out", str(predictions)]
    assert main([*arguments, "--json", str(metrics), *overrides(dataset_root, head)]) == 0
    assert "mAP" in json.loads(metrics.read_text())
    truth = dataset_root / "posetrack_data" / "val"
    assert sorted(p.name for p in predictions.glob("*.json")) == sorted(
        p.name for p in truth.glob("*.json")
    )
    assert main(["eval", str(truth), str(predictions), "--protocol", "posetrack21"]) == 0
    people = [
        person
        for path in predictions.glob("*.json")
        for person in json.loads(path.read_text())["annotations"]
    ]
    assert people
    # the diffusion head (2 hypotheses) and TFPose (its Laplace scales) have an
    # uncertainty; the heatmap and CAL heads have none
    has_uncertainty = head not in ONE_PASS
    assert all(("keypoint_uncertainty" in person) == has_uncertainty for person in people)
    if has_uncertainty:
        values = [v for person in people for v in person["keypoint_uncertainty"] if v is not None]
        assert values and all(v >= 0 for v in values)

    # vidpose extract --render on the synthetic video with its ground-truth boxes
    out = tmp_path / "extract"
    video = next((dataset_root / "videos" / "val").glob("*.mp4"))
    extract = ["extract", str(video), "--checkpoint", str(checkpoint), "--boxes", str(truth),
               "--out", str(out), "--render", "--no-progress"]  # fmt: skip
    assert main(extract) == 0
    assert (out / f"{video.stem}.mp4").stat().st_size > 0
    with open(out / f"{video.stem}.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    written = [row for row in rows if row["x"]]  # PoseTrack's ear slots are not written
    assert written and all((row["uncertainty"] != "") == has_uncertainty for row in written)

    # vidpose visualize: the search of iterative heads; a one-pass head says there is none
    search = tmp_path / "search"
    visualize = ["visualize", "--checkpoint", str(checkpoint), "--video", str(video),
                 "--frame", "2", "--boxes", str(truth / f"{video.stem}.json"), "--track", "0",
                 "--out", str(search), "--animation", "none"]  # fmt: skip
    capsys.readouterr()
    code = main(visualize)
    if head in ONE_PASS:
        assert code == 2 and "one pass" in capsys.readouterr().err
    else:
        assert code == 0 and (search / "search_grid.png").is_file()
        steps = json.loads((search / "trajectory.json").read_text())["steps"]
        # TFPose: its 3 decoder layers; diffusion: the tiny config's 1 DDIM step;
        # DiffusionPose: the 2 DDIM steps set above
        assert len(steps) == {"tfpose": 3, "diffusionpose": 2}.get(head, 1)
