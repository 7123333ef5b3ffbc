"""Crop geometry: box <-> centre/scale, affine matrices, inverses, back-projection."""

from __future__ import annotations

import numpy as np
import torch

from vidpose.codecs.geometry import (
    apply_affine,
    box_to_center_scale,
    center_scale_to_box,
    compose_affine,
    crop_affine,
    crop_to_image,
    invert_affine,
)


def test_box_to_center_scale_fixes_aspect_and_pads() -> None:
    # A tall box (w/h = 0.25) for a 192 x 256 input (w/h = 0.75): the width grows.
    center, scale = box_to_center_scale([10, 20, 30, 120], aspect_ratio=0.75, padding=1.25)
    np.testing.assert_allclose(center, [25, 80])
    np.testing.assert_allclose(scale, [90 * 1.25, 120 * 1.25])
    # A wide box: the height grows; batched input keeps its leading axes.
    center, scale = box_to_center_scale(
        [[0, 0, 150, 100], [5, 5, 3, 4]], aspect_ratio=0.75, padding=1.0
    )
    np.testing.assert_allclose(scale, [[150, 200], [3, 4]])
    np.testing.assert_allclose(center_scale_to_box(center, scale)[0], [0, -50, 150, 200])


def test_crop_affine_maps_region_edges_to_crop_edges() -> None:
    matrix = crop_affine([100, 50], [96, 128], output_size=(192, 256))
    corners = np.array([[52, -14], [148, 114], [100, 50]], dtype=float)
    # region edges -> crop edges (-0.5 and W - 0.5), centre -> crop centre
    np.testing.assert_allclose(
        apply_affine(corners, matrix), [[-0.5, -0.5], [191.5, 255.5], [95.5, 127.5]]
    )


def test_rotation_turns_content_counter_clockwise_on_screen() -> None:
    matrix = crop_affine([0, 0], [10, 10], output_size=(11, 11), rotation=90)
    # A point right of the centre ends up above it (y points down).
    np.testing.assert_allclose(apply_affine(np.array([[2.0, 0.0]]), matrix), [[5, 5 - 2.2]])


def test_flip_mirrors_the_crop() -> None:
    plain = crop_affine([30, 40], [50, 60], output_size=(48, 64), rotation=17)
    mirrored = crop_affine([30, 40], [50, 60], output_size=(48, 64), rotation=17, flip=True)
    points = np.random.default_rng(0).uniform(0, 80, size=(6, 2))
    a, b = apply_affine(points, plain), apply_affine(points, mirrored)
    np.testing.assert_allclose(b[:, 0], 47 - a[:, 0])
    np.testing.assert_allclose(b[:, 1], a[:, 1])


def test_inverse_and_composition_round_trip() -> None:
    rng = np.random.default_rng(1)
    matrix = crop_affine([120, 80], [70, 90], output_size=(192, 256), rotation=-33, flip=True)
    inverse = invert_affine(matrix)
    points = rng.uniform(-50, 300, size=(20, 2))
    np.testing.assert_allclose(apply_affine(apply_affine(points, matrix), inverse), points)
    identity = compose_affine(inverse, matrix)
    np.testing.assert_allclose(identity, [[1, 0, 0], [0, 1, 0]], atol=1e-12)


def test_back_projection_batched_torch() -> None:
    rng = np.random.default_rng(2)
    matrices = [
        crop_affine(
            rng.uniform(50, 150, 2),
            rng.uniform(40, 90, 2),
            output_size=(48, 64),
            rotation=float(rng.uniform(-40, 40)),
        )
        for _ in range(3)
    ]
    image_points = rng.uniform(0, 200, size=(3, 5, 2))
    crop_points = np.stack(
        [apply_affine(p, m) for p, m in zip(image_points, matrices, strict=True)]
    )
    inverses = torch.as_tensor(np.stack([invert_affine(m) for m in matrices]))
    back = crop_to_image(torch.as_tensor(crop_points), inverses)
    assert isinstance(back, torch.Tensor) and back.shape == (3, 5, 2)
    np.testing.assert_allclose(back.numpy(), image_points, atol=1e-9)
