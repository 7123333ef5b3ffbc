"""The benchmark scripts' own logic (their numbers are printed, never asserted): the
extraction stage timer accounts for the whole run, and hidden joints are scored by
what hides them."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools"
sys.path.insert(0, str(TOOLS))

from bench_extract_memory import render_videos  # noqa: E402
from bench_extract_split import measure  # noqa: E402
from benchmark import joint_hits, paired_difference, pckh_by_cause  # noqa: E402

from vidpose.data.posetrack import read_dataset  # noqa: E402
from vidpose.data.synthetic import generate_dataset, read_hidden_by  # noqa: E402

MODEL_STAGES = ("backbone", "temporal aggregator", "feature pyramid", "head (sampling + averaging)")


def test_the_extraction_split_times_every_model_stage_inside_the_run(tmp_path):
    video = render_videos(tmp_path, 4, 1, (160, 120), 2)[0]
    stages = measure(video, tmp_path / "out", [], render=False, decoder="pyav")
    assert (stages["frames"], stages["persons"]) == (4, 8)
    assert all(stages[name] > 0 for name in MODEL_STAGES)
    # the stages are disjoint parts of the run: their sum stays below the wall time
    assert sum(stages[name] for name in MODEL_STAGES) < stages["total"]


@pytest.fixture(scope="module")
def occluded(tmp_path_factory):
    root = generate_dataset(
        tmp_path_factory.mktemp("occluded"), videos=2, frames=8, persons=2, occlusion=1.0,
        progress=False,
    )  # fmt: skip
    return read_dataset("posetrack21", root, "posetrack_data/val"), read_hidden_by(root, "val")


def ground_truth_predictions(videos, offset: float):
    return [
        SimpleNamespace(
            image_id=frame.image_id,
            track_id=person.track_id,
            keypoints=person.keypoints[:, :2] + offset,
        )
        for video in videos
        for frame in video.frames
        for person in frame.persons
    ]


def test_pckh_by_cause_counts_each_joint_under_its_cause(occluded):
    videos, causes = occluded
    exact = pckh_by_cause(ground_truth_predictions(videos, 0.5), videos, causes)
    far = pckh_by_cause(ground_truth_predictions(videos, 1000.0), videos, causes)
    assert exact["occluder"][1] > 0 and exact["seen"][1] > 0
    hidden = sum(exact[name][1] for name in ("occluder", "another person", "own body"))
    assert exact["hidden (all)"][1] == hidden
    # an occluder moves on: some joints it hides are seen in a neighbouring frame
    assert 0 < exact["occluder, seen at t-1 or t+1"][1] < exact["occluder"][1]
    for name, (score, count) in exact.items():
        if count:
            assert score == 100.0 and far[name][0] == 0.0, name


def test_paired_difference_compares_the_same_joints(occluded):
    videos, causes = occluded
    exact = joint_hits(ground_truth_predictions(videos, 0.5), videos, causes)
    far = joint_hits(ground_truth_predictions(videos, 1000.0), videos, causes)
    assert paired_difference(exact, exact, "occluder") == (0.0, 0.0, 0.0)
    assert paired_difference(exact, far, "occluder") == (100.0, 100.0, 100.0)
    assert paired_difference(far, exact, "hidden (all)") == (-100.0, -100.0, -100.0)
    with pytest.raises(ValueError, match="different joints"):
        paired_difference(exact, far[1:], "seen")


def test_benchmark_e_scores_the_split_it_is_given_not_the_config_root(tmp_path):
    from benchmark import REPO, _e_score, _e_split

    from vidpose.config import load_config
    from vidpose.models.build import build_model

    # the training set has one person per video, the test set two: the predictions
    # (made from the ground-truth boxes) tell which set was read
    for name, persons, seed in (("train_set", 1, 1), ("test_set", 2, 2)):
        generate_dataset(tmp_path / name, videos=1, frames=8, persons=persons, occlusion=1.0,
                         seed=seed, progress=False)  # fmt: skip
    trained_on = _e_split(tmp_path / "train_set", 1, seed=1)  # made above: read only
    test = _e_split(tmp_path / "test_set", 1, seed=2)
    config = load_config(
        REPO / "configs/synthetic_tiny.yaml",
        [f"data.root={trained_on['root']}", "model.diffusion.hypotheses=1"],
    )
    evaluation, pckh, hits = _e_score(config, build_model(config), test, tmp_path / "pred")
    truth = [person for video in test["videos"] for frame in video.frames
             for person in frame.persons]  # fmt: skip
    assert len(evaluation.predictions) == len(truth) == 2 * 8
    assert len(hits) == sum(int(person.annotated.sum()) for person in truth)
    assert sum(count for name, (_, count) in pckh.items() if name in ("seen", "hidden (all)")) \
        == len(hits)  # fmt: skip


def test_pixel_errors_are_image_pixel_distances_of_annotated_joints(occluded):
    from benchmark import pixel_errors

    videos, _ = occluded
    annotated = sum(int(person.annotated.sum()) for video in videos for frame in video.frames
                    for person in frame.persons)  # fmt: skip
    shifted = ground_truth_predictions(videos, 0.0)
    for prediction in shifted:
        prediction.keypoints = prediction.keypoints + np.array([3.0, 4.0])
    errors = pixel_errors(shifted, videos)
    assert errors.shape == (annotated,)
    np.testing.assert_allclose(errors, 5.0)
    assert pixel_errors(shifted[1:], videos).size < annotated  # a person without a prediction


def test_benchmark_g_cal_runs_are_the_cal_configs():
    """Section g's CAL model at 64 x 48 is configs/synthetic_tiny_cal_64x48.yaml."""
    from benchmark import G_MODELS, REPO, _g_config_overrides

    from vidpose.config import load_config

    base, overrides, sigma_kind, _ = G_MODELS["cal"]
    ran = load_config(REPO / "configs" / base, overrides + _g_config_overrides("64x48", sigma_kind))
    shipped = load_config(REPO / "configs" / "synthetic_tiny_cal_64x48.yaml")
    assert (ran.data, ran.model, ran.loss) == (shipped.data, shipped.model, shipped.loss)


def test_benchmark_g_trains_each_model_once_and_scores_every_decoding(tmp_path):
    """A smoke run of section g: one size, the gaussian heatmap model (two decodings
    without retraining) and CAL, on one video per split."""
    from benchmark import section_g

    results = section_g(tmp_path, 2, ["heatmap", "cal"], ["64x48"], videos=1, test_videos=1)
    names = ["plain heatmaps (integer argmax)", "DARK", "CAL"]
    assert [name for name in results if name != "table"] == names
    assert sorted(path.name for path in tmp_path.glob("e_g_*")) == [
        "e_g_cal_64x48", "e_g_heatmap_64x48"
    ]  # fmt: skip
    for name in names:
        entry = results[name]["64x48"]
        assert np.isfinite(entry["pixel_error"]) and entry["joints"] > 0
        assert 0.0 <= entry["mAP"] <= 100.0
    # the two decodings of one model: other keypoints
    assert results["DARK"]["64x48"]["pixel_error"] != \
        results["plain heatmaps (integer argmax)"]["64x48"]["pixel_error"]  # fmt: skip
    assert "64x48 px error" in results["table"]
