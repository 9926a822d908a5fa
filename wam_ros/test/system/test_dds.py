"""Our Fast DDS profile is loaded on every distribution: under FASTDDS_DEFAULT_PROFILES_FILE by
Fast DDS 3 (Kilted), under FASTRTPS_DEFAULT_PROFILES_FILE by Fast DDS 2 (Jazzy, Humble), which
ignores the new name. The last tests start a real participant and look at the shared-memory
segment it maps: 8 MiB with our profile, 512 KiB without."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from wam_ros.bringup.graph import dds_environment
from wam_ros.dds import (
    FASTDDS_VARIABLE,
    FASTRTPS_VARIABLE,
    fastdds_major,
    profile_environment,
    profile_variable,
    ros_prefixes,
)
from wam_ros.paths import config_dir

SHIPPED = config_dir() / "fastdds.xml"


def _prefix(root: Path, package: str) -> Path:
    (root / "share" / package / "cmake").mkdir(parents=True)
    return root


def test_the_fast_dds_major_version_comes_from_the_first_prefix_that_has_one(tmp_path) -> None:
    jazzy = _prefix(tmp_path / "jazzy", "fastrtps")
    kilted = _prefix(tmp_path / "kilted", "fastdds")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert fastdds_major([empty, jazzy, kilted]) == 2
    assert fastdds_major([kilted, jazzy]) == 3
    assert fastdds_major([empty]) is None


def test_sourced_workspaces_are_searched_after_this_interpreter(tmp_path) -> None:
    a, b = tmp_path / "ws", tmp_path / "opt"
    prefixes = ros_prefixes({"AMENT_PREFIX_PATH": f"{a}{os.pathsep}{os.pathsep}{b}"})
    assert prefixes == [Path(sys.prefix), a, b]


@pytest.mark.parametrize("major, name", [(2, FASTRTPS_VARIABLE), (3, FASTDDS_VARIABLE)])
def test_the_shipped_profile_goes_under_the_name_this_fast_dds_reads(major, name) -> None:
    assert profile_environment(SHIPPED, {}, major) == {name: str(SHIPPED)}


def test_an_unknown_fast_dds_gets_the_current_name() -> None:
    assert profile_variable(None) == FASTDDS_VARIABLE


def test_a_profile_the_user_chose_is_kept_and_handed_to_fast_dds_2() -> None:
    mine = "/robot/profile.xml"
    assert profile_environment(SHIPPED, {FASTDDS_VARIABLE: mine}, 3) == {}
    assert profile_environment(SHIPPED, {FASTDDS_VARIABLE: mine}, 2) == {FASTRTPS_VARIABLE: mine}
    assert profile_environment(SHIPPED, {FASTRTPS_VARIABLE: mine}, 2) == {}
    assert profile_environment(SHIPPED, {FASTRTPS_VARIABLE: mine}, 3) == {FASTDDS_VARIABLE: mine}


# A participant with a publisher, then the sizes of the Fast DDS shared-memory segments mapped
# into its process (Linux: /proc/self/maps; the files are named fastdds_* / fastrtps_*).
_PROBE = """
import os, rclpy
from std_msgs.msg import String
rclpy.init()
node = rclpy.create_node("wam_dds_probe")
node.create_publisher(String, "wam_dds_probe", 10)
paths = set()
with open("/proc/self/maps") as maps:
    for line in maps:
        path = line.split()[-1]
        name = os.path.basename(path)
        if path.startswith("/dev/shm/") and name.startswith(("fastdds_", "fastrtps_")) \\
                and "_port" not in name:
            paths.add(path)
print(max(os.path.getsize(p) for p in paths))
node.destroy_node()
rclpy.shutdown()
"""


def _largest_segment(env: dict[str, str]) -> int:
    run = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    return int(run.stdout.split()[-1])


def _env_without_profile(domain: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in (FASTDDS_VARIABLE, FASTRTPS_VARIABLE)}
    env.update(ROS_DOMAIN_ID=str(domain), RMW_IMPLEMENTATION="rmw_fastrtps_cpp",
               ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    return env


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_the_launch_environment_loads_our_profile_in_this_ros(ros_domain, monkeypatch) -> None:
    """What the launch files add to a user's environment without a profile
    (graph.dds_environment) gives the 8 MiB segment of config/fastdds.xml; without it Fast DDS
    uses its 512 KiB default (shown as well, so the measurement itself is checked)."""
    pytest.importorskip("rclpy")
    bare = _env_without_profile(ros_domain)
    for name in (FASTDDS_VARIABLE, FASTRTPS_VARIABLE):
        monkeypatch.delenv(name, raising=False)
    added = dds_environment()
    assert list(added) == [FASTRTPS_VARIABLE if fastdds_major() == 2 else FASTDDS_VARIABLE]
    assert _largest_segment(bare) < 1 << 20
    assert _largest_segment({**bare, **added}) >= 8 << 20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_the_test_environment_loads_our_profile_in_this_ros(ros_domain) -> None:
    """conftest's environment, which every node the tests start inherits."""
    pytest.importorskip("rclpy")
    assert _largest_segment({**os.environ, "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp"}) >= 8 << 20
