#!/usr/bin/env bash
# Idempotent side environment for the ROS 2 Jazzy test tier (`make test-jazzy`):
#
#   .venv/jazzy/              its own virtual environment (rclpy 7.1.6 cannot share .venv with
#                             Kilted's rclpy 9.1.2)
#   ROS 2 Jazzy wheels        tools/requirements-jazzy.txt
#   torch==2.13.0 + deps      as tools/setup.sh installs them into .venv
#   wam_ros_msgs              built with plain cmake against Jazzy into the venv prefix
#   wam_ros                   installed in editable mode (the same source tree as .venv)
#
#   bash tools/jazzy_venv.sh     creates / checks the environment; prints its python on stdout
#
# Exit status 0: ready. 77: Jazzy's wheels cannot be installed on this machine (not CPython 3.11
# on Linux x86_64/aarch64, or no registry serves them): the reason is on stderr and the tier is
# skipped. Anything else is a failure.
# Each step leaves a stamp keyed on the content of what it depends on, so a second run that finds
# nothing changed does nothing; a lock serialises concurrent runs.
set -euo pipefail

export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${WAM_JAZZY_VENV:-$ROOT/.venv/jazzy}"
STAMPS="$VENV/.wam_ros_stamps"
PY_HOST="${PYTHON:-python3}"
SELF="$ROOT/tools/jazzy_venv.sh"
REQ="$ROOT/tools/requirements.txt"
JAZZY_REQ="$ROOT/tools/requirements-jazzy.txt"
UNAVAILABLE=77

log() { printf '\033[1m[jazzy]\033[0m %s\n' "$*" >&2; }
skip() { log "Jazzy tier unavailable: $*"; exit "$UNAVAILABLE"; }

# A sourced ROS install or the Kilted venv's re-exec guard would put another distro's libraries
# and packages in front of Jazzy's; this environment only ever sees its own.
unset PYTHONPATH AMENT_PREFIX_PATH CMAKE_PREFIX_PATH LD_LIBRARY_PATH _ROS_WHEELS_BOOTSTRAP_COMPLETE \
  ROS_DISTRO ROS_VERSION ROS_PYTHON_VERSION COLCON_PREFIX_PATH

# The Jazzy rclpy wheels are built for CPython 3.11 on manylinux x86_64 / aarch64 only.
platform="$("$PY_HOST" -c 'import platform, sys
print(f"{sys.implementation.name}{sys.version_info[0]}.{sys.version_info[1]}-{sys.platform}-{platform.machine()}")')"
case "$platform" in
  cpython3.11-linux-x86_64 | cpython3.11-linux-aarch64) ;;
  *) skip "the ros-jazzy-* wheels exist for CPython 3.11 on Linux x86_64/aarch64; $PY_HOST is $platform" ;;
esac

stamp_hash() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }
stamp_ok() { local n=$1; shift; [[ -f "$STAMPS/$n" && "$(cat "$STAMPS/$n")" == "$(stamp_hash "$@")" ]]; }
stamp_set() { local n=$1; shift; stamp_hash "$@" > "$STAMPS/$n"; }

MSG_FILES=("$ROOT"/wam_ros_msgs/CMakeLists.txt "$ROOT"/wam_ros_msgs/package.xml "$ROOT"/wam_ros_msgs/msg/*.msg)
all_ready() {
  [[ -x "$VENV/bin/python" ]] && stamp_ok python-deps "$REQ" "$SELF" \
    && stamp_ok ros-wheels "$JAZZY_REQ" "$SELF" && stamp_ok msgs "${MSG_FILES[@]}" "$SELF" \
    && stamp_ok project "$ROOT/wam_ros/setup.py" "$ROOT/wam_ros/package.xml" "$SELF"
}
if all_ready; then
  echo "$VENV/bin/python"
  exit 0
fi

mkdir -p "$(dirname "$VENV")"
exec 9>"${VENV%/}.lock"
flock 9

if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating virtual environment at ${VENV#"$ROOT"/}"
  "$PY_HOST" -m venv "$VENV" >&2
fi
mkdir -p "$STAMPS"
PY="$VENV/bin/python"
PIP_LOG="$STAMPS/pip.log"
# pip's warnings about local index folders that do not exist on this machine are noise.
pip_install() {
  local rc=0
  "$PY" -m pip install --quiet --disable-pip-version-check "$@" > "$PIP_LOG" 2>&1 || rc=$?
  grep -v 'is ignored: it is neither' "$PIP_LOG" >&2 || true
  return "$rc"
}

if ! stamp_ok ros-wheels "$JAZZY_REQ" "$SELF"; then
  log "installing ROS 2 Jazzy Python wheels"
  if ! pip_install -r "$JAZZY_REQ"; then
    # Only "no such distribution here / no registry reachable" means unavailable; any other
    # error (a conflict, a broken wheel) is a failure of ours to fix.
    if grep -Eq 'No matching distribution found|Could not find a version that satisfies|NewConnectionError|Failed to establish a new connection|Temporary failure in name resolution|ProxyError' "$PIP_LOG"; then
      skip "pip could not get the ros-jazzy-* wheels ($(grep -Em1 'No matching distribution|Could not find a version|Connection|resolution|ProxyError' "$PIP_LOG"))"
    fi
    log "installing the Jazzy wheels failed (see above)"
    exit 1
  fi
  # As for Kilted (tools/setup.sh): the wheels' exported CMake files hard-code the include
  # directories of the interpreter they were built with; point them at this venv's.
  pip_install "numpy>=1.26"
  py_inc="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
  np_inc="$("$PY" -c 'import numpy; print(numpy.get_include())')"
  shopt -s nullglob
  for f in "$VENV"/share/*/cmake/*Export*.cmake; do
    if grep -q '/opt/python/cp311-cp311' "$f"; then
      sed -i -E \
        -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/(_)?core/include#$np_inc#g" \
        -e "s#/opt/python/cp311-cp311/include/python3.11#$py_inc#g" "$f"
    fi
  done
  shopt -u nullglob
  stamp_set ros-wheels "$JAZZY_REQ" "$SELF"
fi

if ! stamp_ok python-deps "$REQ" "$SELF"; then
  log "installing torch 2.13.0 (CPU) and Python dependencies"
  pip_install --upgrade pip setuptools wheel
  # torch pinned on its own, exactly, so that nothing widens it to a CUDA build (tools/setup.sh).
  pip_install torch==2.13.0
  pip_install -r "$REQ"
  stamp_set python-deps "$REQ" "$SELF"
fi

if ! stamp_ok msgs "${MSG_FILES[@]}" "$SELF"; then
  log "building wam_ros_msgs against Jazzy"
  BUILD="$ROOT/build/jazzy/wam_ros_msgs"
  rm -rf "$BUILD"
  mkdir -p "$BUILD"
  cmake -S "$ROOT/wam_ros_msgs" -B "$BUILD" -DCMAKE_INSTALL_PREFIX="$VENV" \
    -DCMAKE_PREFIX_PATH="$VENV" -DPython3_EXECUTABLE="$PY" -DBUILD_TESTING=OFF \
    -DCMAKE_BUILD_TYPE=Release > "$BUILD/configure.log" 2>&1 \
    || { cat "$BUILD/configure.log" >&2; exit 1; }
  cmake --build "$BUILD" -j "$(nproc)" > "$BUILD/build.log" 2>&1 \
    || { tail -50 "$BUILD/build.log" >&2; exit 1; }
  cmake --install "$BUILD" > /dev/null
  stamp_set msgs "${MSG_FILES[@]}" "$SELF"
fi

if ! stamp_ok project "$ROOT/wam_ros/setup.py" "$ROOT/wam_ros/package.xml" "$SELF"; then
  log "installing wam_ros (editable)"
  pip_install --no-deps --no-build-isolation -e "$ROOT/wam_ros"
  stamp_set project "$ROOT/wam_ros/setup.py" "$ROOT/wam_ros/package.xml" "$SELF"
fi

# Catches a half-finished earlier run here rather than in a test: the rclpy found is Jazzy's.
"$PY" - >&2 <<'PYCHECK'
from importlib.metadata import version
import rclpy  # noqa: F401
from wam_ros_msgs.msg import ActionChunk, Observation  # noqa: F401
import wam_ros  # noqa: F401
assert version("ros-rclpy").startswith("7.1."), version("ros-rclpy")
PYCHECK
echo "$VENV/bin/python"
