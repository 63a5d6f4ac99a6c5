#!/usr/bin/env bash
# Install seqmeta (editable) with its dependencies and every optional integration (extra `all`: plots,
# HDF5, LoRA, video, Minari, Meta-World); `bash install.sh --dev` adds the test tools.
#
# metaworld 3.1.1 pins mujoco==3.3.0; seqmeta keeps MuJoCo 4 for every family (its shipped reference
# returns were measured on it) and runs Meta-World on it, so metaworld goes in with --no-deps (its other
# dependencies come with the extra `metaworld`).
#
# torch: an already installed torch is kept, so GPU users bring their own build. Without one,
# torch 2.13.0 is installed first (on seqmeta's CPU machines pip takes a local CPU wheel); after
# that, seqmeta's range `torch>=2.4` is satisfied and pip pulls no other torch build.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import torch" 2>/dev/null; then
    "$PYTHON" -m pip install --quiet "torch==2.13.0"
fi
target=".[all]"
if [ "${1:-}" = "--dev" ]; then
    target=".[dev]"
fi
"$PYTHON" -m pip install --quiet -e "$target"
"$PYTHON" -m pip install --quiet --no-deps "metaworld==3.1.1"
