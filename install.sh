#!/usr/bin/env bash
# Install seqmeta (editable) with its dependencies and every optional integration (extra `all`: plots,
# HDF5, LoRA, video, Minari); `bash install.sh --dev` adds the test tools.
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
