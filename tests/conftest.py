"""Suite-wide settings.

The tests run micro models whose operations are far too small to gain from a
second thread, and on a busy 2-core machine OpenMP threads spin-waiting on each
other made a training step ~100x slower (3 s instead of 0.02 s, measured). One
thread keeps the suite fast and its numbers deterministic.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402

torch.set_num_threads(1)
