#!/usr/bin/env bash
# vidpose set-up and entry point. Usage:
#   bash run.sh demo [ARGS...]   install if needed, then run `vidpose demo`
#   bash run.sh test [ARGS...]   install if needed, then run the test suite
#   bash run.sh install          install only
#   bash run.sh vidpose ARGS...  install if needed, then run any vidpose command
#
# The environment lives in .venv/ in the repository. It is rebuilt only when
# pyproject.toml, this script or the torch choice change.
#
# Torch is installed first, then pinned through a constraint file for every later
# pip call, so that no dependency (timm -> torchvision) can swap it for another
# build. Choose the torch build with:
#   VIDPOSE_TORCH        pip requirement for torch (default: torch==2.13.0)
#   VIDPOSE_TORCH_INDEX  optional index URL for it, e.g.
#                        https://download.pytorch.org/whl/cu128 for a CUDA build
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

VENV=.venv
TORCH_SPEC=${VIDPOSE_TORCH:-torch==2.13.0}
TORCH_INDEX=${VIDPOSE_TORCH_INDEX:-}
PYTHON=${PYTHON:-python3}

install() {
    local stamp_want stamp_have=""
    stamp_want=$(cat pyproject.toml run.sh | sha256sum | cut -c1-16)-$(echo "$TORCH_SPEC $TORCH_INDEX" | sha256sum | cut -c1-8)
    [ -f "$VENV/.vidpose-stamp" ] && stamp_have=$(cat "$VENV/.vidpose-stamp")
    if [ "$stamp_want" = "$stamp_have" ]; then
        return 0
    fi
    echo "[vidpose] setting up $VENV (torch: $TORCH_SPEC${TORCH_INDEX:+ from $TORCH_INDEX})" >&2
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
        echo "[vidpose] error: Python >= 3.10 is required, $PYTHON is $("$PYTHON" -V 2>&1)" >&2
        exit 1
    fi
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    local pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
    if [ -n "$TORCH_INDEX" ]; then
        "${pip[@]}" install "$TORCH_SPEC" --index-url "$TORCH_INDEX"
    else
        "${pip[@]}" install "$TORCH_SPEC"
    fi
    # Pin exactly the torch that is now installed (local version label included).
    "$VENV/bin/python" -c 'import torch; print("torch==" + torch.__version__)' > "$VENV/constraints.txt"
    PIP_CONSTRAINT="$VENV/constraints.txt" "${pip[@]}" install -e ".[dev]"
    echo "$stamp_want" > "$VENV/.vidpose-stamp"
    echo "[vidpose] environment ready: $(cat "$VENV/constraints.txt")" >&2
}

cmd=${1:-help}
[ $# -gt 0 ] && shift
case "$cmd" in
    install)
        install ;;
    test)
        install
        export HF_HUB_OFFLINE=1 MPLBACKEND=Agg
        exec "$VENV/bin/python" -m pytest "$@" ;;
    demo)
        install
        export HF_HUB_OFFLINE=1 MPLBACKEND=Agg
        exec "$VENV/bin/vidpose" demo "$@" ;;
    vidpose)
        install
        exec "$VENV/bin/vidpose" "$@" ;;
    *)
        sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
        [ "$cmd" = help ] || exit 2 ;;
esac
