"""tools/bench_gpu.py runs on a machine without CUDA with the tiny config (issue #23):
every number it reports is there and positive. Speeds are never asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_bench_gpu_runs_on_cpu_with_the_tiny_config(tmp_path) -> None:
    out = tmp_path / "gpu.json"
    command = [
        sys.executable, str(REPO / "tools" / "bench_gpu.py"), "--device", "cpu",
        "--steps", "2", "--batch-size", "4", "--size", "320", "180", "--videos", "1",
        "--frames", "5", "--extract-frames", "5", "--extract-people", "2",
        "--settings", "1x1", "--json", str(out),
    ]  # fmt: skip
    environment = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        command, capture_output=True, text=True, cwd=tmp_path, env=environment, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "no CUDA: the tiny config" in run.stdout
    results = json.loads(out.read_text())
    assert results["tiny"] and results["device"] == "cpu"
    training = results["training"]["tiny"]
    for part in ("step_only", "end_to_end"):
        assert training[part]["clips_per_s"] > 0
        assert training[part]["peak_memory_mib"] > 0
    rows = results["extraction"]["rows"]
    names = [row["name"] for row in rows]
    assert names[0].startswith("single-frame heatmap baseline")
    assert any("token cache" in name for name in names)
    assert any("full clips" in name for name in names)
    for row in rows:
        assert row["person_frames_per_s"] > 0 and row["ratio"] > 0
    # the printed tables carry the same rows
    assert "step-only clips/s" in run.stdout and "own-box crops + token cache" in run.stdout
