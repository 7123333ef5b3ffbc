"""Import timm on machines where torchvision's compiled operators cannot load.

timm imports torchvision at import time. When pip pairs a CPU torch with a CUDA
build of torchvision (it happens under a pinned torch: pip picks the newest
torchvision that matches the pin, which on PyPI is a CUDA build), loading
torchvision fails with ``operator torchvision::nms does not exist``: its Python
code registers fake kernels for operators whose schemas live in the native
library that could not load.

vidpose uses no torchvision operator. Declaring the schemas of the missing
operators lets torchvision, and so timm, import; calling one of them still
fails loudly. The fix is applied only when the plain import fails.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

# Schemas of the torchvision operators that torchvision's Python code refers to
# at import time (torchvision/_meta_registrations.py registers fakes for them).
_MISSING_OPERATOR_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)

_fragment = None  # keeps the operator library alive for the process lifetime


def _declare_missing_operators() -> None:
    global _fragment
    import torch

    if _fragment is not None:
        return
    fragment = torch.library.Library("torchvision", "FRAGMENT")
    for schema in _MISSING_OPERATOR_SCHEMAS:
        try:
            fragment.define(schema)
        except RuntimeError:  # this one is registered already; only others are missing
            pass
    _fragment = fragment


def _forget_partial_imports() -> None:
    # A failed import leaves half-initialised modules behind; drop them so the
    # second attempt starts clean.
    for name in list(sys.modules):
        if name.split(".")[0] in ("torchvision", "timm"):
            del sys.modules[name]


def import_timm() -> ModuleType:
    """Return the timm module, repairing a broken torchvision import if needed.

    Raises:
        ImportError: timm is not installed, or torchvision fails for another reason.
    """
    try:
        return importlib.import_module("timm")
    except RuntimeError as error:
        if "torchvision::" not in str(error) or "does not exist" not in str(error):
            raise
    _forget_partial_imports()
    _declare_missing_operators()
    try:
        return importlib.import_module("timm")
    except RuntimeError as error:
        raise ImportError(
            "timm could not be imported: torchvision's compiled operators do not match "
            f"the installed torch ({error}). Reinstall with `bash run.sh install`, which "
            "pins torch, or install a torchvision built for your torch."
        ) from error


def torchvision_was_repaired() -> bool:
    """True when this process needed the operator declarations to import timm."""
    return _fragment is not None
