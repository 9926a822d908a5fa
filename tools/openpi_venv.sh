#!/usr/bin/env bash
# Idempotent side environment with openpi's own client and server packages from PyPI
# (`openpi-client` 0.1.2, `openpi-server` 0.1.0), used only by the interop tests and
# `wam-ros bench remote` (openpi-client's round trip next to ours).
#
# It lives apart from .venv because openpi-client pins numpy < 2 (our stack runs numpy 2).
# typing-extensions: openpi-client imports it without declaring it.
#
#   bash tools/openpi_venv.sh            creates / checks .venv/openpi; prints its python
# A stamp keyed on this file makes a second run a no-op; a lock serialises concurrent runs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SIDE="${WAM_OPENPI_VENV:-$ROOT/.venv/openpi}"
PY_HOST="${PYTHON:-python3}"
STAMP="$SIDE/.wam_ros_stamp"
want="$(sha256sum "$0" | cut -c1-16)"
ready() { [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" && -x "$SIDE/bin/python" ]]; }
if ready; then
  echo "$SIDE/bin/python"
  exit 0
fi
mkdir -p "$(dirname "$SIDE")"
exec 9>"${SIDE%/}.lock"
flock 9
if ready; then
  echo "$SIDE/bin/python"
  exit 0
fi
rm -rf "$SIDE"
"$PY_HOST" -m venv "$SIDE" >&2
"$SIDE/bin/python" -m pip install --quiet --disable-pip-version-check \
  "openpi-client==0.1.2" "openpi-server==0.1.0" typing-extensions 2>&1 \
  | { grep -v 'is ignored: it is neither' || true; } >&2
"$SIDE/bin/python" -c 'import openpi_client.websocket_client_policy, openpi_server' >&2
echo "$want" > "$STAMP"
echo "$SIDE/bin/python"
