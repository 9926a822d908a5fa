"""Pointing Fast DDS at a profile on every ROS 2 distribution we support.

Fast DDS 3 (ROS 2 Kilted and later) reads FASTDDS_DEFAULT_PROFILES_FILE; Fast DDS 2 (Humble,
Jazzy) reads only FASTRTPS_DEFAULT_PROFILES_FILE and silently ignores the new name, so on Jazzy
our profile (8 MiB shared-memory segment, loopback UDP, 3 s lease) was never loaded: raw camera
frames were dropped and a crashed node stayed "alive" for the default 20 s lease. The old name
works on Fast DDS 3 too, but every node then logs a deprecation warning, so we set the name the
installed Fast DDS reads. ROS-free: only files and the environment are looked at.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

FASTDDS_VARIABLE = "FASTDDS_DEFAULT_PROFILES_FILE"  # Fast DDS 3
FASTRTPS_VARIABLE = "FASTRTPS_DEFAULT_PROFILES_FILE"  # Fast DDS 2


def ros_prefixes(environ: Mapping[str, str] = os.environ) -> list[Path]:
    """Where ROS packages are installed: this interpreter's prefix (the PyPI wheels install
    into the venv) and the sourced workspaces and distribution ($AMENT_PREFIX_PATH)."""
    extra = [p for p in environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    return [Path(sys.prefix), *map(Path, extra)]


def fastdds_major(prefixes: Iterable[Path] | None = None) -> int | None:
    """3 or 2: the major version of the Fast DDS installed under the first prefix that has one
    (Fast DDS 3 installs its CMake package as share/fastdds, Fast DDS 2 as share/fastrtps);
    None when none is found."""
    for prefix in ros_prefixes() if prefixes is None else prefixes:
        if (prefix / "share" / "fastdds" / "cmake").is_dir():
            return 3
        if (prefix / "share" / "fastrtps" / "cmake").is_dir():
            return 2
    return None


def profile_variable(major: int | None) -> str:
    """The variable the Fast DDS of major version `major` reads (unknown: the current name)."""
    return FASTRTPS_VARIABLE if major == 2 else FASTDDS_VARIABLE


def profile_environment(default_profile: Path, environ: Mapping[str, str] = os.environ,
                        major: int | None = None) -> dict[str, str]:
    """Variables to add to `environ` so that the installed Fast DDS (`major`, else detected)
    loads a profile: the one the user named in either variable, else `default_profile`.
    Empty when the variable this Fast DDS reads is already set."""
    name = profile_variable(fastdds_major() if major is None else major)
    if environ.get(name):
        return {}
    chosen = environ.get(FASTDDS_VARIABLE) or environ.get(FASTRTPS_VARIABLE)
    return {name: chosen or str(default_profile)}
