#!/usr/bin/env bash
# Idempotent side environment with LeRobot's own dataset reader (PyPI `lerobot-dataset`,
# module `ledataset`), used only by the interop tests of `wam-ros dataset export-lerobot`.
#
# It lives apart from .venv because its pins (opencv < 4.13, datasets, huggingface-hub) are
# not ours, and because its reader imports torchvision at module level: torchvision's wheels
# need a CUDA build of torch (no CPU torchvision is reachable here), so this environment holds
# torch 2.10 with its CUDA libraries (about 3 GB, installed once) and torchvision 0.25, the
# last release whose VideoReader decodes with PyAV (the reader's "pyav" backend).
#
#   bash tools/lerobot_venv.sh            creates / checks .venv/lerobot; prints its python
# A stamp keyed on this file makes a second run a no-op.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SIDE="${WAM_LEROBOT_VENV:-$ROOT/.venv/lerobot}"
PY_HOST="${PYTHON:-python3}"
STAMP="$SIDE/.wam_ros_stamp"
want="$(sha256sum "$0" | cut -c1-16)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" && -x "$SIDE/bin/python" ]]; then
  echo "$SIDE/bin/python"
  exit 0
fi
exec 9>"${SIDE%/}.lock"   # two test runs at once: the second waits for the first
flock 9
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" && -x "$SIDE/bin/python" ]]; then
  echo "$SIDE/bin/python"
  exit 0
fi
rm -rf "$SIDE"
"$PY_HOST" -m venv "$SIDE" >&2
pip_install() {
  "$SIDE/bin/python" -m pip install --quiet --disable-pip-version-check "$@" 2>&1 \
    | { grep -v 'is ignored: it is neither' || true; } >&2
  return "${PIPESTATUS[0]}"
}
pip_install "lerobot-dataset==0.4.4" "torch==2.10.0" "torchvision==0.25.0"
"$SIDE/bin/python" -c 'import ledataset.datasets.lerobot_dataset' >&2
echo "$want" > "$STAMP"
echo "$SIDE/bin/python"
