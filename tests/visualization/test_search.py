"""The search visualisation draws what the head recorded, and every output is whole.

Renderers get hand-made trajectories whose keypoints, heatmaps and masks are known (a
diffusion one with every key, a TFPose one with keypoints, references and attention
masks only), so the pixels can be checked against them; the CLI runs real micro
models (diffusion and TFPose) and their ``trajectory.json`` is compared with a direct
``predict(..., return_trajectory=True)`` call.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from vidpose.cli import main
from vidpose.codecs.heatmap import HeatmapCodec
from vidpose.data.skeleton import POSETRACK
from vidpose.visualization.search import GroundTruth, SearchTrajectory, trajectory_record
from vidpose.visualization.search_grid import (
    grid_layout,
    render_search_grid,
    render_step_frames,
    write_gif,
    write_mp4,
)
from vidpose.visualization.search_panels import (
    ARROW_COLOUR,
    CONSENSUS_COLOUR,
    HYPOTHESIS_COLOUR,
    PanelStyle,
    resample_heatmaps,
    resample_masks,
    summary_column_count,
    to_panel,
)
from vidpose.visualization.search_plot import plot_search_curves
from vidpose.visualization.temporal_view import (
    NEGATIVE_COLOUR,
    POSITIVE_COLOUR,
    TemporalWeights,
    render_temporal_view,
    temporal_layout,
)

REPO = Path(__file__).resolve().parents[2]
INPUT = (64, 48)  # H, W of the crop
HEATMAP = (16, 12)
MASK_SIZES = ((4, 3), (8, 6), (16, 12))
STEPS, HYPOTHESES, JOINTS = 3, 2, 17
OFFSETS = np.array([[-6.0, 0.0], [6.0, 0.0]])  # where each hypothesis' keypoints sit


def make_codec() -> HeatmapCodec:
    return HeatmapCodec(input_size=INPUT, heatmap_size=HEATMAP, sigma=1.5)


def known_positions() -> np.ndarray:
    """[S, K, 2] input pixels: every joint on its own spot, moving by (2 s, 3 s) px."""
    rng = np.random.default_rng(3)
    start = np.stack([rng.uniform(10, 30, JOINTS), rng.uniform(10, 40, JOINTS)], -1)
    return np.stack([start + [2.0 * step, 3.0 * step] for step in range(STEPS)])


def lit_row(step: int, rows: int) -> int:
    """The mask row lit at ``step``: from the bottom up (the top holds the caption)."""
    return rows - 1 - step % rows


def fake_trajectory(codec: HeatmapCodec, positions: np.ndarray) -> list[dict]:
    """What ``DiffusionHead.predict(..., return_trajectory=True)`` returns for B = 1: x0
    estimates are Gaussians at ``positions`` (all hypotheses alike), the recorded
    keypoints sit at ``positions + OFFSETS[g]`` (so a drawing that re-decoded the
    heatmaps would put them elsewhere), and each joint's mask at step s is one cell
    (row ``lit_row``, column s)."""
    entries = []
    for step in range(STEPS):
        maps, _ = codec.encode(positions[step], np.ones(JOINTS, bool))
        heatmaps = torch.from_numpy(maps)[None, None].expand(1, HYPOTHESES, -1, -1, -1)
        masks = []
        for rows, cols in MASK_SIZES:
            mask = torch.zeros(1, HYPOTHESES, JOINTS, rows, cols)
            mask[..., lit_row(step, rows), step % cols] = 1.0
            masks.append(mask)
        keypoints = torch.from_numpy(positions[step][None] + OFFSETS[:, None]).float()
        t, t_prev = 999 - 333 * step, 999 - 333 * (step + 1) if step < STEPS - 1 else -1
        entries.append(
            {
                "step": step,
                "label": f"t {t}->{t_prev}",
                "t": t,
                "t_prev": t_prev,
                "x_t": torch.rand(1, HYPOTHESES, JOINTS, *HEATMAP),
                "heatmaps": heatmaps.clone(),
                "masks": tuple(masks),
                "keypoints": keypoints[None],
                "scores": torch.full((1, HYPOTHESES, JOINTS), 0.5),
            }
        )
    return entries


@pytest.fixture
def known() -> tuple[SearchTrajectory, np.ndarray, np.ndarray]:
    """(trajectory, positions [S, K, 2], crop [H, W, 3])."""
    codec = make_codec()
    positions = known_positions()
    trajectory = SearchTrajectory.from_trajectory(fake_trajectory(codec, positions), codec)
    crop = np.random.default_rng(0).integers(0, 255, (*INPUT, 3), dtype=np.uint8)
    return trajectory, positions, crop


def pixel(image: np.ndarray, layout_cell: tuple[int, int], point: np.ndarray) -> tuple:
    top, left = layout_cell
    x, y = (int(round(v)) for v in point)
    return tuple(image[top + y, left + x])


def colour_near(image: np.ndarray, layout_cell: tuple[int, int], point: np.ndarray, colour) -> bool:
    """Whether ``colour`` is drawn within a pixel of ``point`` (thin diagonal lines)."""
    top, left = layout_cell
    x, y = (int(round(v)) for v in point)
    patch = image[top + y - 1 : top + y + 2, left + x - 1 : left + x + 2]
    return bool(np.all(patch == colour, axis=-1).any())


# --------------------------------------------------------------------------- data


def test_trajectory_keeps_the_recorded_values_and_measures_them(known):
    trajectory, positions, _ = known
    assert (trajectory.num_steps, trajectory.num_hypotheses, trajectory.num_joints) == (3, 2, 17)
    recorded = (positions[:, None] + OFFSETS[:, None]).astype(np.float32)
    np.testing.assert_array_equal(trajectory.keypoints, recorded)
    assert trajectory.t.tolist() == [999, 666, 333] and trajectory.t_prev.tolist() == [666, 333, -1]
    # The consensus is decoded from the hypothesis mean (here every hypothesis peaks at
    # the true position); DARK decoding of a clean Gaussian is exact.
    np.testing.assert_allclose(trajectory.consensus_keypoints, positions, atol=0.05)
    moves = trajectory.displacement()
    assert np.isnan(moves[0]).all()
    np.testing.assert_allclose(moves[1:], np.hypot(2, 3), atol=0.1)
    np.testing.assert_allclose(trajectory.spread(), 6.0, atol=1e-6)
    areas = trajectory.mask_area()
    assert areas.shape == (3, 3, 17)
    for scale, (rows, cols) in enumerate(MASK_SIZES):
        np.testing.assert_allclose(areas[:, scale], 1.0 / (rows * cols), rtol=1e-6)
    assert trajectory.scale_names() == ["1/16", "1/8", "1/4"]


def test_mask_share_near_a_target_counts_the_cells_around_it(known):
    trajectory, _, _ = known
    # The coarsest mask (4 x 3 cells of 16 x 16 input pixels) is lit at row 3 at step 0
    # and row 2 at step 1; a target at the centre of cell (3, 0) with a radius of half
    # a cell holds step 0's whole mask and none of step 1's.
    target = np.tile([[7.5, 55.5]], (JOINTS, 1))
    shares = trajectory.mask_mass_near(target, radius=8.0)
    np.testing.assert_allclose(shares[0, 0], 1.0)
    np.testing.assert_allclose(shares[1, 0], 0.0)
    near = trajectory.cells_near(target, radius=8.0)
    assert near[0][0].sum() == 1 and near[0][0][3, 0]
    wide = trajectory.cells_near(target, radius=20.0)[0]
    assert wide[0].sum() == 3  # the cell itself and its neighbours above and to the right
    # Without ground truth the target is the final keypoints; hidden joints are NaN.
    np.testing.assert_array_equal(trajectory.target(), trajectory.consensus_keypoints[-1])
    visible = np.arange(JOINTS) % 2 == 0
    truth = GroundTruth(keypoints=target, visible=visible)
    assert np.isnan(trajectory.target(truth)[~visible]).all()
    hidden = trajectory.mask_mass_near(trajectory.target(truth), 8.0)[:, :, ~visible]
    np.testing.assert_array_equal(hidden, 0.0)  # no cell is near a missing point


def test_a_uniform_mask_covers_the_whole_map():
    codec = make_codec()
    entries = fake_trajectory(codec, known_positions())
    for entry in entries:
        entry["masks"] = tuple(
            torch.full_like(mask, 1.0 / mask[0, 0, 0].numel()) for mask in entry["masks"]
        )
    uniform = SearchTrajectory.from_trajectory(entries, codec)
    np.testing.assert_allclose(uniform.mask_area(), 1.0)
    # A uniform mask's share near a point is the share of cells near it.
    target = known_positions()[-1]
    shares = uniform.mask_mass_near(target, radius=10.0)
    for scale, near in enumerate(uniform.cells_near(target, radius=10.0)):
        expected = np.broadcast_to(near.mean(axis=(1, 2)), shares[:, scale].shape)
        np.testing.assert_allclose(shares[:, scale], expected, rtol=1e-5)


def test_steps_that_record_different_things_are_refused():
    codec = make_codec()
    entries = fake_trajectory(codec, known_positions())
    del entries[1]["heatmaps"]
    with pytest.raises(ValueError, match="'heatmaps' is recorded at 2 of 3 steps"):
        SearchTrajectory.from_trajectory(entries, codec)
    entries = fake_trajectory(codec, known_positions())
    entries[2]["masks"] = entries[2]["masks"][:2]
    with pytest.raises(ValueError, match="masks differ"):
        SearchTrajectory.from_trajectory(entries, codec)
    with pytest.raises(ValueError, match="no steps"):
        SearchTrajectory.from_trajectory([], codec)


# --------------------------------------------------------------------------- heads without heatmaps

LAYER_MOVE = np.array([5.0, 6.0])  # input px each decoder layer moves every joint


def fake_layers(positions: np.ndarray) -> list[dict]:
    """What ``TFPoseHead.predict(..., return_trajectory=True)`` with a coarse first
    layer returns for B = 1: "layer 0 (coarse)" at ``positions[0]`` (no reference, no
    masks), then "layer s" from ``positions[s - 1]`` (its reference) to ``positions[s]``
    with each joint's attention on one cell per level (row ``lit_row``, column s); G = 1,
    no heatmaps, x_t or t."""
    entries = []
    for step in range(len(positions)):
        entry = {
            "step": step,
            "label": "layer 0 (coarse)" if step == 0 else f"layer {step}",
            "keypoints": torch.from_numpy(positions[step]).float()[None, None],
            "scores": torch.full((1, 1, JOINTS), 0.25 * (step + 1)),
        }
        if step > 0:
            entry["reference"] = torch.from_numpy(positions[step - 1]).float()[None, None]
            masks = []
            for rows, cols in MASK_SIZES:
                mask = torch.zeros(1, 1, JOINTS, rows, cols)
                mask[..., lit_row(step, rows), step % cols] = 1.0
                masks.append(mask)
            entry["masks"] = tuple(masks)
        entries.append(entry)
    return entries


@pytest.fixture
def layers() -> tuple[SearchTrajectory, np.ndarray, np.ndarray]:
    """(trajectory of 3 layers, positions [S, K, 2], crop [H, W, 3])."""
    start = known_positions()[0]
    positions = np.stack([start + LAYER_MOVE * step for step in range(STEPS)])
    trajectory = SearchTrajectory.from_trajectory(fake_layers(positions), make_codec())
    crop = np.random.default_rng(1).integers(0, 255, (*INPUT, 3), dtype=np.uint8)
    return trajectory, positions, crop


def test_a_trajectory_without_heatmaps_keeps_what_it_has(layers):
    trajectory, positions, _ = layers
    assert trajectory.labels == ("layer 0 (coarse)", "layer 1", "layer 2")
    assert trajectory.heatmaps is None and trajectory.x_t is None and trajectory.t is None
    assert trajectory.mask_source == "attention"
    # consensus = the hypothesis mean of the recorded keypoints (G = 1: themselves)
    np.testing.assert_array_equal(trajectory.consensus_keypoints, positions.astype(np.float32))
    np.testing.assert_array_equal(trajectory.consensus_scores[:, 0], [0.25, 0.5, 0.75])
    # every layer moved from its reference; the coarse layer has none and no masks
    assert np.isnan(trajectory.reference[0]).all()
    np.testing.assert_array_equal(trajectory.reference[1:, 0], positions[:-1].astype(np.float32))
    moves = trajectory.displacement()
    assert np.isnan(moves[0]).all()
    np.testing.assert_allclose(moves[1:], np.hypot(*LAYER_MOVE), rtol=1e-6)
    assert trajectory.masks_recorded().tolist() == [False, True, True]
    areas = trajectory.mask_area()
    assert np.isnan(areas[0]).all()
    for scale, (rows, cols) in enumerate(MASK_SIZES):
        np.testing.assert_allclose(areas[1:, scale], 1.0 / (rows * cols), rtol=1e-6)
    # Attention cells divide the crop: cell (3, 0) of the 4 x 3 level spans input
    # pixels [-0.5, 15.5) x [47.5, 63.5), centre (7.5, 55.5).
    target = np.tile([[7.5, 55.5]], (JOINTS, 1))
    near = trajectory.cells_near(target, radius=1.0)
    assert near[0][0].sum() == 1 and near[0][0][3, 0]
    shares = trajectory.mask_mass_near(target, radius=1.0)
    np.testing.assert_allclose(shares[1, 0], 0.0)  # step 1 lit row 2
    assert np.isnan(shares[0]).all()


def test_record_of_a_trajectory_without_heatmaps(layers):
    trajectory, positions, _ = layers
    record = json.loads(json.dumps(trajectory_record(trajectory, POSETRACK)))
    first, second = record["steps"][:2]
    assert first["label"] == "layer 0 (coarse)" and second["label"] == "layer 1"
    assert "t" not in first and "reference" not in first and "reference" in second
    np.testing.assert_array_equal(
        np.array(second["reference"][0], np.float32), positions[0].astype(np.float32)
    )
    assert first["mask_area"] == [[None] * JOINTS] * 3
    assert record["mask_scales"] == ["1/16", "1/8", "1/4"]
    kept = np.array([step["keypoints"] for step in record["steps"]], dtype=np.float32)
    np.testing.assert_array_equal(kept, trajectory.keypoints)


def test_layer_grid_draws_keypoints_arrows_and_attention(layers):
    trajectory, positions, crop = layers
    joints = [0]  # one joint: no limbs cross its arrow
    image, layout = render_search_grid(trajectory, crop, POSETRACK, joints=joints, panel_height=128)
    assert image.shape == (*layout.size, 3)
    # no x_t column, no hypotheses column (G = 1, no sampler): masks, keypoints, joints
    assert layout.rows == STEPS
    keypoint_column = (
        summary_column_count(len(MASK_SIZES), input_column=False, hypothesis_column=False) - 1
    )
    assert layout.columns == keypoint_column + 1 + len(joints)
    panel = layout.panel
    for step in range(STEPS):
        cell = layout.cell(step, keypoint_column + 1)
        consensus = to_panel(positions[step, 0], INPUT, panel)
        assert pixel(image, cell, consensus) == CONSENSUS_COLOUR
        # the arrow from the layer's reference: white halfway along (none for layer 0)
        middle = to_panel(positions[step, 0] - LAYER_MOVE / 2, INPUT, panel)
        for column in (keypoint_column, keypoint_column + 1):
            drawn = colour_near(image, layout.cell(step, column), middle, ARROW_COLOUR)
            assert drawn == (step > 0), (step, column)
    # Attention masks light the recorded cell, whose centre lies on the crop's grid.
    for step in (1, 2):
        for scale, (rows, cols) in enumerate(MASK_SIZES):
            cell = layout.cell(step, scale)

            def centre(row: int, col: int, rows=rows, cols=cols) -> np.ndarray:
                size = np.array([INPUT[1] / cols, INPUT[0] / rows])
                return to_panel((np.array([col, row]) + 0.5) * size - 0.5, INPUT, panel)

            lit = np.asarray(pixel(image, cell, centre(lit_row(step, rows), step % cols)), int)
            dark = np.asarray(pixel(image, cell, centre(lit_row(step + 1, rows), step % cols)), int)
            assert lit.sum() > dark.sum() + 150, (step, scale)
    # The coarse layer read no feature map: its mask panels are the dimmed crop alone.
    top, left = layout.cell(0, 0)
    below_caption = image[top + panel[0] // 2 : top + panel[0], left : left + panel[1]]
    assert (below_caption[..., 0] == below_caption[..., 1]).all()  # grey


def test_layer_curves_and_animation_are_written(layers, tmp_path):
    trajectory, positions, crop = layers
    truth = GroundTruth(keypoints=positions[-1], visible=np.ones(JOINTS, bool))
    path = plot_search_curves(trajectory, POSETRACK, tmp_path / "c.png", ground_truth=truth, dpi=50)
    with Image.open(path) as image:
        assert image.size == (625, 280)
    frames = render_step_frames(trajectory, crop, POSETRACK, panel_height=64)
    assert len(frames) == STEPS and len({frame.shape for frame in frames}) == 1


# --------------------------------------------------------------------------- geometry


def test_heatmap_overlay_peaks_under_the_keypoint():
    codec = make_codec()
    panel = (160, 120)  # zoom 2.5
    # Bilinear interpolation peaks on a heatmap node: points on nodes (input multiples
    # of the stride 4) must come out within a panel pixel, others within half a
    # heatmap pixel (2 input pixels = 5 panel pixels).
    for point, tolerance in (([12.0, 20.0], 1.0), ([40.0, 56.0], 1.0), ([10.3, 21.7], 5.0)):
        maps, _ = codec.encode(np.array([point]), np.ones(1, bool))
        drawn = resample_heatmaps(maps[0], codec.input_to_heatmap(np.ones(2)), INPUT, panel)
        peak_y, peak_x = np.unravel_index(drawn.argmax(), drawn.shape)
        expected = to_panel(np.array(point), INPUT, panel)
        assert abs(peak_x - expected[0]) <= tolerance, point
        assert abs(peak_y - expected[1]) <= tolerance, point


def test_mask_blocks_cover_the_cells_they_pool():
    # Cell (1, 2) of a 4 x 3 mask pools heatmap rows 4..7 and columns 8..11, i.e. input
    # rows 16..31 and columns 32..47 at stride 4 (minus half a heatmap pixel).
    mask = np.zeros((4, 3), np.float32)
    mask[1, 2] = 1
    panel = (64, 48)  # zoom 1: panel pixels are input pixels
    drawn = resample_masks(mask, HEATMAP, (0.25, 0.25), INPUT, panel)
    rows, cols = np.nonzero(drawn)
    assert (rows.min(), rows.max()) == (14, 29)
    assert (cols.min(), cols.max()) == (30, 47)


# --------------------------------------------------------------------------- pictures


def test_grid_has_a_row_per_step_and_draws_the_recorded_keypoints(known):
    trajectory, positions, crop = known
    joints = [0, 9, 16]
    image, layout = render_search_grid(trajectory, crop, POSETRACK, joints=joints, panel_height=128)
    assert image.shape == (*layout.size, 3) and image.dtype == np.uint8
    assert layout.rows == STEPS
    first_joint_column = summary_column_count(len(MASK_SIZES))
    assert layout.columns == first_joint_column + len(joints)
    panel = layout.panel
    for step in range(STEPS):
        for position, joint in enumerate(joints):
            cell = layout.cell(step, first_joint_column + position)
            consensus = to_panel(trajectory.consensus_keypoints[step, joint], INPUT, panel)
            assert pixel(image, cell, consensus) == CONSENSUS_COLOUR
            # The hypotheses' dots sit where the trajectory recorded them, 6 px either
            # side of the heatmap peak, not where the heatmaps would decode.
            for hypothesis in range(HYPOTHESES):
                recorded = to_panel(positions[step, joint] + OFFSETS[hypothesis], INPUT, panel)
                assert pixel(image, cell, recorded) == HYPOTHESIS_COLOUR
            # Another step's row has no marker there: the keypoints moved.
            other = layout.cell((step + 1) % STEPS, first_joint_column + position)
            assert pixel(image, other, consensus) != CONSENSUS_COLOUR


def test_mask_panels_light_up_the_recorded_cell(known):
    trajectory, _, crop = known
    image, layout = render_search_grid(
        trajectory, crop, POSETRACK, joint_panels=[], panel_height=128
    )

    def cell_centre(row: int, col: int, rows: int, cols: int) -> np.ndarray:
        # Cell (row, col) pools f x f heatmap pixels; its centre in heatmap pixels is
        # j * f + (f - 1) / 2, in input pixels 4x that (stride 4).
        fy, fx = HEATMAP[0] / rows, HEATMAP[1] / cols
        centre = np.array([col * fx + (fx - 1) / 2, row * fy + (fy - 1) / 2]) * 4
        return to_panel(centre, INPUT, layout.panel)

    for step in range(STEPS):
        for scale, (rows, cols) in enumerate(MASK_SIZES):
            cell = layout.cell(step, 1 + scale)
            lit = cell_centre(lit_row(step, rows), step % cols, rows, cols)
            dark = cell_centre(lit_row(step + 1, rows), step % cols, rows, cols)
            inside = np.asarray(pixel(image, cell, lit), dtype=int)
            outside = np.asarray(pixel(image, cell, dark), dtype=int)
            assert inside.sum() > outside.sum() + 150, (step, scale)


def test_animation_has_one_frame_per_step(known, tmp_path):
    trajectory, _, crop = known
    frames = render_step_frames(trajectory, crop, POSETRACK, panel_height=80)
    assert len(frames) == STEPS
    assert len({frame.shape for frame in frames}) == 1
    gif = write_gif(frames, tmp_path / "a.gif")
    with Image.open(gif) as image:
        assert image.n_frames == STEPS and image.size == frames[0].shape[1::-1]
    mp4 = write_mp4(frames, tmp_path / "a.mp4")
    with av.open(str(mp4)) as container:
        assert sum(1 for _ in container.decode(video=0)) == STEPS


def test_curves_plot_is_written(known, tmp_path):
    trajectory, positions, _ = known
    truth = GroundTruth(keypoints=positions[-1], visible=np.ones(JOINTS, bool))
    path = plot_search_curves(trajectory, POSETRACK, tmp_path / "c.png", ground_truth=truth, dpi=50)
    with Image.open(path) as image:
        assert image.size == (625, 280)  # 12.5 x 5.6 inches at 50 dpi


def test_temporal_view_bars_follow_the_weights():
    clip = np.full((3, *INPUT, 3), 128, np.uint8)
    weights = TemporalWeights(
        weights=np.array([0.25, 1.0, -0.5]), bias=0.0, offsets=(-1, 0, 1), key_index=1
    )
    image = render_temporal_view(clip, weights, panel_height=96)
    layout = temporal_layout(3, INPUT, 96)
    assert image.shape == (*layout.size, 3)
    for index, weight in enumerate(weights.weights):
        left, top, right, _ = layout.bar_box(index, weight, largest=1.0)
        row = image[top + 1, layout.frame_left(index) : layout.frame_left(index) + layout.panel[1]]
        colour = POSITIVE_COLOUR if weight > 0 else NEGATIVE_COLOUR
        drawn = int(np.all(row == colour, axis=-1).sum())
        assert drawn == right - left == round(layout.panel[1] * abs(weight))


def test_record_keeps_keypoints_exactly(known):
    trajectory, positions, _ = known
    record = json.loads(json.dumps(trajectory_record(trajectory, POSETRACK)))
    assert len(record["steps"]) == STEPS
    kept = np.array([step["keypoints"] for step in record["steps"]], dtype=np.float32)
    np.testing.assert_array_equal(kept, trajectory.keypoints)
    assert record["steps"][0]["displacement"][0] is None


# --------------------------------------------------------------------------- CLI


MICRO = [
    "data.input_size=[64,48]",
    "model.backbone.embed_dim=32",
    "model.backbone.depth=1",
    "model.backbone.num_heads=2",
    "model.decoder_dim=16",
    "model.decoder_heads=2",
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    """A one-video synthetic dataset, a micro diffusion checkpoint and its YAML."""
    from vidpose.checkpoint import Checkpoint, save_checkpoint
    from vidpose.config import load_config, save_config, to_dict
    from vidpose.data.synthetic import generate_dataset
    from vidpose.models.build import build_model

    folder = tmp_path_factory.mktemp("visualize")
    root = generate_dataset(
        folder / "data", videos=1, frames=5, persons=2, size=(96, 72), seed=2, progress=False
    )
    config = load_config(REPO / "configs" / "synthetic_tiny.yaml", [*MICRO, f"data.root={root}"])
    torch.manual_seed(0)
    model = build_model(config).eval()
    checkpoint = save_checkpoint(
        Checkpoint(model=model.state_dict(), config=to_dict(config)), folder / "micro.safetensors"
    )
    return {
        "root": root,
        "config": config,
        "yaml": save_config(config, folder / "micro.yaml"),
        "model": model,
        "checkpoint": checkpoint,
    }


@pytest.fixture(scope="module")
def tfpose(setup, tmp_path_factory) -> dict:
    """A micro TFPose checkpoint (3 decoder layers, learned references) on ``setup``'s
    data, and its YAML."""
    from vidpose.checkpoint import Checkpoint, save_checkpoint
    from vidpose.config import load_config, save_config, to_dict
    from vidpose.models.build import build_model

    folder = tmp_path_factory.mktemp("visualize_tfpose")
    overrides = [*MICRO, "model.decoder_dim=32", "model.tfpose.heads=2"]
    config = load_config(
        REPO / "configs" / "synthetic_tiny_tfpose.yaml", [*overrides, f"data.root={setup['root']}"]
    )
    torch.manual_seed(0)
    model = build_model(config).eval()
    # An untrained layer keeps its reference (the refinement starts at zero); random
    # refinements make every layer move, so the rows differ.
    with torch.no_grad():
        for layer in model.head.decoder:
            layer.refine[-1].weight.normal_(std=0.1)
    checkpoint = save_checkpoint(
        Checkpoint(model=model.state_dict(), config=to_dict(config)), folder / "tfpose.safetensors"
    )
    return {
        "config": config,
        "yaml": save_config(config, folder / "tfpose.yaml"),
        "model": model,
        "checkpoint": checkpoint,
    }


def visualize(*args) -> int:
    return main(["visualize", *map(str, args)])


def direct_trajectory(model, frames: torch.Tensor, seed: int, **sampling):
    """The model's own answer (HeadPrediction) with its trajectory, seeded."""
    generator = torch.Generator().manual_seed(seed)
    return model.predict(frames[None], generator=generator, return_trajectory=True, **sampling)


def test_cli_dataset_item_draws_the_trajectory_predict_returns(setup, tmp_path):
    from vidpose.data.clips import build_dataset_from_config

    out = tmp_path / "out"
    common = ["--steps", 3, "--hypotheses", 2, "--seed", 5, "--panel-height", 64]
    assert visualize("--checkpoint", setup["checkpoint"], "--dataset", setup["yaml"],
                     "--index", 1, "--out", out, *common) == 0  # fmt: skip
    names = {p.name for p in out.iterdir()}
    assert names == {
        "search_grid.png", "search.gif", "search.mp4", "search_curves.png", "temporal.png",
        "trajectory.json",
    }  # fmt: skip

    style = PanelStyle.for_height(64, INPUT)
    layout = grid_layout(3, summary_column_count(3) + len(POSETRACK.scored_indices), style)
    with Image.open(out / "search_grid.png") as grid:
        assert grid.size == (layout.size[1], layout.size[0])
    with Image.open(out / "search.gif") as gif:
        assert gif.n_frames == 3
    with av.open(str(out / "search.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 3
    with Image.open(out / "temporal.png") as temporal:
        assert temporal.size[::-1] == temporal_layout(3, INPUT, 64).size

    record = json.loads((out / "trajectory.json").read_text())
    item = build_dataset_from_config(setup["config"], "val")[1]
    direct = direct_trajectory(setup["model"], item["frames"], 5, steps=3, hypotheses=2)
    assert len(record["steps"]) == len(direct.trajectory) == 3
    for written, step in zip(record["steps"], direct.trajectory, strict=True):
        np.testing.assert_array_equal(
            np.array(written["keypoints"], np.float32), step["keypoints"][0].numpy()
        )
        assert (written["t"], written["t_prev"]) == (step["t"], step["t_prev"])
    # The last step's consensus is the model's prediction.
    np.testing.assert_array_equal(
        np.array(record["steps"][-1]["consensus_keypoints"], np.float32),
        direct.keypoints[0].numpy(),
    )
    np.testing.assert_array_equal(record["ground_truth"]["keypoints"], item["keypoints"].numpy())
    assert record["metadata"]["seed"] == 5 and record["metadata"]["index"] == 1


def test_cli_video_with_a_ground_truth_track(setup, tmp_path):
    from vidpose.data.posetrack import read_posetrack_file
    from vidpose.inference.predictor import build_predictor

    root = setup["root"]
    video = next((root / "videos" / "val").glob("*.mp4"))
    annotations = root / "posetrack_data" / "val" / f"{video.stem}.json"
    person = read_posetrack_file(annotations)[0].frames[2].persons[1]
    out = tmp_path / "out"
    assert visualize("--checkpoint", setup["checkpoint"], "--video", video, "--frame", 2,
                     "--track", person.track_id, "--boxes", annotations, "--out", out,
                     "--steps", 2, "--hypotheses", 1, "--animation", "gif",
                     "--joints", "left_wrist,right_ankle") == 0  # fmt: skip
    record = json.loads((out / "trajectory.json").read_text())
    np.testing.assert_allclose(record["metadata"]["box"], person.bbox)
    assert record["metadata"]["clip_frames"] == [1, 2, 3]
    assert not (out / "search.mp4").exists()

    # The same crop through the extraction predictor, the same seed: the same trajectory.
    from vidpose.data.frames import open_frames

    frames = open_frames(video)
    predictor = build_predictor(setup["model"], setup["config"])
    clip = predictor.crop_clips([frames[1], frames[2], frames[3]], person.bbox[None])[0]
    direct = direct_trajectory(setup["model"], clip, 0, steps=2, hypotheses=1)
    for written, step in zip(record["steps"], direct.trajectory, strict=True):
        np.testing.assert_array_equal(
            np.array(written["keypoints"], np.float32), step["keypoints"][0].numpy()
        )


def test_cli_video_single_person(setup, tmp_path):
    video = next((setup["root"] / "videos" / "val").glob("*.mp4"))
    out = tmp_path / "single"
    assert visualize("--checkpoint", setup["checkpoint"], "--video", video, "--frame", 3,
                     "--out", out, "--steps", 1, "--hypotheses", 1, "--animation", "none",
                     "--joints", "none") == 0  # fmt: skip
    record = json.loads((out / "trajectory.json").read_text())
    assert record["metadata"]["box_source"].startswith("single person")
    assert {p.name for p in out.iterdir()} == {
        "search_grid.png",
        "search_curves.png",
        "temporal.png",
        "trajectory.json",
    }


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--index", 0], "one of the arguments --dataset --video is required"),
        (["--dataset", "{yaml}"], "--dataset needs --index"),
        (["--dataset", "{yaml}", "--index", 999], "has 10 clips"),
        (["--video", "{video}", "--frame", 1, "--boxes", "{gt}", "--track", 42], "track_id 42"),
        (["--video", "{video}", "--frame", 99], "outside 0..4"),
        (["--video", "{video}", "--frame", 1, "--track", 1], "single-person mode"),
        (["--dataset", "{yaml}", "--index", 0, "--frame", 1], "--frame only applies with --video"),
        (["--dataset", "{yaml}", "--index", 0, "--joints", "elbow"], "no joint 'elbow'"),
    ],
)
def test_cli_errors_name_the_problem(setup, tmp_path, capsys, arguments, message):
    video = next((setup["root"] / "videos" / "val").glob("*.mp4"))
    gt = setup["root"] / "posetrack_data" / "val" / f"{video.stem}.json"
    values = {"yaml": setup["yaml"], "video": video, "gt": gt}
    filled = [str(a).format(**values) if isinstance(a, str) else a for a in arguments]
    try:
        code = visualize("--checkpoint", setup["checkpoint"], "--out", tmp_path, *filled)
    except SystemExit as exit:  # argparse usage errors
        code = exit.code
    assert code == 2
    assert message in capsys.readouterr().err


def assert_same_layers(record: dict, direct) -> None:
    """``trajectory.json``'s steps are exactly the TFPose trajectory ``direct`` recorded."""
    assert [step["label"] for step in record["steps"]] == [
        entry["label"] for entry in direct.trajectory
    ]
    for written, entry in zip(record["steps"], direct.trajectory, strict=True):
        np.testing.assert_array_equal(
            np.array(written["keypoints"], np.float32), entry["keypoints"][0].numpy()
        )
        np.testing.assert_array_equal(
            np.array(written["reference"], np.float32), entry["reference"][0].numpy()
        )
        assert "t" not in written and len(written["mask_area"]) == 3
    # The last layer's keypoints are the model's prediction.
    np.testing.assert_array_equal(
        np.array(record["steps"][-1]["consensus_keypoints"], np.float32),
        direct.keypoints[0].numpy(),
    )


def test_cli_tfpose_dataset_item_draws_the_layers_predict_returns(setup, tfpose, tmp_path, capsys):
    from vidpose.data.clips import build_dataset_from_config

    out = tmp_path / "out"
    assert visualize("--checkpoint", tfpose["checkpoint"], "--dataset", tfpose["yaml"],
                     "--index", 1, "--out", out, "--panel-height", 64) == 0  # fmt: skip
    printed = capsys.readouterr()
    assert "3 steps (layer 1, layer 2, layer 3)" in printed.out and "note" not in printed.err
    assert {p.name for p in out.iterdir()} == {
        "search_grid.png", "search.gif", "search.mp4", "search_curves.png", "temporal.png",
        "trajectory.json",
    }  # fmt: skip
    # rows = the 3 decoder layers; columns: 3 attention levels, keypoints, joint panels
    # (no x_t, no hypotheses: one deterministic hypothesis)
    style = PanelStyle.for_height(64, INPUT)
    columns = summary_column_count(3, input_column=False, hypothesis_column=False)
    layout = grid_layout(3, columns + len(POSETRACK.scored_indices), style)
    with Image.open(out / "search_grid.png") as grid:
        assert grid.size == (layout.size[1], layout.size[0])
    with Image.open(out / "search.gif") as gif:
        assert gif.n_frames == 3

    record = json.loads((out / "trajectory.json").read_text())
    item = build_dataset_from_config(tfpose["config"], "val")[1]
    with torch.no_grad():
        direct = tfpose["model"].predict(item["frames"][None], return_trajectory=True)
    assert_same_layers(record, direct)
    # the layers really moved (the rows are not one picture three times)
    assert min(np.nanmean(step["displacement"]) for step in record["steps"]) > 0.1
    np.testing.assert_array_equal(record["ground_truth"]["keypoints"], item["keypoints"].numpy())


def test_cli_tfpose_video_single_person(setup, tfpose, tmp_path, capsys):
    from vidpose.data.frames import open_frames
    from vidpose.inference.predictor import build_predictor

    video = next((setup["root"] / "videos" / "val").glob("*.mp4"))
    out = tmp_path / "video"
    assert visualize("--checkpoint", tfpose["checkpoint"], "--video", video, "--frame", 2,
                     "--out", out, "--steps", 4, "--animation", "none",
                     "--joints", "left_wrist") == 0  # fmt: skip
    # --steps is a sampler setting: the head records its own layers, and the CLI says so
    assert "TFPoseHead records its own 3 steps" in capsys.readouterr().err
    record = json.loads((out / "trajectory.json").read_text())
    assert record["metadata"]["box_source"].startswith("single person")
    # The same crop (the box the CLI chose) through the extraction predictor.
    frames = open_frames(video)
    predictor = build_predictor(tfpose["model"], tfpose["config"])
    clip_frames = [frames[index] for index in record["metadata"]["clip_frames"]]
    clip = predictor.crop_clips(clip_frames, np.array(record["metadata"]["box"])[None])[0]
    with torch.no_grad():
        direct = tfpose["model"].predict(clip[None], return_trajectory=True)
    assert_same_layers(record, direct)


def test_cli_refuses_a_model_without_sampling(setup, tmp_path, capsys):
    from vidpose.checkpoint import Checkpoint, save_checkpoint
    from vidpose.config import load_config, to_dict
    from vidpose.models.build import build_model

    config = load_config(setup["yaml"], ["model.head=heatmap"])
    path = save_checkpoint(
        Checkpoint(model=build_model(config).state_dict(), config=to_dict(config)),
        tmp_path / "baseline.safetensors",
    )
    assert visualize("--checkpoint", path, "--dataset", setup["yaml"], "--index", 0,
                     "--set", "model.head=heatmap", "--out", tmp_path / "o") == 2  # fmt: skip
    error = capsys.readouterr().err
    # one line, no traceback: the head has no steps to show
    assert error.count("\n") == 1 and "Traceback" not in error
    assert "HeatmapHead predicts in one pass" in error and "no iterative search" in error
