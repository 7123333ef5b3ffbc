import subprocess
import sys

import torch

from vidpose.timm_import import import_timm


def test_timm_imports_and_builds_a_vit_that_runs():
    timm = import_timm()
    model = timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        img_size=(64, 48),
        depth=1,
        num_classes=0,
    )
    tokens = model.forward_features(torch.randn(2, 3, 64, 48))
    assert tokens.shape == (2, 1 + (64 // 16) * (48 // 16), 192)
    assert torch.isfinite(tokens).all()


def test_repair_is_applied_only_when_the_plain_import_fails():
    # In a fresh interpreter: whether the plain import works decides whether the
    # repair runs; either way timm must end up importable.
    script = (
        "import importlib, sys\n"
        "try:\n"
        "    importlib.import_module('timm'); plain_ok = True\n"
        "except RuntimeError:\n"
        "    plain_ok = False\n"
        "for name in [m for m in sys.modules if m.split('.')[0] in ('timm', 'torchvision')]:\n"
        "    del sys.modules[name]\n"
        "from vidpose.timm_import import import_timm, torchvision_was_repaired\n"
        "import_timm()\n"
        "print(plain_ok, torchvision_was_repaired())\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.split()
    plain_ok, repaired = output == ["True", "False"], output == ["False", "True"]
    assert plain_ok or repaired, output
