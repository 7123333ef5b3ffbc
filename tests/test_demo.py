"""`vidpose demo --quick`: every stage of the README's main command, end to end."""

import json

import av

from vidpose.cli import main


def test_quick_demo_runs_every_stage_and_rerun_reuses_them(tmp_path, capsys, monkeypatch):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for stage in ("1/5", "2/5", "3/5", "4/5", "5/5"):
        assert f"[vidpose demo] {stage}" in printed
    assert "Per-joint average precision" in printed and "Person boxes: ground truth" in printed

    summary = json.loads((out / "demo_summary.json").read_text())
    assert 0.0 <= summary["mAP"] <= 100.0
    assert (out / "train" / "latest.safetensors").is_file()
    assert sorted(p.name for p in (out / "predictions").glob("*.json")) == sorted(
        p.name for p in (out / "data" / "posetrack_data" / "val").glob("*.json")
    )
    extracted = out / "extract"
    for name, frames in (("000001_mpii_test", 8), ("carphone_pristine", 12)):
        poses = json.loads((extracted / f"{name}.json").read_text())
        assert len(poses["images"]) == frames
        assert any(a["track_id"] >= 0 for a in poses["annotations"])
        with av.open(str(extracted / f"{name}.mp4")) as container:
            assert sum(1 for _ in container.decode(video=0)) == frames
    for output in ("search_grid.png", "search.gif", "search_curves.png", "temporal.png"):
        assert (out / "search" / output).stat().st_size > 0

    # a second run reuses the data, resumes the finished training, skips finished videos
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"reusing {out / 'data'}" in printed
    assert "0 skipped as already done" not in printed

    # a run of other model settings in the same folder is refused with advice
    from vidpose import demo

    monkeypatch.setitem(demo.QUICK, "model.diffusion.mask_gain", "constant")
    assert main(["demo", "--quick", "--out", str(out)]) != 0
    message = capsys.readouterr().err
    assert "model.diffusion.mask_gain: 'snr' -> 'constant'" in message
    assert "delete it or choose another --out" in message
