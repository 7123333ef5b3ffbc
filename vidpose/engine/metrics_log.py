"""Training metrics: appended to a JSONL file and plotted to a PNG in the work dir."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from vidpose.runtime import writing


class MetricsLog:
    """Append-only JSONL of training and validation records, plus a curve plot.

    Each record is one line: ``{"kind": "train" | "val", "step": ..., "epoch": ...,
    <metric>: value, ...}``. Re-opening an existing log (a resumed run) drops
    records past ``resume_step`` so curves do not repeat.
    """

    def __init__(self, work_dir: str | os.PathLike, resume_step: int | None = None) -> None:
        self.path = Path(work_dir) / "metrics.jsonl"
        self.plot_path = Path(work_dir) / "curves.png"
        self.records: list[dict[str, Any]] = []
        if self.path.exists():
            for line in self.path.read_text(errors="replace").splitlines():
                try:
                    self.records.append(json.loads(line))
                except ValueError:
                    continue  # empty, or the half-written last line of a killed run
        if resume_step is None:
            self.records = []
        else:
            self.records = [r for r in self.records if r.get("step", 0) <= resume_step]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._rewrite()

    def _rewrite(self) -> None:
        # hidden and named .*.tmp: a run killed here leaves what the next start removes
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        with writing(self.path, "the metrics log"):
            temporary.write_text("".join(json.dumps(r) + "\n" for r in self.records))
            os.replace(temporary, self.path)

    def append(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        with writing(self.path, "the metrics log"):
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")

    def plot(self) -> Path:
        """Redraw the loss (and validation metric) curves into curves.png."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        train = [r for r in self.records if r.get("kind") == "train" and "loss" in r]
        val = [r for r in self.records if r.get("kind") == "val"]
        val_keys = sorted({k for r in val for k in r if k not in ("kind", "step", "epoch")})
        columns = 1 + bool(val_keys)
        figure, axes = plt.subplots(1, columns, figsize=(5 * columns, 3.5), squeeze=False)
        loss_axis = axes[0, 0]
        if train:
            loss_axis.plot([r["step"] for r in train], [r["loss"] for r in train], lw=1)
            if all(r["loss"] > 0 for r in train):
                loss_axis.set_yscale("log")
        loss_axis.set(title="training loss", xlabel="step")
        if val_keys:
            axis = axes[0, 1]
            for key in val_keys:
                points = [(r["step"], r[key]) for r in val if key in r and not _is_nan(r[key])]
                if points:
                    axis.plot(*zip(*points, strict=True), marker="o", label=key)
            axis.set(title="validation", xlabel="step")
            axis.legend(fontsize=8)
        figure.tight_layout()
        temporary = self.plot_path.with_name(f".{self.plot_path.name}.tmp")
        try:
            with writing(self.plot_path, "the training curves"):
                figure.savefig(temporary, dpi=90, format="png")
                os.replace(temporary, self.plot_path)
        finally:
            plt.close(figure)
        return self.plot_path


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)
