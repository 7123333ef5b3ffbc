"""The synthetic dataset round-trips through the reader and the clip dataset."""

import numpy as np
import pytest
import torch

from vidpose.codecs.geometry import crop_to_image
from vidpose.codecs.heatmap import build_codec
from vidpose.config import load_config
from vidpose.data.clips import build_dataset
from vidpose.data.posetrack import read_dataset
from vidpose.data.synthetic import generate_dataset


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    generate_dataset(
        out, videos=2, frames=6, persons=2, size=(160, 120), occlusion=0.5, seed=5, progress=False
    )
    return out


def test_targets_decode_back_to_the_annotated_image_points(root):
    config = load_config(None, [f"data.root={root}", "data.input_size=[128,96]"])
    videos = read_dataset("posetrack21", root, "posetrack_data/val")
    dataset = build_dataset(config, "val", videos, codec=build_codec(config.data))
    persons = sum(len(f.persons) for v in videos for f in v.frames if f.is_labeled)
    assert len(dataset) == persons > 0

    truth = {
        (frame.image_id, person.track_id): person
        for video in videos
        for frame in video.frames
        for person in frame.persons
    }
    checked = 0
    for index in range(len(dataset)):
        item = dataset[index]
        assert item["frames"].shape == (3, 3, 128, 96)
        keypoints, scores = dataset.codec.decode(torch.as_tensor(item["heatmaps"])[None])
        image_points = crop_to_image(keypoints[0].double(), torch.as_tensor(item["inverse_affine"]))
        person = truth[(item["image_id"], item["track_id"])]
        weights = np.asarray(item["target_weight"]) > 0
        assert weights.sum() > 0
        # every joint with a target decodes to its annotation within a pixel of the image
        error = np.linalg.norm(image_points.numpy() - person.keypoints[:, :2], axis=1)
        assert error[weights].max() < 1.0, error[weights]
        checked += int(weights.sum())
    assert checked > 100
